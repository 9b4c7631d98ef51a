//! Plain data types of the history, shared by every backend.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Trigger;
pub use crate::error_code::ErrorCode;

/// The state of a run. `queued → running → succeeded | failed | cancelled | timed_out`;
/// `skipped` when an overlap policy refused it; `interrupted` when the process running it died.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Waiting for a worker.
    Queued,
    /// A worker runs it.
    Running,
    /// `run` returned normally.
    Succeeded,
    /// The script failed, did not load, or ran out of memory.
    Failed,
    /// Stopped on request.
    Cancelled,
    /// Stopped at its time limit.
    TimedOut,
    /// Not run because another run of the job was going (overlap = skip).
    Skipped,
    /// The process running it died; re-queued if retries remain.
    Interrupted,
}

impl RunState {
    /// Every state, in lifecycle order.
    pub const ALL: [RunState; 8] = [
        RunState::Queued,
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Cancelled,
        RunState::TimedOut,
        RunState::Skipped,
        RunState::Interrupted,
    ];

    /// The name used in the database, the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::TimedOut => "timed_out",
            RunState::Skipped => "skipped",
            RunState::Interrupted => "interrupted",
        }
    }

    /// Whether the run has ended (nothing will change it any more).
    pub fn is_closed(self) -> bool {
        !matches!(self, RunState::Queued | RunState::Running)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = RunState::ALL.iter().map(|s| s.as_str()).collect();
                format!(
                    "unknown run state {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Normal progress messages and `print`.
    Info,
    /// Something unexpected that did not stop the run.
    Warn,
    /// An error, including the run's final error.
    Error,
}

impl LogLevel {
    /// The name used in the database and output.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "info" => Ok(LogLevel::Info),
            "warn" => Ok(LogLevel::Warn),
            "error" => Ok(LogLevel::Error),
            _ => Err(format!("unknown log level {s:?}")),
        }
    }
}

/// What is needed to record a new run.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// The job name.
    pub job: String,
    /// Why it runs (stored as its JSON, kind plus detail, with the kind in a column of its own).
    pub trigger: Trigger,
    /// The run's parameters after conversion and defaults.
    pub params: Value,
    /// Attempt number, 1 for the first.
    pub attempt: u32,
    /// Do not start before this time (retries, one-off runs at a time).
    pub not_before: Option<DateTime<Utc>>,
    /// The run this one retries.
    pub retry_of: Option<i64>,
    /// The process that will supervise the run (`host:pid:start`), when it is not the daemon's
    /// queue: `ferry run` records its runs as its own so no daemon picks them up.
    pub owner: Option<String>,
}

/// What asking a run to stop did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The run was queued: it is closed as `cancelled` now.
    Closed,
    /// The run is going: the request is recorded for its worker.
    Requested,
    /// The run had ended already.
    AlreadyEnded,
}

/// The error of a closed run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunErrorInfo {
    /// Stable code: load, params, run, timeout, memory, cancelled, crashed, interrupted.
    pub code: ErrorCode,
    /// One-line message naming the file and line, or the input and what was expected.
    pub message: String,
    /// Lua traceback, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunEnd {
    /// The final state.
    pub state: RunState,
    /// The error, for every state but `succeeded` and `skipped`.
    pub error: Option<RunErrorInfo>,
    /// The value `run` returned, as JSON.
    pub summary: Option<Value>,
}

/// Progress of a run as reported by `ctx.progress`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Units done.
    pub done: u64,
    /// Units in all, when known.
    pub total: Option<u64>,
}

/// A run as stored in the history. It is not a wire format: the API and `--json` output show
/// it as `api::wire::RunView`; the CLI's client reads that JSON back into it (the field names
/// are the same).
#[derive(Debug, Clone, Deserialize)]
pub struct RunRecord {
    /// Run id.
    pub id: i64,
    /// Job name.
    pub job: String,
    /// State.
    pub state: RunState,
    /// The trigger (kind plus detail).
    pub trigger: Trigger,
    /// Parameters (shown with credentials masked: see [`crate::redact`]).
    pub params: Value,
    /// Attempt number, 1 for the first.
    pub attempt: u32,
    /// When it was recorded.
    pub queued_at: DateTime<Utc>,
    /// When a worker started it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it was closed.
    pub finished_at: Option<DateTime<Utc>>,
    /// The error of a run that did not succeed.
    pub error: Option<RunErrorInfo>,
    /// The value `run` returned.
    pub summary: Option<Value>,
    /// Last reported progress.
    pub progress: Option<Progress>,
    /// Whether a cancel was requested.
    pub cancel_requested: bool,
    /// Not started before this time.
    pub not_before: Option<DateTime<Utc>>,
    /// The run this one retries.
    pub retry_of: Option<i64>,
    /// The run that retries this one.
    pub retried_by: Option<i64>,
    /// The process supervising the run (`host:pid:start`) while it is open; `None` for a queued
    /// run nobody has claimed yet.
    #[serde(default)]
    pub owner: Option<String>,
    /// The SHA-256 (hex) of the script version the run executed, once it started; its source
    /// is kept in the job's versions.
    #[serde(default)]
    pub script_version: Option<String>,
}

impl RunRecord {
    /// The trigger kind (manual, api, cron, file, retry, rerun, job).
    pub fn trigger_kind(&self) -> &str {
        self.trigger.kind()
    }
}

/// A log line of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    /// Sequence number, increasing; use it as `after` to tail.
    pub seq: i64,
    /// When it was written.
    #[serde(serialize_with = "ser_time")]
    pub at: DateTime<Utc>,
    /// Severity.
    pub level: LogLevel,
    /// The text.
    pub message: String,
}

/// An artifact to record for a run.
#[derive(Debug, Clone)]
pub struct NewArtifact {
    /// Name of the artifact, unique in the run (by default the file name of `path`).
    pub name: String,
    /// The store it lives in, as a URL without secrets, or a configured store name.
    pub store: String,
    /// Path inside the store.
    pub path: String,
    /// Size in bytes, when known.
    pub size: Option<u64>,
    /// Hex SHA-256 of the content, when known.
    pub sha256: Option<String>,
    /// The run's own copy, relative to the artifacts folder, when one was kept.
    pub copy: Option<String>,
}

/// An artifact of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Artifact {
    /// Name, unique in the run.
    pub name: String,
    /// Store URL (without secrets) or store name.
    pub store: String,
    /// Path inside the store.
    pub path: String,
    /// Size in bytes, when known.
    pub size: Option<u64>,
    /// Hex SHA-256 of the content, when known (artifacts recorded since the run kept a copy).
    #[serde(default)]
    pub sha256: Option<String>,
    /// The run's own copy, relative to the artifacts folder; what the download serves. `None`
    /// for artifacts recorded before copies were kept (those are read from their store).
    #[serde(default, skip_serializing)]
    pub copy: Option<String>,
    /// When it was recorded.
    #[serde(serialize_with = "ser_time")]
    pub created_at: DateTime<Utc>,
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this job.
    pub job: Option<String>,
    /// Only these states (any of them); empty means all.
    pub states: Vec<RunState>,
    /// Only runs queued at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only runs queued before this time.
    pub until: Option<DateTime<Utc>>,
    /// At most this many (0 means no limit).
    pub limit: u32,
    /// Skip this many of the newest first.
    pub offset: u64,
}

/// What a live daemon reports about itself at every heartbeat (`ferry hosts`).
#[derive(Debug, Clone)]
pub struct HostBeat {
    /// The daemon, as it owns runs (`host:pid:start`).
    pub owner: String,
    /// Its host name.
    pub host: String,
    /// The address its API listens on.
    pub listen: String,
    /// Runs it is running now.
    pub running: u64,
    /// Runs it may run at once (`[daemon] concurrency`).
    pub capacity: u64,
    /// The host's one-minute load average.
    pub load: f64,
}

/// A daemon as the history last heard of it.
#[derive(Debug, Clone, Serialize)]
pub struct HostRecord {
    /// The daemon, as it owns runs (`host:pid:start`).
    pub owner: String,
    /// Its host name.
    pub host: String,
    /// The address its API listens on.
    pub listen: String,
    /// When it started.
    #[serde(serialize_with = "ser_time")]
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    #[serde(serialize_with = "ser_time")]
    pub seen_at: DateTime<Utc>,
    /// Runs it was running then.
    pub running: u64,
    /// Runs it may run at once.
    pub capacity: u64,
    /// The host's one-minute load average.
    pub load: f64,
}

/// Formats a time the way the history stores and prints it: RFC 3339, UTC, milliseconds.
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(super) fn ser_time<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_time(t))
}

pub(super) fn ser_opt_time<S: serde::Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&format_time(t)),
        None => s.serialize_none(),
    }
}

/// What happened to a file picked up from a watched folder. Stored by its name
/// ([`FileState::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// Moved to `processing/`, its run queued or going.
    Processing,
    /// Its run succeeded; moved to `archive/`.
    Archived,
    /// Its run succeeded; deleted as the job asked.
    Deleted,
    /// Its run failed; moved to `failed/` with an error file.
    Failed,
    /// A state this version does not know, read from a history another version wrote: the
    /// file is neither processed nor re-run from here. Never written.
    Unknown,
}

impl FileState {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Processing => "processing",
            FileState::Archived => "archived",
            FileState::Deleted => "deleted",
            FileState::Failed => "failed",
            FileState::Unknown => "unknown",
        }
    }

    /// The state stored as `s` ([`FileState::Unknown`] for a name this version does not know).
    pub fn parse(s: &str) -> FileState {
        [
            FileState::Processing,
            FileState::Archived,
            FileState::Deleted,
            FileState::Failed,
        ]
        .into_iter()
        .find(|f| f.as_str() == s)
        .unwrap_or(FileState::Unknown)
    }
}

/// A file claimed from a watched folder.
#[derive(Debug, Clone)]
pub struct FileRecord {
    /// Record id.
    pub id: i64,
    /// The job whose folder it was dropped into.
    pub job: String,
    /// The file name as dropped.
    pub name: String,
    /// Where it lies while its run goes (`<watch>/.ferry/processing/NAME`).
    pub processing_path: String,
    /// The run processing it.
    pub run_id: Option<i64>,
    /// Its state.
    pub state: FileState,
    /// Where it went when its run ended (in `archive/` or `failed/`), if it was kept.
    pub final_path: Option<String>,
}

/// Runs of one job in one state, for metrics.
#[derive(Debug, Clone, Serialize)]
pub struct RunStats {
    /// Job name.
    pub job: String,
    /// State.
    pub state: RunState,
    /// How many runs.
    pub count: u64,
    /// Sum of their durations (started to finished) in seconds.
    pub duration_seconds: f64,
}

/// A store prefix a run asked to delete should it not succeed (`ctx.discard_on_failure`): the
/// worker deletes it when the run fails; when the worker itself died, the daemon does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discard {
    /// Record id.
    pub id: i64,
    /// The run.
    pub run_id: i64,
    /// The store, as a config name or a URL without credentials.
    pub store: String,
    /// The prefix inside the store.
    pub prefix: String,
}
