//! The worker process (`ferry worker`): reads run requests on stdin, runs each in a fresh Lua VM,
//! writes logs, progress and the outcome to the history itself, and reports events on stdout.
//!
//! A cancel arrives either on stdin or through the history (`cancel_requested`, polled while a
//! run is going), so `ferry runs cancel` works from any process. When stdin closes, the parent is
//! gone: the current run stops and is recorded as `interrupted`.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::protocol::{Event, Request, RunRequest};
use super::secrets::Secrets;
use super::spec::vm_options;
use crate::config::Config;
use crate::history::{
    HistoryError, HistoryHandle, LogLevel, NewArtifact, RunEnd, RunErrorInfo, RunState, Trigger,
};
use crate::lua::{self, ErrorCode, Level, Outcome, RunHost, RunInput};
use crate::sync::LockExt;

/// How often the history is polled for a cancel request of the current run.
const CANCEL_POLL: Duration = Duration::from_millis(50);
/// How often the poller looks whether a run has begun, while the worker waits for one.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// Minimum time between two progress writes to the history.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Errors that end a worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The history could not be opened or written.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The OS refused the address-space limit.
    #[error("cannot set the worker's address-space limit: {0}")]
    Rlimit(std::io::Error),
}

/// Writes events as JSON lines to stdout.
#[derive(Clone)]
struct Events {
    out: Arc<Mutex<std::io::Stdout>>,
}

impl Events {
    fn send(&self, ev: &Event) {
        let Ok(line) = serde_json::to_string(ev) else {
            return;
        };
        let mut out = self.out.lock_unpoisoned();
        // A closed stdout means the parent is gone; stdin's end will stop the run.
        let _ = writeln!(out, "{line}").and_then(|_| out.flush());
    }
}

type Current = Arc<Mutex<Option<(i64, Arc<AtomicBool>)>>>;

/// Limits the address space of this process (RLIMIT_AS), so memory held outside Lua's allocator
/// cannot grow without bound.
pub(crate) fn limit_address_space(bytes: u64) -> Result<(), WorkerError> {
    // Only the soft limit: a worker serves run after run, each with its own limit, and a script
    // has no way to raise it.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut lim) } != 0 {
        return Err(WorkerError::Rlimit(std::io::Error::last_os_error()));
    }
    lim.rlim_cur = (bytes as libc::rlim_t).min(lim.rlim_max);
    // SAFETY: setrlimit only reads the struct we pass.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) };
    if rc != 0 {
        return Err(WorkerError::Rlimit(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The worker's main loop; returns when stdin closes.
pub fn run_worker(config: &Config) -> Result<(), WorkerError> {
    let history = crate::history::open(config)?;
    // SQLite: a connection of its own, so a poll never waits behind the run's writes. A shared
    // history's connection is shared by both threads instead (one fewer per worker on the
    // database server).
    let poll_history = if history.shared() {
        history.clone()
    } else {
        crate::history::open(config)?
    };
    let mut secrets = Secrets::from_config(config);
    // Store credentials from ferry.toml are secrets too, though scripts never read them.
    for value in config.storage.secret_values() {
        secrets.hide(&value);
    }
    let events = Events {
        out: Arc::new(Mutex::new(std::io::stdout())),
    };
    let current: Current = Arc::new(Mutex::new(None));
    let parent_gone = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<RunRequest>();

    {
        let current = current.clone();
        let parent_gone = parent_gone.clone();
        std::thread::spawn(move || read_requests(tx, current, parent_gone));
    }
    {
        let current = current.clone();
        std::thread::spawn(move || {
            loop {
                let idle = current.lock_unpoisoned().is_none();
                // A warm worker waiting for its run has nothing to poll for.
                std::thread::sleep(if idle { IDLE_POLL } else { CANCEL_POLL });
                let run = current.lock_unpoisoned().clone();
                if let Some((id, flag)) = run
                    && poll_history.cancel_requested(id).unwrap_or(false)
                {
                    flag.store(true, Ordering::SeqCst);
                }
            }
        });
    }

    events.send(&Event::Ready {
        pid: std::process::id(),
    });
    for req in rx {
        execute(
            config,
            &history,
            &secrets,
            &events,
            &current,
            &parent_gone,
            req,
        );
        // The run's VM is closed (its finalizers have run): ready for the next run.
        events.send(&Event::Ready {
            pid: std::process::id(),
        });
    }
    Ok(())
}

fn read_requests(tx: mpsc::Sender<RunRequest>, current: Current, parent_gone: Arc<AtomicBool>) {
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Request>(&line) {
            Ok(Request::Run(r)) => {
                if tx.send(*r).is_err() {
                    break;
                }
            }
            Ok(Request::Cancel { run_id }) => {
                if let Some((id, flag)) = current.lock_unpoisoned().as_ref()
                    && *id == run_id
                {
                    flag.store(true, Ordering::SeqCst);
                }
            }
            Err(e) => tracing::warn!("worker: ignoring a malformed request: {e}"),
        }
    }
    parent_gone.store(true, Ordering::SeqCst);
    if let Some((_, flag)) = current.lock_unpoisoned().as_ref() {
        flag.store(true, Ordering::SeqCst);
    }
}

fn execute(
    config: &Config,
    history: &HistoryHandle,
    secrets: &Secrets,
    events: &Events,
    current: &Current,
    parent_gone: &AtomicBool,
    req: RunRequest,
) {
    let id = req.run_id;
    // The limit comes with the run (a warm worker started before its job was known).
    if let Some(bytes) = req.address_space
        && let Err(e) = limit_address_space(bytes)
    {
        tracing::warn!("run {id}: cannot limit the worker's address space: {e}");
    }
    let cancel = Arc::new(AtomicBool::new(false));
    *current.lock_unpoisoned() = Some((id, cancel.clone()));
    let finish = |end: RunEnd| {
        if let Err(e) = history.finish_run(id, &end) {
            tracing::error!("run {id}: cannot record its end: {e}");
        }
        let state = history.get_run(id).map(|r| r.state).unwrap_or(end.state);
        events.send(&Event::Finished {
            run_id: id,
            state,
            error: end.error,
        });
    };
    let version = super::versions::hash(&req.source);
    match history.start_run(id, std::process::id(), &version) {
        Ok(true) => {}
        Ok(false) => {
            // Cancelled (or closed) before it could start.
            finish(RunEnd {
                state: RunState::Cancelled,
                error: Some(RunErrorInfo {
                    code: ErrorCode::Cancelled,
                    message: "run was cancelled before it started".into(),
                    traceback: None,
                }),
                summary: None,
            });
            *current.lock_unpoisoned() = None;
            return;
        }
        Err(e) => {
            tracing::error!("run {id}: cannot start: {e}");
            *current.lock_unpoisoned() = None;
            return;
        }
    }
    events.send(&Event::Started { run_id: id });
    // Credentials given as params (a password param, a URL with a password) are hidden like
    // secrets.
    let mut secrets = secrets.clone();
    for v in crate::redact::param_secrets(&req.params) {
        secrets.hide(&v);
    }
    let host = Arc::new(WorkerHost {
        run_id: id,
        job: req.job.clone(),
        history: history.clone(),
        secrets: Mutex::new(secrets),
        events: events.clone(),
        progress: Mutex::new(ProgressState::default()),
        discard_stores: Mutex::new(Vec::new()),
    });
    let mut vm = vm_options(
        config,
        Some(req.memory),
        Duration::from_millis(req.timeout_ms),
    );
    if let Some(dir) = watch_folder(&req.trigger) {
        vm.storage.allow_root(&dir);
    }
    let temp_dir = super::cleanup::run_temp_dir(config, id);
    vm.storage.allow_root(&temp_dir);
    let input = RunInput {
        run_id: id,
        job: req.job.clone(),
        chunk_name: req.chunk_name.clone(),
        source: req.source.clone(),
        params: req.params.clone(),
        trigger: req.trigger.to_json(),
        vm,
        cancel,
        temp_dir: Some(temp_dir),
    };
    // The end is recorded before the VM is closed: a script's looping `__gc` finalizer (which
    // runs when the VM closes) cannot turn a run that completed into a timed-out one.
    lua::run_job_with(&input, host.clone(), |outcome: &Outcome| {
        host.flush_progress();
        // The VM has stopped (also after a timeout or a cancel): clean up before the end is
        // recorded, so that whoever sees the run closed sees its leftovers gone.
        super::cleanup::remove_temp(config, id);
        let succeeded = matches!(outcome, Outcome::Succeeded(_));
        let problems = super::cleanup::apply_discards(&**history, id, succeeded, &|d| {
            host.discard_store(d.id)
                .map(|s| s.uninterruptible())
                .map_or_else(|| super::cleanup::open_configured(config, d), Ok)
        });
        for p in problems {
            host.log(Level::Warn, &p);
        }
        // The run may have added values to hide (inline store credentials).
        let secrets = &host.secrets();
        let end = match outcome.clone() {
            Outcome::Succeeded(summary) => RunEnd {
                state: RunState::Succeeded,
                error: None,
                summary: Some(secrets.redact_json(summary)).filter(|s| !s.is_null()),
            },
            Outcome::Failed(err) => {
                let (state, code, message) = match err.code {
                    ErrorCode::Timeout => (RunState::TimedOut, err.code, err.message),
                    ErrorCode::Cancelled if parent_gone.load(Ordering::SeqCst) => (
                        RunState::Interrupted,
                        ErrorCode::Interrupted,
                        "the process that started the run went away".to_string(),
                    ),
                    ErrorCode::Cancelled => (RunState::Cancelled, err.code, err.message),
                    _ => (RunState::Failed, err.code, err.message),
                };
                let message = secrets.redact(&message).into_owned();
                host.log(Level::Error, &message);
                RunEnd {
                    state,
                    error: Some(RunErrorInfo {
                        code,
                        message,
                        traceback: err.traceback.map(|t| secrets.redact(&t).into_owned()),
                    }),
                    summary: None,
                }
            }
        };
        finish(end);
    });
    *current.lock_unpoisoned() = None;
}

/// The watch folder of a run started by a dropped file: the file sits in
/// `<watch>/.ferry/processing/`, and its run may use `<watch>` as a local store.
fn watch_folder(trigger: &Trigger) -> Option<std::path::PathBuf> {
    let file = std::path::Path::new(trigger.file()?);
    let dir = file.parent()?;
    if dir.ends_with(".ferry/processing") {
        dir.parent()?.parent().map(std::path::Path::to_path_buf)
    } else {
        Some(dir.to_path_buf())
    }
}

#[derive(Default)]
struct ProgressState {
    last_write: Option<Instant>,
    pending: Option<(u64, Option<u64>)>,
}

/// The [`RunHost`] of a worker: everything goes to the history, redacted, and out as events.
struct WorkerHost {
    run_id: i64,
    job: String,
    history: HistoryHandle,
    secrets: Mutex<Secrets>,
    events: Events,
    progress: Mutex<ProgressState>,
    /// The stores of the run's discards, by discard id (they may carry inline credentials).
    discard_stores: Mutex<Vec<(i64, crate::storage::Store)>>,
}

impl WorkerHost {
    fn discard_store(&self, id: i64) -> Option<crate::storage::Store> {
        self.discard_stores
            .lock_unpoisoned()
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, s)| s.clone())
    }

    fn secrets(&self) -> Secrets {
        self.secrets.lock_unpoisoned().clone()
    }

    fn flush_progress(&self) {
        let pending = self.progress.lock_unpoisoned().pending.take();
        if let Some((done, total)) = pending
            && let Err(e) = self.history.set_progress(self.run_id, done, total)
        {
            tracing::warn!("run {}: cannot record progress: {e}", self.run_id);
        }
    }
}

impl RunHost for WorkerHost {
    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        let secrets = self.secrets.lock_unpoisoned();
        let message = secrets.redact(message);
        let seq = match self.history.append_log(self.run_id, level, &message) {
            Ok(seq) => Some(seq),
            Err(e) => {
                tracing::warn!("run {}: cannot record a log line: {e}", self.run_id);
                None
            }
        };
        self.events.send(&Event::Log {
            run_id: self.run_id,
            seq,
            level,
            message: message.into_owned(),
        });
    }

    fn progress(&self, done: u64, total: Option<u64>) {
        let due = {
            let mut p = self.progress.lock_unpoisoned();
            p.pending = Some((done, total));
            let due = p.last_write.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY);
            if due {
                p.last_write = Some(Instant::now());
            }
            due
        };
        if due {
            self.flush_progress();
            self.events.send(&Event::Progress {
                run_id: self.run_id,
                done,
                total,
            });
        }
    }

    fn artifact(&self, a: &lua::ArtifactRecord) -> Result<(), String> {
        let artifact = NewArtifact {
            name: a.name.clone(),
            store: self.secrets().redact(&a.store).into_owned(),
            path: a.path.clone(),
            size: a.size,
            sha256: a.sha256.clone(),
            copy: a.copy.clone(),
        };
        self.history
            .add_artifact(self.run_id, &artifact)
            .map_err(|e| e.to_string())
    }

    fn state_get(&self, key: &str) -> Result<Option<serde_json::Value>, String> {
        self.history
            .state_get(&self.job, key)
            .map_err(|e| e.to_string())
    }

    fn state_set(&self, key: &str, value: Option<&serde_json::Value>) -> Result<(), String> {
        self.history
            .state_set(&self.job, key, value)
            .map_err(|e| e.to_string())
    }

    fn secret(&self, name: &str) -> Option<String> {
        self.secrets.lock_unpoisoned().get(name).map(str::to_string)
    }

    fn discard_on_failure(
        &self,
        store: &crate::storage::Store,
        prefix: &str,
    ) -> Result<(), String> {
        let name = store
            .name()
            .map(str::to_string)
            .unwrap_or_else(|| store.url());
        let id = self
            .history
            .add_discard(self.run_id, &name, prefix)
            .map_err(|e| e.to_string())?;
        self.discard_stores
            .lock_unpoisoned()
            .push((id, store.clone()));
        Ok(())
    }

    fn hide(&self, value: &str) {
        self.secrets.lock_unpoisoned().hide(value);
    }
}
