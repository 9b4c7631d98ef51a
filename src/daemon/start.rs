//! The daemon's start-up, in two blocking steps around the start of the notifier (which must
//! listen before recovery and catch-up close or queue runs): [`open`] gets the history, the
//! scripts and the dispatcher ready; [`begin`] recovers after a crash, applies retention,
//! catches up missed cron occurrences and starts the dispatcher's and the triggers' threads.

use std::sync::{Arc, RwLock};

use super::{DaemonError, Handle, read, recovery, reload, retention, shared, triggers};
use crate::config::Config;
use crate::jobs::clock::Clock;
use crate::jobs::cron::CronTrigger;
use crate::jobs::dispatcher::Dispatcher;
use crate::jobs::registry::Registry;
use crate::jobs::versions::PendingWrites;

/// What [`open`] made ready.
pub(super) struct Opened {
    /// The jobs, loaded.
    pub registry: Arc<RwLock<Registry>>,
    /// Script versions written through the API and not loaded yet.
    pub api_writes: PendingWrites,
    /// The dispatcher (its loop not started yet).
    pub dispatcher: Dispatcher,
}

/// The daemon's threads, running.
pub(super) struct Started {
    /// The dispatch loop.
    pub dispatch: std::thread::JoinHandle<()>,
    /// The trigger loop.
    pub triggers: triggers::TriggerThread,
}

/// Creates the project's folders, opens the history (checking, when it is shared, that the
/// data folder is the other hosts'), cleans up the writes of processes that died, loads the
/// scripts and makes the dispatcher. Blocking.
pub(super) fn open(config: &Config) -> Result<Opened, DaemonError> {
    for dir in [
        &config.scripts_dir,
        &config.plugins_dir,
        &config.inbox_dir,
        &config.data_dir,
    ] {
        std::fs::create_dir_all(dir).map_err(|source| DaemonError::Dir {
            path: dir.clone(),
            source,
        })?;
    }
    let history = crate::history::open(config)?;
    if history.shared() {
        let owner = crate::jobs::owner::Owner::current().to_string();
        shared::check_data_folder(config, &*history, &owner)?;
    }
    let r = crate::storage::recover(&config.storage);
    if r.temp_files > 0 || r.uploads > 0 {
        tracing::info!(
            temp_files = r.temp_files,
            uploads = r.uploads,
            "cleaned up writes left by processes that died"
        );
    }
    let stale = crate::jobs::scripts::remove_stale_temps(config);
    if stale > 0 {
        tracing::info!(
            files = stale,
            "removed temporary files of script writes left by a process that died"
        );
    }
    let registry = Arc::new(RwLock::new(Registry::default()));
    let api_writes = PendingWrites::default();
    reload(config, &registry, &history, &api_writes);
    let dispatcher = Dispatcher::new(config.clone(), history, registry.clone(), Clock::System)?;
    Ok(Opened {
        registry,
        api_writes,
        dispatcher,
    })
}

/// Recovers after a crash, applies retention, catches up missed cron occurrences, sets up the
/// file watches and starts the dispatch and trigger loops on threads of their own. Blocking.
pub(super) fn begin(h: &Handle) -> Result<Started, DaemonError> {
    let (config, dispatcher) = (&h.config, &h.dispatcher);
    let specs = read(&h.registry).specs();
    recovery::recover(config, dispatcher, &specs)?;
    let now = dispatcher.clock().now();
    retention(config, &**dispatcher.history(), now);
    let mut cron = CronTrigger::default();
    cron.catch_up(config, dispatcher, &specs, now);
    let prepared = triggers::prepare(h.clone(), cron)?;
    let dispatch = {
        let d = dispatcher.clone();
        std::thread::Builder::new()
            .name("ferry-dispatch".into())
            .spawn(move || d.run())
            .map_err(|source| DaemonError::Thread {
                what: "dispatcher",
                source,
            })?
    };
    let triggers = triggers::spawn(prepared).map_err(|source| {
        dispatcher.stop();
        DaemonError::Thread {
            what: "trigger",
            source,
        }
    })?;
    Ok(Started { dispatch, triggers })
}
