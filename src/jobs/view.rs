//! The description of a job that `ferry jobs` and the HTTP API show.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::params::ParamSpec;
use super::registry::JobEntry;
use super::spec::{LoadError, Overlap, WatchSpec};
use crate::config::Config;
use crate::history::{RunRecord, RunState, format_time};
use crate::units::format_duration;

/// A job as shown to people and API clients. Field names are stable.
// Its schema is part of the API's OpenAPI document (`api/doc.rs`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Job)]
pub struct JobView {
    /// Job name.
    pub name: String,
    /// Script file, relative to the project root.
    pub file: String,
    /// Whether a version of the script is active.
    pub loaded: bool,
    /// The load error of the newest version of the script, if it does not load. With
    /// `loaded = true` the previous version stays active.
    pub error: Option<String>,
    /// Which version of the script runs: `current` (the file as it is), `previous` (the file
    /// was changed and does not load; the last version that loaded stays active), or `null`
    /// (no version ever loaded).
    pub active_version: Option<ActiveVersion>,
    /// The SHA-256 (hex) of the active version's source: the version its runs execute (see
    /// `GET /api/v1/jobs/{name}/versions`).
    pub script_version: Option<String>,
    /// Why the newest version of the script does not load, pointing at file and line.
    pub load_error: Option<LoadErrorView>,
    /// Description.
    pub description: Option<String>,
    /// The cron schedule.
    pub schedule: Option<ScheduleView>,
    /// When the schedule fires next.
    #[schema(format = DateTime)]
    pub next_run: Option<String>,
    /// The watched folder.
    #[schema(value_type = Option<Object>)]
    pub watch: Option<WatchSpec>,
    /// Declared params, by name.
    #[schema(value_type = Object)]
    pub params: std::collections::BTreeMap<String, ParamSpec>,
    /// Overlap policy.
    #[schema(value_type = Option<String>)]
    pub overlap: Option<Overlap>,
    /// Retries after a failure.
    pub retries: Option<u32>,
    /// Time limit (job's own, or the default).
    pub timeout: Option<String>,
    /// The newest run.
    pub last_run: Option<LastRun>,
    /// Whether the job is paused (its schedule records skipped runs, its folder waits).
    pub paused: bool,
    /// Since when it is paused.
    pub paused_since: Option<String>,
    /// The states of its newest runs (up to 20), newest first.
    pub recent_runs: Vec<RecentRun>,
}

/// Which version of a job's script is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActiveVersion {
    /// The script as the file holds it now.
    Current,
    /// The last version that loaded; the file's newest edit does not load.
    Previous,
}

/// A load error as shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = LoadError)]
pub struct LoadErrorView {
    /// The script (`scripts/x.lua`).
    pub file: String,
    /// The line the first problem points at, when known.
    pub line: Option<u32>,
    /// Every problem, one line each, each starting with `file:line:` (or `file:`).
    pub problems: Vec<String>,
}

impl From<&LoadError> for LoadErrorView {
    fn from(e: &LoadError) -> LoadErrorView {
        LoadErrorView {
            file: e.file.clone(),
            line: e.line(),
            problems: e.to_string().lines().map(str::to_string).collect(),
        }
    }
}

/// One of a job's newest runs, for a strip of states.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecentRun {
    /// Run id.
    pub id: i64,
    /// State.
    pub state: RunState,
}

/// A schedule as shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Schedule)]
pub struct ScheduleView {
    /// The cron expression.
    pub cron: String,
    /// The IANA time zone.
    pub timezone: String,
    /// The missed-occurrence policy.
    #[schema(value_type = String)]
    pub missed: super::schedule::Missed,
}

/// The newest run of a job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LastRun {
    /// Run id.
    pub id: i64,
    /// State.
    pub state: RunState,
    /// When it was queued.
    pub queued_at: String,
    /// When it ended.
    pub finished_at: Option<String>,
}

impl JobView {
    /// Builds the view of a registry entry; `next_run` overrides the computed next occurrence.
    pub fn new(
        config: &Config,
        name: &str,
        entry: &JobEntry,
        last: Option<&RunRecord>,
        next_run: Option<DateTime<Utc>>,
    ) -> JobView {
        let spec = entry.spec.as_deref();
        let schedule = spec.and_then(|s| s.schedule.as_ref());
        JobView {
            name: name.to_string(),
            file: config.display_path(&entry.path),
            loaded: spec.is_some(),
            script_version: spec.map(|s| super::versions::hash(&s.source)),
            error: entry.error.as_ref().map(|e| e.to_string()),
            active_version: match (spec, &entry.error) {
                (None, _) => None,
                (Some(_), None) => Some(ActiveVersion::Current),
                (Some(_), Some(_)) => Some(ActiveVersion::Previous),
            },
            load_error: entry.error.as_ref().map(LoadErrorView::from),
            description: spec.and_then(|s| s.description.clone()),
            schedule: schedule.map(|s| ScheduleView {
                cron: s.expr.clone(),
                timezone: s.timezone.name().to_string(),
                missed: s.missed,
            }),
            next_run: next_run
                .or_else(|| schedule.and_then(|s| s.next_after(Utc::now())))
                .map(|t| format_time(&t)),
            watch: spec.and_then(|s| s.watch.clone()),
            params: spec.map(|s| s.params.clone()).unwrap_or_default(),
            overlap: spec.map(|s| s.overlap),
            retries: spec.map(|s| s.retries),
            timeout: spec.map(|s| format_duration(s.timeout.unwrap_or(config.limits.timeout))),
            last_run: last.map(|r| LastRun {
                id: r.id,
                state: r.state,
                queued_at: format_time(&r.queued_at),
                finished_at: r.finished_at.as_ref().map(format_time),
            }),
            paused: false,
            paused_since: None,
            recent_runs: Vec::new(),
        }
    }

    /// The view with the states of the job's newest runs (newest first).
    pub fn with_recent(mut self, runs: &[RunRecord]) -> JobView {
        self.recent_runs = runs
            .iter()
            .map(|r| RecentRun {
                id: r.id,
                state: r.state,
            })
            .collect();
        self
    }

    /// The view with the job's pause (`since`, when it is paused).
    pub fn with_paused(mut self, since: Option<DateTime<Utc>>) -> JobView {
        self.paused = since.is_some();
        self.paused_since = since.as_ref().map(format_time);
        self
    }
}
