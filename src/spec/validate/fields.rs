//! Field helpers shared by the validators.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::base::duration::parse_duration;

use super::super::problems::Problems;
use super::super::wire::Text;

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
