//! The runs' own copies of their artifacts (`<data>/.ferry/artifacts/RUN_ID/NAME`, written by
//! `ctx.artifact`): they go with their run. Deleting a run removes its folder; the daemon's
//! retention also sweeps folders whose run no longer exists (runs deleted by retention, or by
//! a process that died before it could remove the copies).

use std::path::PathBuf;

use crate::history::{History, HistoryError};
use crate::storage::StorageConfig;

fn run_dir(config: &StorageConfig, id: i64) -> PathBuf {
    config.artifacts_dir.join(id.to_string())
}

/// Removes the artifact copies of run `id` (nothing to do when it kept none).
pub fn remove_run(config: &StorageConfig, id: i64) -> std::io::Result<()> {
    match std::fs::remove_dir_all(run_dir(config, id)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes the copies of every run the history no longer has; returns how many runs' copies
/// went. Folders that are not run ids are left alone.
pub fn sweep(config: &StorageConfig, history: &dyn History) -> usize {
    let Ok(entries) = std::fs::read_dir(&config.artifacts_dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i64>().ok())
        else {
            continue;
        };
        if matches!(history.get_run(id), Err(HistoryError::NotFound(_))) {
            match remove_run(config, id) {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!("cannot remove the artifacts of deleted run {id}: {e}"),
            }
        }
    }
    removed
}
