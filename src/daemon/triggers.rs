//! The trigger loop: script reloads, cron occurrences, watched-folder scans and retention.
//!
//! It runs on a thread of its own (it reads folders, moves files and writes the history, none
//! of which may block the async runtime), and waits on one channel: file events and the stop
//! request come through it, and it waits no longer than until the next thing it has to do (the
//! next cron occurrence, the next scan of a folder with files settling, the safety-net rescan,
//! retention). What is due is decided by the dispatcher's [`Clock`](crate::jobs::clock::Clock);
//! the waits themselves are measured on the monotonic clock. File
//! events pass a filter first ([`watch::effect`]): the daemon's own folder reads and moves
//! produce events too (inotify reports opens), and a loop woken by them would wake itself for
//! ever. The event queue is bounded; when it overflows, the events are dropped and every folder
//! is rescanned once instead, which loses nothing (a scan sees every file).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use notify::Watcher;

use super::{DaemonError, Handle, read, reload, retention};
use crate::jobs::cron::CronTrigger;
use crate::jobs::watch::{self, EventEffect, FileEvents, Settler, WatchDirs};
use crate::sync::LockExt;

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
/// The folder of a paused job is looked at again this often (to notice that it was resumed).
const PAUSED_RECHECK: Duration = Duration::from_secs(1);
/// File events waiting for the loop; beyond this they are dropped and a full rescan is due.
const EVENT_QUEUE: usize = 1024;

/// Counters of the trigger loop's work, for `/metrics` and the idle tests: a quiet daemon's
/// counters grow only at the poll intervals.
#[derive(Debug, Default)]
pub struct LoopStats {
    /// Scans of watched folders.
    pub watch_scans: AtomicU64,
    /// Re-reads of the scripts folder.
    pub script_rescans: AtomicU64,
    /// Passes of the loop.
    pub wakeups: AtomicU64,
    /// File events dropped because the queue was full (each causes a full rescan).
    pub events_dropped: AtomicU64,
}

struct Loop {
    h: Handle,
    cron: CronTrigger,
    scripts_dir: PathBuf,
    watched: HashSet<PathBuf>,
    settlers: HashMap<String, Settler>,
    next_scan: HashMap<String, Instant>,
    woken_dirs: HashSet<PathBuf>,
    events: FileEvents,
    reload_at: Option<Instant>,
    next_rescan: Instant,
    next_retention: Instant,
}

/// What wakes the trigger loop.
enum Wake {
    /// A file event that passed the filter.
    File(notify::Event),
    /// The daemon stops.
    Stop,
}

/// A trigger loop whose watches are in place, ready to run.
pub(super) struct Prepared {
    lp: Loop,
    watcher: notify::RecommendedWatcher,
    rx: Receiver<Wake>,
    tx: SyncSender<Wake>,
    overflow: Arc<AtomicBool>,
}

/// The trigger loop running on its thread.
pub(super) struct TriggerThread {
    thread: std::thread::JoinHandle<()>,
    tx: SyncSender<Wake>,
    stop: Arc<AtomicBool>,
}

/// Sets up the file watches (scripts and every watched folder) before the daemon says it
/// serves, so that a file being written from then on is seen as being written.
pub(super) fn prepare(h: Handle, cron: CronTrigger) -> Result<Prepared, DaemonError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Wake>(EVENT_QUEUE);
    let overflow = Arc::new(AtomicBool::new(false));
    let stats = h.stats.clone();
    let full = overflow.clone();
    let events = tx.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        if watch::effect(&ev) == EventEffect::Ignore {
            return;
        }
        if events.try_send(Wake::File(ev)).is_err() {
            full.store(true, Ordering::SeqCst);
            stats.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    })?;
    let scripts_dir = h.config.scripts_dir.clone();
    watcher.watch(&scripts_dir, notify::RecursiveMode::NonRecursive)?;
    let now = Instant::now();
    let mut lp = Loop {
        h,
        cron,
        scripts_dir,
        watched: HashSet::new(),
        settlers: HashMap::new(),
        next_scan: HashMap::new(),
        woken_dirs: HashSet::new(),
        events: FileEvents::default(),
        reload_at: None,
        next_rescan: now + RESCAN_SCRIPTS,
        next_retention: now + RETENTION_EVERY,
    };
    lp.update_watches(&mut watcher);
    Ok(Prepared {
        lp,
        watcher,
        rx,
        tx,
        overflow,
    })
}

/// Starts the trigger loop on a thread of its own.
pub(super) fn spawn(p: Prepared) -> std::io::Result<TriggerThread> {
    let tx = p.tx.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("ferry-triggers".into())
        .spawn(move || trigger_loop(p, &flag))?;
    Ok(TriggerThread { thread, tx, stop })
}

impl TriggerThread {
    /// Asks the loop to stop and waits until it has (after the pass it may be in). Blocking.
    pub(super) fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        // A full queue wakes the loop as well as this message would, and a closed one means
        // the loop has ended already.
        let _ = self.tx.try_send(Wake::Stop);
        if self.thread.join().is_err() {
            tracing::error!("the trigger loop panicked");
        }
    }
}

/// Runs the trigger loop until `stop` turns true.
fn trigger_loop(p: Prepared, stop: &AtomicBool) {
    let Prepared {
        mut lp,
        mut watcher,
        rx,
        tx,
        overflow,
    } = p;
    // Only the watcher's and `TriggerThread`'s senders keep the channel open.
    drop(tx);
    loop {
        let wait = lp.pass(&mut watcher);
        match rx.recv_timeout(wait) {
            Ok(Wake::File(ev)) => {
                lp.on_event(ev);
                // Take whatever else is queued now, so a burst costs one pass.
                while let Ok(Wake::File(ev)) = rx.try_recv() {
                    lp.on_event(ev);
                }
            }
            Ok(Wake::Stop) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if overflow.swap(false, Ordering::SeqCst) {
            // Events were lost: scan every folder and re-read the scripts now.
            lp.next_scan.clear();
            lp.reload_at = Some(Instant::now());
        }
    }
}

impl Loop {
    fn on_event(&mut self, ev: notify::Event) {
        if ev
            .paths
            .iter()
            .any(|p| p.parent() == Some(self.scripts_dir.as_path()))
        {
            self.reload_at
                .get_or_insert(Instant::now() + RELOAD_DEBOUNCE);
            return;
        }
        self.events.record(&ev);
        if watch::effect(&ev) == EventEffect::Wake {
            for p in &ev.paths {
                if let Some(dir) = p.parent() {
                    self.woken_dirs.insert(dir.to_path_buf());
                }
            }
        }
    }

    /// Does what is due; returns how long the loop may sleep.
    fn pass(&mut self, watcher: &mut notify::RecommendedWatcher) -> Duration {
        let h = self.h.clone();
        h.stats.wakeups.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        if self.reload_at.is_some_and(|t| now >= t) || now >= self.next_rescan {
            self.reload_at = None;
            self.next_rescan = now + RESCAN_SCRIPTS;
            h.stats.script_rescans.fetch_add(1, Ordering::Relaxed);
            for c in reload(
                &h.config,
                &h.registry,
                h.dispatcher.history(),
                &h.api_writes,
            ) {
                h.dispatcher.events().publish(super::change_event(&c));
            }
            self.update_watches(watcher);
            h.dispatcher.wake();
        }
        let specs = read(&h.registry).specs();
        self.cron
            .tick(&h.dispatcher, &specs, h.dispatcher.clock().now());
        {
            let mut next = h.next_runs.lock_unpoisoned();
            next.clear();
            for s in &specs {
                if let Some(t) = self.cron.next_of(&s.name) {
                    next.insert(s.name.clone(), t);
                }
            }
        }
        for spec in &specs {
            let Some(w) = &spec.watch else { continue };
            if h.dispatcher.is_paused(&spec.name) {
                // Dropped files wait in the folder until the job is resumed (noticed at the next
                // housekeeping).
                self.next_scan
                    .insert(spec.name.clone(), now + PAUSED_RECHECK);
                continue;
            }
            let dirs = WatchDirs::new(&h.config, w);
            let woken = self.woken_dirs.remove(&dirs.dir);
            if !woken && self.next_scan.get(&spec.name).is_some_and(|t| now < *t) {
                continue;
            }
            let settler = self.settlers.entry(spec.name.clone()).or_default();
            h.stats.watch_scans.fetch_add(1, Ordering::Relaxed);
            scan_folder(&h, spec, &dirs, settler, &mut self.events);
            let every = if settler.pending() {
                SCAN_PENDING
            } else {
                w.poll.unwrap_or(SCAN_IDLE)
            };
            self.next_scan.insert(spec.name.clone(), now + every);
        }
        self.woken_dirs.clear();
        self.settlers
            .retain(|name, _| specs.iter().any(|s| &s.name == name && s.watch.is_some()));
        self.next_scan
            .retain(|name, _| specs.iter().any(|s| &s.name == name && s.watch.is_some()));
        if now >= self.next_retention {
            self.next_retention = now + RETENTION_EVERY;
            retention(
                &h.config,
                &**h.dispatcher.history(),
                h.dispatcher.clock().now(),
            );
        }
        self.sleep_time()
    }

    /// Time until the earliest of: a cron occurrence, a folder scan, a reload, retention.
    fn sleep_time(&self) -> Duration {
        let now = Instant::now();
        let mut until = self.next_rescan.min(self.next_retention);
        if let Some(t) = self.reload_at {
            until = until.min(t);
        }
        if let Some(t) = self.next_scan.values().min() {
            until = until.min(*t);
        }
        let mut wait = until.saturating_duration_since(now);
        if let Some(t) = self.cron.earliest() {
            wait = wait.min(self.h.dispatcher.clock().until(t));
        }
        // A floor keeps a clock that jumped or an occurrence in the past from spinning.
        wait.max(Duration::from_millis(5))
    }

    /// Watches the folders of the jobs that have one (creating them), and stops watching others.
    fn update_watches(&mut self, watcher: &mut notify::RecommendedWatcher) {
        let mut wanted = HashSet::new();
        for spec in read(&self.h.registry).specs() {
            if let Some(w) = &spec.watch {
                let dirs = WatchDirs::new(&self.h.config, w);
                if let Err(e) = dirs.create() {
                    tracing::error!(job = %spec.name, "cannot create the watch folder {}: {e}", dirs.dir.display());
                    continue;
                }
                wanted.insert(dirs.dir);
            }
        }
        for dir in wanted
            .difference(&self.watched)
            .cloned()
            .collect::<Vec<_>>()
        {
            match watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(dir);
                }
                Err(e) => tracing::warn!("cannot watch {} (polling only): {e}", dir.display()),
            }
        }
        for dir in self
            .watched
            .difference(&wanted)
            .cloned()
            .collect::<Vec<_>>()
        {
            let _ = watcher.unwatch(&dir);
            self.watched.remove(&dir);
        }
    }
}

/// Scans one watched folder and claims the files that settled.
fn scan_folder(
    h: &Handle,
    spec: &crate::jobs::JobSpec,
    dirs: &WatchDirs,
    settler: &mut Settler,
    events: &mut FileEvents,
) {
    let Some(w) = &spec.watch else { return };
    let matcher = match watch::matcher(&w.pattern) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(job = %spec.name, "{e}");
            return;
        }
    };
    let ready = match settler.scan(&dirs.dir, &matcher, w, events) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(job = %spec.name, "cannot scan {}: {e}", dirs.dir.display());
            return;
        }
    };
    let history = h.dispatcher.history();
    for file in ready {
        // Folders shared by several hosts (NFS): the database says which host takes a file,
        // before the rename that every host would otherwise race for.
        if history.shared() {
            let Some(key) = watch::claim_key(&file.path, file.size) else {
                continue;
            };
            match history.claim_file_key(&spec.name, &key, h.dispatcher.owner()) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(job = %spec.name, file = %file.path.display(), "cannot claim: {e}");
                    continue;
                }
            }
        }
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
