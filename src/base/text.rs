//! Text for people: HTML escaping, and the end of a program's output for messages and reports.
//! Sizes are in bytes; a cut always falls on a character boundary. Pure.

/// `text` with `&`, `<`, `>`, `"` and `'` as entities: safe in element content and in quoted
/// attribute values.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The last `n` lines of `text` that are not blank, oldest first.
pub fn last_lines(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// The last line of `text` that is not blank, trimmed.
pub fn last_line(text: &str) -> Option<&str> {
    last_lines(text, 1).first().map(|l| l.trim())
}

/// The last `n` non-blank lines of `text` joined with " | ": output in a one-line message.
pub fn tail(text: &str, n: usize) -> String {
    last_lines(text, n).join(" | ")
}

/// The end of `text`: at most `max` bytes, from the first character boundary that fits.
pub fn last_bytes(text: &str, max: usize) -> &str {
    let start = text.len().saturating_sub(max);
    let start = (start..=text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    &text[start..]
}

/// The end of `text` as a block for a report: its last `lines` lines (blank ones included),
/// at most `max` bytes of them, after a `...` line when something was left out.
pub fn tail_block(text: &str, lines: usize, max: usize) -> String {
    let all: Vec<&str> = text.trim_end_matches('\n').lines().collect();
    let start = all.len().saturating_sub(lines);
    let joined = all[start..].join("\n");
    let kept = last_bytes(&joined, max);
    if start > 0 || kept.len() < joined.len() {
        format!("...\n{kept}")
    } else {
        kept.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escape_keeps_markup_out() {
        assert_eq!(
            html_escape("<b a=\"x\">&'"),
            "&lt;b a=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(html_escape("plain äöü"), "plain äöü");
    }

    #[test]
    fn tail_keeps_the_last_non_empty_lines() {
        assert_eq!(tail("a\n\nb\nc\n\n", 2), "b | c");
        assert_eq!(tail("", 3), "");
        assert_eq!(last_lines("a\n \nb", 5), ["a", "b"]);
        assert_eq!(last_line("x\n  error: boom  \n\n"), Some("error: boom"));
        assert_eq!(last_line(" \n"), None);
    }

    #[test]
    fn last_bytes_cuts_on_a_character_boundary() {
        assert_eq!(last_bytes("abcdef", 3), "def");
        assert_eq!(last_bytes("ab", 5), "ab");
        // "é" is two bytes: a cut through it starts after it.
        assert_eq!(last_bytes("aéb", 2), "b");
        assert_eq!(last_bytes("aéb", 3), "éb");
    }

    #[test]
    fn a_tail_block_says_when_lines_or_bytes_were_left_out() {
        assert_eq!(tail_block("1\n\n2\n", 5, 100), "1\n\n2");
        assert_eq!(tail_block("1\n2\n3\n", 2, 100), "...\n2\n3");
        assert_eq!(tail_block("abcdef", 5, 3), "...\ndef");
        assert_eq!(tail_block("", 5, 3), "");
    }
}
