//! Cancellation: a token that waits and the executor check, which also knows about a received
//! SIGINT/SIGTERM, and the typed error of an interrupted run.
//!
//! - [`Cancel`] is cheap to clone (the clones share one flag). A boot tier gives one token to
//!   all its VMs and cancels it when the first of them fails, so the others stop waiting.
//!   Every token (except [`Cancel::never`]) also reports a signal caught by [`catch_signals`].
//! - [`catch_signals`] installs a SIGINT/SIGTERM handler for as long as its guard lives (`up`,
//!   `run`), and puts the previous disposition back afterwards. The handler only records the
//!   first signal in an atomic: the executor notices it between steps, the waits while they
//!   poll, and the run then unwinds like any failure, with an [`Interrupted`] error that the
//!   binary maps to 130 (SIGINT) or 143 (SIGTERM).
//! - A second Ctrl-C (or SIGTERM) while reclab unwinds is deliberately ignored: stopping half
//!   way would leave exactly the debris the unwind removes. Teardown itself waits only with
//!   [`Cancel::never`], and each of its steps is bounded. Whoever must stop reclab at once
//!   sends SIGKILL; `reclab gc` then removes the orphaned run (its owner PID is dead).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// The first SIGINT/SIGTERM received while a [`catch_signals`] guard was alive (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// The run was stopped by a signal; what was created has been (or is being) removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted by {}", signal_name(*signal))]
pub struct Interrupted {
    /// The signal number (`libc::SIGINT`, `libc::SIGTERM`).
    pub signal: i32,
}

impl Interrupted {
    /// The shell's convention for a process ended by a signal: 128 + the signal number
    /// (130 for SIGINT, 143 for SIGTERM).
    pub fn exit_code(&self) -> u8 {
        (128 + self.signal).clamp(0, 255) as u8
    }

    /// The [`Interrupted`] anywhere in an error's context chain.
    pub fn find(err: &anyhow::Error) -> Option<Interrupted> {
        err.chain()
            .find_map(|e| e.downcast_ref::<Interrupted>())
            .copied()
    }
}

/// A sibling failed first: this wait was called off (its own error is never the one reported).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT (Ctrl-C)".into(),
        libc::SIGTERM => "SIGTERM".into(),
        other => format!("signal {other}"),
    }
}

#[derive(Debug, Default)]
struct Inner {
    cancelled: AtomicBool,
    /// A signal delivered to this token only ([`Cancel::interrupt`]); 0: none.
    signal: AtomicI32,
    /// Whether a process-wide signal counts ([`Cancel::never`] ignores it).
    deaf: bool,
}

/// A cancellation token; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<Inner>);

impl Cancel {
    /// A token that is cancelled by [`Cancel::cancel`] or by a caught signal.
    pub fn new() -> Self {
        Self::default()
    }

    /// A token that nothing cancels, not even a signal: for the waits of an unwind.
    pub fn never() -> Self {
        Cancel(Arc::new(Inner {
            deaf: true,
            ..Inner::default()
        }))
    }

    /// Call off everything waiting on this token (and its clones).
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
    }

    /// Behave as if `signal` had been received, for this token only (what the signal handler
    /// does for every token; used by tests, which must not signal the whole test process).
    pub fn interrupt(&self, signal: i32) {
        let _ = self
            .0
            .signal
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The signal that stopped this token, if any.
    pub fn signal(&self) -> Option<i32> {
        if self.0.deaf {
            return None;
        }
        match self.0.signal.load(Ordering::SeqCst) {
            0 => received(),
            s => Some(s),
        }
    }

    /// Whether waiting on this token should stop.
    pub fn is_cancelled(&self) -> bool {
        self.signal().is_some() || self.0.cancelled.load(Ordering::SeqCst)
    }

    /// `Err(Interrupted)` after a signal, `Err(Cancelled)` once cancelled, else `Ok`.
    pub fn check(&self) -> anyhow::Result<()> {
        if let Some(signal) = self.signal() {
            return Err(Interrupted { signal }.into());
        }
        if self.0.cancelled.load(Ordering::SeqCst) {
            return Err(Cancelled.into());
        }
        Ok(())
    }
}

/// The first SIGINT/SIGTERM caught so far in this process.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// `Err(Interrupted)` once a SIGINT/SIGTERM was caught: the executor's check between steps.
pub fn check_signals() -> anyhow::Result<()> {
    match received() {
        Some(signal) => Err(Interrupted { signal }.into()),
        None => Ok(()),
    }
}

extern "C" fn on_signal(signal: libc::c_int) {
    // Async-signal-safe: one atomic store. The first signal wins; later ones are ignored.
    let _ = RECEIVED.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
}

/// How many guards are alive, and the dispositions they replaced.
static GUARDS: Mutex<(usize, Vec<(i32, libc::sigaction)>)> = Mutex::new((0, Vec::new()));

const SIGNALS: [i32; 2] = [libc::SIGINT, libc::SIGTERM];

/// While the returned guard lives, SIGINT and SIGTERM are recorded instead of ending the
/// process (see the module docs). Guards nest; the last one dropped restores the previous
/// dispositions.
pub fn catch_signals() -> SignalGuard {
    let mut g = GUARDS.lock().unwrap_or_else(|e| e.into_inner());
    if g.0 == 0 {
        for sig in SIGNALS {
            // SAFETY: sigaction(2) with a zeroed, then filled struct; the handler only does an
            // atomic store, which is async-signal-safe. SA_RESTART keeps blocking calls in
            // other code (libvirt's socket reads) from failing with EINTR.
            unsafe {
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                new.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut new.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &new, &mut old) == 0 {
                    g.1.push((sig, old));
                }
            }
        }
    }
    g.0 += 1;
    SignalGuard { _private: () }
}

/// See [`catch_signals`].
#[must_use = "signals are caught only while the guard lives"]
pub struct SignalGuard {
    _private: (),
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        let mut g = GUARDS.lock().unwrap_or_else(|e| e.into_inner());
        g.0 -= 1;
        if g.0 == 0 {
            for (sig, old) in g.1.drain(..) {
                // SAFETY: puts back the disposition sigaction(2) returned for this signal.
                unsafe { libc::sigaction(sig, &old, std::ptr::null_mut()) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_token_passes_and_clones_share_the_cancel() {
        let c = Cancel::new();
        assert!(c.check().is_ok());
        let sibling = c.clone();
        sibling.cancel();
        assert!(c.is_cancelled());
        let err = c.check().unwrap_err();
        assert!(err.downcast_ref::<Cancelled>().is_some(), "{err:#}");
        assert_eq!(Interrupted::find(&err), None);
    }

    #[test]
    fn an_interrupt_wins_over_a_cancel_and_names_the_signal() {
        let c = Cancel::new();
        c.cancel();
        c.interrupt(libc::SIGTERM);
        c.interrupt(libc::SIGINT);
        let err = c.check().unwrap_err().context("waiting for vm db");
        let i = Interrupted::find(&err).expect("typed, through the context");
        assert_eq!((i.signal, i.exit_code()), (libc::SIGTERM, 143));
        assert_eq!(
            format!("{err:#}"),
            "waiting for vm db: interrupted by SIGTERM"
        );
        assert_eq!(
            Interrupted {
                signal: libc::SIGINT
            }
            .exit_code(),
            130
        );
    }

    #[test]
    fn the_never_token_is_deaf_to_everything_but_its_own_cancel() {
        let c = Cancel::never();
        c.interrupt(libc::SIGINT);
        assert!(c.check().is_ok(), "an unwind is not interrupted");
    }

    #[test]
    fn guards_nest_and_restore_the_previous_disposition() {
        let current = |sig| {
            // SAFETY: reads the disposition only (a null new action).
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                libc::sigaction(sig, std::ptr::null(), &mut old);
                old.sa_sigaction
            }
        };
        let before = current(libc::SIGTERM);
        let ours = on_signal as *const () as libc::sighandler_t;
        {
            let _a = catch_signals();
            let b = catch_signals();
            assert_eq!(current(libc::SIGTERM), ours);
            assert_eq!(current(libc::SIGINT), ours);
            drop(b);
            assert_eq!(current(libc::SIGTERM), ours, "the outer guard still holds");
        }
        assert_eq!(current(libc::SIGTERM), before);
    }
}
