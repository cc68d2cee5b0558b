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
//! # `vm` of a side defaults to the check's `vm`. Two empty outputs are the same: make each
//! # side fail when it has nothing to compare (`grep .` fails without a line of output).
//! [[check]]
//! name = "image-equals-dump"
//! vm = "db"
//! kind = "compare"
//! a = { command = "sqlite3 /var/lib/erp/erp.db 'select * from invoices order by no' | grep ." }
//! b = { command = "sqlite3 /var/lib/erp/restored.db 'select * from invoices order by no' | grep ." }
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

use std::time::Duration;

/// The time limit of a check without `timeout`.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest check name.
pub const MAX_CHECK_NAME: usize = 64;

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
pub(in crate::spec) const KINDS: &[&str] = &[
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
