//! Runs as the API shows them: the run, its page, its detail with artifacts and notifications,
//! its log, and the answers of the run actions.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::enums;
use crate::history::{
    Artifact, ErrorCode, LogLevel, LogLine, Notification, NotificationState, Progress,
    RunErrorInfo, RunRecord, RunState, Trigger, format_time,
};

/// A run. Its params are shown with credentials masked (`redact.rs`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Run)]
pub struct RunView {
    /// Run id.
    pub id: i64,
    /// Job name.
    pub job: String,
    /// State.
    pub state: RunState,
    /// Why it started.
    #[schema(schema_with = enums::trigger)]
    pub trigger: Trigger,
    /// Parameters, credentials masked.
    #[schema(value_type = Object)]
    pub params: Value,
    /// Attempt number, 1 for the first.
    pub attempt: u32,
    /// When it was recorded (RFC 3339, UTC, milliseconds).
    #[schema(format = DateTime)]
    pub queued_at: String,
    /// When a worker started it.
    #[schema(format = DateTime)]
    pub started_at: Option<String>,
    /// When it was closed.
    #[schema(format = DateTime)]
    pub finished_at: Option<String>,
    /// The error of a run that did not succeed.
    pub error: Option<RunErrorView>,
    /// The value `run` returned.
    pub summary: Option<Value>,
    /// Last reported progress.
    pub progress: Option<ProgressView>,
    /// Whether a cancel was requested.
    pub cancel_requested: bool,
    /// Not started before this time.
    #[schema(format = DateTime)]
    pub not_before: Option<String>,
    /// The run this one retries.
    pub retry_of: Option<i64>,
    /// The run that retries this one.
    pub retried_by: Option<i64>,
    /// The process supervising the open run (`host:pid:start`); null for a queued run no
    /// process has claimed yet.
    pub owner: Option<String>,
    /// SHA-256 (hex) of the script version the run executed, once it started;
    /// `GET /api/v1/jobs/{name}/versions/{hash}` has its source.
    pub script_version: Option<String>,
}

impl From<&RunRecord> for RunView {
    fn from(r: &RunRecord) -> RunView {
        RunView {
            id: r.id,
            job: r.job.clone(),
            state: r.state,
            trigger: r.trigger.clone(),
            params: crate::redact::mask_params(&r.params),
            attempt: r.attempt,
            queued_at: format_time(&r.queued_at),
            started_at: r.started_at.as_ref().map(format_time),
            finished_at: r.finished_at.as_ref().map(format_time),
            error: r.error.as_ref().map(RunErrorView::from),
            summary: r.summary.clone(),
            progress: r.progress.map(ProgressView::from),
            cancel_requested: r.cancel_requested,
            not_before: r.not_before.as_ref().map(format_time),
            retry_of: r.retry_of,
            retried_by: r.retried_by,
            owner: r.owner.clone(),
            script_version: r.script_version.clone(),
        }
    }
}

/// Views of a list of runs.
pub fn run_views(runs: &[RunRecord]) -> Vec<RunView> {
    runs.iter().map(RunView::from).collect()
}

/// The error of a closed run.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = RunError)]
pub struct RunErrorView {
    /// Stable code.
    #[schema(schema_with = enums::error_code)]
    pub code: ErrorCode,
    /// One line naming the file and line, or the input and what was expected.
    pub message: String,
    /// Lua traceback, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub traceback: Option<String>,
}

impl From<&RunErrorInfo> for RunErrorView {
    fn from(e: &RunErrorInfo) -> RunErrorView {
        RunErrorView {
            code: e.code.clone(),
            message: e.message.clone(),
            traceback: e.traceback.clone(),
        }
    }
}

/// Progress as reported by `ctx.progress`.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[schema(as = Progress)]
pub struct ProgressView {
    /// Units done.
    pub done: u64,
    /// Units in all, when known.
    pub total: Option<u64>,
}

impl From<Progress> for ProgressView {
    fn from(p: Progress) -> ProgressView {
        ProgressView {
            done: p.done,
            total: p.total,
        }
    }
}

/// `GET /api/v1/runs`: a page of runs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunPage {
    /// The runs.
    pub items: Vec<RunView>,
    /// Page number, from 1.
    pub page: u64,
    /// Runs per page.
    pub page_size: u64,
    /// Runs matching the filter in all.
    pub total: u64,
}

/// `GET /api/v1/runs/{id}`: the run with its artifacts and notifications.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunDetail {
    /// The run.
    #[serde(flatten)]
    pub run: RunView,
    /// Its artifacts.
    pub artifacts: Vec<ArtifactView>,
    /// What was sent about the run's end.
    pub notifications: Vec<NotificationView>,
}

/// An artifact of a run (`GET /api/v1/runs/{id}/artifacts/{name}` downloads it).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Artifact)]
pub struct ArtifactView {
    /// Name, unique in the run.
    pub name: String,
    /// Store URL (without secrets) or store name.
    pub store: String,
    /// Path inside the store.
    pub path: String,
    /// Size in bytes, when known.
    pub size: Option<u64>,
    /// Hex SHA-256 of the content, when known.
    pub sha256: Option<String>,
    /// When it was recorded.
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<&Artifact> for ArtifactView {
    fn from(a: &Artifact) -> ArtifactView {
        ArtifactView {
            name: a.name.clone(),
            store: a.store.clone(),
            path: a.path.clone(),
            size: a.size,
            sha256: a.sha256.clone(),
            created_at: format_time(&a.created_at),
        }
    }
}

/// A notification of a run's end and where its delivery stands.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Notification)]
pub struct NotificationView {
    /// Notification id.
    pub id: i64,
    /// Run id.
    pub run_id: i64,
    /// Job name.
    pub job: String,
    /// What ended the run: `failure`, `success`, `recovered` or `skipped`.
    pub event: String,
    /// How it is sent: `webhook`, `slack` or `email`.
    pub channel: String,
    /// Where it goes, without secrets: `scheme://host/…` or the e-mail addresses.
    pub target: String,
    /// Pending, sent or failed.
    pub state: NotificationState,
    /// How many deliveries were tried.
    pub attempts: u32,
    /// Why the last delivery failed.
    pub reason: Option<String>,
    /// When it was recorded.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When the next attempt is due (pending only).
    #[schema(format = DateTime)]
    pub next_at: Option<String>,
    /// When the last attempt was made.
    #[schema(format = DateTime)]
    pub last_at: Option<String>,
}

impl From<&Notification> for NotificationView {
    fn from(n: &Notification) -> NotificationView {
        NotificationView {
            id: n.id,
            run_id: n.run_id,
            job: n.job.clone(),
            event: n.event.clone(),
            channel: n.channel.clone(),
            target: n.target.clone(),
            state: n.state,
            attempts: n.attempts,
            reason: n.reason.clone(),
            created_at: format_time(&n.created_at),
            next_at: n.next_at.as_ref().map(format_time),
            last_at: n.last_at.as_ref().map(format_time),
        }
    }
}

/// A log line of a run.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LogLine)]
pub struct LogLineView {
    /// Sequence number, increasing; use it as `after` to tail.
    pub seq: i64,
    /// When it was written.
    #[schema(format = DateTime)]
    pub at: String,
    /// Severity.
    pub level: LogLevel,
    /// The text.
    pub message: String,
}

impl From<&LogLine> for LogLineView {
    fn from(l: &LogLine) -> LogLineView {
        LogLineView {
            seq: l.seq,
            at: format_time(&l.at),
            level: l.level,
            message: l.message.clone(),
        }
    }
}

/// `GET /api/v1/runs/{id}/logs`: lines after `after`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogPage {
    /// The lines.
    pub items: Vec<LogLineView>,
    /// The `after` of the next call: the last line's sequence number.
    pub next_after: i64,
    /// The run's state now.
    pub state: RunState,
}

/// `POST /api/v1/runs/{id}/cancel` (202).
#[derive(Debug, Serialize, ToSchema)]
pub struct CancelAccepted {
    /// The run.
    pub id: i64,
    /// Its state now (`cancelled` when it was queued).
    pub state: RunState,
    /// Always true.
    pub cancel_requested: bool,
}

/// `POST /api/v1/runs/{id}/rerun` (201).
#[derive(Debug, Serialize, ToSchema)]
pub struct RerunCreated {
    /// The new run.
    pub id: i64,
    /// Its state.
    pub state: RunState,
    /// The run it repeats.
    pub of: i64,
}

/// `DELETE /api/v1/runs/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunDeleted {
    /// The run.
    pub id: i64,
    /// Always true.
    pub deleted: bool,
}

/// `POST /api/v1/runs/delete`: what became of each id asked for.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeleteResults {
    /// Runs deleted.
    pub deleted: usize,
    /// Ids not deleted.
    pub failed: usize,
    /// One per id, in the order asked.
    pub results: Vec<DeleteResult>,
}

/// What became of one id of `POST /api/v1/runs/delete`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeleteResult {
    /// The id as given (a run id, or whatever was sent in its place).
    pub id: Value,
    /// Whether the run was deleted.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
}
