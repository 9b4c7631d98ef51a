//! Why a run starts: one enum, so every reason is visible in one `match`. It is stored in the
//! history as the JSON it serialises to (`{"kind": ..., detail}`), the shape every version has
//! written; a trigger this version cannot read (a kind it does not know, a detail missing) is kept
//! as [`Trigger::Other`] with its JSON, so no old or newer history makes a read fail. A field a
//! newer version adds to a kind this one knows is ignored: the kind and its detail still read
//! (a retry keeps its file on a queue shared by hosts of two versions), the extra field is not
//! shown.

use serde::{Deserialize, Serialize};

/// The reason a run was started. Serialised with a `kind` tag; this JSON is what `ctx.trigger`,
/// the history and the API show.
///
/// ```
/// use ferry::history::Trigger;
/// let t: Trigger = serde_json::from_str(r#"{"kind":"file","file":"/in/a.csv"}"#).unwrap();
/// assert_eq!(t.file(), Some("/in/a.csv"));
/// ```
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
        state: super::RunState,
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
    /// A trigger read from the history that this version does not know, kept as its JSON
    /// (serialised back unchanged). Never created here.
    #[serde(untagged)]
    Other(serde_json::Value),
}

impl Trigger {
    /// The name of every kind this version writes.
    pub const KINDS: [&'static str; 7] = ["manual", "api", "cron", "file", "retry", "rerun", "job"];

    /// The kind's name: manual, api, cron, file, retry, rerun or job (for [`Trigger::Other`],
    /// its `kind` as written, or `?`).
    pub fn kind(&self) -> &str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Api => "api",
            Trigger::Cron { .. } => "cron",
            Trigger::File { .. } => "file",
            Trigger::Retry { .. } => "retry",
            Trigger::Rerun { .. } => "rerun",
            Trigger::Job { .. } => "job",
            Trigger::Other(v) => v.get("kind").and_then(|k| k.as_str()).unwrap_or("?"),
        }
    }

    /// The watched file the run is for: the dropped file of a `file` trigger, the file a retry
    /// or a rerun carries over.
    pub fn file(&self) -> Option<&str> {
        match self {
            Trigger::File { file } => Some(file),
            Trigger::Retry { file, .. } | Trigger::Rerun { file, .. } => file.as_deref(),
            _ => None,
        }
    }

    /// The run this one comes from: the run a retry or a rerun repeats, the upstream run of a
    /// chained job.
    pub fn parent(&self) -> Option<i64> {
        match self {
            Trigger::Retry { of, .. } | Trigger::Rerun { of, .. } | Trigger::Job { of, .. } => {
                Some(*of)
            }
            _ => None,
        }
    }

    /// The trigger stored as `v`: never fails (what this version cannot read is kept as
    /// [`Trigger::Other`]).
    pub fn from_stored(v: serde_json::Value) -> Trigger {
        serde_json::from_value(v.clone()).unwrap_or(Trigger::Other(v))
    }

    /// The trigger as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        // Serialising a plain enum of strings and integers cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every kind in the JSON shape histories hold, as written before the history was typed.
    fn stored_shapes() -> Vec<serde_json::Value> {
        vec![
            json!({"kind": "manual"}),
            json!({"kind": "api"}),
            json!({"kind": "cron", "scheduled_at": "2026-03-01T02:00:00.000Z"}),
            json!({"kind": "cron", "scheduled_at": "2026-03-01T02:00:00.000Z", "missed": 3}),
            json!({"kind": "file", "file": "/in/.ferry/processing/a.csv"}),
            json!({"kind": "rerun", "of": 7}),
            json!({"kind": "rerun", "of": 7, "file": "/in/.ferry/processing/a.csv"}),
            json!({"kind": "job", "of": 3, "job": "up", "state": "succeeded"}),
            json!({"kind": "job", "of": 3, "job": "up", "state": "failed", "summary": {"rows": 2}}),
            json!({"kind": "retry", "of": 4, "attempt": 2}),
            json!({"kind": "retry", "of": 4, "attempt": 3, "file": "/in/.ferry/processing/b.csv"}),
        ]
    }

    #[test]
    fn every_stored_shape_reads_as_its_kind_and_writes_back_unchanged() {
        for v in stored_shapes() {
            let t: Trigger = serde_json::from_value(v.clone()).unwrap();
            assert!(!matches!(t, Trigger::Other(_)), "{v} read as unknown");
            assert_eq!(t.kind(), v["kind"].as_str().unwrap());
            assert!(Trigger::KINDS.contains(&t.kind()));
            assert_eq!(t.to_json(), v);
        }
    }

    #[test]
    fn the_detail_is_typed() {
        let t: Trigger = serde_json::from_value(json!({"kind": "retry", "of": 4, "attempt": 3,
            "file": "/in/b.csv"}))
        .unwrap();
        assert_eq!((t.file(), t.parent()), (Some("/in/b.csv"), Some(4)));
        let t: Trigger = serde_json::from_value(json!({"kind": "cron",
            "scheduled_at": "2026-03-01T02:00:00.000Z"}))
        .unwrap();
        assert_eq!((t.file(), t.parent()), (None, None));
    }

    #[test]
    fn an_unknown_trigger_is_kept_as_written() {
        for v in [
            json!({"kind": "webhook", "from": "x"}),
            json!({"kind": "file"}),
            json!(null),
        ] {
            let t: Trigger = serde_json::from_value(v.clone()).unwrap();
            assert_eq!(t, Trigger::Other(v.clone()));
            assert_eq!(t.to_json(), v);
        }
        let t: Trigger = serde_json::from_value(json!({"kind": "webhook"})).unwrap();
        assert_eq!(t.kind(), "webhook");
        assert_eq!(Trigger::Other(json!(null)).kind(), "?");
    }
}
