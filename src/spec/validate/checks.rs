//! `[[check]]`: what a drill verifies.

use std::ops::{Range, RangeInclusive};

use toml::Spanned;

use crate::spec::model::{
    CheckKind, CheckSpec, CompareSide, DEFAULT_CHECK_TIMEOUT, JsonExpectation, KINDS,
    MAX_CHECK_NAME,
};
use crate::spec::problems::{Problems, list, suggestion};
use crate::spec::wire::{Text, WireCheck, WireSide};

use super::fields::{duration_field, duration_or, present, required, valid_name};

const CHECK_NAME_RULE: &str =
    "use 1 to 64 characters: a lowercase letter, then lowercase letters, digits or '-'";

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

/// Validates every `[[check]]`; `None` if any of them has a problem.
pub(super) fn validate_checks(
    wire: &[Spanned<WireCheck>],
    vm_names: &[Option<String>],
    problems: &mut Problems,
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
                problems.at(
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
        match validate_check(check, &field, &known, problems) {
            Some(spec) => checks.push(spec),
            None => ok = false,
        }
    }
    ok.then_some(checks)
}

fn vm_ref(problems: &mut Problems, value: &Text, field: &str, known: &[&str]) -> Option<String> {
    let vm = value.get_ref();
    if known.contains(&vm.as_str()) {
        Some(vm.clone())
    } else {
        problems.at(
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

fn regex_field(
    problems: &mut Problems,
    value: &Option<Text>,
    field: &str,
) -> Option<Option<String>> {
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
            problems.at(
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

/// An integer key within `range`; `what` names it in the problem.
fn int_in(
    problems: &mut Problems,
    value: &Spanned<i64>,
    range: RangeInclusive<i64>,
    field: &str,
    what: &str,
) -> Option<i64> {
    let n = *value.get_ref();
    if range.contains(&n) {
        Some(n)
    } else {
        problems.at(
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

/// An optional integer key within `range`, `default` when absent.
fn int_or(
    problems: &mut Problems,
    value: &Option<Spanned<i64>>,
    default: i64,
    range: RangeInclusive<i64>,
    field: &str,
    what: &str,
) -> Option<i64> {
    match value {
        None => Some(default),
        Some(value) => int_in(problems, value, range, field, what),
    }
}

/// One `[[check]]` table, with what its kind-specific steps need to know.
struct Table<'w> {
    check: &'w WireCheck,
    /// The span of the whole table, for problems about missing keys.
    at: Range<usize>,
    /// `check[N]`.
    field: &'w str,
    /// The valid vm names of the lab.
    known: &'w [&'w str],
    /// The check's own `vm`, if it has a valid one.
    vm: Option<String>,
}

impl Table<'_> {
    /// The field path of one of the check's keys.
    fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.field)
    }

    /// A required string key of the check.
    fn required(
        &self,
        problems: &mut Problems,
        value: &Option<Text>,
        key: &str,
        what: &str,
    ) -> Option<String> {
        required(problems, value, self.at.clone(), &self.key(key), what)
    }

    /// `command`, for the kinds that run one.
    fn command(&self, problems: &mut Problems) -> Option<String> {
        self.required(
            problems,
            &self.check.command,
            "command",
            "command; give the shell command to run in the vm, like command = \"sqlite3 /var/lib/erp/erp.db 'select count(*) from invoices'\"",
        )
    }

    /// A present key's span, for problems with its value (the key is known to be there).
    fn span_of(value: &Option<Text>) -> Range<usize> {
        value.as_ref().map(Spanned::span).unwrap_or_default()
    }
}

fn validate_check(
    wire: &Spanned<WireCheck>,
    field: &str,
    known: &[&str],
    problems: &mut Problems,
) -> Option<CheckSpec> {
    let check = wire.get_ref();
    let at = wire.span();
    let name = check_name(problems, &check.name, at.clone(), &format!("{field}.name"));
    let kind = check_kind(problems, &check.kind, at.clone(), &format!("{field}.kind"))?;
    let keys_ok = keys_of_kind(problems, check, kind, field);
    let vm = check_vm(
        problems,
        &check.vm,
        kind,
        at.clone(),
        &format!("{field}.vm"),
        known,
    );
    let timeout = duration_or(
        problems,
        &check.timeout,
        &format!("{field}.timeout"),
        DEFAULT_CHECK_TIMEOUT,
    );
    let table = Table {
        check,
        at,
        field,
        known,
        vm: vm.clone().flatten(),
    };
    let kind_spec = match kind {
        "heartbeat" => Some(CheckKind::Heartbeat),
        "screenshot" => Some(CheckKind::Screenshot),
        "ping" => host(problems, &table).map(|host| CheckKind::Ping { host }),
        "tcp" => tcp(problems, &table),
        "http" => http(problems, &table),
        "exec" => exec(problems, &table),
        "sequence" => table
            .command(problems)
            .map(|command| CheckKind::Sequence { command }),
        "freshness" => freshness(problems, &table),
        "checksums" => checksums(problems, &table),
        "compare" => compare(problems, &table),
        "expect_from_manifest" => expect_from_manifest(problems, &table),
        _ => None,
    }?;
    let vm = match (vm?, &kind_spec) {
        (Some(vm), _) => vm,
        (None, CheckKind::Compare { a, .. }) => a.vm.clone(),
        (None, _) => return None,
    };
    keys_ok?;
    Some(CheckSpec {
        name: name?,
        vm,
        timeout: timeout?,
        kind: kind_spec,
    })
}

fn check_name(
    problems: &mut Problems,
    value: &Option<Text>,
    at: Range<usize>,
    field: &str,
) -> Option<String> {
    let name = present(
        problems,
        value,
        at,
        field,
        "missing check name; add a line like name = \"invoices-no-gaps\" to this [[check]] table",
    )?;
    if !valid_name(name.get_ref(), MAX_CHECK_NAME, true) {
        problems.at(
            name.span(),
            field,
            format!(
                "{:?} is not a valid check name; {CHECK_NAME_RULE}",
                name.get_ref()
            ),
        );
        return None;
    }
    Some(name.get_ref().clone())
}

/// `kind`, one of [`KINDS`]; without it nothing else about the check can be judged.
fn check_kind<'w>(
    problems: &mut Problems,
    value: &'w Option<Text>,
    at: Range<usize>,
    field: &str,
) -> Option<&'w str> {
    let kind = present(
        problems,
        value,
        at,
        field,
        &format!(
            "missing kind; add a line like kind = \"exec\" (kinds: {})",
            KINDS.join(", ")
        ),
    )?;
    if !KINDS.contains(&kind.get_ref().as_str()) {
        problems.at(
            kind.span(),
            field,
            format!(
                "unknown check kind {:?}{}; kinds: {}",
                kind.get_ref(),
                suggestion(kind.get_ref(), KINDS.iter().copied()),
                KINDS.join(", ")
            ),
        );
        return None;
    }
    Some(kind.get_ref().as_str())
}

/// Every key present must belong to the kind.
fn keys_of_kind(problems: &mut Problems, check: &WireCheck, kind: &str, field: &str) -> Option<()> {
    let allowed = kind_keys(kind);
    let mut ok = true;
    for (key, span) in check.present_keys() {
        if !allowed.contains(&key) {
            let takes = if allowed.is_empty() {
                "no other keys".to_string()
            } else {
                allowed.join(", ")
            };
            problems.at(
                span,
                format!("{field}.{key}"),
                format!("{key} does not apply to a {kind} check (it takes {takes}); remove it or change the kind"),
            );
            ok = false;
        }
    }
    ok.then_some(())
}

/// `vm`: required except for `compare`, whose sides may name their own (`Some(None)`).
fn check_vm(
    problems: &mut Problems,
    value: &Option<Text>,
    kind: &str,
    at: Range<usize>,
    field: &str,
    known: &[&str],
) -> Option<Option<String>> {
    match value {
        None if kind == "compare" => Some(None),
        None => {
            problems.at(
                at,
                field,
                format!(
                    "missing vm; name the lab vm the check runs in, like vm = \"{}\"",
                    known.first().copied().unwrap_or("db")
                ),
            );
            None
        }
        Some(vm) => vm_ref(problems, vm, field, known).map(Some),
    }
}

/// `host` of ping and tcp: present, without spaces or quotes.
fn host(problems: &mut Problems, table: &Table) -> Option<String> {
    let value = &table.check.host;
    let host = table.required(
        problems,
        value,
        "host",
        "host; name the host or address to reach from the vm, like host = \"db.prod.example\"",
    )?;
    if host
        .chars()
        .any(|c| c.is_whitespace() || c == '\'' || c == '"')
    {
        problems.at(
            Table::span_of(value),
            table.key("host"),
            format!("{host:?} is not a host name or address; remove the spaces or quotes"),
        );
        return None;
    }
    Some(host)
}

fn tcp(problems: &mut Problems, table: &Table) -> Option<CheckKind> {
    let host = host(problems, table);
    let port = match &table.check.port {
        None => {
            problems.at(
                table.at.clone(),
                table.key("port"),
                "missing port; give the TCP port to connect to, like port = 80",
            );
            None
        }
        Some(port) => int_in(problems, port, 1..=65535, &table.key("port"), "tcp port"),
    };
    Some(CheckKind::Tcp {
        host: host?,
        port: u16::try_from(port?).ok()?,
    })
}

fn http(problems: &mut Problems, table: &Table) -> Option<CheckKind> {
    let check = table.check;
    let url = table.required(
        problems,
        &check.url,
        "url",
        "url; give the URL to fetch from the vm, like url = \"http://app.prod.example/\"",
    );
    let url = url.and_then(|url| {
        if (url.starts_with("http://") || url.starts_with("https://"))
            && !url.chars().any(|c| c.is_whitespace() || c == '\'')
        {
            Some(url)
        } else {
            problems.at(
                Table::span_of(&check.url),
                table.key("url"),
                format!("{url:?} is not an http:// or https:// URL without spaces or quotes; write it like \"http://app.prod.example/\""),
            );
            None
        }
    });
    let status = int_or(
        problems,
        &check.status,
        200,
        100..=599,
        &table.key("status"),
        "http status",
    );
    let matches = regex_field(problems, &check.matches, &table.key("matches"));
    Some(CheckKind::Http {
        url: url?,
        status: u16::try_from(status?).ok()?,
        contains: check.contains.as_ref().map(|c| c.get_ref().clone()),
        matches: matches?,
    })
}

fn exec(problems: &mut Problems, table: &Table) -> Option<CheckKind> {
    let check = table.check;
    let command = table.command(problems);
    let exit_code = int_or(
        problems,
        &check.exit_code,
        0,
        0..=255,
        &table.key("exit_code"),
        "exit code",
    );
    let stdout_matches = regex_field(
        problems,
        &check.stdout_matches,
        &table.key("stdout_matches"),
    );
    let json = json_expectation(problems, table);
    Some(CheckKind::Exec {
        command: command?,
        exit_code: i32::try_from(exit_code?).ok()?,
        stdout_equals: check.stdout_equals.as_ref().map(|s| s.get_ref().clone()),
        stdout_matches: stdout_matches?,
        json: json?,
    })
}

/// `json_pointer` and `json_equals` of exec: both or neither.
fn json_expectation(problems: &mut Problems, table: &Table) -> Option<Option<JsonExpectation>> {
    match (&table.check.json_pointer, &table.check.json_equals) {
        (None, None) => Some(None),
        (Some(pointer), Some(equals)) => {
            let p = pointer.get_ref();
            if !p.is_empty() && !p.starts_with('/') {
                problems.at(
                    pointer.span(),
                    table.key("json_pointer"),
                    format!("{p:?} is not a JSON pointer; start it with '/', like \"/0/n\" (\"\" is the whole document)"),
                );
                return None;
            }
            match serde_json::to_value(equals.get_ref()) {
                Ok(value) => Some(Some(JsonExpectation {
                    pointer: p.clone(),
                    equals: value,
                })),
                Err(err) => {
                    problems.at(
                        equals.span(),
                        table.key("json_equals"),
                        format!("cannot use this value as JSON: {err}"),
                    );
                    None
                }
            }
        }
        (Some(pointer), None) => {
            problems.at(pointer.span(), table.key("json_equals"), "json_pointer needs json_equals; give the value expected at the pointer, like json_equals = 1");
            None
        }
        (None, Some(equals)) => {
            problems.at(equals.span(), table.key("json_pointer"), "json_equals needs json_pointer; say where in the JSON output to look, like json_pointer = \"/0/n\"");
            None
        }
    }
}

fn freshness(problems: &mut Problems, table: &Table) -> Option<CheckKind> {
    let command = table.command(problems);
    let max_age = present(
        problems,
        &table.check.max_age,
        table.at.clone(),
        &table.key("max_age"),
        "missing max_age; say how much older than the restore point the newest record may be, like max_age = \"2h\"",
    )
    .and_then(|age| duration_field(problems, age, &table.key("max_age")));
    Some(CheckKind::Freshness {
        command: command?,
        max_age: max_age?,
    })
}

fn checksums(problems: &mut Problems, table: &Table) -> Option<CheckKind> {
    let value = &table.check.manifest;
    let manifest = table.required(
        problems,
        value,
        "manifest",
        "manifest; give the absolute path of the sha256sum file in the vm, like manifest = \"/var/backups/erp/SHA256SUMS\"",
    )?;
    if !manifest.starts_with('/') || manifest.ends_with('/') || manifest.contains('\'') {
        problems.at(
            Table::span_of(value),
            table.key("manifest"),
            format!("{manifest:?} is not an absolute file path; write it like \"/var/backups/erp/SHA256SUMS\""),
        );
        return None;
    }
    Some(CheckKind::Checksums { manifest })
}

fn compare(problems: &mut Problems, table: &Table) -> Option<CheckKind> {
    let a = compare_side(problems, table, &table.check.a, "a");
    let b = compare_side(problems, table, &table.check.b, "b");
    Some(CheckKind::Compare { a: a?, b: b? })
}

/// Side `a` or `b` of compare; its `vm` defaults to the check's.
fn compare_side(
    problems: &mut Problems,
    table: &Table,
    wire: &Option<Spanned<WireSide>>,
    key: &str,
) -> Option<CompareSide> {
    let wire = present(
        problems,
        wire,
        table.at.clone(),
        &table.key(key),
        &format!("missing side {key}; give it like {key} = {{ vm = \"db\", command = \"...\" }}"),
    )?;
    let side = wire.get_ref();
    let vm_field = format!("{}.{key}.vm", table.field);
    let vm = match (&side.vm, &table.vm) {
        (Some(v), _) => vm_ref(problems, v, &vm_field, table.known),
        (None, Some(v)) => Some(v.clone()),
        (None, None) => {
            problems.at(
                wire.span(),
                vm_field,
                "missing vm; give the side its vm, or give the check a vm for both sides",
            );
            None
        }
    };
    let command = required(
        problems,
        &side.command,
        wire.span(),
        &format!("{}.{key}.command", table.field),
        "command; give the shell command whose output is compared",
    );
    Some(CompareSide {
        vm: vm?,
        command: command?,
    })
}

fn expect_from_manifest(problems: &mut Problems, table: &Table) -> Option<CheckKind> {
    let check = table.check;
    let command = table.command(problems);
    let path = table.required(
        problems,
        &check.field,
        "field",
        "field; name the manifest value to expect, like field = \"rows.invoices\"",
    );
    let path = path.and_then(|p| {
        if p.split('.').any(str::is_empty) {
            problems.at(
                Table::span_of(&check.field),
                table.key("field"),
                format!("{p:?} is not a dotted path; write it like \"rows.invoices\""),
            );
            None
        } else {
            Some(p)
        }
    });
    let manifest_vm = match &check.manifest_vm {
        Some(v) => vm_ref(problems, v, &table.key("manifest_vm"), table.known),
        None => table.vm.clone(),
    };
    Some(CheckKind::ExpectFromManifest {
        command: command?,
        field: path?,
        manifest_vm: manifest_vm?,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::spec::{LabSpec, SpecError, parse};

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
        let example: String = include_str!("../model/check.rs")
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
