//! Jobs as the API shows them: the list, the answers of script writes and job actions, script
//! versions, uploads, jobs made from a template and the overview.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::{RunView, Submitted};
use crate::history::{RunState, ScriptVersion, VersionOrigin, format_time};
use crate::jobs::view::JobView;

/// `GET /api/v1/jobs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    /// Every job, by name.
    pub items: Vec<JobView>,
}

/// `PUT /api/v1/jobs/{name}` (201 created, 200 replaced).
#[derive(Debug, Serialize, ToSchema)]
pub struct ScriptWrite {
    /// The job.
    pub job: String,
    /// SHA-256 of the source.
    pub hash: String,
    /// The job's file is new.
    pub created: bool,
    /// A new version was recorded (false when the source is the job's newest version already).
    pub changed: bool,
}

/// `POST /api/v1/jobs/validate`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Validated {
    /// Always true (an invalid script is a 422 error).
    pub valid: bool,
    /// The name it was checked as.
    pub job: String,
    /// SHA-256 of the source.
    pub hash: String,
}

/// `DELETE /api/v1/jobs/{name}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobDeleted {
    /// The job.
    pub job: String,
    /// Always true.
    pub deleted: bool,
}

/// `POST /api/v1/jobs/{name}/pause` and `/resume`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PauseChange {
    /// The job.
    pub job: String,
    /// Whether it is paused now.
    pub paused: bool,
    /// Whether this call changed it.
    pub changed: bool,
}

/// A version of a job's script.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ScriptVersion)]
pub struct VersionView {
    /// SHA-256 of the source, 64 lowercase hex digits.
    pub hash: String,
    /// When it was recorded.
    #[schema(format = DateTime)]
    pub created_at: String,
    /// Where it came from.
    pub origin: VersionOrigin,
    /// The name of the token that wrote it through the API.
    pub written_by: Option<String>,
    /// The Lua source (only in `GET /api/v1/jobs/{name}/versions/{hash}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub source: Option<String>,
    /// The job (only in `GET /api/v1/jobs/{name}/versions/{hash}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub job: Option<String>,
}

impl From<&ScriptVersion> for VersionView {
    fn from(v: &ScriptVersion) -> VersionView {
        VersionView {
            hash: v.hash.clone(),
            created_at: format_time(&v.created_at),
            origin: v.origin,
            written_by: v.written_by.clone(),
            source: v.source.clone(),
            job: None,
        }
    }
}

/// `GET /api/v1/jobs/{name}/versions`: a page of versions, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionPage {
    /// The job.
    pub job: String,
    /// The versions, without their sources.
    pub items: Vec<VersionView>,
    /// Page number, from 1.
    pub page: u64,
    /// Versions per page.
    pub page_size: u64,
    /// Versions in all.
    pub total: u64,
}

/// `POST /api/v1/jobs/{name}/upload` (202): the file landed and its run.
#[derive(Debug, Serialize, ToSchema)]
pub struct Uploaded {
    /// The run processing the file.
    pub id: i64,
    /// Its state.
    pub state: RunState,
    /// Where the file lies while its run goes.
    pub file: String,
    /// Its size in bytes.
    pub size: u64,
}

/// `POST /api/v1/jobs` (201 created, 200 replaced): a job made from a template.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateJobCreated {
    /// The job.
    pub job: String,
    /// The template.
    pub template: String,
    /// SHA-256 of the script.
    pub hash: String,
    /// False when an existing script was replaced or left as it was.
    pub created: bool,
    /// The generated Lua script.
    pub source: String,
    /// The first run asked for, or null.
    pub run: Option<Submitted>,
}

/// A capped list of runs and how many there are.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunSlice {
    /// The newest runs, at most `limit`.
    pub items: Vec<RunView>,
    /// How many there are in all.
    pub total: u64,
}

/// Something due: the next occurrence of a schedule (`kind: cron`), or a run asked for at a
/// time (`kind: at`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Upcoming {
    /// `cron` or `at`.
    pub kind: &'static str,
    /// The job.
    pub job: String,
    /// When.
    #[schema(format = DateTime)]
    pub at: String,
    /// The schedule (`cron` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub cron: Option<String>,
    /// The queued run (`at` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub run_id: Option<i64>,
    /// The queued run's trigger kind (`at` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub trigger: Option<String>,
    /// Whether the job is paused.
    pub paused: bool,
}

/// A job whose script does not load.
#[derive(Debug, Serialize, ToSchema)]
pub struct BrokenJob {
    /// The job.
    pub name: String,
    /// Its script.
    pub file: String,
    /// Whether an older version stays active.
    pub loaded: bool,
    /// Why it does not load.
    pub error: String,
}

/// `GET /api/v1/overview`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Overview {
    /// The daemon's time.
    #[schema(format = DateTime)]
    pub now: String,
    /// Runs in each state (every state, zeros included).
    pub counts: BTreeMap<String, u64>,
    /// Runs going.
    pub running: RunSlice,
    /// Runs waiting.
    pub queued: RunSlice,
    /// Failures since `failures_since`.
    pub failures: RunSlice,
    /// 24 hours before `now`.
    #[schema(format = DateTime)]
    pub failures_since: String,
    /// What comes next, soonest first.
    pub upcoming: Vec<Upcoming>,
    /// Jobs whose script does not load.
    pub broken_jobs: Vec<BrokenJob>,
}
