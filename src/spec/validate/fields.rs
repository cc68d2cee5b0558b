//! Field helpers shared by the validators.

use std::net::Ipv4Addr;
use std::ops::Range;
use std::time::Duration;

use crate::base::duration::parse_duration;
use crate::spec::problems::Problems;
use crate::spec::wire::Text;

/// The value of a key the table at `at` must have; if it is absent, `missing` is the problem.
pub(super) fn present<'w, V>(
    problems: &mut Problems,
    value: &'w Option<V>,
    at: Range<usize>,
    field: &str,
    missing: &str,
) -> Option<&'w V> {
    if value.is_none() {
        problems.at(at, field, missing);
    }
    value.as_ref()
}

/// A string value that is not blank; if it is, `empty` is the problem.
pub(super) fn not_blank<'w>(
    problems: &mut Problems,
    value: &'w Text,
    field: &str,
    empty: &str,
) -> Option<&'w Text> {
    if value.get_ref().trim().is_empty() {
        problems.at(value.span(), field, empty);
        None
    } else {
        Some(value)
    }
}

/// A required string key, not blank: "missing WHAT" or "WHAT is empty".
pub(super) fn required(
    problems: &mut Problems,
    value: &Option<Text>,
    at: Range<usize>,
    field: &str,
    what: &str,
) -> Option<String> {
    let text = present(problems, value, at, field, &format!("missing {what}"))?;
    let text = not_blank(
        problems,
        text,
        field,
        &format!("{what} is empty; write it out"),
    )?;
    Some(text.get_ref().clone())
}

/// A key naming one of `choices`, `default` when absent; `unknown` words the problem with
/// any other name.
pub(super) fn one_of<T: Clone>(
    problems: &mut Problems,
    value: &Option<Text>,
    field: &str,
    default: T,
    choices: &[(&str, T)],
    unknown: impl FnOnce(&str) -> String,
) -> Option<T> {
    let Some(text) = value else {
        return Some(default);
    };
    let name = text.get_ref().as_str();
    match choices.iter().find(|(choice, _)| *choice == name) {
        Some((_, chosen)) => Some(chosen.clone()),
        None => {
            problems.at(text.span(), field, unknown(name));
            None
        }
    }
}

/// An optional duration key, `default` when absent.
pub(super) fn duration_or(
    problems: &mut Problems,
    value: &Option<Text>,
    field: &str,
    default: Duration,
) -> Option<Duration> {
    match value {
        None => Some(default),
        Some(text) => duration_field(problems, text, field),
    }
}

/// A lowercase letter, then lowercase letters, digits and (with `dash`) `-`; `max` at most.
pub(super) fn valid_name(name: &str, max: usize, dash: bool) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= max
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || (dash && c == '-'))
}

/// A DNS name: dot-separated labels of letters, digits and inner '-', at most 253 characters.
pub(super) fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// An IPv4 address value, surrounding whitespace ignored.
pub(super) fn parse_ipv4(problems: &mut Problems, value: &Text, field: &str) -> Option<Ipv4Addr> {
    match value.get_ref().trim().parse() {
        Ok(ip) => Some(ip),
        Err(_) => {
            problems.at(
                value.span(),
                field,
                format!(
                    "{:?} is not an IPv4 address; write it like \"10.20.0.10\"",
                    value.get_ref()
                ),
            );
            None
        }
    }
}

/// A positive duration value such as `"5m"` (see `base::duration`).
pub(super) fn duration_field(
    problems: &mut Problems,
    value: &Text,
    field: &str,
) -> Option<Duration> {
    match parse_duration(value.get_ref()) {
        Ok(duration) => Some(duration),
        Err(err) => {
            problems.at(value.span(), field, err.to_string());
            None
        }
    }
}

/// A nonempty string without whitespace: libvirt object and bridge names, paths' components.
pub(super) fn plain_name(
    problems: &mut Problems,
    value: &Text,
    field: &str,
    what: &str,
) -> Option<String> {
    let text = value.get_ref();
    if text.trim().is_empty() {
        problems.at(
            value.span(),
            field,
            format!("{what} is empty; give the name"),
        );
        None
    } else if text.chars().any(char::is_whitespace) {
        problems.at(
            value.span(),
            field,
            format!(
                "{what} {text:?} contains whitespace; libvirt names have none, check for a typo"
            ),
        );
        None
    } else {
        Some(text.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        for good in ["db", "db.prod.example", "db.prod.example.", "a-1.b2"] {
            assert!(valid_dns_name(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "-db.example",
            "db-.example",
            "db..example",
            "bad_name",
            "db example",
        ] {
            assert!(!valid_dns_name(bad), "{bad}");
        }
    }
}
