//! `{name}` placeholders in the lab file's commands, and quoting values for `/bin/sh`. Pure.

/// Fills `{name}` placeholders; `{{` and `}}` are literal braces. An unknown placeholder is an
/// error naming it and the known ones.
pub fn expand(template: &str, values: &[(&str, &str)]) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err("has a lone '}'; write }} for a literal brace".to_string());
        }
        let Some(end) = tail.find('}') else {
            return Err("has an unclosed '{'; write {{ for a literal brace".to_string());
        };
        let name = &tail[1..end];
        match values.iter().find(|(key, _)| *key == name) {
            Some((_, value)) => out.push_str(value),
            None => {
                let known: Vec<String> = values.iter().map(|(k, _)| format!("{{{k}}}")).collect();
                return Err(format!(
                    "has an unknown placeholder {{{name}}}; known here: {}",
                    known.join(" ")
                ));
            }
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether a template uses `{name}`.
pub fn uses(template: &str, name: &str) -> bool {
    template.replace("{{", "").contains(&format!("{{{name}}}"))
}

/// Quotes a value for `/bin/sh` when it has characters the shell would interpret.
pub fn sh_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/-+:@%=,".contains(&b));
    if plain {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', "'\\''"))
    }
}

/// The restore commands of a dump source for one dump, ready for `/bin/sh -c` in the guest.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_expand_quote_and_refuse_unknown_names() {
        assert_eq!(
            expand("a {x} {{b}} {y}", &[("x", "1"), ("y", "2")]).unwrap(),
            "a 1 {b} 2"
        );
        assert!(
            expand("{nope}", &[("x", "1")])
                .unwrap_err()
                .contains("unknown placeholder {nope}; known here: {x}")
        );
        assert!(
            expand("{x", &[("x", "1")])
                .unwrap_err()
                .contains("unclosed")
        );
        assert!(
            expand("x}", &[("x", "1")])
                .unwrap_err()
                .contains("lone '}'")
        );
        assert!(uses("cp {dump} {as}", "as"));
        assert!(!uses("echo {{as}}", "as"));
        assert_eq!(sh_quote("/mnt/reclab/erp-1.sql"), "/mnt/reclab/erp-1.sql");
        assert_eq!(sh_quote("it's here"), "'it'\\''s here'");
        assert_eq!(sh_quote(""), "''");
    }
}
