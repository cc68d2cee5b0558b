//! Moments in time as operators write them for `--at`.
//!
//! | form | meaning |
//! |---|---|
//! | `latest` | the newest point of every source (no common moment) |
//! | `now` | the current moment |
//! | `2026-11-26T13:00:00Z`, `2026-11-26T14:00:00+01:00` | RFC 3339: an exact instant |
//! | `2026-11-26T14:00[Europe/Berlin]` | an instant with its IANA time zone |
//! | `"2h ago"`, `"90 minutes ago"`, `"1 day 2 hours ago"`, `-2h` | before now, in jiff's friendly span format; days follow the calendar of the time zone (a day across a DST change is 23 or 25 hours) |
//! | `"yesterday 18:00"`, `"today 06:30"`, `"13:00"` | a wall-clock time on that day in the time zone |
//! | `"2026-11-26 13:00"`, `2026-11-26T13:00`, `2026-11-26` | a wall-clock time (midnight for a bare date) in the time zone |
//!
//! The time zone is the one of the `now` handed in: the system's (`TZ`, else `/etc/localtime`)
//! unless `--tz` names another (see [`now_in`]). Wall-clock times that a daylight saving change
//! makes ambiguous are resolved with jiff's *compatible* disambiguation, as RFC 5545 and
//! Temporal do: a time that happens twice (clocks go back) is the first, earlier one; a time
//! that does not exist (clocks jump forward) is moved forward by the length of the gap, so
//! `02:30` on the spring-forward night in Europe/Berlin becomes `03:30` CEST. Either way the
//! result carries a [`When::note`] saying what was chosen.
//!
//! Nothing here reads the clock: `now` is always an argument, so tests pin it.

use std::fmt;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, ZonedDateTime};

/// A parsed `--at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct When {
    /// The text as given.
    pub text: String,
    pub at: At,
    /// Set when a wall-clock time was ambiguous or skipped by a DST change.
    pub note: Option<String>,
}

/// What a `--at` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// The newest point of each source.
    Latest,
    /// The newest point at or before this instant.
    Moment(Timestamp),
}

/// Why a `--at` could not be read. The message is lowercase and lists the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhenError {
    message: String,
}

impl fmt::Display for WhenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WhenError {}

const FORMS: &str = "write latest, now, an RFC 3339 time like 2026-11-26T13:00:00Z, \"2h ago\", \"yesterday 18:00\", \"today 06:30\" or \"2026-11-26 13:00\" (local time)";

fn fail(text: &str, why: impl fmt::Display) -> WhenError {
    WhenError {
        message: format!("cannot use {text:?} as a moment in time: {why}; {FORMS}"),
    }
}

/// The current moment in the time zone `tz` (an IANA name), or in the system time zone.
pub fn now_in(tz: Option<&str>) -> Result<ZonedDateTime, WhenError> {
    let zone = time_zone(tz)?;
    Ok(Timestamp::now().to_zoned_datetime(zone))
}

/// The IANA time zone `name`, or the system's when `None`.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, WhenError> {
    match name {
        None => Ok(TimeZone::system()),
        Some(name) => TimeZone::get(name).map_err(|_| WhenError {
            message: format!(
                "unknown time zone {name:?}; use an IANA name like \"Europe/Berlin\" or \"UTC\" (the list is in /usr/share/zoneinfo)"
            ),
        }),
    }
}

/// Reads a `--at` relative to `now`, in `now`'s time zone.
pub fn parse_when(text: &str, now: &ZonedDateTime) -> Result<When, WhenError> {
    let trimmed = text.trim();
    let when = |at, note| When {
        text: text.to_string(),
        at,
        note,
    };
    if trimmed.is_empty() {
        return Err(fail(text, "it is empty"));
    }
    let lower = trimmed.to_ascii_lowercase();
    match lower.as_str() {
        "latest" => return Ok(when(At::Latest, None)),
        "now" => return Ok(when(At::Moment(now.timestamp()), None)),
        _ => {}
    }
    // An instant with an offset (RFC 3339) or with a bracketed time zone.
    if let Ok(instant) = trimmed.parse::<Timestamp>() {
        return Ok(when(At::Moment(instant), None));
    }
    if trimmed.contains('[')
        && let Ok(zoned) = trimmed.parse::<ZonedDateTime>()
    {
        return Ok(when(At::Moment(zoned.timestamp()), None));
    }
    // A day word and a wall-clock time.
    for (word, back) in [("today", 0), ("yesterday", 1)] {
        if let Some(rest) = lower.strip_prefix(word) {
            let rest = rest.trim();
            let time = if rest.is_empty() {
                Time::midnight()
            } else {
                parse_clock(rest).ok_or_else(|| {
                    fail(text, format!("{rest:?} is not a time of day like 18:00"))
                })?
            };
            let mut date = now.date();
            for _ in 0..back {
                date = date.yesterday().map_err(|e| fail(text, e))?;
            }
            let (instant, note) = local(date.to_datetime(time), now.time_zone(), text)?;
            return Ok(when(At::Moment(instant), note));
        }
    }
    if let Some(time) = parse_clock(trimmed) {
        let (instant, note) = local(now.date().to_datetime(time), now.time_zone(), text)?;
        return Ok(when(At::Moment(instant), note));
    }
    // A civil date and time, or a date alone.
    if let Ok(civil) = trimmed.parse::<DateTime>() {
        let (instant, note) = local(civil, now.time_zone(), text)?;
        return Ok(when(At::Moment(instant), note));
    }
    if let Ok(date) = trimmed.parse::<Date>() {
        let (instant, note) = local(date.to_datetime(Time::midnight()), now.time_zone(), text)?;
        return Ok(when(At::Moment(instant), note));
    }
    // A span before now: "2h ago", "90 minutes ago", "-2h".
    if trimmed
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == '-')
        && let Ok(span) = trimmed.parse::<Span>()
    {
        if !span.is_negative() {
            return Err(fail(
                text,
                format!("a span means a time before now; write \"{trimmed} ago\""),
            ));
        }
        let zoned = now.checked_add(span).map_err(|e| fail(text, e))?;
        return Ok(when(At::Moment(zoned.timestamp()), None));
    }
    Err(fail(text, "it is not a time this tool reads"))
}

/// `HH:MM` or `HH:MM:SS`, strictly (so that `2026` is not read as a time).
fn parse_clock(text: &str) -> Option<Time> {
    let parts: Vec<&str> = text.split(':').collect();
    if !(2..=3).contains(&parts.len())
        || parts
            .iter()
            .any(|p| p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let number = |i: usize| parts.get(i).map_or(Some(0), |p| p.parse::<i8>().ok());
    Time::new(number(0)?, number(1)?, number(2)?, 0).ok()
}

/// A wall-clock time in `tz` as an instant, with a note when DST made it ambiguous.
fn local(
    civil: DateTime,
    tz: &TimeZone,
    text: &str,
) -> Result<(Timestamp, Option<String>), WhenError> {
    let ambiguous = tz.to_ambiguous_zoned_datetime(civil);
    let gap = matches!(ambiguous.offset(), jiff::tz::AmbiguousOffset::Gap { .. });
    let fold = matches!(ambiguous.offset(), jiff::tz::AmbiguousOffset::Fold { .. });
    let zoned = ambiguous.compatible().map_err(|e| fail(text, e))?;
    let zone = tz.iana_name().unwrap_or("the local time zone");
    let shown = zoned.strftime("%Y-%m-%d %H:%M:%S %Z (%:z)").to_string();
    let note = if gap {
        Some(format!(
            "{civil} does not exist in {zone} (the clocks jump forward); using {shown}, as far after the jump as the time was after it"
        ))
    } else if fold {
        Some(format!(
            "{civil} happens twice in {zone} (the clocks go back); using the first one, {shown}"
        ))
    } else {
        None
    };
    Ok((zoned.timestamp(), note))
}

/// An instant for people: `2026-11-26 14:00:00 CET` in `tz`.
pub fn show(instant: Timestamp, tz: &TimeZone) -> String {
    instant
        .to_zoned_datetime(tz.clone())
        .strftime("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// An instant for people in reports: RFC 3339 in UTC to the second, like
/// `2026-11-26T13:00:00Z` (the JSON keeps the nanoseconds).
pub fn for_people_utc(instant: Timestamp) -> String {
    instant
        .round(jiff::Unit::Second)
        .unwrap_or(instant)
        .to_string()
}

/// An instant for machines: RFC 3339 in UTC, like `2026-11-26T13:00:00Z`.
pub fn rfc3339(instant: Timestamp) -> String {
    instant.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Thursday 2026-11-26 15:00 in Berlin (14:00 UTC).
    fn berlin_now() -> ZonedDateTime {
        "2026-11-26T15:00:00+01:00[Europe/Berlin]".parse().unwrap()
    }

    fn at(text: &str, now: &ZonedDateTime) -> Timestamp {
        match parse_when(text, now) {
            Ok(When {
                at: At::Moment(t), ..
            }) => t,
            other => panic!("{text:?} should be a moment, got {other:?}"),
        }
    }

    fn utc(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn latest_and_now() {
        let now = berlin_now();
        assert_eq!(parse_when("latest", &now).unwrap().at, At::Latest);
        assert_eq!(parse_when(" Latest ", &now).unwrap().at, At::Latest);
        assert_eq!(at("now", &now), now.timestamp());
    }

    #[test]
    fn rfc3339_with_any_offset_is_the_same_instant_in_every_zone() {
        let now = berlin_now();
        let tokyo = now.with_time_zone(TimeZone::get("Asia/Tokyo").unwrap());
        for text in [
            "2026-11-26T13:00:00Z",
            "2026-11-26T14:00:00+01:00",
            "2026-11-26T08:00:00-05:00",
            "2026-11-26T14:00:00+01:00[Europe/Berlin]",
        ] {
            assert_eq!(at(text, &now), utc("2026-11-26T13:00:00Z"), "{text}");
            assert_eq!(at(text, &tokyo), utc("2026-11-26T13:00:00Z"), "{text}");
        }
    }

    #[test]
    fn spans_ago_count_back_from_now() {
        let now = berlin_now();
        assert_eq!(at("2h ago", &now), utc("2026-11-26T12:00:00Z"));
        assert_eq!(at("90 minutes ago", &now), utc("2026-11-26T12:30:00Z"));
        assert_eq!(
            at("1 hour 30 minutes ago", &now),
            utc("2026-11-26T12:30:00Z")
        );
        assert_eq!(at("-2h", &now), utc("2026-11-26T12:00:00Z"));
        let err = parse_when("2h", &now).unwrap_err().to_string();
        assert!(err.contains("write \"2h ago\""), "{err}");
    }

    #[test]
    fn a_day_ago_across_the_autumn_dst_change_is_25_hours() {
        // 2026-10-25: Europe/Berlin goes from CEST (+02) back to CET (+01) at 03:00.
        let now: ZonedDateTime = "2026-10-25T12:00:00+01:00[Europe/Berlin]".parse().unwrap();
        let day_ago = at("1 day ago", &now);
        assert_eq!(day_ago, utc("2026-10-24T10:00:00Z"));
        assert_eq!(now.timestamp().duration_since(day_ago).as_hours(), 25);
        assert_eq!(at("24h ago", &now), utc("2026-10-24T11:00:00Z"));
    }

    #[test]
    fn wall_clock_times_use_nows_time_zone() {
        let now = berlin_now();
        assert_eq!(at("yesterday 18:00", &now), utc("2026-11-25T17:00:00Z"));
        assert_eq!(at("today 06:30", &now), utc("2026-11-26T05:30:00Z"));
        assert_eq!(at("Today 6:30", &now), utc("2026-11-26T05:30:00Z"));
        assert_eq!(at("13:00", &now), utc("2026-11-26T12:00:00Z"));
        assert_eq!(at("yesterday", &now), utc("2026-11-24T23:00:00Z"));
        assert_eq!(at("2026-11-26 13:00", &now), utc("2026-11-26T12:00:00Z"));
        assert_eq!(at("2026-11-26T13:00:30", &now), utc("2026-11-26T12:00:30Z"));
        assert_eq!(at("2026-11-26", &now), utc("2026-11-25T23:00:00Z"));
        let in_utc = now.with_time_zone(TimeZone::UTC);
        assert_eq!(at("2026-11-26 13:00", &in_utc), utc("2026-11-26T13:00:00Z"));
        let new_york = now.with_time_zone(TimeZone::get("America/New_York").unwrap());
        assert_eq!(
            at("2026-11-26 13:00", &new_york),
            utc("2026-11-26T18:00:00Z")
        );
    }

    #[test]
    fn yesterday_is_the_previous_calendar_day_even_across_a_month() {
        let now: ZonedDateTime = "2026-12-01T00:30:00+01:00[Europe/Berlin]".parse().unwrap();
        assert_eq!(at("yesterday 18:00", &now), utc("2026-11-30T17:00:00Z"));
    }

    #[test]
    fn a_time_skipped_by_spring_forward_moves_forward_and_says_so() {
        // 2026-03-29: Europe/Berlin jumps from 02:00 CET to 03:00 CEST.
        let now: ZonedDateTime = "2026-03-29T12:00:00+02:00[Europe/Berlin]".parse().unwrap();
        let when = parse_when("today 02:30", &now).unwrap();
        assert_eq!(when.at, At::Moment(utc("2026-03-29T01:30:00Z")));
        let note = when.note.unwrap();
        assert!(note.contains("does not exist in Europe/Berlin"), "{note}");
        assert!(note.contains("03:30:00 CEST"), "{note}");
    }

    #[test]
    fn a_time_repeated_by_fall_back_is_the_first_and_says_so() {
        // 2026-10-25: 02:30 happens first in CEST (00:30Z), then in CET (01:30Z).
        let now: ZonedDateTime = "2026-10-25T12:00:00+01:00[Europe/Berlin]".parse().unwrap();
        let when = parse_when("2026-10-25 02:30", &now).unwrap();
        assert_eq!(when.at, At::Moment(utc("2026-10-25T00:30:00Z")));
        let note = when.note.unwrap();
        assert!(note.contains("happens twice"), "{note}");
        assert!(note.contains("CEST"), "{note}");
        let plain = parse_when("2026-10-25 04:30", &now).unwrap();
        assert_eq!(plain.note, None);
    }

    #[test]
    fn malformed_times_say_what_to_write() {
        let now = berlin_now();
        for (text, why) in [
            ("", "it is empty"),
            ("two hours ago", "it is not a time this tool reads"),
            ("2026-13-01 10:00", "it is not a time this tool reads"),
            ("yesterday 25:00", "is not a time of day"),
            ("today at noon", "is not a time of day"),
            ("2h later", "it is not a time this tool reads"),
        ] {
            let err = parse_when(text, &now).expect_err(text).to_string();
            assert!(err.contains(why), "{text:?}: {err}");
            assert!(err.contains("write latest, now"), "{err}");
        }
    }

    #[test]
    fn unknown_time_zones_are_refused() {
        let err = time_zone(Some("Europe/Berlinn")).unwrap_err().to_string();
        assert!(
            err.starts_with("unknown time zone \"Europe/Berlinn\""),
            "{err}"
        );
        assert!(time_zone(Some("America/New_York")).is_ok());
    }

    #[test]
    fn show_uses_the_zone_abbreviation() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        assert_eq!(
            show(utc("2026-11-26T13:00:00Z"), &berlin),
            "2026-11-26 14:00:00 CET"
        );
        assert_eq!(rfc3339(utc("2026-11-26T13:00:00Z")), "2026-11-26T13:00:00Z");
    }
}
