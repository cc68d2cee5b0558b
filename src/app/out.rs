//! Command output on stdout that survives its reader going away: with `reclab status | head`,
//! once `head` has exited, `println!` would panic on the closed pipe.
//!
//! Every command prints through [`Out`]. When stdout's reader has gone, `Out` drops the rest
//! of the output and the command carries on to its end, so its exit code is still its result:
//! `reclab status | head` exits 0, and `reclab run erp.toml | head` still writes the report,
//! sends the notifications and exits 1 when a check failed. Other broken pipes (a libvirt
//! stream, a socket) stay errors.

use std::io::{self, Write};

/// A writer (stdout) that turns into a sink once its reader has gone.
pub struct Out<W: Write = io::Stdout> {
    inner: W,
    /// Set by the first write that met a closed pipe.
    closed: bool,
}

impl Out {
    /// stdout, line-buffered as `println!` is. It takes stdout's lock per write only, so
    /// library code that prints (`reclab serve`'s banner) cannot deadlock on it.
    pub fn stdout() -> Self {
        Out::new(io::stdout())
    }
}

impl<W: Write> Out<W> {
    pub fn new(inner: W) -> Self {
        Out {
            inner,
            closed: false,
        }
    }

    /// Whether the reader has gone (and output is being dropped).
    pub fn closed(&self) -> bool {
        self.closed
    }

    fn sink<T>(&mut self, result: io::Result<T>, dropped: T) -> io::Result<T> {
        match result {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(dropped)
            }
            other => other,
        }
    }
}

impl<W: Write> Write for Out<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        let result = self.inner.write(buf);
        self.sink(result, buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let result = self.inner.flush();
        self.sink(result, ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes `room` bytes, then fails every write with `kind`.
    struct Pipe {
        taken: Vec<u8>,
        room: usize,
        kind: io::ErrorKind,
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.taken.len() >= self.room {
                return Err(self.kind.into());
            }
            let n = buf.len().min(self.room - self.taken.len());
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn output_after_the_reader_has_gone_is_dropped_without_an_error() {
        let mut out = Out::new(Pipe {
            taken: Vec::new(),
            room: 8,
            kind: io::ErrorKind::BrokenPipe,
        });
        writeln!(out, "lab erp run 5f3a9c21 running").unwrap();
        writeln!(out, "  db running").unwrap();
        out.flush().unwrap();
        assert!(out.closed());
        assert_eq!(out.inner.taken, b"lab erp ");
    }

    #[test]
    fn other_write_errors_stay_errors() {
        let mut out = Out::new(Pipe {
            taken: Vec::new(),
            room: 0,
            kind: io::ErrorKind::StorageFull,
        });
        let e = writeln!(out, "no labs").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        assert!(!out.closed());
    }
}
