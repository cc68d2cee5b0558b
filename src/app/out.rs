//! Command output on stdout that survives a reader going away: `reclab status | head` ends
//! `reclab` quietly instead of panicking (`println!` panics on a closed pipe).
//!
//! Every command prints through [`Out`]. A write to a closed pipe fails with an error that
//! [`is_closed_stdout`] recognises; the binary treats it as success. Other broken pipes (a
//! libvirt stream, a socket) stay operational errors.

use std::io::{self, Write};

/// Marks the broken pipe of stdout itself, as opposed to one of any other file or socket.
#[derive(Debug)]
struct StdoutClosed;

impl std::fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// stdout for command output, line-buffered as `println!` is. It takes stdout's lock per
/// write only, so library code that prints (`reclab serve`'s banner) cannot deadlock on it.
pub struct Out(io::Stdout);

impl Out {
    pub fn stdout() -> Self {
        Out(io::stdout())
    }
}

fn mark(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        io::Error::new(io::ErrorKind::BrokenPipe, StdoutClosed)
    } else {
        e
    }
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(mark)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(mark)
    }
}

/// Whether `e` is (or was caused by) a write to a stdout whose reader has gone away.
pub fn is_closed_stdout(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<StdoutClosed>())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_closed_stdout_is_recognised_through_context() {
        let closed: anyhow::Result<()> =
            Err(mark(io::Error::from(io::ErrorKind::BrokenPipe))).context("printing the status");
        assert!(is_closed_stdout(&closed.unwrap_err()));
    }

    #[test]
    fn other_broken_pipes_and_errors_are_not_a_closed_stdout() {
        let socket = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(!is_closed_stdout(&socket));
        let full = anyhow::Error::from(mark(io::Error::from(io::ErrorKind::StorageFull)));
        assert!(!is_closed_stdout(&full));
    }
}
