//! `ferry serve`: wires the registry (with hot reload), the triggers (cron, watched folders),
//! the dispatcher and retention; recovers after a crash; shuts down gracefully.

pub mod lock;
mod recovery;
pub mod shared;
mod start;
pub mod systemd;
mod triggers;

pub use triggers::LoopStats;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use crate::config::Config;
use crate::history::{HistoryError, HistoryHandle, HistoryStore, VersionOrigin};
use crate::jobs::dispatcher::Dispatcher;
use crate::jobs::registry::{Change, Registry};
use crate::jobs::versions::PendingWrites;
use crate::sync::{LockExt, RwLockExt};

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The history could not be opened or written.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The file watcher could not be set up.
    #[error("cannot watch files: {0}")]
    Notify(#[from] notify::Error),
    /// Another daemon serves the project, or the lock could not be taken.
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    /// The key that seals secret params could not be read or created.
    #[error(transparent)]
    Seal(#[from] crate::jobs::seal::SealError),
    /// The data folder is not the one the hosts of a shared history use.
    #[error(transparent)]
    Shared(#[from] shared::SharedError),
    /// A start-up task failed to complete (it panicked).
    #[error("start-up failed: {0}")]
    Start(String),
    /// A thread of the daemon could not be started.
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A folder could not be created.
    #[error("cannot create {path}: {source}")]
    Dir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A running daemon's shared parts, for the HTTP API.
#[derive(Clone)]
pub struct Handle {
    /// The dispatcher (submit, cancel).
    pub dispatcher: Dispatcher,
    /// The jobs.
    pub registry: Arc<RwLock<Registry>>,
    /// The config.
    pub config: Config,
    /// Script versions written through the API and not loaded yet (see [`PendingWrites`]).
    pub api_writes: PendingWrites,
    /// The next cron occurrence of each scheduled job, as the trigger loop plans it.
    pub next_runs: Arc<Mutex<HashMap<String, chrono::DateTime<chrono::Utc>>>>,
    /// Counters of the trigger loop's work.
    pub stats: Arc<LoopStats>,
}

/// A started daemon: its loops run in the background until [`Daemon::shutdown`].
pub struct Daemon {
    handle: Handle,
    /// Held for the daemon's life: one daemon per project.
    lock: lock::ProjectLock,
    dispatch: std::thread::JoinHandle<()>,
    triggers: triggers::TriggerThread,
    notifier: crate::notify::Notifier,
}

impl Daemon {
    /// Loads the scripts, recovers after a crash, applies retention, catches up missed cron
    /// occurrences and starts the dispatcher and the trigger loop, each on a thread of its own.
    /// `lock` is the project's lock ([`lock::ProjectLock::acquire`]), taken before anything
    /// else is touched.
    pub async fn start(config: Config, lock: lock::ProjectLock) -> Result<Daemon, DaemonError> {
        let opened = {
            let config = config.clone();
            blocking(move || start::open(&config)).await?
        };
        // Listening before recovery and catch-up, so the runs they close are notified too.
        let notifier = crate::notify::Notifier::start(
            config.clone(),
            opened.dispatcher.history().clone(),
            opened.registry.clone(),
            opened.dispatcher.events(),
        );
        let handle = Handle {
            dispatcher: opened.dispatcher,
            registry: opened.registry,
            config: config.clone(),
            api_writes: opened.api_writes,
            next_runs: Arc::new(Mutex::new(HashMap::new())),
            stats: Arc::new(LoopStats::default()),
        };
        let started = {
            let handle = handle.clone();
            blocking(move || start::begin(&handle)).await?
        };
        let (dispatch, triggers) = (started.dispatch, started.triggers);
        let specs = handle.registry_read().specs();
        tracing::info!(root = %config.root.display(), jobs = specs.len(), "ferry is serving");
        Ok(Daemon {
            handle,
            lock,
            dispatch,
            triggers,
            notifier,
        })
    }

    /// Records the API address in the project lock (a second daemon's refusal names it).
    pub fn set_listen(&mut self, listen: &str) {
        self.lock.set_listen(listen);
    }

    /// The shared parts, for the HTTP API.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Stops the triggers, lets running jobs finish within the grace period (then cancels
    /// them) and returns when every run is closed.
    pub async fn shutdown(self) {
        tracing::info!("shutting down: no new runs; waiting for running jobs");
        let dispatcher = self.handle.dispatcher.clone();
        let grace = self.handle.config.daemon.shutdown_grace;
        let (dispatch, triggers) = (self.dispatch, self.triggers);
        let stopped = tokio::task::spawn_blocking(move || {
            dispatcher.stop();
            if dispatch.join().is_err() {
                tracing::error!("the dispatch loop panicked");
            }
            triggers.stop();
            dispatcher.drain(grace);
        })
        .await;
        if let Err(e) = stopped {
            tracing::error!("shutting down: {e}");
        }
        self.notifier.stop().await;
        tracing::info!("stopped");
    }
}

/// Starts the daemon, runs until `shutdown` resolves, then shuts down gracefully.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    let lock = {
        let config = config.clone();
        blocking(move || Ok(lock::ProjectLock::acquire(&config)?)).await?
    };
    let daemon = Daemon::start(config, lock).await?;
    shutdown.await;
    daemon.shutdown().await;
    Ok(())
}

/// Runs blocking start-up work (folders, the history, scripts, stores) on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DaemonError> + Send + 'static,
) -> Result<T, DaemonError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DaemonError::Start(e.to_string()))?
}

impl Handle {
    /// The jobs as they are now (a read lock; a poisoned lock still gives the last state).
    pub fn registry_read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        read(&self.registry)
    }

    /// A copy of the next cron occurrence of each scheduled job.
    pub fn next_runs_now(&self) -> HashMap<String, chrono::DateTime<chrono::Utc>> {
        self.next_runs.lock_unpoisoned().clone()
    }
}

fn read(r: &RwLock<Registry>) -> std::sync::RwLockReadGuard<'_, Registry> {
    r.read_unpoisoned()
}

/// Re-reads the scripts and swaps the registry; returns what changed. Blocking (evaluates the
/// changed scripts in child processes, writes their versions).
fn reload(
    config: &Config,
    registry: &Arc<RwLock<Registry>>,
    history: &HistoryHandle,
    api_writes: &PendingWrites,
) -> Vec<Change> {
    let mut updated = read(registry).clone();
    let changes = updated.rescan(config);
    record_versions(&**history, api_writes, &updated, &changes);
    for c in &changes {
        match c {
            Change::Added(n) => tracing::info!(job = %n, "job loaded"),
            Change::Updated(n) => tracing::info!(job = %n, "job reloaded"),
            Change::Removed(n) => tracing::info!(job = %n, "job removed"),
            Change::Broken(n, e) => {
                tracing::error!(job = %n, "job script does not load; the previous version stays active: {e}")
            }
        }
    }
    *registry.write_unpoisoned() = updated;
    changes
}

/// Records the version of every script that loaded in this rescan (unless it is the job's
/// newest version already), as written through the API or as an edit of the file.
fn record_versions(
    history: &dyn HistoryStore,
    api_writes: &PendingWrites,
    registry: &Registry,
    changes: &[Change],
) {
    for c in changes {
        let (Change::Added(name) | Change::Updated(name)) = c else {
            continue;
        };
        let Some(spec) = registry.get(name) else {
            continue;
        };
        let hash = crate::jobs::versions::hash(&spec.source);
        let by = api_writes.take(name, &hash);
        let origin = if by.is_some() {
            VersionOrigin::Api
        } else {
            VersionOrigin::File
        };
        if let Err(e) = history.record_version(name, &hash, origin, by.as_deref(), &spec.source) {
            tracing::error!(job = %name, "cannot record the script's version: {e}");
        }
    }
}

/// A registry change as a bus event.
fn change_event(c: &Change) -> crate::jobs::events::Event {
    use crate::jobs::events::Event;
    match c {
        Change::Added(n) | Change::Updated(n) => Event::JobLoaded { job: n.clone() },
        Change::Removed(n) => Event::JobRemoved { job: n.clone() },
        Change::Broken(n, e) => Event::JobReloadFailed {
            job: n.clone(),
            error: e.clone(),
        },
    }
}

/// Deletes the closed runs queued more than `[retention] days` before `now`, and those beyond
/// the newest `[retention] runs_per_job` of each job, with their artifact copies. Blocking.
fn retention(config: &Config, history: &dyn HistoryStore, now: chrono::DateTime<chrono::Utc>) {
    let cutoff = now - chrono::Duration::days(i64::from(config.retention.days));
    match history.apply_retention(cutoff, config.retention.runs_per_job) {
        Ok(0) => {}
        Ok(n) => tracing::info!(deleted = n, "retention deleted old runs"),
        Err(e) => tracing::error!("retention: {e}"),
    }
    // The artifact copies of deleted runs go with them.
    crate::jobs::artifacts::sweep(&config.storage, history);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::testkit::Fixture;

    /// Retention deletes the closed runs queued more than `[retention] days` before the
    /// clock's now and keeps the open ones.
    #[test]
    fn retention_deletes_closed_runs_older_than_its_days_before_now() {
        let now = chrono::Utc::now();
        let job = crate::jobs::spec::spec_for_tests("j", serde_json::json!({}));
        let f = Fixture::new(
            "[retention]\ndays = 30\nruns_per_job = 1000\n",
            now,
            vec![job],
        );
        let submit = || {
            let s = crate::jobs::dispatcher::Submit {
                job: "j".into(),
                params: crate::jobs::params::GivenParams::Json(Default::default()),
                trigger: crate::jobs::Trigger::Api,
                not_before: None,
            };
            f.dispatcher.submit(s).unwrap().id
        };
        let closed: Vec<i64> = (0..4).map(|_| submit()).collect();
        for id in &closed {
            f.dispatcher.cancel(*id).unwrap();
        }
        let open = submit();
        let ids = || f.runs("j").iter().map(|r| r.id).collect::<Vec<_>>();
        let all = ids();
        assert_eq!(all.len(), 5);
        retention(&f.config, &**f.history(), now + chrono::Duration::days(29));
        assert_eq!(ids(), all, "nothing is 30 days old yet");
        retention(&f.config, &**f.history(), now + chrono::Duration::days(31));
        assert_eq!(
            ids(),
            vec![open],
            "old closed runs go; the queued one stays"
        );
    }
}
