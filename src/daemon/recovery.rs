//! What the daemon does at start after a crash: runs whose owner is gone become `interrupted`
//! (their stray workers get the kill grace to record their end, then are killed) and are retried
//! when retries remain; temporary files of ended runs are removed; files left in `processing/`
//! are resumed or finished according to their run.

use std::path::Path;

use crate::config::Config;
use crate::history::{FileState, HistoryError};
use crate::jobs::dispatcher::Dispatcher;
use crate::jobs::spec::JobSpec;
use crate::jobs::watch::WatchDirs;

/// Recovers runs and files after an unclean stop.
pub fn recover(
    config: &Config,
    dispatcher: &Dispatcher,
    specs: &[std::sync::Arc<JobSpec>],
) -> Result<(), HistoryError> {
    // Runs whose owner is gone (the daemon before this one, a killed `ferry run`): closed as
    // interrupted, retried or finished. Runs of live owners are left alone.
    dispatcher.reap(true)?;
    crate::jobs::cleanup::sweep(config, &**dispatcher.history());
    for spec in specs {
        let Some(watch) = &spec.watch else { continue };
        let dirs = WatchDirs::new(config, watch);
        let Ok(entries) = std::fs::read_dir(&dirs.processing) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                resume_file(dispatcher, spec, &path)?;
            }
        }
    }
    Ok(())
}

fn resume_file(dispatcher: &Dispatcher, spec: &JobSpec, path: &Path) -> Result<(), HistoryError> {
    let history = dispatcher.history();
    let shown = path.display().to_string();
    match history.file_by_processing_path(&shown)? {
        None => {
            // Moved into processing/ but never recorded: the daemon died in between. On a shared
            // folder another host may be between its move and its record right now: its claim
            // (younger than a minute) says so, and the file is left to it.
            if history.shared() {
                let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
                let Some(key) = crate::jobs::watch::claim_key(path, size) else {
                    return Ok(());
                };
                if !history.claim_file_key(&spec.name, &key, dispatcher.owner())? {
                    return Ok(());
                }
            }
            tracing::warn!(job = %spec.name, file = %shown, "resuming a file left in processing/");
            claim(dispatcher, spec, path);
        }
        Some(rec) => {
            let Some(run_id) = rec.run_id else {
                return Ok(());
            };
            let run = match history.get_run(run_id) {
                Ok(r) => r,
                Err(HistoryError::NotFound(_)) => {
                    history.file_finished(rec.id, FileState::Failed, None)?;
                    claim(dispatcher, spec, path);
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            if run.state.is_closed() && run.retried_by.is_none() {
                dispatcher.finish_file(&run, Some(spec))?;
            }
        }
    }
    Ok(())
}

fn claim(dispatcher: &Dispatcher, spec: &JobSpec, path: &Path) {
    if let Err(e) = dispatcher.claim_file(spec, path) {
        tracing::error!(job = %spec.name, file = %path.display(), "cannot start a run for the file: {e}");
    }
}
