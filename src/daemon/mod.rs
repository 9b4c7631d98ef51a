//! `ferry serve`: wires the registry (with hot reload), the triggers (cron, watched folders),
//! the dispatcher and retention; recovers after a crash; shuts down gracefully.

mod recovery;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use notify::Watcher;

use crate::config::Config;
use crate::history::{History, HistoryError, SqliteHistory};
use crate::jobs::cron::CronTrigger;
use crate::jobs::dispatcher::Dispatcher;
use crate::jobs::registry::{Change, Registry};
use crate::jobs::watch::{self, FileEvents, Settler, WatchDirs};

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The history could not be opened or written.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The file watcher could not be set up.
    #[error("cannot watch files: {0}")]
    Notify(#[from] notify::Error),
    /// A folder could not be created.
    #[error("cannot create {path}: {source}")]
    Dir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// How often the trigger loop looks at the clock and the folders.
const TICK: Duration = Duration::from_millis(100);
/// A watched folder with files waiting to settle is scanned this often.
const SCAN_PENDING: Duration = Duration::from_millis(200);
/// Otherwise it is scanned at the job's `poll` interval, or this often (file events wake it too).
const SCAN_IDLE: Duration = Duration::from_secs(2);
/// Scripts are re-read this often even without file events (a safety net for lost events).
const RESCAN_SCRIPTS: Duration = Duration::from_secs(2);
/// Events on scripts are collected this long before reloading.
const RELOAD_DEBOUNCE: Duration = Duration::from_millis(100);
/// Retention runs at start and then this often.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// A running daemon's shared parts, for the HTTP API.
#[derive(Clone)]
pub struct Handle {
    /// The dispatcher (submit, cancel).
    pub dispatcher: Dispatcher,
    /// The jobs.
    pub registry: Arc<RwLock<Registry>>,
    /// The config.
    pub config: Config,
    /// The next cron occurrence of each scheduled job, as the trigger loop plans it.
    pub next_runs: Arc<Mutex<HashMap<String, chrono::DateTime<chrono::Utc>>>>,
}

/// A started daemon: its loops run in the background until [`Daemon::shutdown`].
pub struct Daemon {
    handle: Handle,
    stop_tx: tokio::sync::watch::Sender<bool>,
    dispatch: tokio::task::JoinHandle<()>,
    triggers: tokio::task::JoinHandle<Result<(), DaemonError>>,
}

impl Daemon {
    /// Loads the scripts, recovers after a crash, applies retention, catches up missed cron
    /// occurrences and starts the dispatcher and the trigger loop.
    pub async fn start(config: Config) -> Result<Daemon, DaemonError> {
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
        let history = Arc::new(SqliteHistory::open(&config.history_path)?);
        let storage = config.storage.clone();
        if let Ok(r) = tokio::task::spawn_blocking(move || crate::storage::recover(&storage)).await
            && (r.temp_files > 0 || r.uploads > 0)
        {
            tracing::info!(
                temp_files = r.temp_files,
                uploads = r.uploads,
                "cleaned up writes left by processes that died"
            );
        }
        let registry = Arc::new(RwLock::new(Registry::default()));
        reload(&config, &registry).await;
        let dispatcher = Dispatcher::new(config.clone(), history.clone(), registry.clone());
        let specs = read(&registry).specs();
        recovery::recover(&config, &dispatcher, &specs)?;
        retention(&config, &history);
        let mut cron = CronTrigger::default();
        cron.catch_up(&config, &dispatcher, &specs);

        let handle = Handle {
            dispatcher: dispatcher.clone(),
            registry: registry.clone(),
            config: config.clone(),
            next_runs: Arc::new(Mutex::new(HashMap::new())),
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let dispatch = {
            let d = dispatcher.clone();
            let rx = stop_rx.clone();
            tokio::spawn(async move { d.run(rx).await })
        };
        let triggers = {
            let h = handle.clone();
            tokio::spawn(async move { trigger_loop(h, cron, stop_rx).await })
        };
        tracing::info!(root = %config.root.display(), jobs = specs.len(), "ferry is serving");
        Ok(Daemon {
            handle,
            stop_tx,
            dispatch,
            triggers,
        })
    }

    /// The shared parts, for the HTTP API.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Stops the triggers, lets running jobs finish within the grace period (then cancels
    /// them) and returns when every run is closed.
    pub async fn shutdown(self) {
        tracing::info!("shutting down: no new runs; waiting for running jobs");
        let _ = self.stop_tx.send(true);
        let _ = self.dispatch.await;
        match self.triggers.await {
            Ok(Err(e)) => tracing::error!("trigger loop: {e}"),
            Err(e) => tracing::error!("trigger loop panicked: {e}"),
            Ok(Ok(())) => {}
        }
        let grace = self.handle.config.daemon.shutdown_grace;
        self.handle.dispatcher.drain(grace).await;
        tracing::info!("stopped");
    }
}

/// Starts the daemon, runs until `shutdown` resolves, then shuts down gracefully.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    let daemon = Daemon::start(config).await?;
    shutdown.await;
    daemon.shutdown().await;
    Ok(())
}

fn read(r: &RwLock<Registry>) -> std::sync::RwLockReadGuard<'_, Registry> {
    r.read().unwrap_or_else(|p| p.into_inner())
}

async fn reload(config: &Config, registry: &Arc<RwLock<Registry>>) {
    let mut copy = read(registry).clone();
    let cfg = config.clone();
    let result = tokio::task::spawn_blocking(move || {
        let changes = copy.rescan(&cfg);
        (copy, changes)
    })
    .await;
    let Ok((updated, changes)) = result else {
        return;
    };
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
    *registry.write().unwrap_or_else(|p| p.into_inner()) = updated;
}

fn retention(config: &Config, history: &SqliteHistory) {
    let cutoff = chrono::Utc::now() - chrono::Duration::days(i64::from(config.retention.days));
    match history.apply_retention(cutoff, config.retention.runs_per_job) {
        Ok(0) => {}
        Ok(n) => tracing::info!(deleted = n, "retention deleted old runs"),
        Err(e) => tracing::error!("retention: {e}"),
    }
    // The artifact copies of deleted runs go with them.
    crate::jobs::artifacts::sweep(&config.storage, history);
}

async fn trigger_loop(
    h: Handle,
    mut cron: CronTrigger,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<notify::Event>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            let _ = tx.send(ev);
        }
    })?;
    let scripts_dir = h.config.scripts_dir.clone();
    watcher.watch(&scripts_dir, notify::RecursiveMode::NonRecursive)?;
    let mut watched: HashSet<PathBuf> = HashSet::new();
    let mut settlers: HashMap<String, Settler> = HashMap::new();
    let mut last_scan: HashMap<String, Instant> = HashMap::new();
    let mut events = FileEvents::default();
    let mut reload_at: Option<Instant> = None;
    let mut last_rescan = Instant::now();
    let mut last_retention = Instant::now();
    update_watches(&h, &mut watcher, &mut watched);
    loop {
        tokio::select! {
            ev = rx.recv() => {
                if let Some(ev) = ev {
                    if ev.paths.iter().any(|p| p.parent() == Some(scripts_dir.as_path())) {
                        reload_at.get_or_insert(Instant::now() + RELOAD_DEBOUNCE);
                    } else {
                        events.record(&ev);
                        // Wake the folder's scan early.
                        last_scan.clear();
                    }
                }
            }
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return Ok(());
        }
        let now = Instant::now();
        if reload_at.is_some_and(|t| now >= t) || now.duration_since(last_rescan) >= RESCAN_SCRIPTS
        {
            reload_at = None;
            last_rescan = now;
            reload(&h.config, &h.registry).await;
            update_watches(&h, &mut watcher, &mut watched);
            h.dispatcher.wake();
        }
        let specs = read(&h.registry).specs();
        cron.tick(&h.dispatcher, &specs);
        {
            let mut next = h.next_runs.lock().unwrap_or_else(|p| p.into_inner());
            next.clear();
            for s in &specs {
                if let Some(t) = cron.next_of(&s.name) {
                    next.insert(s.name.clone(), t);
                }
            }
        }
        for spec in &specs {
            let Some(w) = &spec.watch else { continue };
            let settler = settlers.entry(spec.name.clone()).or_default();
            let every = if settler.pending() {
                SCAN_PENDING
            } else {
                w.poll.unwrap_or(SCAN_IDLE)
            };
            if last_scan
                .get(&spec.name)
                .is_some_and(|t| now.duration_since(*t) < every)
            {
                continue;
            }
            last_scan.insert(spec.name.clone(), now);
            let dirs = WatchDirs::new(&h.config, w);
            let matcher = match watch::matcher(&w.pattern) {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(job = %spec.name, "{e}");
                    continue;
                }
            };
            let ready = match settler.scan(&dirs.dir, &matcher, w, &mut events) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(job = %spec.name, "cannot scan {}: {e}", dirs.dir.display());
                    continue;
                }
            };
            for file in ready {
                match watch::move_into(&file.path, &dirs.processing) {
                    Ok(target) => {
                        if let Err(e) = h.dispatcher.claim_file(spec, &target) {
                            tracing::error!(job = %spec.name, file = %target.display(), "cannot start a run for the file: {e}");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(job = %spec.name, file = %file.path.display(), "cannot pick up: {e}")
                    }
                }
            }
        }
        settlers.retain(|name, _| specs.iter().any(|s| &s.name == name && s.watch.is_some()));
        if now.duration_since(last_retention) >= RETENTION_EVERY {
            last_retention = now;
            retention(&h.config, h.dispatcher.history());
        }
    }
}

/// Watches the folders of the jobs that have one (creating them), and stops watching others.
fn update_watches(
    h: &Handle,
    watcher: &mut notify::RecommendedWatcher,
    watched: &mut HashSet<PathBuf>,
) {
    let mut wanted = HashSet::new();
    for spec in read(&h.registry).specs() {
        if let Some(w) = &spec.watch {
            let dirs = WatchDirs::new(&h.config, w);
            if let Err(e) = dirs.create() {
                tracing::error!(job = %spec.name, "cannot create the watch folder {}: {e}", dirs.dir.display());
                continue;
            }
            wanted.insert(dirs.dir);
        }
    }
    for dir in wanted.difference(watched).cloned().collect::<Vec<_>>() {
        match watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
            Ok(()) => {
                watched.insert(dir);
            }
            Err(e) => tracing::warn!("cannot watch {} (polling only): {e}", dir.display()),
        }
    }
    for dir in watched.difference(&wanted).cloned().collect::<Vec<_>>() {
        let _ = watcher.unwatch(&dir);
        watched.remove(&dir);
    }
}
