//! Durations as operators write them: `"5m"`, `"8h"`, `"1h30m"`, `"90s"`, `"1 hour 30 minutes"`.
//!
//! Parsing is jiff's friendly format (and ISO 8601 such as `"PT5M"`, which jiff also accepts)
//! into a [`jiff::SignedDuration`], then narrowed to a positive [`std::time::Duration`]. Units go
//! up to hours; days are refused because a "day" is ambiguous around daylight saving changes,
//! so a week is written `"168h"`.

use std::fmt;
use std::time::Duration;

use jiff::SignedDuration;

/// Why a duration could not be used. The message is lowercase and says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    message: String,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DurationError {}

/// Parses a positive duration such as `"5m"`, `"8h"`, `"1h30m"` or `"90s"`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let fail = |why: &str| DurationError {
        message: format!(
            "cannot use {text:?} as a duration: {why}; write it like \"90s\", \"5m\", \"8h\" or \"1h30m\""
        ),
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(fail("it is empty"));
    }
    let signed: SignedDuration = trimmed.parse().map_err(|err: jiff::Error| {
        let detail = err.to_string();
        if detail.contains("day") || detail.contains("week") {
            fail("units above hours are not allowed (a week is \"168h\")")
        } else {
            fail("it is not a duration")
        }
    })?;
    if signed.is_negative() {
        return Err(fail("it is negative"));
    }
    if signed.is_zero() {
        return Err(fail("it is zero"));
    }
    // A positive `SignedDuration` always fits a `Duration`.
    Duration::try_from(signed).map_err(|_| fail("it is out of range"))
}

/// Formats a duration the way [`parse_duration`] reads it, for example `"1h 30m"`.
pub fn format_duration(duration: Duration) -> String {
    match SignedDuration::try_from(duration) {
        Ok(signed) => format!("{signed:#}"),
        Err(_) => format!("{}s", duration.as_secs()),
    }
}

/// A measured duration for people, rounded: tenths of a second under a minute (`4.2s`), whole
/// seconds from there (`7m 14s`). Reports keep the full precision in their JSON.
pub fn for_people(d: Duration) -> String {
    if d < Duration::from_millis(59_950) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        let secs = d.as_secs() + u64::from(d.subsec_millis() >= 500);
        format_duration(Duration::from_secs(secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(text: &str) -> u64 {
        parse_duration(text)
            .unwrap_or_else(|err| panic!("{text:?} should parse: {err}"))
            .as_secs()
    }

    #[test]
    fn measured_durations_are_rounded_for_people() {
        let measured = Duration::new(433, 886_639_076);
        assert_eq!(format_duration(measured), "7m 13s 886ms 639µs 76ns");
        assert_eq!(for_people(measured), "7m 14s");
        assert_eq!(for_people(Duration::new(4, 249_000_000)), "4.2s");
        assert_eq!(for_people(Duration::new(59, 960_000_000)), "1m");
        assert_eq!(
            for_people(Duration::new(3 * 3600 + 59, 600_000_000)),
            "3h 1m"
        );
        assert_eq!(for_people(Duration::ZERO), "0.0s");
    }

    #[test]
    fn friendly_forms_operators_write() {
        assert_eq!(secs("5m"), 5 * 60);
        assert_eq!(secs("8h"), 8 * 3600);
        assert_eq!(secs("1h30m"), 90 * 60);
        assert_eq!(secs("1h 30m"), 90 * 60);
        assert_eq!(secs("90s"), 90);
        assert_eq!(secs("2 hours"), 2 * 3600);
        assert_eq!(secs("168h"), 7 * 24 * 3600);
        assert_eq!(secs("PT5M"), 5 * 60);
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    }

    #[test]
    fn bad_durations_say_what_to_write() {
        for (text, why) in [
            ("", "it is empty"),
            ("   ", "it is empty"),
            ("5", "it is not a duration"),
            ("five minutes", "it is not a duration"),
            ("5x", "it is not a duration"),
            ("0s", "it is zero"),
            ("-5m", "it is negative"),
            ("5m ago", "it is negative"),
            ("2d", "units above hours are not allowed"),
            ("1w", "units above hours are not allowed"),
        ] {
            let err = parse_duration(text).expect_err(text).to_string();
            assert!(
                err.contains(why),
                "{text:?} should fail with {why:?}, got {err:?}"
            );
            assert!(err.contains("write it like"), "{err}");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for text in ["90s", "5m", "8h", "1h30m", "36h"] {
            let duration = parse_duration(text).unwrap();
            assert_eq!(
                parse_duration(&format_duration(duration)).unwrap(),
                duration
            );
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h 30m");
    }
}
