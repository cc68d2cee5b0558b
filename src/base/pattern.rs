//! Strftime-like file-name patterns with `*` (dump names such as `erp-%Y%m%d-%H%M.sql`):
//! parsing, matching a whole name and reading the time it carries. Pure.
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

use anyhow::Result;
use jiff::civil::{Date, DateTime};
use jiff::tz::Offset;
use jiff::{Timestamp, ToSpan};

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

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::TimeZone;

    fn pattern(text: &str) -> NamePattern {
        NamePattern::parse(text, true).unwrap_or_else(|e| panic!("{e}"))
    }

    fn utc(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn time_of(pattern_text: &str, name: &str) -> Timestamp {
        match pattern(pattern_text).name_time(name) {
            Ok(Some(NameTime::Instant(t))) => t,
            Ok(Some(NameTime::Civil(civil))) => TimeZone::UTC.to_timestamp(civil).unwrap(),
            Ok(Some(NameTime::WithOffset(civil, offset))) => offset.to_timestamp(civil).unwrap(),
            other => panic!("{name} should match {pattern_text}: {other:?}"),
        }
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
}
