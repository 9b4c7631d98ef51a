//! What the daemon does at start after a crash: runs left `running` become `interrupted` (their
//! stray workers are killed) and are retried when retries remain; files left in `processing/`
//! are resumed or finished according to their run.

use std::path::Path;

use crate::config::Config;
use crate::history::{FileState, History, HistoryError, RunEnd, RunErrorInfo, RunState};
use crate::jobs::dispatcher::Dispatcher;
use crate::jobs::spec::JobSpec;
use crate::jobs::watch::WatchDirs;
use crate::lua::ErrorCode;

/// Whether a process is a ferry worker (so a recycled pid is never killed by mistake).
fn is_ferry_worker(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(b"ferry"))
                && args.iter().any(|a| *a == b"worker")
        })
        .unwrap_or(false)
}

/// Recovers runs and files after an unclean stop.
pub fn recover(
    config: &Config,
    dispatcher: &Dispatcher,
    specs: &[std::sync::Arc<JobSpec>],
) -> Result<(), HistoryError> {
    let history = dispatcher.history();
    for run in history.runs_in_state(RunState::Running)? {
        if let Some(pid) = history.worker_pid(run.id)?
            && is_ferry_worker(pid)
        {
            // SAFETY: kill only sends a signal; the pid was checked to be a ferry worker.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        history.finish_run(
            run.id,
            &RunEnd {
                state: RunState::Interrupted,
                error: Some(RunErrorInfo {
                    code: ErrorCode::Interrupted.as_str().into(),
                    message: "ferry stopped while the run was going".into(),
                    traceback: None,
                }),
                summary: None,
            },
        )?;
        tracing::warn!(job = %run.job, run = run.id, "run was interrupted by a stop of ferry");
    }
    for run in history.runs_in_state(RunState::Interrupted)? {
        if run.retried_by.is_some() {
            continue;
        }
        let Some(spec) = specs.iter().find(|s| s.name == run.job) else {
            continue;
        };
        match dispatcher.retry(spec, &run)? {
            Some(retry) => {
                if let Some(file) = history.file_for_run(run.id)? {
                    history.file_set_run(file.id, retry)?;
                }
            }
            None => dispatcher.finish_file(&run, Some(spec))?,
        }
    }
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
            // Moved into processing/ but never recorded: the daemon died in between. Claim it now.
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
                    history.file_finished(rec.id, FileState::Failed)?;
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
