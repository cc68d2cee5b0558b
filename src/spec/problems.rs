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

/// How many problems a [`SpecError`] shows; the rest are counted. A file of garbage has a
/// problem on nearly every line, and the first ones are what to fix.
pub const SHOWN: usize = 20;

fn lines(problems: &[Problem]) -> String {
    let mut lines: Vec<String> = problems
        .iter()
        .take(SHOWN)
        .map(Problem::to_string)
        .collect();
    if problems.len() > SHOWN {
        lines.push(format!(
            "… and {} more problems (is this a reclab lab file?)",
            problems.len() - SHOWN
        ));
    }
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
    /// Built at the first problem with a place.
    lines: Option<LineIndex>,
    /// Bytes and values examined to place problems: linear in the text, whatever the number of
    /// problems (a test holds it to that).
    work: usize,
}

impl<'a> Problems<'a> {
    /// An empty collector for `text`, the contents of `file`.
    pub(super) fn new(file: &'a Path, text: &'a str) -> Self {
        Problems {
            file,
            text,
            found: Vec::new(),
            lines: None,
            work: 0,
        }
    }

    /// A problem with the value at `span`.
    pub(super) fn at(
        &mut self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        let text = self.text;
        let lines = self.lines.get_or_insert_with(|| {
            self.work += text.len();
            LineIndex::new(text)
        });
        let (location, work) = lines.locate(text, span.start);
        self.work += work;
        self.push(Some(location), field.into(), message.into());
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

    /// The work done placing problems so far.
    pub(super) fn work(&self) -> usize {
        self.work
    }

    /// Reports a TOML syntax or decoding error; `root` locates the field it is about.
    pub(super) fn toml_error(
        &mut self,
        err: &toml::de::Error,
        root: &Spanned<DeValue>,
        fallback: Range<usize>,
    ) {
        let span = err.span().unwrap_or(fallback);
        // Naming the field walks the document; beyond the problems shown (and a margin, as
        // they are sorted by place later) nobody reads it.
        let field = if self.found.len() < 5 * SHOWN {
            let (field, visited) = field_at(root, span.start);
            self.work += visited;
            field
        } else {
            String::new()
        };
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

/// 1-based line and character column of a byte offset (one lookup; `Problems` keeps its index).
#[cfg(test)]
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    LineIndex::new(text).locate(text, offset).0
}

/// Where each line of a text starts: built once, it places an offset by a binary search and
/// the characters of its own line only.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex { starts }
    }

    /// 1-based line and column (in characters) of `offset`, and the bytes examined.
    fn locate(&self, text: &str, offset: usize) -> ((usize, usize), usize) {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = self.starts[line - 1];
        let column = text[start..offset].chars().count() + 1;
        ((line, column), offset - start + line.ilog2() as usize + 1)
    }
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
///
/// Also returns how many values were examined.
fn field_at(root: &Spanned<DeValue>, offset: usize) -> (String, usize) {
    let mut path = String::new();
    let mut value = root;
    let mut visited = 0;
    'descend: loop {
        match value.get_ref() {
            DeValue::Table(table) => {
                for (key, child) in table.iter() {
                    if reach(child, &mut visited).contains(&offset) {
                        path_push_key(&mut path, key.get_ref());
                        value = child;
                        continue 'descend;
                    }
                }
            }
            DeValue::Array(array) => {
                for (i, child) in array.iter().enumerate() {
                    if reach(child, &mut visited).contains(&offset) {
                        path.push_str(&format!("[{i}]"));
                        value = child;
                        continue 'descend;
                    }
                }
            }
            _ => {}
        }
        return (path, visited);
    }
}

fn reach(value: &Spanned<DeValue>, visited: &mut usize) -> Range<usize> {
    *visited += 1;
    let join = |a: Range<usize>, b: Range<usize>| a.start.min(b.start)..a.end.max(b.end);
    match value.get_ref() {
        DeValue::Table(table) => table.iter().fold(value.span(), |acc, (key, child)| {
            join(join(acc, key.span()), reach(child, visited))
        }),
        DeValue::Array(array) => array
            .iter()
            .fold(value.span(), |acc, child| join(acc, reach(child, visited))),
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
