//! Running a run again: a new run of the same job with the same params (checked again against
//! the job's current declarations), trigger kind `rerun` with `of`. A run that processed a
//! watched file gets its file back: moved from `failed/` (or `archive/`) into `processing/` and
//! claimed by the new run, which then moves it on like any dropped file.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::params::{self, GivenParams, ParamError};
use super::seal::{SealError, Sealer};
use super::spec::JobSpec;
use super::watch::{self, WatchDirs};
use crate::config::Config;
use crate::history::Trigger;
use crate::history::{FileState, History, HistoryError, NewRun, RunRecord};

/// Why a run cannot be run again.
#[derive(Debug, thiserror::Error)]
pub enum RerunError {
    /// The run is still queued or running.
    #[error("run {0} has not ended ({1}); cancel it or wait for it")]
    NotEnded(i64, crate::history::RunState),
    /// Its job is not loaded any more.
    #[error("job {0:?} of run {1} is not loaded (its script was removed or does not load)")]
    NotLoaded(String, i64),
    /// Its watched file is gone (deleted after success, or removed by hand).
    #[error(
        "the file of run {run} is no longer there ({what}); drop it into the folder again instead"
    )]
    FileGone {
        /// The run.
        run: i64,
        /// What is known about the file.
        what: String,
    },
    /// Its file could not be moved back.
    #[error("cannot move {path} back into processing/: {source}")]
    Move {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Its params no longer fit the job's declarations.
    #[error("the params of run {0} no longer fit job {1:?}: {2}")]
    Params(i64, String, ParamError),
    /// Its sealed params cannot be opened.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The history failed.
    #[error(transparent)]
    History(#[from] HistoryError),
}

/// A rerun recorded as queued.
#[derive(Debug, Clone)]
pub struct Rerun {
    /// The new run.
    pub id: i64,
    /// Its trigger.
    pub trigger: Trigger,
}

/// Records a new queued run repeating run `of` (already read as `record`), for `spec`, the job's
/// current version. A watched file is moved back first and claimed by the new run.
pub fn rerun(
    config: &Config,
    history: &dyn History,
    sealer: &Sealer,
    spec: &JobSpec,
    record: &RunRecord,
) -> Result<Rerun, RerunError> {
    if !record.state.is_closed() {
        return Err(RerunError::NotEnded(record.id, record.state));
    }
    let opened = sealer.open_params(&record.params)?;
    let given = match opened {
        Value::Object(m) => m,
        _ => Default::default(),
    };
    let resolved = params::resolve(&spec.params, &GivenParams::Json(given))
        .map_err(|e| RerunError::Params(record.id, spec.name.clone(), e))?;
    let params = Value::Object(sealer.seal_params(resolved, &spec.params));
    let file = match file_of(history, record)? {
        Some(f) => Some(take_back(config, spec, record.id, &f)?),
        None => None,
    };
    let trigger = Trigger::Rerun {
        of: record.id,
        file: file.as_ref().map(|(_, path)| config.display_path(path)),
    };
    let id = history.create_run(&NewRun {
        job: spec.name.clone(),
        trigger: trigger.clone(),
        params,
        attempt: 1,
        not_before: None,
        retry_of: None,
        owner: None,
    })?;
    if let Some((f, path)) = &file {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        history.file_claimed(&spec.name, &f.name, &path.display().to_string(), size, id)?;
    }
    Ok(Rerun { id, trigger })
}

/// The file record of a run's file: its own, or, when the run was retried, the one its last
/// retry holds (the record moves along the retries).
fn file_of(
    history: &dyn History,
    record: &RunRecord,
) -> Result<Option<crate::history::FileRecord>, HistoryError> {
    if record.trigger.file().is_none() {
        return Ok(None);
    }
    let mut run = record.clone();
    for _ in 0..1000 {
        if let Some(f) = history.file_for_run(run.id)? {
            return Ok(Some(f));
        }
        match run.retried_by {
            Some(next) => run = history.get_run(next)?,
            None => return Ok(None),
        }
    }
    Ok(None)
}

/// Moves the file of a run back into the job's `processing/` folder; returns its record and
/// its new path.
fn take_back(
    config: &Config,
    spec: &JobSpec,
    run: i64,
    f: &crate::history::FileRecord,
) -> Result<(crate::history::FileRecord, PathBuf), RerunError> {
    let gone = |what: &str| RerunError::FileGone {
        run,
        what: what.to_string(),
    };
    let Some(w) = &spec.watch else {
        return Err(gone("the job no longer watches a folder"));
    };
    if f.state == FileState::Processing {
        return Err(gone("it is still being processed by a retry"));
    }
    if f.state == FileState::Deleted {
        return Err(gone(
            "it was deleted after the run succeeded (after = \"delete\")",
        ));
    }
    let Some(from) = f.final_path.as_deref().map(Path::new) else {
        return Err(gone("where it went was not recorded"));
    };
    if !from.is_file() {
        return Err(gone(&format!(
            "{} does not exist",
            config.display_path(from)
        )));
    }
    let dirs = WatchDirs::new(config, w);
    dirs.create().map_err(|source| RerunError::Move {
        path: dirs.processing.clone(),
        source,
    })?;
    let to = watch::move_into(from, &dirs.processing).map_err(|source| RerunError::Move {
        path: from.to_path_buf(),
        source,
    })?;
    // The error report beside a failed file is about the old run.
    let mut report = from.as_os_str().to_owned();
    report.push(".error.txt");
    let _ = std::fs::remove_file(PathBuf::from(report));
    Ok((f.clone(), to))
}
