//! Jobs: specs parsed from scripts (evaluated in a child process, `isolate`), params, triggers,
//! secrets, retry timing, and the execution of runs in worker processes (the executor on the
//! parent side, the worker loop on the child side).

pub mod artifacts;
pub mod chain;
pub mod cleanup;
pub mod clock;
pub mod cron;
pub mod cron_error;
pub mod dispatcher;
pub mod events;
pub mod executor;
pub mod isolate;
pub mod locate;
pub mod owner;
pub mod params;
pub mod protocol;
pub mod registry;
pub mod rerun;
pub mod retry;
pub mod schedule;
pub mod scripts;
pub mod seal;
pub mod secrets;
pub mod signal;
pub mod spec;
pub mod templates;
#[cfg(test)]
pub(crate) mod testkit;
pub mod versions;
pub mod view;
pub mod watch;
pub mod worker;

use std::path::{Path, PathBuf};

pub use crate::history::Trigger;
pub use spec::{JobSpec, LoadError, load_job};

/// The job scripts in a folder: every `*.lua` file not starting with `.` or `_`, sorted.
pub fn discover(scripts_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(scripts_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.extension().is_some_and(|e| e == "lua")
            && !name.starts_with(['.', '_'])
            && path.is_file()
        {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}
