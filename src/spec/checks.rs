//! `[[check]]` tables: what a drill verifies once the lab is up.
//!
//! Every check has a `name` (unique in the lab), the `vm` it runs in (through the guest agent),
//! a `timeout` (default `"60s"`) and a `kind`; the other keys depend on the kind, and a key that
//! does not belong to the kind is an error. Commands run as `/bin/sh -c COMMAND` in the guest;
//! each captured output is capped (see `verify`), and a failed check explains itself with
//! expected vs got, the missing numbers or files, and the end of the output.
//!
//! A lab file without any `[[check]]` gets the default checks: a heartbeat for every VM and a
//! screenshot of every VM with a screen.
//!
//! # Check kinds
//!
//! ```toml
//! # The guest agent answers.
//! [[check]]
//! name = "db-agent"
//! vm = "db"
//! kind = "heartbeat"
//!
//! # From a lab VM, a host answers ICMP echo (busybox ping -c 3).
//! [[check]]
//! name = "client-reaches-db"
//! vm = "client"
//! kind = "ping"
//! host = "db.prod.example"
//!
//! # From a lab VM, a TCP port accepts connections.
//! [[check]]
//! name = "app-port"
//! vm = "client"
//! kind = "tcp"
//! host = "app.prod.example"
//! port = 80
//!
//! # From a lab VM, a URL answers with a status (default 200) and a body that contains a text
//! # and/or matches a regular expression (Rust regex syntax).
//! [[check]]
//! name = "app-version"
//! vm = "client"
//! kind = "http"
//! url = "http://app.prod.example/cgi-bin/latest"
//! status = 200
//! contains = "erp-web 2.4.1"
//! matches = 'invoice \d+'
//!
//! # Any command: its exit code (default 0) and optionally its stdout, compared exactly
//! # (trailing newlines ignored), by regular expression, or as JSON at a JSON pointer.
//! [[check]]
//! name = "customers-in-berlin"
//! vm = "db"
//! kind = "exec"
//! command = "sqlite3 -json /var/lib/erp/erp.db \"select count(*) as n from customers where city = 'Berlin'\""
//! json_pointer = "/0/n"
//! json_equals = 1
//!
//! # The command prints integers, one per line; every number between the lowest and the
//! # highest must appear exactly once. Gaps and duplicates are named ("missing 105-107").
//! [[check]]
//! name = "invoices-no-gaps"
//! vm = "db"
//! kind = "sequence"
//! command = "sqlite3 /var/lib/erp/erp.db 'select no from invoices order by no'"
//!
//! # The command prints a timestamp (RFC 3339, or "YYYY-MM-DD HH:MM:SS" read as UTC); it must
//! # be no older than the restore point minus max_age (required).
//! [[check]]
//! name = "invoices-fresh"
//! vm = "db"
//! kind = "freshness"
//! command = "sqlite3 /var/lib/erp/erp.db 'select max(created_at) from invoices'"
//! max_age = "2h"
//!
//! # A sha256sum manifest in the guest, verified there with `sha256sum -c` from the
//! # manifest's directory; failing files are listed.
//! [[check]]
//! name = "dump-intact"
//! vm = "db"
//! kind = "checksums"
//! manifest = "/var/backups/erp/SHA256SUMS"
//!
//! # Two commands, maybe in two VMs, must print the same; a difference shows a short diff.
//! # `vm` of a side defaults to the check's `vm`.
//! [[check]]
//! name = "image-equals-dump"
//! vm = "db"
//! kind = "compare"
//! a = { command = "sqlite3 /var/lib/erp/erp.db 'select * from invoices order by no'" }
//! b = { command = "sqlite3 /var/lib/erp/restored.db 'select * from invoices order by no'" }
//!
//! # The command's output must equal a field of the restored dump's manifest (dotted path);
//! # the manifest is the one of the dump restored into `manifest_vm` (default: `vm`).
//! [[check]]
//! name = "invoice-count"
//! vm = "db"
//! kind = "expect_from_manifest"
//! command = "sqlite3 /var/lib/erp/erp.db 'select count(*) from invoices'"
//! field = "rows.invoices"
//!
//! # Save the VM's screen as PNG in the report; fail if it is blank (nearly one color).
//! [[check]]
//! name = "app-screen"
//! vm = "app"
//! kind = "screenshot"
//! timeout = "2m"
//! ```
//!
//! | key | kinds | default | meaning |
//! |---|---|---|---|
//! | `name` | all | required | 1 to 64 characters: a lowercase letter, then lowercase letters, digits or `-`; unique |
//! | `vm` | all | required (compare: the side's `vm`) | the lab VM the check runs in |
//! | `kind` | all | required | one of the kinds above |
//! | `timeout` | all | `"60s"` | the whole check's time limit |
//! | `host` | ping, tcp | required | host name or address, as the VM resolves it |
//! | `port` | tcp | required | 1 to 65535 |
//! | `url` | http | required | `http://` or `https://` URL, fetched with busybox `wget -S -q -O -` |
//! | `status` | http | `200` | expected HTTP status |
//! | `contains`, `matches` | http | none | body contains the text / matches the regex |
//! | `command` | exec, sequence, freshness, expect_from_manifest | required | shell command |
//! | `exit_code` | exec | `0` | expected exit code, 0 to 255 |
//! | `stdout_equals`, `stdout_matches` | exec | none | stdout equals the text / matches the regex |
//! | `json_pointer`, `json_equals` | exec | none | both or neither: stdout parsed as JSON, the value at the pointer (RFC 6901, like `/0/n`) equals the TOML value |
//! | `max_age` | freshness | required | a duration |
//! | `manifest` | checksums | required | absolute path of the sha256sum file in the guest |
//! | `a`, `b` | compare | required | `{ vm = "db", command = "..." }` |
//! | `field` | expect_from_manifest | required | dotted path into the manifest, like `rows.invoices` or `max_invoice_no` |
//! | `manifest_vm` | expect_from_manifest | `vm` | the VM whose restored dump's manifest is read |

use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Report, Text, duration_field, list, suggestion, valid_name};

/// The time limit of a check without `timeout`.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest check name.
pub const MAX_CHECK_NAME: usize = 64;

const CHECK_NAME_RULE: &str =
    "use 1 to 64 characters: a lowercase letter, then lowercase letters, digits or '-'";

/// One validated `[[check]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    pub name: String,
    /// The VM the check runs in; for `compare`, the VM of side `a`.
    pub vm: String,
    pub timeout: Duration,
    pub kind: CheckKind,
}

/// What a check verifies, with the keys of its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    Heartbeat,
    Ping {
        host: String,
    },
    Tcp {
        host: String,
        port: u16,
    },
    Http {
        url: String,
        status: u16,
        contains: Option<String>,
        /// A regex, known to compile.
        matches: Option<String>,
    },
    Exec {
        command: String,
        exit_code: i32,
        stdout_equals: Option<String>,
        /// A regex, known to compile.
        stdout_matches: Option<String>,
        json: Option<JsonExpectation>,
    },
    Sequence {
        command: String,
    },
    Freshness {
        command: String,
        max_age: Duration,
    },
    Checksums {
        /// Absolute path of the manifest in the guest.
        manifest: String,
    },
    Compare {
        a: CompareSide,
        b: CompareSide,
    },
    ExpectFromManifest {
        command: String,
        /// Dotted path into the manifest JSON.
        field: String,
        /// The VM whose restored dump's manifest is read.
        manifest_vm: String,
    },
    Screenshot,
}

/// The value a JSON pointer into a command's stdout must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonExpectation {
    pub pointer: String,
    pub equals: serde_json::Value,
}

/// One side of a `compare` check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompareSide {
    pub vm: String,
    pub command: String,
}

/// Every kind name, in the order the documentation lists them.
const KINDS: &[&str] = &[
    "heartbeat",
    "ping",
    "tcp",
    "http",
    "exec",
    "sequence",
    "freshness",
    "checksums",
    "compare",
    "expect_from_manifest",
    "screenshot",
];

impl CheckKind {
    /// The kind's name as written in the lab file.
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Heartbeat => "heartbeat",
            CheckKind::Ping { .. } => "ping",
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Http { .. } => "http",
            CheckKind::Exec { .. } => "exec",
            CheckKind::Sequence { .. } => "sequence",
            CheckKind::Freshness { .. } => "freshness",
            CheckKind::Checksums { .. } => "checksums",
            CheckKind::Compare { .. } => "compare",
            CheckKind::ExpectFromManifest { .. } => "expect_from_manifest",
            CheckKind::Screenshot => "screenshot",
        }
    }
}

/// The keys a kind takes besides `name`, `vm`, `kind` and `timeout`.
fn kind_keys(kind: &str) -> &'static [&'static str] {
    match kind {
        "ping" => &["host"],
        "tcp" => &["host", "port"],
        "http" => &["url", "status", "contains", "matches"],
        "exec" => &[
            "command",
            "exit_code",
            "stdout_equals",
            "stdout_matches",
            "json_pointer",
            "json_equals",
        ],
        "sequence" => &["command"],
        "freshness" => &["command", "max_age"],
        "checksums" => &["manifest"],
        "compare" => &["a", "b"],
        "expect_from_manifest" => &["command", "field", "manifest_vm"],
        _ => &[],
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a check table")]
pub(super) struct WireCheck {
    name: Option<Text>,
    vm: Option<Text>,
    kind: Option<Text>,
    timeout: Option<Text>,
    host: Option<Text>,
    port: Option<Spanned<i64>>,
    url: Option<Text>,
    status: Option<Spanned<i64>>,
    contains: Option<Text>,
    matches: Option<Text>,
    command: Option<Text>,
    exit_code: Option<Spanned<i64>>,
    stdout_equals: Option<Text>,
    stdout_matches: Option<Text>,
    json_pointer: Option<Text>,
    json_equals: Option<Spanned<toml::Value>>,
    max_age: Option<Text>,
    manifest: Option<Text>,
    a: Option<Spanned<WireSide>>,
    b: Option<Spanned<WireSide>>,
    field: Option<Text>,
    manifest_vm: Option<Text>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a side like { vm = \"db\", command = \"...\" }"
)]
struct WireSide {
    vm: Option<Text>,
    command: Option<Text>,
}

impl WireCheck {
    /// The kind-specific keys present in the table, with their spans.
    fn present_keys(&self) -> Vec<(&'static str, Range<usize>)> {
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

/// Validates every `[[check]]`; `None` if any of them has a problem.
pub(super) fn validate_checks(
    wire: &[Spanned<WireCheck>],
    vm_names: &[Option<String>],
    report: &mut Report,
) -> Option<Vec<CheckSpec>> {
    let known: Vec<&str> = vm_names.iter().flatten().map(String::as_str).collect();
    let mut first_use: std::collections::BTreeMap<String, usize> = Default::default();
    let mut checks = Vec::new();
    let mut ok = true;
    for (index, check) in wire.iter().enumerate() {
        let field = format!("check[{index}]");
        if let Some(name) = &check.get_ref().name
            && valid_name(name.get_ref(), MAX_CHECK_NAME, true)
        {
            if let Some(first) = first_use.get(name.get_ref()) {
                report.at(
                    name.span(),
                    format!("{field}.name"),
                    format!(
                        "duplicate check name {:?} (also check[{first}]); give every check a unique name",
                        name.get_ref()
                    ),
                );
                ok = false;
            } else {
                first_use.insert(name.get_ref().clone(), index);
            }
        }
        match validate_check(check, &field, &known, report) {
            Some(spec) => checks.push(spec),
            None => ok = false,
        }
    }
    ok.then_some(checks)
}

/// A string key that must be present and not blank.
fn required(
    report: &mut Report,
    value: &Option<Text>,
    at: Range<usize>,
    field: String,
    what: &str,
) -> Option<String> {
    match value {
        None => {
            report.at(at, field, format!("missing {what}"));
            None
        }
        Some(text) if text.get_ref().trim().is_empty() => {
            report.at(text.span(), field, format!("{what} is empty; write it out"));
            None
        }
        Some(text) => Some(text.get_ref().clone()),
    }
}

fn vm_ref(report: &mut Report, value: &Text, field: String, known: &[&str]) -> Option<String> {
    let vm = value.get_ref();
    if known.contains(&vm.as_str()) {
        Some(vm.clone())
    } else {
        report.at(
            value.span(),
            field,
            format!(
                "unknown vm {vm:?}{}; known vms: {}",
                suggestion(vm, known.iter().copied()),
                list(known)
            ),
        );
        None
    }
}

fn regex_field(report: &mut Report, value: &Option<Text>, field: String) -> Option<Option<String>> {
    let Some(text) = value else {
        return Some(None);
    };
    match regex::Regex::new(text.get_ref()) {
        Ok(_) => Some(Some(text.get_ref().clone())),
        Err(err) => {
            let why = err
                .to_string()
                .lines()
                .last()
                .unwrap_or("invalid")
                .trim()
                .to_string();
            report.at(
                text.span(),
                field,
                format!(
                    "{:?} is not a valid regular expression ({why}); fix it, or use contains for plain text (TOML literal strings like '\\d+' avoid doubled backslashes)",
                    text.get_ref()
                ),
            );
            None
        }
    }
}

fn host_field(
    report: &mut Report,
    value: &Option<Text>,
    at: Range<usize>,
    field: String,
) -> Option<String> {
    let host = required(
        report,
        value,
        at,
        field.clone(),
        "host; name the host or address to reach from the vm, like host = \"db.prod.example\"",
    )?;
    if host
        .chars()
        .any(|c| c.is_whitespace() || c == '\'' || c == '"')
    {
        report.at(
            value.as_ref().map(Spanned::span).unwrap_or_default(),
            field,
            format!("{host:?} is not a host name or address; remove the spaces or quotes"),
        );
        return None;
    }
    Some(host)
}

fn int_in(
    report: &mut Report,
    value: &Spanned<i64>,
    range: std::ops::RangeInclusive<i64>,
    field: String,
    what: &str,
) -> Option<i64> {
    let n = *value.get_ref();
    if range.contains(&n) {
        Some(n)
    } else {
        report.at(
            value.span(),
            field,
            format!(
                "{what} {n} is out of range; use {} to {}",
                range.start(),
                range.end()
            ),
        );
        None
    }
}

fn validate_check(
    wire: &Spanned<WireCheck>,
    field: &str,
    known: &[&str],
    report: &mut Report,
) -> Option<CheckSpec> {
    let check = wire.get_ref();
    let at = wire.span();
    let f = |key: &str| format!("{field}.{key}");

    let name = match &check.name {
        None => {
            report.at(
                at.clone(),
                f("name"),
                "missing check name; add a line like name = \"invoices-no-gaps\" to this [[check]] table",
            );
            None
        }
        Some(name) if !valid_name(name.get_ref(), MAX_CHECK_NAME, true) => {
            report.at(
                name.span(),
                f("name"),
                format!(
                    "{:?} is not a valid check name; {CHECK_NAME_RULE}",
                    name.get_ref()
                ),
            );
            None
        }
        Some(name) => Some(name.get_ref().clone()),
    };

    let kind = match &check.kind {
        None => {
            report.at(
                at.clone(),
                f("kind"),
                format!(
                    "missing kind; add a line like kind = \"exec\" (kinds: {})",
                    KINDS.join(", ")
                ),
            );
            return None;
        }
        Some(kind) if !KINDS.contains(&kind.get_ref().as_str()) => {
            report.at(
                kind.span(),
                f("kind"),
                format!(
                    "unknown check kind {:?}{}; kinds: {}",
                    kind.get_ref(),
                    suggestion(kind.get_ref(), KINDS.iter().copied()),
                    KINDS.join(", ")
                ),
            );
            return None;
        }
        Some(kind) => kind.get_ref().as_str(),
    };

    let mut ok = true;
    let allowed = kind_keys(kind);
    for (key, span) in check.present_keys() {
        if !allowed.contains(&key) {
            let takes = if allowed.is_empty() {
                "no other keys".to_string()
            } else {
                allowed.join(", ")
            };
            report.at(
                span,
                f(key),
                format!("{key} does not apply to a {kind} check (it takes {takes}); remove it or change the kind"),
            );
            ok = false;
        }
    }

    let vm = match &check.vm {
        None if kind == "compare" => Some(None),
        None => {
            report.at(
                at.clone(),
                f("vm"),
                format!(
                    "missing vm; name the lab vm the check runs in, like vm = \"{}\"",
                    known.first().copied().unwrap_or("db")
                ),
            );
            None
        }
        Some(vm) => vm_ref(report, vm, f("vm"), known).map(Some),
    };

    let timeout = match &check.timeout {
        None => Some(DEFAULT_CHECK_TIMEOUT),
        Some(timeout) => duration_field(report, timeout, &f("timeout")),
    };

    let command = |report: &mut Report| {
        required(
            report,
            &check.command,
            at.clone(),
            f("command"),
            "command; give the shell command to run in the vm, like command = \"sqlite3 /var/lib/erp/erp.db 'select count(*) from invoices'\"",
        )
    };

    let kind_spec: Option<CheckKind> = match kind {
        "heartbeat" => Some(CheckKind::Heartbeat),
        "screenshot" => Some(CheckKind::Screenshot),
        "ping" => host_field(report, &check.host, at.clone(), f("host"))
            .map(|host| CheckKind::Ping { host }),
        "tcp" => {
            let host = host_field(report, &check.host, at.clone(), f("host"));
            let port = match &check.port {
                None => {
                    report.at(
                        at.clone(),
                        f("port"),
                        "missing port; give the TCP port to connect to, like port = 80",
                    );
                    None
                }
                Some(port) => int_in(report, port, 1..=65535, f("port"), "tcp port"),
            };
            Some(CheckKind::Tcp {
                host: host?,
                port: u16::try_from(port?).ok()?,
            })
        }
        "http" => {
            let url = required(
                report,
                &check.url,
                at.clone(),
                f("url"),
                "url; give the URL to fetch from the vm, like url = \"http://app.prod.example/\"",
            );
            let url = url.and_then(|url| {
                if (url.starts_with("http://") || url.starts_with("https://"))
                    && !url.chars().any(|c| c.is_whitespace() || c == '\'')
                {
                    Some(url)
                } else {
                    report.at(
                        check.url.as_ref().map(Spanned::span).unwrap_or_default(),
                        f("url"),
                        format!("{url:?} is not an http:// or https:// URL without spaces or quotes; write it like \"http://app.prod.example/\""),
                    );
                    None
                }
            });
            let status = match &check.status {
                None => Some(200),
                Some(status) => int_in(report, status, 100..=599, f("status"), "http status"),
            };
            let matches = regex_field(report, &check.matches, f("matches"));
            Some(CheckKind::Http {
                url: url?,
                status: u16::try_from(status?).ok()?,
                contains: check.contains.as_ref().map(|c| c.get_ref().clone()),
                matches: matches?,
            })
        }
        "exec" => {
            let command = command(report);
            let exit_code = match &check.exit_code {
                None => Some(0),
                Some(code) => int_in(report, code, 0..=255, f("exit_code"), "exit code"),
            };
            let stdout_matches = regex_field(report, &check.stdout_matches, f("stdout_matches"));
            let json = match (&check.json_pointer, &check.json_equals) {
                (None, None) => Some(None),
                (Some(pointer), Some(equals)) => {
                    let p = pointer.get_ref();
                    if !p.is_empty() && !p.starts_with('/') {
                        report.at(
                            pointer.span(),
                            f("json_pointer"),
                            format!("{p:?} is not a JSON pointer; start it with '/', like \"/0/n\" (\"\" is the whole document)"),
                        );
                        None
                    } else {
                        match serde_json::to_value(equals.get_ref()) {
                            Ok(value) => Some(Some(JsonExpectation {
                                pointer: p.clone(),
                                equals: value,
                            })),
                            Err(err) => {
                                report.at(
                                    equals.span(),
                                    f("json_equals"),
                                    format!("cannot use this value as JSON: {err}"),
                                );
                                None
                            }
                        }
                    }
                }
                (Some(pointer), None) => {
                    report.at(pointer.span(), f("json_equals"), "json_pointer needs json_equals; give the value expected at the pointer, like json_equals = 1");
                    None
                }
                (None, Some(equals)) => {
                    report.at(equals.span(), f("json_pointer"), "json_equals needs json_pointer; say where in the JSON output to look, like json_pointer = \"/0/n\"");
                    None
                }
            };
            Some(CheckKind::Exec {
                command: command?,
                exit_code: i32::try_from(exit_code?).ok()?,
                stdout_equals: check.stdout_equals.as_ref().map(|s| s.get_ref().clone()),
                stdout_matches: stdout_matches?,
                json: json?,
            })
        }
        "sequence" => command(report).map(|command| CheckKind::Sequence { command }),
        "freshness" => {
            let command = command(report);
            let max_age = match &check.max_age {
                None => {
                    report.at(
                        at.clone(),
                        f("max_age"),
                        "missing max_age; say how much older than the restore point the newest record may be, like max_age = \"2h\"",
                    );
                    None
                }
                Some(age) => duration_field(report, age, &f("max_age")),
            };
            Some(CheckKind::Freshness {
                command: command?,
                max_age: max_age?,
            })
        }
        "checksums" => {
            let manifest = required(
                report,
                &check.manifest,
                at.clone(),
                f("manifest"),
                "manifest; give the absolute path of the sha256sum file in the vm, like manifest = \"/var/backups/erp/SHA256SUMS\"",
            );
            match manifest {
                Some(m) if !m.starts_with('/') || m.ends_with('/') || m.contains('\'') => {
                    report.at(
                        check.manifest.as_ref().map(Spanned::span).unwrap_or_default(),
                        f("manifest"),
                        format!("{m:?} is not an absolute file path; write it like \"/var/backups/erp/SHA256SUMS\""),
                    );
                    None
                }
                Some(manifest) => Some(CheckKind::Checksums { manifest }),
                None => None,
            }
        }
        "compare" => {
            let default_vm = vm.clone().flatten();
            let side = |report: &mut Report, wire: &Option<Spanned<WireSide>>, key: &str| {
                let Some(wire) = wire else {
                    report.at(
                        at.clone(),
                        f(key),
                        format!("missing side {key}; give it like {key} = {{ vm = \"db\", command = \"...\" }}"),
                    );
                    return None;
                };
                let side_vm = match &wire.get_ref().vm {
                    Some(v) => vm_ref(report, v, format!("{field}.{key}.vm"), known),
                    None => match &default_vm {
                        Some(v) => Some(v.clone()),
                        None => {
                            report.at(
                                wire.span(),
                                format!("{field}.{key}.vm"),
                                "missing vm; give the side its vm, or give the check a vm for both sides",
                            );
                            None
                        }
                    },
                };
                let command = required(
                    report,
                    &wire.get_ref().command,
                    wire.span(),
                    format!("{field}.{key}.command"),
                    "command; give the shell command whose output is compared",
                );
                Some(CompareSide {
                    vm: side_vm?,
                    command: command?,
                })
            };
            let a = side(report, &check.a, "a");
            let b = side(report, &check.b, "b");
            Some(CheckKind::Compare { a: a?, b: b? })
        }
        "expect_from_manifest" => {
            let command = command(report);
            let path = required(
                report,
                &check.field,
                at.clone(),
                f("field"),
                "field; name the manifest value to expect, like field = \"rows.invoices\"",
            );
            let path = path.and_then(|p| {
                if p.split('.').any(str::is_empty) {
                    report.at(
                        check.field.as_ref().map(Spanned::span).unwrap_or_default(),
                        f("field"),
                        format!("{p:?} is not a dotted path; write it like \"rows.invoices\""),
                    );
                    None
                } else {
                    Some(p)
                }
            });
            let manifest_vm = match &check.manifest_vm {
                Some(v) => vm_ref(report, v, f("manifest_vm"), known),
                None => vm.clone().flatten(),
            };
            Some(CheckKind::ExpectFromManifest {
                command: command?,
                field: path?,
                manifest_vm: manifest_vm?,
            })
        }
        _ => None,
    };

    let kind_spec = kind_spec?;
    let vm = match (vm?, &kind_spec) {
        (Some(vm), _) => vm,
        (None, CheckKind::Compare { a, .. }) => a.vm.clone(),
        (None, _) => return None,
    };
    if !ok {
        return None;
    }
    Some(CheckSpec {
        name: name?,
        vm,
        timeout: timeout?,
        kind: kind_spec,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{LabSpec, SpecError, parse};
    use super::*;

    fn lab(checks: &str) -> Result<LabSpec, SpecError> {
        let vms: String = ["db", "app", "client"]
            .iter()
            .map(|n| {
                format!(
                    "[[vm]]\nname = \"{n}\"\nfrom = {{ domain = \"p-{n}\", snapshot = \"s\" }}\n"
                )
            })
            .collect();
        parse(&format!("name = \"t\"\n{vms}{checks}"), Path::new("t.toml"))
    }

    #[test]
    fn every_documented_example_is_a_valid_check() {
        let example: String = include_str!("checks.rs")
            .lines()
            .skip_while(|line| *line != "//! ```toml")
            .skip(1)
            .take_while(|line| *line != "//! ```")
            .map(|line| format!("{}\n", line.trim_start_matches("//!").trim_start()))
            .collect();
        let spec = lab(&example).unwrap_or_else(|err| panic!("{err}"));
        let kinds: Vec<&str> = spec.checks.iter().map(|c| c.kind.name()).collect();
        assert_eq!(
            kinds, KINDS,
            "the reference shows every kind once, in order"
        );
        let freshness = &spec.checks[6];
        assert_eq!(
            freshness.kind,
            CheckKind::Freshness {
                command: "sqlite3 /var/lib/erp/erp.db 'select max(created_at) from invoices'"
                    .into(),
                max_age: Duration::from_secs(7200),
            }
        );
        assert_eq!(freshness.timeout, DEFAULT_CHECK_TIMEOUT);
        assert_eq!(spec.checks[10].timeout, Duration::from_secs(120));
        let CheckKind::Exec {
            json, exit_code, ..
        } = &spec.checks[4].kind
        else {
            panic!("exec expected")
        };
        assert_eq!(*exit_code, 0);
        assert_eq!(
            json,
            &Some(JsonExpectation {
                pointer: "/0/n".into(),
                equals: serde_json::json!(1)
            })
        );
    }

    #[test]
    fn compare_sides_default_to_the_checks_vm_and_the_check_vm_to_side_a() {
        let spec = lab(
            "[[check]]\nname = \"c\"\nkind = \"compare\"\na = { vm = \"app\", command = \"x\" }\nb = { vm = \"db\", command = \"y\" }\n",
        )
        .unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(spec.checks[0].vm, "app");
        let spec = lab(
            "[[check]]\nname = \"c\"\nvm = \"db\"\nkind = \"compare\"\na = { command = \"x\" }\nb = { vm = \"app\", command = \"y\" }\n",
        )
        .unwrap();
        assert_eq!(
            spec.checks[0].kind,
            CheckKind::Compare {
                a: CompareSide {
                    vm: "db".into(),
                    command: "x".into()
                },
                b: CompareSide {
                    vm: "app".into(),
                    command: "y".into()
                },
            }
        );
    }

    #[test]
    fn a_lab_without_checks_has_none() {
        assert!(lab("").unwrap().checks.is_empty());
    }

    #[test]
    fn keys_of_another_kind_are_named_with_what_the_kind_takes() {
        let err = lab("[[check]]\nname = \"s\"\nvm = \"db\"\nkind = \"sequence\"\ncommand = \"x\"\nurl = \"http://a/\"\n")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "t.toml:16:7: check[0].url: url does not apply to a sequence check (it takes command); remove it or change the kind"
        );
    }
}
