//! `[[check]]`: what a drill verifies.

use std::ops::Range;

use toml::Spanned;

use crate::spec::model::{
    CheckKind, CheckSpec, CompareSide, DEFAULT_CHECK_TIMEOUT, JsonExpectation, KINDS,
    MAX_CHECK_NAME,
};
use crate::spec::problems::{Problems, list, suggestion};
use crate::spec::wire::{Text, WireCheck, WireSide};

use super::fields::{duration_field, valid_name};

const CHECK_NAME_RULE: &str =
    "use 1 to 64 characters: a lowercase letter, then lowercase letters, digits or '-'";

/// The keys a kind takes besides `name`, `vm`, `kind` and `timeout`.
pub(super) fn kind_keys(kind: &str) -> &'static [&'static str] {
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

/// A string key that must be present and not blank.
pub(super) fn required(
    problems: &mut Problems,
    value: &Option<Text>,
    at: Range<usize>,
    field: String,
    what: &str,
) -> Option<String> {
    match value {
        None => {
            problems.at(at, field, format!("missing {what}"));
            None
        }
        Some(text) if text.get_ref().trim().is_empty() => {
            problems.at(text.span(), field, format!("{what} is empty; write it out"));
            None
        }
        Some(text) => Some(text.get_ref().clone()),
    }
}

pub(super) fn vm_ref(
    problems: &mut Problems,
    value: &Text,
    field: String,
    known: &[&str],
) -> Option<String> {
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

pub(super) fn regex_field(
    problems: &mut Problems,
    value: &Option<Text>,
    field: String,
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

pub(super) fn host_field(
    problems: &mut Problems,
    value: &Option<Text>,
    at: Range<usize>,
    field: String,
) -> Option<String> {
    let host = required(
        problems,
        value,
        at,
        field.clone(),
        "host; name the host or address to reach from the vm, like host = \"db.prod.example\"",
    )?;
    if host
        .chars()
        .any(|c| c.is_whitespace() || c == '\'' || c == '"')
    {
        problems.at(
            value.as_ref().map(Spanned::span).unwrap_or_default(),
            field,
            format!("{host:?} is not a host name or address; remove the spaces or quotes"),
        );
        return None;
    }
    Some(host)
}

pub(super) fn int_in(
    problems: &mut Problems,
    value: &Spanned<i64>,
    range: std::ops::RangeInclusive<i64>,
    field: String,
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

pub(super) fn validate_check(
    wire: &Spanned<WireCheck>,
    field: &str,
    known: &[&str],
    problems: &mut Problems,
) -> Option<CheckSpec> {
    let check = wire.get_ref();
    let at = wire.span();
    let f = |key: &str| format!("{field}.{key}");

    let name = match &check.name {
        None => {
            problems.at(
                at.clone(),
                f("name"),
                "missing check name; add a line like name = \"invoices-no-gaps\" to this [[check]] table",
            );
            None
        }
        Some(name) if !valid_name(name.get_ref(), MAX_CHECK_NAME, true) => {
            problems.at(
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
            problems.at(
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
            problems.at(
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
            problems.at(
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
            problems.at(
                at.clone(),
                f("vm"),
                format!(
                    "missing vm; name the lab vm the check runs in, like vm = \"{}\"",
                    known.first().copied().unwrap_or("db")
                ),
            );
            None
        }
        Some(vm) => vm_ref(problems, vm, f("vm"), known).map(Some),
    };

    let timeout = match &check.timeout {
        None => Some(DEFAULT_CHECK_TIMEOUT),
        Some(timeout) => duration_field(problems, timeout, &f("timeout")),
    };

    let command = |problems: &mut Problems| {
        required(
            problems,
            &check.command,
            at.clone(),
            f("command"),
            "command; give the shell command to run in the vm, like command = \"sqlite3 /var/lib/erp/erp.db 'select count(*) from invoices'\"",
        )
    };

    let kind_spec: Option<CheckKind> = match kind {
        "heartbeat" => Some(CheckKind::Heartbeat),
        "screenshot" => Some(CheckKind::Screenshot),
        "ping" => host_field(problems, &check.host, at.clone(), f("host"))
            .map(|host| CheckKind::Ping { host }),
        "tcp" => {
            let host = host_field(problems, &check.host, at.clone(), f("host"));
            let port = match &check.port {
                None => {
                    problems.at(
                        at.clone(),
                        f("port"),
                        "missing port; give the TCP port to connect to, like port = 80",
                    );
                    None
                }
                Some(port) => int_in(problems, port, 1..=65535, f("port"), "tcp port"),
            };
            Some(CheckKind::Tcp {
                host: host?,
                port: u16::try_from(port?).ok()?,
            })
        }
        "http" => {
            let url = required(
                problems,
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
                    problems.at(
                        check.url.as_ref().map(Spanned::span).unwrap_or_default(),
                        f("url"),
                        format!("{url:?} is not an http:// or https:// URL without spaces or quotes; write it like \"http://app.prod.example/\""),
                    );
                    None
                }
            });
            let status = match &check.status {
                None => Some(200),
                Some(status) => int_in(problems, status, 100..=599, f("status"), "http status"),
            };
            let matches = regex_field(problems, &check.matches, f("matches"));
            Some(CheckKind::Http {
                url: url?,
                status: u16::try_from(status?).ok()?,
                contains: check.contains.as_ref().map(|c| c.get_ref().clone()),
                matches: matches?,
            })
        }
        "exec" => {
            let command = command(problems);
            let exit_code = match &check.exit_code {
                None => Some(0),
                Some(code) => int_in(problems, code, 0..=255, f("exit_code"), "exit code"),
            };
            let stdout_matches = regex_field(problems, &check.stdout_matches, f("stdout_matches"));
            let json = match (&check.json_pointer, &check.json_equals) {
                (None, None) => Some(None),
                (Some(pointer), Some(equals)) => {
                    let p = pointer.get_ref();
                    if !p.is_empty() && !p.starts_with('/') {
                        problems.at(
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
                                problems.at(
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
                    problems.at(pointer.span(), f("json_equals"), "json_pointer needs json_equals; give the value expected at the pointer, like json_equals = 1");
                    None
                }
                (None, Some(equals)) => {
                    problems.at(equals.span(), f("json_pointer"), "json_equals needs json_pointer; say where in the JSON output to look, like json_pointer = \"/0/n\"");
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
        "sequence" => command(problems).map(|command| CheckKind::Sequence { command }),
        "freshness" => {
            let command = command(problems);
            let max_age = match &check.max_age {
                None => {
                    problems.at(
                        at.clone(),
                        f("max_age"),
                        "missing max_age; say how much older than the restore point the newest record may be, like max_age = \"2h\"",
                    );
                    None
                }
                Some(age) => duration_field(problems, age, &f("max_age")),
            };
            Some(CheckKind::Freshness {
                command: command?,
                max_age: max_age?,
            })
        }
        "checksums" => {
            let manifest = required(
                problems,
                &check.manifest,
                at.clone(),
                f("manifest"),
                "manifest; give the absolute path of the sha256sum file in the vm, like manifest = \"/var/backups/erp/SHA256SUMS\"",
            );
            match manifest {
                Some(m) if !m.starts_with('/') || m.ends_with('/') || m.contains('\'') => {
                    problems.at(
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
            let side = |problems: &mut Problems, wire: &Option<Spanned<WireSide>>, key: &str| {
                let Some(wire) = wire else {
                    problems.at(
                        at.clone(),
                        f(key),
                        format!("missing side {key}; give it like {key} = {{ vm = \"db\", command = \"...\" }}"),
                    );
                    return None;
                };
                let side_vm = match &wire.get_ref().vm {
                    Some(v) => vm_ref(problems, v, format!("{field}.{key}.vm"), known),
                    None => match &default_vm {
                        Some(v) => Some(v.clone()),
                        None => {
                            problems.at(
                                wire.span(),
                                format!("{field}.{key}.vm"),
                                "missing vm; give the side its vm, or give the check a vm for both sides",
                            );
                            None
                        }
                    },
                };
                let command = required(
                    problems,
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
            let a = side(problems, &check.a, "a");
            let b = side(problems, &check.b, "b");
            Some(CheckKind::Compare { a: a?, b: b? })
        }
        "expect_from_manifest" => {
            let command = command(problems);
            let path = required(
                problems,
                &check.field,
                at.clone(),
                f("field"),
                "field; name the manifest value to expect, like field = \"rows.invoices\"",
            );
            let path = path.and_then(|p| {
                if p.split('.').any(str::is_empty) {
                    problems.at(
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
                Some(v) => vm_ref(problems, v, f("manifest_vm"), known),
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
