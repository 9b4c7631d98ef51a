//! Why a run starts: one closed enum, so every reason is visible in one `match`.

use serde::{Deserialize, Serialize};

/// The reason a run was started. Serialised with a `kind` tag; this JSON is what `ctx.trigger`,
/// the history and the API show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// `ferry run` on the command line.
    Manual,
    /// `POST /api/v1/jobs/{name}/runs` or `ferry trigger`.
    Api,
    /// A cron schedule fired.
    Cron {
        /// The occurrence this run is for (RFC 3339).
        scheduled_at: String,
        /// For a catch-up run after downtime: how many occurrences were missed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        missed: Option<u32>,
    },
    /// A file landed in the job's watch folder.
    File {
        /// The file, as it is while the run processes it.
        file: String,
    },
    /// A run started again on request (`ferry runs rerun`, `POST /api/v1/runs/{id}/rerun`), with
    /// the same params.
    Rerun {
        /// The run it repeats.
        of: i64,
        /// The watched file, moved back from `failed/` (or `archive/`), when the run had one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
    },
    /// A run of an upstream job ended the way this job's `after` asks for.
    Job {
        /// The upstream run.
        of: i64,
        /// The upstream job.
        job: String,
        /// How the upstream run ended.
        state: crate::history::RunState,
        /// The upstream run's summary.
        #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
        summary: serde_json::Value,
    },
    /// A retry of a failed run.
    Retry {
        /// The run that failed.
        of: i64,
        /// The attempt number of this run (2 for the first retry).
        attempt: u32,
        /// The watched file the first run was for, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
    },
}

impl Trigger {
    /// The kind's name: manual, api, cron, file, retry, rerun or job.
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Api => "api",
            Trigger::Cron { .. } => "cron",
            Trigger::File { .. } => "file",
            Trigger::Retry { .. } => "retry",
            Trigger::Rerun { .. } => "rerun",
            Trigger::Job { .. } => "job",
        }
    }

    /// The trigger as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        // Serialising a plain enum of strings and integers cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}
