//! Restore points: the moments a source can be restored to, and choosing among them.
//!
//! A *dump point* is one database dump file in a VM's dump directory; its time comes from its
//! name, read with a strftime-like [`NamePattern`] such as `erp-%Y%m%d-%H%M.sql`, or from the
//! file's modification time. An *image point* is a VM image (a libvirt snapshot with its
//! `<creationTime>`, or backup disk files with their modification time; see `restore`).
//! For a moment `at`, every source gives its newest point at or before `at` ([`select`]).
//!
//! Everything here is pure except [`scan_dumps`] (which lists one directory and, only for
//! `time = "mtime"`, reads the matching files' metadata) and the manifest and checksum readers
//! ([`read_manifest`], [`read_sha256sums`], [`sha256_file`], [`verify_dump`]), which only read.
//!
//! # Name patterns
//!
//! A pattern matches a whole file name. Literal text matches itself; `*` matches any run of
//! characters (also none); `%%` is a literal `%`. Time fields:
//!
//! | field | matches | meaning |
//! |---|---|---|
//! | `%Y` | 4 digits | year |
//! | `%m` | 2 digits | month, 01 to 12 |
//! | `%d` | 2 digits | day of the month |
//! | `%j` | 3 digits | day of the year, 001 to 366 (instead of `%m` and `%d`) |
//! | `%H` | 2 digits | hour, 00 to 23 |
//! | `%M` | 2 digits | minute |
//! | `%S` | 2 digits | second |
//! | `%s` | 1 to 19 digits | seconds since 1970-01-01 UTC (alone: no other field) |
//! | `%z` | `Z`, `+HHMM` or `+HH:MM` | the UTC offset the name's time is in (instead of `tz`) |
//!
//! Names carry times in UTC unless the dump source gives `tz` (an IANA zone); a time that a DST
//! change makes ambiguous in that zone takes the compatible reading (see `when`). A pattern
//! whose time comes from the name needs a full date (`%Y` with `%m`+`%d`, or with `%j`) or
//! `%s`; hour, minute and second default to 0, but a finer field needs the coarser ones.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use jiff::civil::{Date, DateTime};
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp, ToSpan};
use sha2::{Digest, Sha256};

use crate::spec::{DumpTime, DumpsSpec};

// ---------------------------------------------------------------------------------------------
// Name patterns.

/// A strftime-like file name pattern, such as `erp-%Y%m%d-%H%M.sql`.
#[derive(Clone, PartialEq, Eq)]
pub struct NamePattern {
    text: String,
    items: Vec<Item>,
}

impl fmt::Debug for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NamePattern({:?})", self.text)
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Year,
    Month,
    Day,
    DayOfYear,
    Hour,
    Minute,
    Second,
    Epoch,
    Offset,
}

const FIELDS: [Field; 9] = [
    Field::Year,
    Field::Month,
    Field::Day,
    Field::DayOfYear,
    Field::Hour,
    Field::Minute,
    Field::Second,
    Field::Epoch,
    Field::Offset,
];

impl Field {
    fn from_letter(letter: char) -> Option<Field> {
        FIELDS.into_iter().find(|f| f.letter() == letter)
    }

    fn letter(self) -> char {
        match self {
            Field::Year => 'Y',
            Field::Month => 'm',
            Field::Day => 'd',
            Field::DayOfYear => 'j',
            Field::Hour => 'H',
            Field::Minute => 'M',
            Field::Second => 'S',
            Field::Epoch => 's',
            Field::Offset => 'z',
        }
    }

    fn index(self) -> usize {
        FIELDS.iter().position(|f| *f == self).unwrap_or(0)
    }

    /// Fixed digit count, for the fields that have one.
    fn width(self) -> Option<usize> {
        match self {
            Field::Year => Some(4),
            Field::DayOfYear => Some(3),
            Field::Month | Field::Day | Field::Hour | Field::Minute | Field::Second => Some(2),
            Field::Epoch | Field::Offset => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Literal(String),
    Field(Field),
    Any,
}

/// Why a pattern cannot be used; the message says what to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError(pub String);

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PatternError {}

/// What a name told about its time, before a time zone is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameTime {
    /// A wall-clock time, in the source's `tz` (UTC by default).
    Civil(DateTime),
    /// A wall-clock time with its own UTC offset (`%z`).
    WithOffset(DateTime, Offset),
    /// An instant (`%s`).
    Instant(Timestamp),
}

impl NamePattern {
    /// Parses a pattern. With `needs_time`, the pattern must carry a full time (see the module
    /// documentation); without it, it must carry none (the time comes from elsewhere).
    pub fn parse(text: &str, needs_time: bool) -> Result<NamePattern, PatternError> {
        let fail = |why: String| Err(PatternError(format!("pattern {text:?} {why}")));
        if text.is_empty() {
            return Err(PatternError(
                "the pattern is empty; give a file name pattern like \"erp-%Y%m%d-%H%M.sql\""
                    .into(),
            ));
        }
        if text.contains('/') {
            return fail(
                "contains '/'; a pattern matches file names inside dir, so put directories into dir"
                    .into(),
            );
        }
        let mut items = Vec::new();
        let mut literal = String::new();
        let mut seen = [false; FIELDS.len()];
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '*' => {
                    if !literal.is_empty() {
                        items.push(Item::Literal(std::mem::take(&mut literal)));
                    }
                    if items.last() != Some(&Item::Any) {
                        items.push(Item::Any);
                    }
                }
                '%' => match chars.next() {
                    Some('%') => literal.push('%'),
                    Some(letter) => {
                        let Some(field) = Field::from_letter(letter) else {
                            return fail(format!(
                                "has an unknown field %{letter}; use %Y %m %d %j %H %M %S %s %z, %% for a literal %"
                            ));
                        };
                        if seen[field.index()] {
                            return fail(format!("has %{letter} twice; give each field once"));
                        }
                        seen[field.index()] = true;
                        if !literal.is_empty() {
                            items.push(Item::Literal(std::mem::take(&mut literal)));
                        }
                        items.push(Item::Field(field));
                    }
                    None => {
                        return fail("ends with a lone %; write %% for a literal %".into());
                    }
                },
                other => literal.push(other),
            }
        }
        if !literal.is_empty() {
            items.push(Item::Literal(literal));
        }
        let has = |field: Field| seen[field.index()];
        let any_time = seen.iter().any(|s| *s);
        if !needs_time {
            if any_time {
                return fail(
                    "has time fields, but the time comes from the modification time; drop the fields (use * for varying parts) or drop time = \"mtime\""
                        .into(),
                );
            }
        } else if has(Field::Epoch) {
            if FIELDS.iter().any(|f| *f != Field::Epoch && seen[f.index()]) {
                return fail(
                    "mixes %s with other time fields; %s is a complete time, use it alone".into(),
                );
            }
        } else {
            if !has(Field::Year) {
                return fail(
                    "has no year; the time comes from the name, so add %Y (or use %s, or time = \"mtime\")"
                        .into(),
                );
            }
            if has(Field::DayOfYear) && (has(Field::Month) || has(Field::Day)) {
                return fail(
                    "has %j and %m/%d; give the day either as day of the year or as month and day"
                        .into(),
                );
            }
            if !(has(Field::DayOfYear) || (has(Field::Month) && has(Field::Day))) {
                let missing = if has(Field::Month) { "%d" } else { "%m and %d" };
                return fail(format!(
                    "has no full date; add {missing} (or %j for the day of the year)"
                ));
            }
            for (finer, coarser) in [(Field::Minute, Field::Hour), (Field::Second, Field::Minute)] {
                if has(finer) && !has(coarser) {
                    return fail(format!(
                        "has %{} without %{}; add %{}",
                        finer.letter(),
                        coarser.letter(),
                        coarser.letter()
                    ));
                }
            }
        }
        Ok(NamePattern {
            text: text.to_string(),
            items,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the time comes from the name.
    pub fn has_time(&self) -> bool {
        self.items.iter().any(|item| matches!(item, Item::Field(_)))
    }

    /// Whether the pattern carries its own time zone (`%s` or `%z`), making `tz` meaningless.
    pub fn has_zone(&self) -> bool {
        self.items
            .iter()
            .any(|item| matches!(item, Item::Field(Field::Epoch | Field::Offset)))
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        let mut caps = Captures::default();
        match_items(&self.items, name.as_bytes(), &mut caps)
    }

    /// Matches `name` and reads its time. `Ok(None)`: the name does not match; `Err`: it
    /// matches, but its fields are not a valid time (like month 13).
    pub fn name_time(&self, name: &str) -> Result<Option<NameTime>, String> {
        let mut caps = Captures::default();
        if !match_items(&self.items, name.as_bytes(), &mut caps) {
            return Ok(None);
        }
        caps.to_time().map(Some)
    }
}

#[derive(Default)]
struct Captures {
    values: [Option<i64>; FIELDS.len()],
}

impl Captures {
    fn get(&self, field: Field) -> Option<i64> {
        self.values[field.index()]
    }

    fn to_time(&self) -> Result<NameTime, String> {
        if let Some(seconds) = self.get(Field::Epoch) {
            return Timestamp::from_second(seconds)
                .map(NameTime::Instant)
                .map_err(|_| format!("{seconds} seconds since 1970 is out of range"));
        }
        let narrow = |field: Field| -> Result<i16, String> {
            i16::try_from(self.get(field).unwrap_or(0)).map_err(|_| "out of range".to_string())
        };
        let year = narrow(Field::Year)?;
        let date = match self.get(Field::DayOfYear) {
            Some(day) => {
                let first = Date::new(year, 1, 1).map_err(|e| e.to_string())?;
                let date = first
                    .checked_add((day - 1).days())
                    .map_err(|e| e.to_string())?;
                if !(1..=366).contains(&day) || date.year() != year {
                    return Err(format!("{year} has no day {day:03}"));
                }
                date
            }
            None => {
                let (month, day) = (narrow(Field::Month)?, narrow(Field::Day)?);
                Date::new(year, month as i8, day as i8)
                    .map_err(|_| format!("{year:04}-{month:02}-{day:02} is not a date"))?
            }
        };
        let (hour, minute, second) = (
            narrow(Field::Hour)?,
            narrow(Field::Minute)?,
            narrow(Field::Second)?,
        );
        let time = jiff::civil::Time::new(hour as i8, minute as i8, second as i8, 0)
            .map_err(|_| format!("{hour:02}:{minute:02}:{second:02} is not a time of day"))?;
        let civil = date.to_datetime(time);
        match self.get(Field::Offset) {
            None => Ok(NameTime::Civil(civil)),
            Some(seconds) => {
                let offset = Offset::from_seconds(seconds as i32)
                    .map_err(|_| "the UTC offset is out of range".to_string())?;
                Ok(NameTime::WithOffset(civil, offset))
            }
        }
    }
}

/// Matches `items` against the whole of `name`, backtracking over `*` and `%s`.
fn match_items(items: &[Item], name: &[u8], caps: &mut Captures) -> bool {
    let Some((first, rest)) = items.split_first() else {
        return name.is_empty();
    };
    match first {
        Item::Literal(text) => {
            name.starts_with(text.as_bytes()) && match_items(rest, &name[text.len()..], caps)
        }
        Item::Any => (0..=name.len()).any(|skip| match_items(rest, &name[skip..], caps)),
        Item::Field(Field::Offset) => {
            if name.first() == Some(&b'Z') {
                caps.values[Field::Offset.index()] = Some(0);
                return match_items(rest, &name[1..], caps);
            }
            let sign = match name.first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return false,
            };
            let digits = |from: usize| -> Option<i64> {
                let pair = name.get(from..from + 2)?;
                pair.iter()
                    .all(u8::is_ascii_digit)
                    .then(|| i64::from(pair[0] - b'0') * 10 + i64::from(pair[1] - b'0'))
            };
            let Some(hours) = digits(1) else {
                return false;
            };
            let (minutes, used) = if name.get(3) == Some(&b':') {
                match digits(4) {
                    Some(m) => (m, 6),
                    None => return false,
                }
            } else {
                match digits(3) {
                    Some(m) => (m, 5),
                    None => return false,
                }
            };
            caps.values[Field::Offset.index()] = Some(sign * (hours * 3600 + minutes * 60));
            match_items(rest, &name[used..], caps)
        }
        Item::Field(field) => {
            let run = name.iter().take_while(|b| b.is_ascii_digit()).count();
            let widths: Vec<usize> = match field.width() {
                Some(width) if run >= width => vec![width],
                Some(_) => return false,
                // Seconds since 1970: the longest digit run first.
                None => (1..=run.min(19)).rev().collect(),
            };
            for width in widths {
                let value = name[..width]
                    .iter()
                    .fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0'));
                caps.values[field.index()] = Some(value);
                if match_items(rest, &name[width..], caps) {
                    return true;
                }
            }
            false
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Points and selection.

/// Anything with a time that can be chosen.
pub trait Timed {
    fn time(&self) -> Timestamp;
    /// How the point is named in messages (a file or snapshot name).
    fn label(&self) -> String;
}

/// One dump file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpPoint {
    /// File name inside the dump directory.
    pub file: String,
    pub time: Timestamp,
}

impl Timed for DumpPoint {
    fn time(&self) -> Timestamp {
        self.time
    }
    fn label(&self) -> String {
        self.file.clone()
    }
}

/// The dump points of one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpScan {
    pub dir: PathBuf,
    /// Sorted by time, then file name.
    pub points: Vec<DumpPoint>,
    /// Names that do not match the pattern (manifests, checksums, other files).
    pub others: usize,
    /// Names that match the pattern but are no valid time, with the reason (all of them).
    pub invalid: Vec<(String, String)>,
    /// Names whose wall-clock time happens twice in the source's time zone (DST fold); they
    /// were read as the first occurrence.
    pub ambiguous: Vec<String>,
}

/// Reads dump points from file names (pure). `tz` applies to names without `%s` or `%z`.
pub fn dump_points_from_names<S: AsRef<str>>(
    names: impl IntoIterator<Item = S>,
    pattern: &NamePattern,
    tz: &TimeZone,
) -> DumpScan {
    let mut scan = DumpScan {
        dir: PathBuf::new(),
        points: Vec::new(),
        others: 0,
        invalid: Vec::new(),
        ambiguous: Vec::new(),
    };
    for name in names {
        let name = name.as_ref();
        match pattern.name_time(name) {
            Ok(None) => scan.others += 1,
            Err(why) => scan.invalid.push((name.to_string(), why)),
            Ok(Some(time)) => {
                let instant = match time {
                    NameTime::Instant(t) => Ok(t),
                    NameTime::WithOffset(civil, offset) => offset
                        .to_timestamp(civil)
                        .map_err(|e| format!("the time is out of range: {e}")),
                    NameTime::Civil(civil) => {
                        let ambiguous = tz.to_ambiguous_timestamp(civil);
                        if ambiguous.is_ambiguous() {
                            scan.ambiguous.push(name.to_string());
                        }
                        ambiguous
                            .compatible()
                            .map_err(|e| format!("the time is out of range: {e}"))
                    }
                };
                match instant {
                    Ok(time) => scan.points.push(DumpPoint {
                        file: name.to_string(),
                        time,
                    }),
                    Err(why) => scan.invalid.push((name.to_string(), why)),
                }
            }
        }
    }
    sort_points(&mut scan.points);
    scan.ambiguous.sort();
    scan
}

fn sort_points(points: &mut [DumpPoint]) {
    points.sort_unstable_by(|a, b| a.time.cmp(&b.time).then_with(|| a.file.cmp(&b.file)));
}

/// Lists the dump points of a VM's dump source. Only lists the directory: no file is opened,
/// and no file is stat'ed unless the time is the modification time. `vm` names the VM in
/// messages. A missing directory, or one where nothing matches, is an error.
pub fn scan_dumps(dumps: &DumpsSpec, vm: &str) -> Result<DumpScan> {
    let dir = &dumps.dir;
    let entries = std::fs::read_dir(dir).map_err(|err| {
        let what = match err.kind() {
            std::io::ErrorKind::NotFound => "does not exist".to_string(),
            std::io::ErrorKind::PermissionDenied => "is not readable".to_string(),
            _ => format!("cannot be listed ({err})"),
        };
        anyhow::anyhow!(
            "vm {vm}: dump directory {} {what}; check dumps.dir in the lab file",
            dir.display()
        )
    })?;
    let mut names = Vec::new();
    let mut unreadable_names = 0usize;
    for entry in entries {
        let entry =
            entry.with_context(|| format!("vm {vm}: listing dump directory {}", dir.display()))?;
        // The file type comes with the directory entry on Linux; no stat is needed.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        match entry.file_name().into_string() {
            Ok(name) => names.push(name),
            Err(_) => unreadable_names += 1,
        }
    }
    let mut scan = match &dumps.time {
        DumpTime::Name { tz } => {
            let zone = match tz {
                None => TimeZone::UTC,
                Some(name) => TimeZone::get(name)
                    .with_context(|| format!("vm {vm}: reading time zone {name:?}"))?,
            };
            dump_points_from_names(&names, &dumps.pattern, &zone)
        }
        DumpTime::Mtime => {
            let mut scan = DumpScan {
                dir: PathBuf::new(),
                points: Vec::new(),
                others: 0,
                invalid: Vec::new(),
                ambiguous: Vec::new(),
            };
            for name in &names {
                if !dumps.pattern.matches(name) {
                    scan.others += 1;
                    continue;
                }
                let path = dir.join(name);
                let modified = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .with_context(|| {
                        format!(
                            "vm {vm}: reading the modification time of {}",
                            path.display()
                        )
                    })?;
                let time = Timestamp::try_from(modified).with_context(|| {
                    format!(
                        "vm {vm}: the modification time of {} is out of range",
                        path.display()
                    )
                })?;
                scan.points.push(DumpPoint {
                    file: name.clone(),
                    time,
                });
            }
            sort_points(&mut scan.points);
            scan
        }
    };
    scan.dir = dir.clone();
    scan.others += unreadable_names;
    if scan.points.is_empty() {
        let mut sample: Vec<&String> = names.iter().collect();
        sample.sort();
        let mut message = format!(
            "vm {vm}: no dump in {} matches the pattern {:?}",
            dir.display(),
            dumps.pattern.as_str()
        );
        if let Some((name, why)) = scan.invalid.first() {
            message.push_str(&format!(
                "; {} names match it but are no valid time, like {name} ({why})",
                scan.invalid.len()
            ));
        } else if sample.is_empty() {
            message.push_str("; the directory is empty");
        } else {
            let shown: Vec<&str> = sample.iter().take(5).map(|s| s.as_str()).collect();
            message.push_str(&format!(
                "; it holds {} files, like {}",
                names.len(),
                shown.join(", ")
            ));
        }
        message.push_str("; check dumps.pattern and dumps.dir in the lab file");
        bail!(message);
    }
    if !scan.invalid.is_empty() {
        tracing::warn!(
            vm,
            count = scan.invalid.len(),
            example = %scan.invalid[0].0,
            "dump names that match the pattern but are no valid time are ignored"
        );
    }
    Ok(scan)
}

/// The newest point at or before `at`, from points sorted by time (the last one on ties).
pub fn select<T: Timed>(points: &[T], at: Timestamp) -> Option<&T> {
    let after = points.partition_point(|p| p.time() <= at);
    after.checked_sub(1).map(|i| &points[i])
}

/// Up to `n` points on each side of `at` (closest first): those at or before, those after.
pub fn nearest<T: Timed>(points: &[T], at: Timestamp, n: usize) -> (Vec<&T>, Vec<&T>) {
    let split = points.partition_point(|p| p.time() <= at);
    let before = points[..split].iter().rev().take(n).collect();
    let after = points[split..].iter().take(n).collect();
    (before, after)
}

/// `a (time), b (time)` for messages; `none` when empty.
pub fn describe<T: Timed>(points: &[&T], tz: &TimeZone) -> String {
    if points.is_empty() {
        return "none".to_string();
    }
    points
        .iter()
        .map(|p| format!("{} ({})", p.label(), crate::base::when::show(p.time(), tz)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The time between an image and a dump: positive when the dump is newer than the image.
pub fn skew(image: Timestamp, dump: Timestamp) -> SignedDuration {
    dump.duration_since(image)
}

/// Whether a skew is within `max` (either direction). No bound: always.
pub fn skew_ok(skew: SignedDuration, max: Option<std::time::Duration>) -> bool {
    match max {
        None => true,
        Some(max) => skew.unsigned_abs() <= max,
    }
}

/// A skew for people: `11h 30m`, `dump 2h older than the image` etc.
pub fn show_skew(skew: SignedDuration) -> String {
    let magnitude = SignedDuration::try_from(skew.unsigned_abs()).unwrap_or(SignedDuration::MAX);
    if skew.is_zero() {
        "0s".to_string()
    } else if skew.is_negative() {
        format!("{magnitude:#} (dump older than image)")
    } else {
        format!("{magnitude:#}")
    }
}

// ---------------------------------------------------------------------------------------------
// Manifests and checksums.

/// What a dump must hash to, and who says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Lowercase hex.
    pub sha256: String,
    pub bytes: Option<u64>,
    /// The file that says so (a manifest or a SHA256SUMS file), for messages.
    pub source: PathBuf,
}

/// The sha256 and size of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    /// Lowercase hex.
    pub sha256: String,
    pub bytes: u64,
}

/// A dump's manifest path: the source's `manifest` template with `{file}` filled in.
pub fn manifest_path(dumps: &DumpsSpec, file: &str) -> Option<PathBuf> {
    let template = dumps.manifest.as_ref()?;
    let name = expand(template, &[("file", file)]).ok()?;
    Some(dumps.dir.join(name))
}

fn valid_sha256(text: &str) -> Option<String> {
    (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| text.to_ascii_lowercase())
}

/// Reads a dump manifest (a JSON object with at least `sha256`; `bytes` and `file` are checked
/// when present; everything else is kept as written) for the dump named `file`.
pub fn read_manifest(path: &Path, file: &str) -> Result<(serde_json::Value, Expected)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading manifest {} of dump {file}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "manifest {} of dump {file} is not valid json",
            path.display()
        )
    })?;
    let Some(object) = value.as_object() else {
        bail!(
            "manifest {} of dump {file} is not a json object; it needs at least {{\"sha256\": \"...\"}}",
            path.display()
        );
    };
    let sha256 = match object.get("sha256").and_then(|v| v.as_str()) {
        Some(text) => valid_sha256(text).with_context(|| {
            format!(
                "manifest {} of dump {file}: sha256 {text:?} is not 64 hex digits",
                path.display()
            )
        })?,
        None => bail!(
            "manifest {} of dump {file} has no sha256; the dump cannot be verified without it",
            path.display()
        ),
    };
    if let Some(named) = object.get("file").and_then(|v| v.as_str()) {
        let named_base = named.rsplit('/').next().unwrap_or(named);
        if named_base != file {
            bail!(
                "manifest {} describes {named:?}, not dump {file}; check dumps.manifest in the lab file",
                path.display()
            );
        }
    }
    let bytes = match object.get("bytes") {
        None => None,
        Some(v) => Some(v.as_u64().with_context(|| {
            format!(
                "manifest {} of dump {file}: bytes {v} is not a size",
                path.display()
            )
        })?),
    };
    Ok((
        value,
        Expected {
            sha256,
            bytes,
            source: path.to_path_buf(),
        },
    ))
}

/// Reads the line for `file` from a `sha256sum`-style file (`HEX  NAME` or `HEX *NAME`).
pub fn read_sha256sums(path: &Path, file: &str) -> Result<Expected> {
    let reader =
        BufReader::new(File::open(path).with_context(|| {
            format!("opening checksum file {} for dump {file}", path.display())
        })?);
    for line in reader.lines() {
        let line = line.with_context(|| format!("reading checksum file {}", path.display()))?;
        let Some((hash, name)) = line.split_once(' ') else {
            continue;
        };
        let name = name.trim_start_matches(' ').trim_start_matches('*');
        let name = name.strip_prefix("./").unwrap_or(name);
        if name == file
            && let Some(sha256) = valid_sha256(hash)
        {
            return Ok(Expected {
                sha256,
                bytes: None,
                source: path.to_path_buf(),
            });
        }
    }
    bail!(
        "checksum file {} has no line for dump {file}; the dump cannot be verified",
        path.display()
    )
}

/// Streams a file through sha256.
pub fn sha256_file(path: &Path) -> Result<FileDigest> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    // Non-blocking open, so that a FIFO named like a dump does not hang the drill; it is then
    // refused with everything else that is not a regular file.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let kind = file
        .metadata()
        .with_context(|| format!("reading the type of {}", path.display()))?
        .file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a named pipe"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_block_device() || kind.is_char_device() {
            "a device"
        } else {
            "not a regular file"
        };
        bail!(
            "{} is {what}, not a dump file; remove it from the dump directory or narrow the pattern",
            path.display()
        );
    }
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file
            .read(&mut buffer)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        bytes += n as u64;
    }
    Ok(FileDigest {
        sha256: hex::encode(hasher.finalize()),
        bytes,
    })
}

/// Hashes a dump and checks it against everything that describes it. The error names the
/// file, who expected what, and what the file has.
pub fn verify_dump(path: &Path, expected: &[Expected]) -> Result<FileDigest> {
    let digest = sha256_file(path).with_context(|| format!("verifying dump {}", path.display()))?;
    for want in expected {
        if let Some(bytes) = want.bytes
            && bytes != digest.bytes
        {
            bail!(
                "dump {} is corrupt or truncated: {} says {bytes} bytes, the file has {}",
                path.display(),
                want.source.display(),
                digest.bytes
            );
        }
        if want.sha256 != digest.sha256 {
            bail!(
                "dump {} is corrupt: {} says sha256 {}, the file has {}",
                path.display(),
                want.source.display(),
                want.sha256,
                digest.sha256
            );
        }
    }
    Ok(digest)
}

// ---------------------------------------------------------------------------------------------
// Placeholders.

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
/// `{dump}`, `{dir}`, `{file}`, `{manifest}` and `{as}` are shell-quoted as needed.
pub fn restore_commands(dumps: &DumpsSpec, file: &str) -> Result<Vec<String>> {
    let dir = dumps.mount.trim_end_matches('/');
    let dump = format!("{dir}/{file}");
    let manifest = dumps
        .manifest
        .as_ref()
        .and_then(|m| expand(m, &[("file", file)]).ok())
        .map(|name| format!("{dir}/{name}"));
    let mut values = vec![
        ("dump", sh_quote(&dump)),
        ("dir", sh_quote(dir)),
        ("file", sh_quote(file)),
    ];
    if let Some(manifest) = &manifest {
        values.push(("manifest", sh_quote(manifest)));
    }
    if let Some(restore_as) = &dumps.restore_as {
        values.push(("as", sh_quote(restore_as)));
    }
    let values: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    dumps
        .restore
        .iter()
        .map(|command| {
            expand(command, &values)
                .map_err(|why| anyhow::anyhow!("restore command {command:?} {why}"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Benchmark entry.

/// Lists `dir`, reads every name with `pattern` (times in UTC) and picks the newest point at
/// or before `at`, in one pass without sorting or keeping the other names: what `--at` costs
/// for one dump source. For `scripts/bench`.
pub fn bench_choose(dir: &Path, pattern: &str, at: Timestamp) -> Result<Option<DumpPoint>> {
    let pattern = NamePattern::parse(pattern, true).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut best: Option<DumpPoint> = None;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let time = match pattern.name_time(name) {
            Ok(Some(NameTime::Instant(t))) => t,
            Ok(Some(NameTime::Civil(civil))) => match TimeZone::UTC.to_timestamp(civil) {
                Ok(t) => t,
                Err(_) => continue,
            },
            Ok(Some(NameTime::WithOffset(civil, offset))) => match offset.to_timestamp(civil) {
                Ok(t) => t,
                Err(_) => continue,
            },
            Ok(None) | Err(_) => continue,
        };
        let better = best
            .as_ref()
            .is_none_or(|b| (time, name) > (b.time, b.file.as_str()));
        if time <= at && better {
            best = Some(DumpPoint {
                file: name.to_string(),
                time,
            });
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn pattern(text: &str) -> NamePattern {
        NamePattern::parse(text, true).unwrap_or_else(|e| panic!("{e}"))
    }

    fn utc(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn time_of(pattern_text: &str, name: &str) -> Timestamp {
        let scan = dump_points_from_names([name], &pattern(pattern_text), &TimeZone::UTC);
        assert_eq!(
            scan.points.len(),
            1,
            "{name} should match {pattern_text}: {scan:?}"
        );
        scan.points[0].time
    }

    fn pattern_error(text: &str) -> String {
        NamePattern::parse(text, true).unwrap_err().to_string()
    }

    #[test]
    fn the_demo_estates_dump_names_read_as_utc() {
        assert_eq!(
            time_of("erp-%Y%m%d-%H%M.sql", "erp-20261126-1300.sql"),
            utc("2026-11-26T13:00:00Z")
        );
    }

    #[test]
    fn every_field_reads_its_part_of_the_name() {
        assert_eq!(
            time_of("db_%Y-%m-%dT%H:%M:%S.dump", "db_2026-02-28T23:59:58.dump"),
            utc("2026-02-28T23:59:58Z")
        );
        assert_eq!(
            time_of("%Y%j.sql", "2024366.sql"),
            utc("2024-12-31T00:00:00Z")
        );
        assert_eq!(
            time_of("daily-%Y-%m-%d.sql.gz", "daily-2026-11-26.sql.gz"),
            utc("2026-11-26T00:00:00Z")
        );
        assert_eq!(
            time_of("erp.%s.sql", "erp.1764162000.sql"),
            utc("2025-11-26T13:00:00Z")
        );
        assert_eq!(
            time_of("erp-%Y%m%d-%H%M%z.sql", "erp-20261126-1400+0100.sql"),
            utc("2026-11-26T13:00:00Z")
        );
        assert_eq!(
            time_of("erp-%Y%m%d-%H%M%z.sql", "erp-20261126-0800-05:00.sql"),
            utc("2026-11-26T13:00:00Z")
        );
        assert_eq!(
            time_of("erp-%Y%m%d-%H%M%z.sql", "erp-20261126-1300Z.sql"),
            utc("2026-11-26T13:00:00Z")
        );
        assert_eq!(
            time_of("100%%-%Y%m%d.sql", "100%-20261126.sql"),
            utc("2026-11-26T00:00:00Z")
        );
    }

    #[test]
    fn stars_match_varying_parts_and_names_must_match_whole() {
        let p = pattern("*-%Y%m%d-%H%M.sql*");
        assert!(p.matches("erp-prod-20261126-1300.sql"));
        assert!(p.matches("x-20261126-1300.sql.gz"));
        let strict = pattern("erp-%Y%m%d-%H%M.sql");
        assert!(!strict.matches("erp-20261126-1300.sql.manifest.json"));
        assert!(!strict.matches("old-erp-20261126-1300.sql"));
        assert!(!strict.matches("erp-2026112-1300.sql"));
        assert!(!strict.matches("erp-2026112a-1300.sql"));
        assert!(!strict.matches("SHA256SUMS"));
    }

    #[test]
    fn epoch_seconds_backtrack_to_leave_room_for_the_rest() {
        assert_eq!(
            time_of("%s1.sql", "17641620001.sql"),
            utc("2025-11-26T13:00:00Z")
        );
    }

    #[test]
    fn patterns_without_enough_fields_are_refused_clearly() {
        for (text, why) in [
            ("", "the pattern is empty"),
            ("erp.sql", "has no year"),
            ("erp-%m%d.sql", "has no year"),
            ("erp-%Y%m.sql", "has no full date; add %d"),
            ("erp-%Y.sql", "has no full date; add %m and %d"),
            ("erp-%Y%j%m%d.sql", "has %j and %m/%d"),
            ("erp-%Y%m%d%M.sql", "has %M without %H"),
            ("erp-%Y%m%d%H%S.sql", "has %S without %M"),
            ("erp-%s-%Y.sql", "mixes %s with other time fields"),
            ("erp-%Y%m%d%Y.sql", "has %Y twice"),
            ("erp-%Y%m%d-%q.sql", "unknown field %q"),
            ("erp-%Y%m%d%", "ends with a lone %"),
            ("dumps/erp-%Y%m%d.sql", "contains '/'"),
        ] {
            let err = pattern_error(text);
            assert!(err.contains(why), "{text:?}: {err}");
        }
        let err = NamePattern::parse("erp-%Y%m%d.sql", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("modification time"), "{err}");
        assert!(NamePattern::parse("erp-*.sql", false).is_ok());
    }

    #[test]
    fn names_that_match_but_are_no_time_are_kept_apart_with_the_reason() {
        let scan = dump_points_from_names(
            [
                "erp-20261301-1300.sql",
                "erp-20261126-2500.sql",
                "erp-20261126-1300.sql",
                "erp-20230229-0000.sql",
            ],
            &pattern("erp-%Y%m%d-%H%M.sql"),
            &TimeZone::UTC,
        );
        assert_eq!(scan.points.len(), 1);
        let reasons: Vec<&str> = scan.invalid.iter().map(|(_, why)| why.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "2026-13-01 is not a date",
                "25:00:00 is not a time of day",
                "2023-02-29 is not a date"
            ]
        );
        let doy = dump_points_from_names(["2025366.sql"], &pattern("%Y%j.sql"), &TimeZone::UTC);
        assert_eq!(doy.invalid[0].1, "2025 has no day 366");
    }

    #[test]
    fn names_in_a_local_time_zone_follow_its_dst_rules() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let p = pattern("erp-%Y%m%d-%H%M.sql");
        let scan = dump_points_from_names(
            [
                "erp-20261126-1400.sql",
                "erp-20260726-1500.sql",
                "erp-20261025-0230.sql",
                "erp-20260329-0230.sql",
            ],
            &p,
            &berlin,
        );
        let times: Vec<(&str, Timestamp)> = scan
            .points
            .iter()
            .map(|p| (p.file.as_str(), p.time))
            .collect();
        assert_eq!(
            times,
            [
                // Skipped by spring forward: moved forward into CEST.
                ("erp-20260329-0230.sql", utc("2026-03-29T01:30:00Z")),
                ("erp-20260726-1500.sql", utc("2026-07-26T13:00:00Z")),
                // Repeated by fall back: the first (CEST) occurrence.
                ("erp-20261025-0230.sql", utc("2026-10-25T00:30:00Z")),
                ("erp-20261126-1400.sql", utc("2026-11-26T13:00:00Z")),
            ]
        );
        assert_eq!(
            scan.ambiguous,
            ["erp-20260329-0230.sql", "erp-20261025-0230.sql"]
        );
    }

    fn points(times: &[&str]) -> Vec<DumpPoint> {
        times
            .iter()
            .map(|t| DumpPoint {
                file: format!("d-{t}"),
                time: utc(t),
            })
            .collect()
    }

    #[test]
    fn select_takes_the_newest_point_at_or_before_the_moment() {
        let p = points(&[
            "2026-11-26T11:00:00Z",
            "2026-11-26T12:00:00Z",
            "2026-11-26T13:00:00Z",
        ]);
        let pick = |at: &str| select(&p, utc(at)).map(|p| p.file.as_str());
        assert_eq!(pick("2026-11-26T12:00:00Z"), Some("d-2026-11-26T12:00:00Z"));
        assert_eq!(pick("2026-11-26T12:59:59Z"), Some("d-2026-11-26T12:00:00Z"));
        assert_eq!(pick("2027-01-01T00:00:00Z"), Some("d-2026-11-26T13:00:00Z"));
        assert_eq!(pick("2026-11-26T10:59:59Z"), None);
        let (before, after) = nearest(&p, utc("2026-11-26T12:30:00Z"), 5);
        assert_eq!(before.len(), 2);
        assert_eq!(before[0].file, "d-2026-11-26T12:00:00Z");
        assert_eq!(after[0].file, "d-2026-11-26T13:00:00Z");
        let (before, after) = nearest(&p, utc("2026-11-26T10:00:00Z"), 1);
        assert!(before.is_empty());
        assert_eq!(
            describe(&after, &TimeZone::UTC),
            "d-2026-11-26T11:00:00Z (2026-11-26 11:00:00 UTC)"
        );
    }

    #[test]
    fn skew_is_signed_and_bounded_either_way() {
        let image = utc("2026-11-26T02:00:00Z");
        let later = skew(image, utc("2026-11-26T13:00:00Z"));
        assert_eq!(later, SignedDuration::from_hours(11));
        assert_eq!(show_skew(later), "11h");
        let earlier = skew(image, utc("2026-11-25T00:00:00Z"));
        assert_eq!(show_skew(earlier), "26h (dump older than image)");
        let bound = Some(Duration::from_secs(26 * 3600));
        assert!(skew_ok(later, bound));
        assert!(skew_ok(earlier, bound));
        assert!(!skew_ok(skew(image, utc("2026-11-27T04:00:01Z")), bound));
        assert!(!skew_ok(skew(image, utc("2026-11-24T23:59:59Z")), bound));
        assert!(skew_ok(SignedDuration::from_hours(10_000), None));
    }

    #[test]
    fn choosing_among_100_000_dump_files_is_fast_and_right() {
        let dir = tempfile::tempdir().unwrap();
        let start = utc("2015-01-01T00:00:00Z");
        for i in 0..100_000i64 {
            let t = start.checked_add(SignedDuration::from_hours(i)).unwrap();
            let name = t.strftime("erp-%Y%m%d-%H%M.sql").to_string();
            File::create(dir.path().join(name)).unwrap();
        }
        // Noise that must not match.
        File::create(dir.path().join("SHA256SUMS")).unwrap();
        let at = utc("2020-06-15T12:34:00Z");
        let began = Instant::now();
        let chosen = bench_choose(dir.path(), "erp-%Y%m%d-%H%M.sql", at).unwrap();
        let took = began.elapsed();
        eprintln!("choosing among 100 000 dump files took {took:?}");
        assert_eq!(chosen.unwrap().file, "erp-20200615-1200.sql");
        // Debug builds are several times slower than release; scripts/bench checks 100 ms.
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }

    #[test]
    fn modification_times_date_dumps_when_the_names_carry_none() {
        let dir = tempfile::tempdir().unwrap();
        for (name, at) in [
            ("app-b.tar", "2026-11-26T10:00:00Z"),
            ("app-a.tar", "2026-11-26T12:00:00Z"),
        ] {
            let file = File::create(dir.path().join(name)).unwrap();
            let secs = u64::try_from(utc(at).as_second()).unwrap();
            file.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(secs))
                .unwrap();
        }
        File::create(dir.path().join("notes.txt")).unwrap();
        let text = format!(
            "name = \"x\"\n[[vm]]\nname = \"app\"\nfrom = {{ domain = \"d\", snapshot = \"s\" }}\ndumps = {{ dir = {:?}, pattern = \"app-*.tar\", time = \"mtime\" }}\n",
            dir.path().display().to_string()
        );
        let spec = crate::spec::parse(&text, Path::new("lab.toml")).unwrap();
        let scan = scan_dumps(spec.vms[0].dumps.as_ref().unwrap(), "app").unwrap();
        let files: Vec<&str> = scan.points.iter().map(|p| p.file.as_str()).collect();
        assert_eq!(files, ["app-b.tar", "app-a.tar"]);
        assert_eq!(scan.points[1].time, utc("2026-11-26T12:00:00Z"));
        assert_eq!(scan.others, 1);
    }

    fn write(path: &Path, content: &[u8]) {
        std::fs::write(path, content).unwrap();
    }

    const HELLO_SHA: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

    #[test]
    fn a_dump_matching_its_manifest_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("erp-20261126-1300.sql");
        write(&dump, b"hello\n");
        let manifest = dir.path().join("erp-20261126-1300.sql.manifest.json");
        write(
            &manifest,
            format!(r#"{{"schema":1,"file":"erp-20261126-1300.sql","sha256":"{}","bytes":6,"rows":{{"invoices":7}}}}"#, HELLO_SHA.to_uppercase()).as_bytes(),
        );
        let (value, expected) = read_manifest(&manifest, "erp-20261126-1300.sql").unwrap();
        assert_eq!(value["rows"]["invoices"], 7);
        assert_eq!(expected.sha256, HELLO_SHA);
        let sums = dir.path().join("SHA256SUMS");
        write(
            &sums,
            format!(
                "{}  other.sql\n{HELLO_SHA} *erp-20261126-1300.sql\n",
                "0".repeat(64)
            )
            .as_bytes(),
        );
        let from_sums = read_sha256sums(&sums, "erp-20261126-1300.sql").unwrap();
        let digest = verify_dump(&dump, &[expected, from_sums]).unwrap();
        assert_eq!(
            digest,
            FileDigest {
                sha256: HELLO_SHA.into(),
                bytes: 6
            }
        );
    }

    #[test]
    fn a_corrupt_dump_names_the_file_and_both_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("erp.sql");
        write(&dump, b"hellO\n");
        let expected = Expected {
            sha256: HELLO_SHA.into(),
            bytes: Some(6),
            source: dir.path().join("erp.sql.manifest.json"),
        };
        let err = verify_dump(&dump, std::slice::from_ref(&expected))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("dump {} is corrupt: ", dump.display())),
            "{err}"
        );
        assert!(
            err.contains(&format!("erp.sql.manifest.json says sha256 {HELLO_SHA}")),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "the file has {}",
                sha256_file(&dump).unwrap().sha256
            )),
            "{err}"
        );
        write(&dump, b"hel");
        let err = verify_dump(&dump, &[expected]).unwrap_err().to_string();
        assert!(err.contains("is corrupt or truncated"), "{err}");
        assert!(err.contains("says 6 bytes, the file has 3"), "{err}");
    }

    #[test]
    fn bad_manifests_and_checksum_files_are_clear() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("m.json");
        let check = |content: &str, why: &str| {
            write(&m, content.as_bytes());
            let err = format!("{:#}", read_manifest(&m, "erp.sql").unwrap_err());
            assert!(err.contains(why), "{content}: {err}");
        };
        check("{", "is not valid json");
        check("[]", "is not a json object");
        check(r#"{"bytes":3}"#, "has no sha256");
        check(r#"{"sha256":"abc"}"#, "is not 64 hex digits");
        check(
            &format!(r#"{{"sha256":"{HELLO_SHA}","file":"other.sql"}}"#),
            "describes \"other.sql\", not dump erp.sql",
        );
        check(
            &format!(r#"{{"sha256":"{HELLO_SHA}","bytes":-1}}"#),
            "is not a size",
        );
        let err = format!(
            "{:#}",
            read_manifest(&dir.path().join("missing.json"), "erp.sql").unwrap_err()
        );
        assert!(err.starts_with("reading manifest"), "{err}");
        let sums = dir.path().join("SHA256SUMS");
        write(&sums, b"garbage\n");
        let err = read_sha256sums(&sums, "erp.sql").unwrap_err().to_string();
        assert!(err.contains("has no line for dump erp.sql"), "{err}");
    }

    #[test]
    fn a_pipe_or_directory_named_like_a_dump_is_refused_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("erp-20261126-1300.sql");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = format!("{:#}", verify_dump(&fifo, &[]).unwrap_err());
        assert!(err.contains("is a named pipe, not a dump file"), "{err}");
        let sub = dir.path().join("erp-20261126-1400.sql");
        std::fs::create_dir(&sub).unwrap();
        let err = format!("{:#}", verify_dump(&sub, &[]).unwrap_err());
        assert!(err.contains("is a directory, not a dump file"), "{err}");
        let dangling = dir.path().join("erp-20261126-1500.sql");
        std::os::unix::fs::symlink(dir.path().join("gone.sql"), &dangling).unwrap();
        let err = format!("{:#}", verify_dump(&dangling, &[]).unwrap_err());
        assert!(
            err.starts_with(&format!("verifying dump {}: opening", dangling.display())),
            "{err}"
        );
    }

    #[test]
    fn an_unreadable_dump_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("erp-20261126-1300.sql");
        let err = format!("{:#}", verify_dump(&missing, &[]).unwrap_err());
        assert!(
            err.starts_with(&format!("verifying dump {}: opening", missing.display())),
            "{err}"
        );
    }

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
