//! Cooperative cancellation of long host operations.
//!
//! A run's timeout or cancel stops its Lua code through the instruction hook, but the hook never
//! fires while a host function (a pipe of millions of rows, a copy, a zip, a hash, an import)
//! runs in Rust. Those loops ask [`requested`] as they go: every [`CHECK_ROWS`] rows and every
//! [`CHECK_BYTES`] bytes, so a stop is noticed within a few milliseconds of work, and they fail
//! with [`Cancelled`].
//!
//! The question goes to the *current scope* of the calling thread, set by whoever runs the
//! operation ([`scope`]): the Lua host installs one for the duration of a run (a run's host
//! functions are called on the thread that runs its VM). Outside any scope nothing is ever
//! cancelled, so the primitives stay usable on their own.

use std::cell::RefCell;
use std::io::{self, BufRead, Read};
use std::sync::Arc;

/// Says whether the current operation must stop (a run's timeout passed or a cancel came).
pub type Interrupt = Arc<dyn Fn() -> bool + Send + Sync>;

/// Row loops ask every this many rows.
pub const CHECK_ROWS: u64 = 64;
/// Byte streams ask every this many bytes.
pub const CHECK_BYTES: u64 = 256 * 1024;

thread_local! {
    static CURRENT: RefCell<Option<Interrupt>> = const { RefCell::new(None) };
}

/// The error of an operation stopped because its run is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stopped: the run is being cancelled or timed out")]
pub struct Cancelled;

impl From<Cancelled> for io::Error {
    fn from(c: Cancelled) -> io::Error {
        // Not `ErrorKind::Interrupted`: read loops retry that kind.
        io::Error::other(c)
    }
}

/// Whether an I/O error is a [`Cancelled`].
pub fn is_cancelled(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Cancelled>())
}

/// Installs `interrupt` as the current thread's scope until the returned guard is dropped
/// (scopes nest: the previous one comes back).
pub fn scope(interrupt: Interrupt) -> Scope {
    let prev = CURRENT.with(|c| c.borrow_mut().replace(interrupt));
    Scope { prev }
}

/// The current scope's interrupt, to hand to work on other threads.
pub fn current() -> Option<Interrupt> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Restores the previous scope when dropped.
#[must_use = "the scope ends when this is dropped"]
pub struct Scope {
    prev: Option<Interrupt>,
}

impl Drop for Scope {
    fn drop(&mut self) {
        let prev = self.prev.take();
        CURRENT.with(|c| *c.borrow_mut() = prev);
    }
}

/// Whether the current operation must stop.
pub fn requested() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(|f| f()))
}

/// `Err(Cancelled)` once the current operation must stop.
pub fn check() -> Result<(), Cancelled> {
    if requested() { Err(Cancelled) } else { Ok(()) }
}

/// Counts units of work and asks [`requested`] every `every` units.
#[derive(Debug, Clone, Copy)]
pub struct Every {
    every: u64,
    since: u64,
}

impl Every {
    /// Asks every `every` units.
    pub fn new(every: u64) -> Every {
        Every {
            every: every.max(1),
            since: 0,
        }
    }

    /// Counts `n` units done; `Err(Cancelled)` when a check is due and says stop.
    pub fn tick(&mut self, n: u64) -> Result<(), Cancelled> {
        self.since += n;
        if self.since >= self.every {
            self.since = 0;
            check()?;
        }
        Ok(())
    }
}

/// A reader that fails with [`Cancelled`] once its thread's scope says stop (checked every
/// [`CHECK_BYTES`]).
pub struct CheckedRead<R> {
    inner: R,
    every: Every,
    /// A check made in `consume` (which cannot fail) said stop: the next call fails.
    stopped: bool,
}

impl<R> CheckedRead<R> {
    /// Wraps a reader.
    pub fn new(inner: R) -> CheckedRead<R> {
        CheckedRead {
            inner,
            every: Every::new(CHECK_BYTES),
            stopped: false,
        }
    }
}

impl<R: Read> Read for CheckedRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stopped {
            return Err(Cancelled.into());
        }
        let n = self.inner.read(buf)?;
        self.every.tick(n as u64)?;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for CheckedRead<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.stopped {
            return Err(Cancelled.into());
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        // A stop is reported by the next call; consume cannot fail.
        if self.every.tick(amt as u64).is_err() {
            self.stopped = true;
        }
        self.inner.consume(amt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn outside_a_scope_nothing_is_cancelled() {
        assert!(!requested());
        let mut every = Every::new(1);
        assert!(every.tick(10).is_ok());
    }

    #[test]
    fn a_reader_stops_within_one_check_interval_of_the_request() {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let _scope = scope(Arc::new(move || s.load(Ordering::SeqCst)));
        let data = vec![7u8; 64 * 1024 * 1024];
        let mut r = CheckedRead::new(&data[..]);
        let mut buf = vec![0u8; 8192];
        let mut read = 0u64;
        let asked_at = 10 * 1024 * 1024;
        let err = loop {
            if read >= asked_at {
                stop.store(true, Ordering::SeqCst);
            }
            match r.read(&mut buf) {
                Ok(0) => panic!("read to the end despite the stop"),
                Ok(n) => read += n as u64,
                Err(e) => break e,
            }
        };
        assert!(is_cancelled(&err), "{err}");
        assert!(
            read - asked_at <= CHECK_BYTES,
            "read {} bytes past the request",
            read - asked_at
        );
    }

    #[test]
    fn scopes_nest_and_end() {
        {
            let _outer = scope(Arc::new(|| false));
            {
                let _inner = scope(Arc::new(|| true));
                assert!(requested());
            }
            assert!(!requested());
        }
        assert!(current().is_none());
    }
}
