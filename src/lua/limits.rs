//! Time, memory and cancellation limits of a VM.
//!
//! The instruction hook fails every time it fires once the deadline has passed or a cancel was
//! asked for, and the protected-call functions re-raise such a termination (see `sandbox.rs`), so
//! a script cannot catch its way past a limit. The outcome is decided by the guard's sticky state,
//! not by whatever error message reaches the top. The hook never fires inside C functions (a
//! backtracking `string.find`), which is why the worker's parent also kills a worker that
//! overruns its deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use super::{ErrorCode, ScriptError};
use crate::units::format_duration;

/// Why a run was stopped from outside the script's own logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// The wall-clock limit passed.
    Timeout,
    /// A cancel was asked for.
    Cancelled,
    /// The Lua allocator refused an allocation above the memory limit.
    Memory,
}

/// Shared, sticky limit state of one VM. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Guard {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    deadline: Instant,
    timeout: Duration,
    memory: u64,
    cancel: Arc<AtomicBool>,
    /// 0: none, else a `Termination` encoded by `code`.
    state: AtomicU8,
}

/// The message Lua's allocator failure produces.
pub const LUA_MEMORY_MESSAGE: &str = "not enough memory";

impl Guard {
    /// A guard whose deadline is `timeout` from now.
    pub fn new(timeout: Duration, memory: u64, cancel: Arc<AtomicBool>) -> Guard {
        Guard {
            inner: Arc::new(Inner {
                deadline: Instant::now() + timeout,
                timeout,
                memory,
                cancel,
                state: AtomicU8::new(0),
            }),
        }
    }

    /// The memory limit in bytes.
    pub fn memory_limit(&self) -> u64 {
        self.inner.memory
    }

    /// Whether a cancel was asked for (the value of `ctx.cancelled()`).
    pub fn cancel_requested(&self) -> bool {
        self.inner.cancel.load(Ordering::Relaxed)
    }

    fn set(&self, t: Termination) -> Termination {
        let code = match t {
            Termination::Timeout => 1,
            Termination::Cancelled => 2,
            Termination::Memory => 3,
        };
        // The first reason wins: a run that ran out of memory and then timed out is a memory failure.
        match self
            .inner
            .state
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => t,
            Err(existing) => decode(existing).unwrap_or(t),
        }
    }

    /// The termination, if any; checks the deadline and the cancel flag first.
    pub fn termination(&self) -> Option<Termination> {
        if let Some(t) = decode(self.inner.state.load(Ordering::Relaxed)) {
            return Some(t);
        }
        if self.inner.cancel.load(Ordering::Relaxed) {
            return Some(self.set(Termination::Cancelled));
        }
        if Instant::now() >= self.inner.deadline {
            return Some(self.set(Termination::Timeout));
        }
        None
    }

    /// The termination the hook or a host function has already acted on, without looking at
    /// the clock or the cancel flag again.
    pub fn recorded(&self) -> Option<Termination> {
        decode(self.inner.state.load(Ordering::SeqCst))
    }

    /// Records that the memory limit was hit.
    pub fn note_memory(&self) {
        self.set(Termination::Memory);
    }

    /// `Err` once the run must stop; used by the hook and the protected-call wrappers.
    pub fn check(&self) -> mlua::Result<()> {
        match self.termination() {
            Some(t) => Err(mlua::Error::runtime(self.error_for(t).message)),
            None => Ok(()),
        }
    }

    /// The error recorded for a termination.
    pub fn error_for(&self, t: Termination) -> ScriptError {
        let (code, message) = match t {
            Termination::Timeout => (
                ErrorCode::Timeout,
                format!(
                    "run timed out after {}",
                    format_duration(self.inner.timeout)
                ),
            ),
            Termination::Cancelled => (ErrorCode::Cancelled, "run was cancelled".to_string()),
            Termination::Memory => (
                ErrorCode::Memory,
                format!(
                    "run exceeded its memory limit of {} MiB",
                    self.inner.memory / (1024 * 1024)
                ),
            ),
        };
        ScriptError {
            code,
            message,
            traceback: None,
        }
    }
}

fn decode(code: u8) -> Option<Termination> {
    match code {
        1 => Some(Termination::Timeout),
        2 => Some(Termination::Cancelled),
        3 => Some(Termination::Memory),
        _ => None,
    }
}
