//! The one poll loop: ask a probe until it has an answer, the deadline passes, or the wait is
//! cancelled. Every "retry until ready" in reclab goes through [`until`].

use anyhow::Result;
use std::time::{Duration, Instant};

use crate::base::cancel::Cancel;

/// How long to sleep between probes: a fixed interval, or one that doubles up to a ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Poll {
    first: Duration,
    max: Duration,
}

impl Poll {
    /// The same interval every time.
    pub fn every(interval: Duration) -> Self {
        Poll {
            first: interval,
            max: interval,
        }
    }

    /// `first`, then twice as long each time, at most `max`.
    pub fn backoff(first: Duration, max: Duration) -> Self {
        Poll {
            first,
            max: max.max(first),
        }
    }
}

/// Longest uninterrupted sleep: how soon a cancel or a signal is noticed while sleeping.
const CANCEL_GRANULARITY: Duration = Duration::from_millis(20);

/// Call `probe` until it returns `Some`, then return that value.
///
/// - The probe runs at once, then after each [`Poll`] interval, the last sleep cut short to
///   end at `deadline`; it always runs at least once, and once more at the deadline.
/// - `Ok(None)`: the deadline passed without an answer (the caller words the timeout).
/// - An error of the probe ends the wait and is returned as is.
/// - `cancel` is checked before every probe and while sleeping: a cancelled wait returns its
///   error ([`Cancelled`](crate::base::cancel::Cancelled) or
///   [`Interrupted`](crate::base::cancel::Interrupted)) within a few milliseconds.
pub fn until<T>(
    deadline: Instant,
    poll: Poll,
    cancel: &Cancel,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    let mut delay = poll.first;
    loop {
        cancel.check()?;
        if let Some(v) = probe()? {
            return Ok(Some(v));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        sleep(delay.min(deadline - now), cancel)?;
        delay = (delay * 2).min(poll.max);
    }
}

/// Sleep for `d`, in slices, returning early with the cancel's error.
pub fn sleep(d: Duration, cancel: &Cancel) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        cancel.check()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(CANCEL_GRANULARITY));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::cancel::{Cancelled, Interrupted};

    const LONG: Duration = Duration::from_secs(600);

    #[test]
    fn returns_the_probes_value_once_it_has_one() {
        let mut calls = 0;
        let got = until(
            Instant::now() + LONG,
            Poll::every(Duration::from_millis(1)),
            &Cancel::new(),
            || {
                calls += 1;
                Ok((calls == 3).then_some("ready"))
            },
        )
        .unwrap();
        assert_eq!((got, calls), (Some("ready"), 3));
    }

    #[test]
    fn gives_up_at_the_deadline_after_probing_at_least_once() {
        let mut calls = 0;
        let past = Instant::now();
        let got: Option<()> = until(past, Poll::every(LONG), &Cancel::new(), || {
            calls += 1;
            Ok(None)
        })
        .unwrap();
        assert_eq!((got, calls), (None, 1));

        // A short deadline with a long interval: the sleep is cut to the deadline, then the
        // probe runs once more (not after the ten minutes of the interval).
        let mut calls = 0;
        let got: Option<()> = until(
            Instant::now() + Duration::from_millis(30),
            Poll::every(LONG),
            &Cancel::new(),
            || {
                calls += 1;
                Ok(None)
            },
        )
        .unwrap();
        assert_eq!((got, calls), (None, 2));
    }

    #[test]
    fn propagates_the_probes_error_without_retrying() {
        let mut calls = 0;
        let err = until::<()>(
            Instant::now() + LONG,
            Poll::every(Duration::from_millis(1)),
            &Cancel::new(),
            || {
                calls += 1;
                anyhow::bail!("domain gone")
            },
        )
        .unwrap_err();
        assert_eq!((format!("{err:#}"), calls), ("domain gone".into(), 1));
    }

    #[test]
    fn stops_at_once_when_cancelled_from_another_thread() {
        let cancel = Cancel::new();
        let mut calls = 0;
        let err = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                cancel.cancel();
            });
            // Ten minutes of deadline and interval: only the cancel can end this wait.
            until::<()>(Instant::now() + LONG, Poll::every(LONG), &cancel, || {
                calls += 1;
                Ok(None)
            })
            .unwrap_err()
        });
        assert!(err.downcast_ref::<Cancelled>().is_some(), "{err:#}");
        assert_eq!(calls, 1, "cancelled while sleeping, not probed again");
    }

    #[test]
    fn a_cancelled_token_probes_nothing_and_a_signal_is_reported_as_such() {
        let cancel = Cancel::new();
        cancel.interrupt(libc::SIGINT);
        let mut calls = 0;
        let err = until::<()>(Instant::now() + LONG, Poll::every(LONG), &cancel, || {
            calls += 1;
            Ok(None)
        })
        .unwrap_err();
        assert_eq!(
            Interrupted::find(&err).map(|i| i.signal),
            Some(libc::SIGINT)
        );
        assert_eq!(calls, 0);
    }

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let mut seen = Vec::new();
        let mut last = Instant::now();
        until::<()>(
            Instant::now() + LONG,
            Poll::backoff(Duration::from_millis(5), Duration::from_millis(20)),
            &Cancel::new(),
            || {
                seen.push(last.elapsed());
                last = Instant::now();
                Ok((seen.len() == 5).then_some(()))
            },
        )
        .unwrap();
        // Gaps 5, 10, 20, 20 ms: each sleep lasts at least its interval.
        let gaps = &seen[1..];
        for (gap, want) in gaps.iter().zip([5, 10, 20, 20]) {
            assert!(*gap >= Duration::from_millis(want), "{gaps:?}");
        }
    }
}
