//! The lab file as written: serde types that mirror the TOML, before validation.
//!
//! Every field is optional so that missing keys get reclab's own messages; `Spanned` keeps
//! positions for messages about values; `deny_unknown_fields` turns a misspelt key into a
//! problem rather than silence.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use serde::de::IgnoredAny;
use toml::Spanned;

/// A string value with its place in the file.
pub(super) type Text = Spanned<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a lab file")]
pub(super) struct WireTop {
    pub(super) name: Option<Text>,
    pub(super) connect: Option<Text>,
    pub(super) ttl: Option<Text>,
    pub(super) accel: Option<Text>,
    pub(super) state_dir: Option<Text>,
    pub(super) tpm_state_dir: Option<Text>,
    pub(super) max_skew: Option<Text>,
    // Decoded piece by piece in `decode`, so that problems in several VMs show together.
    #[serde(rename = "segment")]
    _segment: Option<BTreeMap<String, IgnoredAny>>,
    #[serde(rename = "vm")]
    _vm: Option<Vec<IgnoredAny>>,
    #[serde(rename = "check")]
    _check: Option<Vec<IgnoredAny>>,
    #[serde(rename = "notify")]
    _notify: Option<IgnoredAny>,
    #[serde(rename = "metrics")]
    _metrics: Option<IgnoredAny>,
    #[serde(rename = "publish")]
    _publish: Option<Vec<IgnoredAny>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a segment table")]
pub(super) struct WireSegment {
    pub(super) production: Option<Vec<Text>>,
    pub(super) hosts: Option<BTreeMap<Text, Text>>,
    pub(super) services: Option<Spanned<WireServices>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a services table")]
pub(super) struct WireServices {
    pub(super) address: Option<Text>,
    pub(super) dns: Option<bool>,
    pub(super) dhcp: Option<bool>,
    pub(super) dhcp_range: Option<Spanned<Vec<Text>>>,
    pub(super) domain: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a vm table")]
pub(super) struct WireVm {
    pub(super) name: Option<Text>,
    pub(super) from: Option<Spanned<WireFrom>>,
    pub(super) tier: Option<Spanned<i64>>,
    pub(super) after: Option<Vec<Text>>,
    pub(super) ready: Option<WireReady>,
    pub(super) dhcp: Option<Spanned<WireDhcp>>,
    pub(super) dumps: Option<Spanned<WireDumps>>,
    pub(super) memory: Option<Text>,
    pub(super) vcpus: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a dumps table like { dir = \"backups/dumps\", pattern = \"erp-%Y%m%d-%H%M.sql\" }"
)]
pub(super) struct WireDumps {
    pub(super) dir: Option<Text>,
    pub(super) pattern: Option<Text>,
    pub(super) time: Option<Text>,
    pub(super) tz: Option<Text>,
    pub(super) manifest: Option<Text>,
    pub(super) sha256sums: Option<Text>,
    pub(super) restore: Option<Vec<Text>>,
    pub(super) restore_as: Option<Text>,
    pub(super) format: Option<Text>,
    pub(super) mount: Option<Text>,
    pub(super) attach: Option<Text>,
    pub(super) timeout: Option<Text>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a source table like { domain = \"prod-db\", snapshot = \"nightly\" } or { virtnbdbackup = \"backups/vm/db\" }"
)]
pub(super) struct WireFrom {
    pub(super) domain: Option<Text>,
    pub(super) snapshot: Option<Text>,
    pub(super) xml: Option<Text>,
    pub(super) disks: Option<Spanned<BTreeMap<Text, Text>>>,
    pub(super) taken: Option<Text>,
    pub(super) virtnbdbackup: Option<Text>,
    pub(super) zone: Option<Text>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a ready table like { timeout = \"5m\", tcp = 80 }"
)]
pub(super) struct WireReady {
    pub(super) timeout: Option<Text>,
    pub(super) tcp: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a dhcp table like { ip = \"10.20.0.10\" }"
)]
pub(super) struct WireDhcp {
    pub(super) ip: Option<Text>,
    pub(super) mac: Option<Text>,
    pub(super) segment: Option<Text>,
}

/// The whole file, decoded piece by piece (segments in file order).
pub(super) struct WireLab {
    pub(super) top: WireTop,
    pub(super) segments: Vec<(Text, Spanned<WireSegment>)>,
    pub(super) vms: Vec<Spanned<WireVm>>,
    pub(super) checks: Vec<Spanned<WireCheck>>,
    pub(super) notify: Option<Spanned<WireNotify>>,
    pub(super) metrics: Option<Spanned<WireMetrics>>,
    pub(super) publish: Vec<Spanned<WirePublish>>,
}

/// `[[publish]]`: a port of a lab VM that `reclab serve` opens for people.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a publish table like { vm = \"app\", port = 80, name = \"erp\", kind = \"http\" }"
)]
pub(super) struct WirePublish {
    pub(super) name: Option<Text>,
    pub(super) vm: Option<Text>,
    pub(super) port: Option<Spanned<i64>>,
    pub(super) kind: Option<Text>,
}

/// One `[[check]]`: the keys of every kind; `validate` refuses those of other kinds.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a check table")]
pub(super) struct WireCheck {
    pub(super) name: Option<Text>,
    pub(super) vm: Option<Text>,
    pub(super) kind: Option<Text>,
    pub(super) timeout: Option<Text>,
    pub(super) host: Option<Text>,
    pub(super) port: Option<Spanned<i64>>,
    pub(super) url: Option<Text>,
    pub(super) status: Option<Spanned<i64>>,
    pub(super) contains: Option<Text>,
    pub(super) matches: Option<Text>,
    pub(super) command: Option<Text>,
    pub(super) exit_code: Option<Spanned<i64>>,
    pub(super) stdout_equals: Option<Text>,
    pub(super) stdout_matches: Option<Text>,
    pub(super) json_pointer: Option<Text>,
    pub(super) json_equals: Option<Spanned<toml::Value>>,
    pub(super) max_age: Option<Text>,
    pub(super) manifest: Option<Text>,
    pub(super) a: Option<Spanned<WireSide>>,
    pub(super) b: Option<Spanned<WireSide>>,
    pub(super) field: Option<Text>,
    pub(super) manifest_vm: Option<Text>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a side like { vm = \"db\", command = \"...\" }"
)]
pub(super) struct WireSide {
    pub(super) vm: Option<Text>,
    pub(super) command: Option<Text>,
}

impl WireCheck {
    /// The kind-specific keys present in the table, with their spans.
    pub(super) fn present_keys(&self) -> Vec<(&'static str, Range<usize>)> {
        let mut keys = Vec::new();
        let mut add = |key: &'static str, span: Option<Range<usize>>| {
            if let Some(span) = span {
                keys.push((key, span));
            }
        };
        add("host", self.host.as_ref().map(Spanned::span));
        add("port", self.port.as_ref().map(Spanned::span));
        add("url", self.url.as_ref().map(Spanned::span));
        add("status", self.status.as_ref().map(Spanned::span));
        add("contains", self.contains.as_ref().map(Spanned::span));
        add("matches", self.matches.as_ref().map(Spanned::span));
        add("command", self.command.as_ref().map(Spanned::span));
        add("exit_code", self.exit_code.as_ref().map(Spanned::span));
        add(
            "stdout_equals",
            self.stdout_equals.as_ref().map(Spanned::span),
        );
        add(
            "stdout_matches",
            self.stdout_matches.as_ref().map(Spanned::span),
        );
        add(
            "json_pointer",
            self.json_pointer.as_ref().map(Spanned::span),
        );
        add("json_equals", self.json_equals.as_ref().map(Spanned::span));
        add("max_age", self.max_age.as_ref().map(Spanned::span));
        add("manifest", self.manifest.as_ref().map(Spanned::span));
        add("a", self.a.as_ref().map(Spanned::span));
        add("b", self.b.as_ref().map(Spanned::span));
        add("field", self.field.as_ref().map(Spanned::span));
        add("manifest_vm", self.manifest_vm.as_ref().map(Spanned::span));
        keys
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a notify table")]
pub(super) struct WireNotify {
    pub(super) email: Option<Spanned<WireEmail>>,
    pub(super) webhook: Option<Spanned<WireWebhook>>,
    pub(super) mqtt: Option<Spanned<WireMqtt>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an email table like { to = [\"ops@example.com\"], from = \"reclab@example.com\", server = \"smtp://mail.example.com:587\" }"
)]
pub(super) struct WireEmail {
    pub(super) to: Option<Spanned<Vec<Text>>>,
    pub(super) from: Option<Text>,
    pub(super) server: Option<Text>,
    pub(super) starttls: Option<bool>,
    pub(super) user: Option<Text>,
    pub(super) password_file: Option<Text>,
    pub(super) ca_file: Option<Text>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a webhook table like { url = \"https://hooks.example.com/reclab\" }"
)]
pub(super) struct WireWebhook {
    pub(super) url: Option<Text>,
    pub(super) headers: Option<BTreeMap<Text, Text>>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an mqtt table like { url = \"mqtts://broker.example.com:8883\", topic = \"dr/erp\" }"
)]
pub(super) struct WireMqtt {
    pub(super) url: Option<Text>,
    pub(super) topic: Option<Text>,
    pub(super) ca_file: Option<Text>,
    pub(super) user: Option<Text>,
    pub(super) password_file: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a metrics table")]
pub(super) struct WireMetrics {
    pub(super) textfile: Option<Text>,
}
