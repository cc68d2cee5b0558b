//! Problems with a lab file: the public error types, the collector the validators report to,
//! and the tidying of TOML parser messages into reclab's style.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::DeValue;

/// Everything wrong with a lab file; displays one problem per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", lines(.problems))]
pub struct SpecError {
    pub problems: Vec<Problem>,
}

/// One problem in a lab file, displayed as `FILE[:LINE:COLUMN][: FIELD]: MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{}: {message}", .file.display(), place(.location), label(.field))]
pub struct Problem {
    pub file: PathBuf,
    /// 1-based line and column (in characters), when the problem has a place in the file.
    pub location: Option<(usize, usize)>,
    /// Field path such as `vm[1].after[0]`; empty for problems with the file as a whole.
    pub field: String,
    /// What is wrong and what to do, lowercase, no trailing period.
    pub message: String,
}

fn lines(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
    lines.join("\n")
}

fn place(location: &Option<(usize, usize)>) -> String {
    location.map_or_else(String::new, |(line, column)| format!(":{line}:{column}"))
}

fn label(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!(": {field}")
    }
}

/// The problems found so far in one lab file; the validators report to it.
pub(super) struct Problems<'a> {
    file: &'a Path,
    text: &'a str,
    found: Vec<Problem>,
}

impl<'a> Problems<'a> {
    /// An empty collector for `text`, the contents of `file`.
    pub(super) fn new(file: &'a Path, text: &'a str) -> Self {
        Problems {
            file,
            text,
            found: Vec::new(),
        }
    }

    /// A problem with the value at `span`.
    pub(super) fn at(
        &mut self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        let location = Some(line_column(self.text, span.start));
        self.push(location, field.into(), message.into());
    }

    /// A problem with the file as a whole when `location` is `None`.
    pub(super) fn push(
        &mut self,
        location: Option<(usize, usize)>,
        field: String,
        message: String,
    ) {
        self.found.push(Problem {
            file: self.file.to_path_buf(),
            location,
            field,
            message,
        });
    }

    pub(super) fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.found.len()
    }

    /// Reports a TOML syntax or decoding error; `root` locates the field it is about.
    pub(super) fn toml_error(
        &mut self,
        err: &toml::de::Error,
        root: &Spanned<DeValue>,
        fallback: Range<usize>,
    ) {
        let span = err.span().unwrap_or(fallback);
        let field = field_at(root, span.start);
        let key = self.text.get(span.clone()).unwrap_or_default().trim();
        let message = tidy_toml_message(err.message(), &field, key);
        self.at(span, field, message);
    }

    pub(super) fn finish(mut self) -> SpecError {
        // Problems read top to bottom like compiler output; the order within a place is kept.
        self.found
            .sort_by_key(|p| p.location.map_or((usize::MAX, usize::MAX), |l| l));
        SpecError {
            problems: self.found,
        }
    }
}

/// 1-based line and character column of a byte offset.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Makes serde/toml messages fit reclab's style: one line, plain words, a hint where useful.
fn tidy_toml_message(message: &str, field: &str, key: &str) -> String {
    let mut message = message
        .trim()
        .trim_end_matches('.')
        .replace('\n', "; ")
        .replace("invalid type: map", "invalid type: table")
        .replace("invalid type: sequence", "invalid type: array")
        .replace("expected a map", "expected a table")
        .replace("expected a sequence", "expected an array")
        .replace("expected i64", "expected an integer");
    if let Some(rest) = message.strip_prefix("unknown field") {
        message = format!("unknown key{rest}; remove it or fix its spelling");
    }
    if message == "duplicate key" {
        message =
            format!("duplicate key {key:?}; a key may appear only once in a table, remove one");
    }
    if (field == "ttl"
        || field == "max_skew"
        || field.ends_with(".timeout")
        || field.ends_with(".max_age"))
        && message.ends_with("expected a string")
    {
        message.push_str("; write durations as strings, like \"8h\" or \"5m\"");
    }
    if field == "vm" && message.contains("expected an array") {
        message.push_str("; write each vm as its own [[vm]] table");
    }
    if field == "check" && message.contains("expected an array") {
        message.push_str("; write each check as its own [[check]] table");
    }
    message
}

/// The field path (`vm[1].ready.tcp`) of the innermost value containing `offset`.
///
/// Tables written as `[header]` sections are spanned by their header only, so a value's reach
/// is its own span joined with the spans of everything inside it (keys included). An offset on
/// a key (such as an unknown key) therefore names the table holding that key.
fn field_at(root: &Spanned<DeValue>, offset: usize) -> String {
    let mut path = String::new();
    let mut value = root;
    'descend: loop {
        match value.get_ref() {
            DeValue::Table(table) => {
                for (key, child) in table.iter() {
                    if reach(child).contains(&offset) {
                        path_push_key(&mut path, key.get_ref());
                        value = child;
                        continue 'descend;
                    }
                }
            }
            DeValue::Array(array) => {
                for (i, child) in array.iter().enumerate() {
                    if reach(child).contains(&offset) {
                        path.push_str(&format!("[{i}]"));
                        value = child;
                        continue 'descend;
                    }
                }
            }
            _ => {}
        }
        return path;
    }
}

fn reach(value: &Spanned<DeValue>) -> Range<usize> {
    let join = |a: Range<usize>, b: Range<usize>| a.start.min(b.start)..a.end.max(b.end);
    match value.get_ref() {
        DeValue::Table(table) => table.iter().fold(value.span(), |acc, (key, child)| {
            join(join(acc, key.span()), reach(child))
        }),
        DeValue::Array(array) => array
            .iter()
            .fold(value.span(), |acc, child| join(acc, reach(child))),
        _ => value.span(),
    }
}

fn path_push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        path.push_str(key);
    } else {
        path.push_str(&format!("{key:?}"));
    }
}

pub(super) fn join_key(parent: &str, key: &str) -> String {
    let mut path = parent.to_string();
    path_push_key(&mut path, key);
    path
}

pub(super) fn list(names: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let names: Vec<String> = names.into_iter().map(|n| n.as_ref().to_string()).collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// A close spelling among `known`, as a "did you mean" hint.
pub(super) fn suggestion<'a>(wrong: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    known
        .into_iter()
        .map(|k| (edit_distance(wrong, k), k))
        .filter(|(d, k)| *d <= 2 && *d < k.len())
        .min()
        .map(|(_, k)| format!(" (did you mean \"{k}\"?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}
