//! The messages between a worker process and its parent: JSON lines on the worker's stdin
//! (requests) and stdout (events).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::history::{LogLevel, RunErrorInfo, RunState, Trigger};

/// A request to a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Run a job; the run's history row exists already (state `queued`).
    Run(Box<RunRequest>),
    /// Stop the given run if it is the one running.
    Cancel {
        /// The run to stop.
        run_id: i64,
    },
}

/// Everything a worker needs for one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRequest {
    /// The run's id in the history.
    pub run_id: i64,
    /// Job name.
    pub job: String,
    /// Chunk name for errors (`scripts/x.lua`).
    pub chunk_name: String,
    /// The exact source the job was validated from.
    pub source: String,
    /// Converted params.
    pub params: Value,
    /// Why the run starts (its JSON is what the script sees as `ctx.trigger`).
    pub trigger: Trigger,
    /// Time limit in milliseconds.
    pub timeout_ms: u64,
    /// Lua memory limit in bytes.
    pub memory: u64,
    /// Address-space limit (RLIMIT_AS) the worker applies before the run: memory held outside
    /// Lua's allocator cannot grow past it.
    #[serde(default)]
    pub address_space: Option<u64>,
}

/// An event from a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The worker is up and reads requests: after it started, and again after each run, once
    /// the run's VM is closed.
    Ready {
        /// Its process id.
        pid: u32,
    },
    /// A run moved to `running`.
    Started {
        /// The run.
        run_id: i64,
    },
    /// A log line (already redacted and stored).
    Log {
        /// The run.
        run_id: i64,
        /// The line's sequence number in the history, when it was stored.
        #[serde(default)]
        seq: Option<i64>,
        /// Severity.
        level: LogLevel,
        /// Text.
        message: String,
    },
    /// Progress of a run.
    Progress {
        /// The run.
        run_id: i64,
        /// Units done.
        done: u64,
        /// Units in all, when known.
        total: Option<u64>,
    },
    /// A run was closed in the history.
    Finished {
        /// The run.
        run_id: i64,
        /// Its final state.
        state: RunState,
        /// Its error, if any.
        error: Option<RunErrorInfo>,
    },
}
