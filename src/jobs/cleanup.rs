//! What a run leaves behind and who removes it: its temporary folder (`ctx.temp()`, under
//! `data/.ferry/tmp/RUN`) is removed when the run ends in any state, and the store prefixes it
//! asked to discard (`ctx.discard_on_failure`) are deleted when it did not succeed.
//!
//! The worker does this itself when the run ends (after a timeout or a cancel too: the VM has
//! stopped, the worker still runs). When the worker died or was killed, its parent does it; when
//! both died (kill -9 of the daemon and its workers), the next daemon start does it
//! ([`sweep`]). Discards are recorded in the history before the script writes anything under
//! them, so each of these can find them.

use std::path::PathBuf;

use crate::config::Config;
use crate::history::{Discard, History, RunRecord, RunState};
use crate::storage::{S3Options, Store, StoreRegistry};

/// The folder holding the runs' temporary folders.
pub fn temp_root(config: &Config) -> PathBuf {
    config.data_dir.join(".ferry").join("tmp")
}

/// The temporary folder of one run (created on first use by `ctx.temp()`).
pub fn run_temp_dir(config: &Config, run_id: i64) -> PathBuf {
    temp_root(config).join(run_id.to_string())
}

/// Removes a run's temporary folder; a missing folder is fine.
pub fn remove_temp(config: &Config, run_id: i64) {
    let dir = run_temp_dir(config, run_id);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => tracing::debug!(run = run_id, "removed {}", dir.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(run = run_id, "cannot remove {}: {e}", dir.display()),
    }
}

/// Carries out (or, for a run that succeeded, forgets) the discards recorded for a run.
/// `open` gives the store of a discard: the worker passes the stores the script opened (so
/// inline credentials work); others reopen it by name or URL from the configuration.
/// Returns one message per discard that could not be done, for the run's log.
pub fn apply_discards(
    history: &dyn History,
    run_id: i64,
    succeeded: bool,
    open: &dyn Fn(&Discard) -> Result<Store, String>,
) -> Vec<String> {
    let discards = match history.discards(Some(run_id)) {
        Ok(d) => d,
        Err(e) => return vec![format!("cannot read the run's discards: {e}")],
    };
    let mut problems = Vec::new();
    for d in discards {
        if !succeeded {
            let done = open(&d).and_then(|s| s.delete_prefix(&d.prefix).map_err(|e| e.to_string()));
            match done {
                Ok(n) => tracing::info!(
                    run = run_id,
                    "the run did not succeed: deleted {n} objects under {} in {}",
                    d.prefix,
                    d.store
                ),
                Err(e) => problems.push(format!(
                    "cannot discard {} in {} after the failed run: {e}",
                    d.prefix, d.store
                )),
            }
        }
        // A discard that cannot be done now is reported and not retried for ever: what stays
        // behind is incomplete data the script marked as such (a backup without manifest).
        if let Err(e) = history.remove_discard(d.id) {
            problems.push(format!("cannot forget a discard: {e}"));
        }
    }
    problems
}

/// Opens the store of a discard from the configuration (a configured name or a URL).
pub fn open_configured(config: &Config, d: &Discard) -> Result<Store, String> {
    StoreRegistry::new(config.storage.clone())
        .open(&d.store, S3Options::default())
        .map_err(|e| e.to_string())
}

/// After a run ended without its worker cleaning up (the worker died, was killed, or its run was
/// cancelled before it started): removes its temporary folder and applies its discards.
pub fn after_end(config: &Config, history: &dyn History, run: &RunRecord) {
    if !run.state.is_closed() {
        return;
    }
    clean(config, history, run.id, run.state == RunState::Succeeded);
}

/// Removes a run's temporary folder and applies its discards (`succeeded` says whether the run
/// succeeded). Call it before the run is recorded as closed where possible, so that whoever
/// sees the run closed sees its leftovers gone.
pub fn clean(config: &Config, history: &dyn History, run_id: i64, succeeded: bool) {
    remove_temp(config, run_id);
    for p in apply_discards(history, run_id, succeeded, &|d| open_configured(config, d)) {
        tracing::warn!(run = run_id, "{p}");
        let _ = history.append_log(run_id, crate::history::LogLevel::Warn, &p);
    }
}

/// At start: removes the temporary folders and applies the discards of every run that has
/// ended (a run still open belongs to a live owner and keeps its files).
pub fn sweep(config: &Config, history: &dyn History) {
    let mut ended = Vec::new();
    if let Ok(entries) = std::fs::read_dir(temp_root(config)) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.parse::<i64>().ok()) else {
                continue;
            };
            match history.get_run(id) {
                Ok(run) if !run.state.is_closed() => {}
                Ok(run) => ended.push(run),
                Err(_) => remove_temp(config, id),
            }
        }
    }
    if let Ok(discards) = history.discards(None) {
        for d in discards {
            if ended.iter().any(|r| r.id == d.run_id) {
                continue;
            }
            match history.get_run(d.run_id) {
                Ok(run) if run.state.is_closed() => ended.push(run),
                Ok(_) => {}
                Err(_) => {
                    let _ = history.remove_discard(d.id);
                }
            }
        }
    }
    for run in ended {
        after_end(config, history, &run);
    }
}
