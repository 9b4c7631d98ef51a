//! Starting runs in worker processes and watching them: the deadline watchdog, cancellation,
//! and closing the run when its worker dies.
//!
//! The worker enforces limits cooperatively (instruction hook); this side makes them absolute:
//! a worker that has not finished `kill_grace` after its deadline (or after a cancel) is killed
//! and the run closed here. A worker that dies on its own (a crash, the address-space limit)
//! gets its run closed here too, so no run stays `running`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::protocol::{Event, Request, RunRequest};
use super::spec::JobSpec;
use crate::config::Config;
use crate::history::Trigger;
use crate::history::{
    History, HistoryError, LogLevel, NewRun, RunEnd, RunErrorInfo, RunRecord, RunState,
};
use crate::lua::ErrorCode;
use crate::sync::LockExt;
use crate::units::format_duration;

/// Errors of starting or watching a worker.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The history could not be read or written.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The worker process could not be started or talked to.
    #[error("worker process: {0}")]
    Worker(std::io::Error),
}

/// A run recorded as queued, with the request for its worker.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The request to send.
    pub request: RunRequest,
    /// Time limit.
    pub timeout: Duration,
    /// Grace past the deadline (and after a cancel) before the worker is killed.
    pub kill_grace: Duration,
}

/// Records a new queued run of a job, owned by this process (no daemon picks it up), and
/// prepares its worker request.
pub fn enqueue(
    config: &Config,
    history: &dyn History,
    sealer: &super::seal::Sealer,
    spec: &JobSpec,
    params: Map<String, Value>,
    trigger: &Trigger,
    attempt: u32,
) -> Result<Prepared, HistoryError> {
    let sealed = Value::Object(sealer.seal_params(params.clone(), &spec.params));
    let params = Value::Object(params);
    let run_id = history.create_run(&NewRun {
        job: spec.name.clone(),
        trigger: trigger.clone(),
        params: sealed,
        attempt,
        not_before: None,
        retry_of: None,
        owner: Some(super::owner::Owner::current().to_string()),
    })?;
    Ok(prepare(config, spec, run_id, params, trigger.clone()))
}

/// Prepares the worker request of a recorded run from the job's spec (the version loaded now).
/// `params` are the run's params with sealed values opened.
pub fn prepare(
    config: &Config,
    spec: &JobSpec,
    run_id: i64,
    params: Value,
    trigger: Trigger,
) -> Prepared {
    let timeout = spec.timeout.unwrap_or(config.limits.timeout);
    let memory = spec.memory.unwrap_or(config.limits.memory);
    Prepared {
        request: RunRequest {
            run_id,
            job: spec.name.clone(),
            chunk_name: spec.chunk_name.clone(),
            source: spec.source.clone(),
            params,
            trigger,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            memory,
            address_space: Some(memory.saturating_add(config.limits.worker_headroom)),
        },
        timeout,
        kill_grace: config.limits.kill_grace,
    }
}

/// A running `ferry worker` child process.
pub struct WorkerProcess {
    child: Child,
    /// Runs it has served.
    runs: u32,
    /// When it was given back after its last run and has not said `Ready` since (closing the
    /// run's VM runs the script's finalizers, which may take long).
    closing: Option<Instant>,
    /// Shared with the run's [`Cancel`], which writes a cancel request the moment it is asked.
    stdin: WorkerInput,
    events: mpsc::Receiver<Option<Event>>,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

const STDERR_LINES: usize = 20;
/// Runs a worker serves before it is replaced by a fresh process (each run gets a fresh VM;
/// this bounds whatever a process may accumulate).
const RUNS_PER_WORKER: u32 = 200;
/// A worker still closing its last run's VM after this long is stopped.
const CLOSING_LIMIT: Duration = Duration::from_secs(10);
/// A worker whose resident memory grew past this is replaced instead of reused.
const WORKER_RSS_LIMIT: u64 = 256 << 20;
/// Events of a worker waiting to be read.
const EVENT_QUEUE: usize = 256;
/// How often the lease on a run is renewed while it goes.
const RENEW_EVERY: Duration = Duration::from_secs(20);

impl WorkerProcess {
    /// Starts a worker for this project. It applies its run's address-space limit
    /// ([`RunRequest::address_space`]) when the run arrives, so the same worker serves warm.
    pub fn spawn(config: &Config) -> std::io::Result<WorkerProcess> {
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.arg("worker");
        if let Some(file) = &config.file {
            cmd.arg("--config").arg(file);
        }
        // The child finds the same project whatever FERRY_ROOT or FERRY_CONFIG say.
        cmd.arg("--root").arg(&config.root);
        cmd.env_remove("FERRY_ROOT").env_remove("FERRY_CONFIG");
        cmd.current_dir(&config.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Terminal signals (Ctrl-C) go to the parent, which asks the worker to cancel instead.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout pipe"))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| std::io::Error::other("no stderr pipe"))?;
        // Bounded: a worker that writes events faster than they are read blocks on its stdout
        // instead of growing this queue.
        let (tx, rx) = mpsc::sync_channel(EVENT_QUEUE);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Event>(&line) {
                    Ok(ev) => {
                        if tx.send(Some(ev)).is_err() {
                            return;
                        }
                    }
                    Err(_) => tracing::debug!("worker printed a non-event line: {line}"),
                }
            }
            let _ = tx.send(None);
        });
        let tail = Arc::new(Mutex::new(VecDeque::<String>::new()));
        let tail_w = tail.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut t = tail_w.lock_unpoisoned();
                if t.len() == STDERR_LINES {
                    // A panic's two lines stay, whatever backtrace follows them.
                    let keep = t.iter().position(|l| l.contains("panicked at"));
                    match keep {
                        Some(0) => {
                            t.remove(2);
                        }
                        _ => {
                            t.pop_front();
                        }
                    }
                }
                t.push_back(line);
            }
        });
        Ok(WorkerProcess {
            child,
            runs: 0,
            closing: None,
            stdin: Arc::new(Mutex::new(stdin)),
            events: rx,
            stderr: tail,
        })
    }

    /// Sends a request.
    pub fn send(&mut self, req: &Request) -> std::io::Result<()> {
        send_to(&self.stdin, req)
    }

    /// The next event; `Ok(None)` when the worker's stdout closed (it exited).
    pub fn recv_timeout(&self, d: Duration) -> Result<Option<Event>, mpsc::RecvTimeoutError> {
        self.events.recv_timeout(d)
    }

    /// Whether it is ready for a run: not still closing its last run's VM. Reads the events it
    /// sent meanwhile.
    fn ready(&mut self) -> bool {
        while self.closing.is_some() {
            match self.events.try_recv() {
                Ok(Some(Event::Ready { .. })) => self.closing = None,
                Ok(Some(_)) => {}
                Ok(None) | Err(mpsc::TryRecvError::Disconnected) => return false,
                Err(mpsc::TryRecvError::Empty) => return false,
            }
        }
        true
    }

    /// Its resident memory in bytes (`VmRSS`), when it can be read.
    fn rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the worker and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Closes stdin (the worker exits when idle) and waits a moment, then kills.
    pub fn shutdown(mut self) {
        *self.stdin.lock_unpoisoned() = None;
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill();
    }

    /// Why the worker died, from its exit status and the end of its stderr.
    fn death(&mut self) -> (ErrorCode, String) {
        // Give the reader thread a moment to collect the last stderr lines.
        let status = self.child.wait().ok();
        std::thread::sleep(Duration::from_millis(20));
        let tail: Vec<String> = self.stderr.lock_unpoisoned().iter().cloned().collect();
        let how = match status {
            Some(s) => {
                use std::os::unix::process::ExitStatusExt;
                match (s.code(), s.signal()) {
                    (Some(c), _) => format!("exit code {c}"),
                    (_, Some(sig)) => format!("signal {sig}"),
                    _ => "unknown status".into(),
                }
            }
            None => "unknown status".into(),
        };
        if tail.iter().any(|l| l.contains("memory allocation of")) {
            return (
                ErrorCode::Memory,
                format!(
                    "the worker process ran out of memory outside Lua (address-space limit) and died ({how})"
                ),
            );
        }
        (
            ErrorCode::Crashed,
            format!("the worker process died ({how}){}", why_died(&tail)),
        )
    }
}

/// The lines of a dead worker's stderr that say why: a panic's location and message (the lines
/// that follow it are backtrace notes), else the last line. Empty, or `: text`.
fn why_died(tail: &[String]) -> String {
    if let Some(at) = tail.iter().rposition(|l| l.contains("panicked at")) {
        let mut why = tail[at].trim().to_string();
        if let Some(next) = tail.get(at + 1)
            && !next.starts_with("note:")
            && !next.starts_with("stack backtrace")
        {
            why = format!("{why} {}", next.trim());
        }
        return format!(": {why}");
    }
    tail.last().map(|l| format!(": {l}")).unwrap_or_default()
}

/// A worker's stdin, shared by its executor and the run's [`Cancel`]; `None` once closed.
type WorkerInput = Arc<Mutex<Option<ChildStdin>>>;

fn send_to(stdin: &Mutex<Option<ChildStdin>>, req: &Request) -> std::io::Result<()> {
    let line = serde_json::to_string(req).map_err(std::io::Error::other)?;
    let mut guard = stdin.lock_unpoisoned();
    let stdin = guard
        .as_mut()
        .ok_or_else(|| std::io::Error::other("worker stdin closed"))?;
    writeln!(stdin, "{line}")?;
    stdin.flush()
}

/// How a run is asked to stop: a flag the executor watches (a signal handler may set it), and,
/// once the run's worker is known, a cancel request written to the worker at once, so that it
/// stops within a few milliseconds of work instead of at the executor's next look.
#[derive(Default)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    worker: Mutex<Option<(i64, WorkerInput)>>,
}

impl Cancel {
    /// A cancel over a flag that something else (a signal handler) sets.
    pub fn from_flag(flag: Arc<AtomicBool>) -> Cancel {
        Cancel {
            flag,
            worker: Mutex::new(None),
        }
    }

    /// Asks the run to stop.
    pub fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Some((run_id, stdin)) = &*self.worker.lock_unpoisoned() {
            // A worker that is gone already needs no request.
            let _ = send_to(stdin, &Request::Cancel { run_id: *run_id });
        }
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    fn attach(&self, run_id: i64, worker: &WorkerProcess) {
        *self.worker.lock_unpoisoned() = Some((run_id, worker.stdin.clone()));
    }

    fn detach(&self) {
        *self.worker.lock_unpoisoned() = None;
    }
}

/// Worker processes started ahead of runs: each waits (having opened the history and sent
/// `Ready`) until a run is handed to it, runs it in a fresh VM, and comes back for the next, up
/// to [`RUNS_PER_WORKER`] runs or [`WORKER_RSS_LIMIT`] of memory; a worker that died or was
/// killed is replaced. A run then starts without paying for a process start. A crash still
/// takes down only the run that caused it.
pub struct WorkerPool {
    config: Config,
    size: usize,
    idle: Mutex<Vec<WorkerProcess>>,
    /// Workers being warmed.
    warming: Mutex<usize>,
    /// Workers out serving a run (they come back with [`WorkerPool::give_back`]).
    loaned: Mutex<usize>,
    closed: std::sync::atomic::AtomicBool,
}

impl WorkerPool {
    /// A pool keeping `size` workers warm; call [`WorkerPool::fill`] to start them.
    pub fn new(config: &Config, size: usize) -> Arc<WorkerPool> {
        Arc::new(WorkerPool {
            config: config.clone(),
            size,
            idle: Mutex::new(Vec::new()),
            warming: Mutex::new(0),
            loaned: Mutex::new(0),
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Starts workers in the background until `size` are idle or warming.
    pub fn fill(self: &Arc<Self>) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let idle = self.idle.lock_unpoisoned().len();
        let loaned = *self.loaned.lock_unpoisoned();
        let mut warming = self.warming.lock_unpoisoned();
        let missing = self.size.saturating_sub(idle + *warming + loaned);
        *warming += missing;
        drop(warming);
        for _ in 0..missing {
            let pool = self.clone();
            std::thread::spawn(move || pool.warm_one());
        }
    }

    fn warm_one(&self) {
        let ready = WorkerProcess::spawn(&self.config).ok().and_then(|mut w| {
            match w.recv_timeout(Duration::from_secs(10)) {
                Ok(Some(Event::Ready { .. })) => Some(w),
                _ => {
                    w.kill();
                    None
                }
            }
        });
        *self.warming.lock_unpoisoned() -= 1;
        if let Some(w) = ready {
            if self.closed.load(Ordering::SeqCst) {
                w.shutdown();
            } else {
                self.idle.lock_unpoisoned().push(w);
            }
        }
    }

    /// A worker for a run: an idle one that is still alive, else a fresh one. Either is on loan
    /// until [`WorkerPool::give_back`] or [`WorkerPool::lost`].
    pub fn take(self: &Arc<Self>) -> std::io::Result<WorkerProcess> {
        let taken = {
            let mut idle = self.idle.lock_unpoisoned();
            let mut found = None;
            let mut i = idle.len();
            while i > 0 {
                i -= 1;
                if !idle[i].alive() {
                    idle.swap_remove(i).kill();
                    continue;
                }
                if idle[i].ready() {
                    found = Some(idle.swap_remove(i));
                    break;
                }
                // Still closing its last run: a finalizer that does not end keeps it from
                // ever serving again.
                if idle[i].closing.is_some_and(|t| t.elapsed() > CLOSING_LIMIT) {
                    let stuck = idle.swap_remove(i);
                    std::thread::spawn(move || stuck.shutdown());
                }
            }
            found
        };
        let worker = match taken {
            Some(w) => w,
            None => WorkerProcess::spawn(&self.config)?,
        };
        *self.loaned.lock_unpoisoned() += 1;
        self.fill();
        Ok(worker)
    }

    /// Takes a worker back after its run: it serves the next one, unless it has served many,
    /// grew large, or the pool has enough (then it is stopped in the background).
    pub fn give_back(self: &Arc<Self>, mut w: WorkerProcess) {
        w.runs += 1;
        w.closing = Some(Instant::now());
        self.return_loan();
        let reusable = !self.closed.load(Ordering::SeqCst)
            && w.runs < RUNS_PER_WORKER
            && w.alive()
            && w.rss().is_some_and(|r| r < WORKER_RSS_LIMIT);
        let spare = if reusable {
            let mut idle = self.idle.lock_unpoisoned();
            if idle.len() < self.size {
                idle.push(w);
                None
            } else {
                Some(w)
            }
        } else {
            Some(w)
        };
        if let Some(w) = spare {
            std::thread::spawn(move || w.shutdown());
        }
        self.fill();
    }

    /// A loaned worker that died or was killed: a replacement starts warming.
    pub fn lost(self: &Arc<Self>) {
        self.return_loan();
        self.fill();
    }

    fn return_loan(&self) {
        let mut loaned = self.loaned.lock_unpoisoned();
        *loaned = loaned.saturating_sub(1);
    }

    /// Stops every idle worker; no more are started.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let idle: Vec<WorkerProcess> = std::mem::take(&mut *self.idle.lock_unpoisoned());
        for w in idle {
            w.shutdown();
        }
    }

    /// Workers idle now.
    pub fn idle(&self) -> usize {
        self.idle.lock_unpoisoned().len()
    }
}

/// Runs a prepared run in a warm worker from `pool`, or else a fresh one, and waits for it. `cancel` may be set from another
/// thread (Ctrl-C); `on_event` sees every event (live logs, progress).
pub fn execute(
    config: &Config,
    history: &dyn History,
    prepared: &Prepared,
    pool: Option<&Arc<WorkerPool>>,
    cancel: &Cancel,
    on_event: &mut dyn FnMut(&Event),
) -> Result<RunRecord, ExecError> {
    let result = execute_inner(config, history, prepared, pool, cancel, on_event);
    cancel.detach();
    result
}

fn execute_inner(
    config: &Config,
    history: &dyn History,
    prepared: &Prepared,
    pool: Option<&Arc<WorkerPool>>,
    cancel: &Cancel,
    on_event: &mut dyn FnMut(&Event),
) -> Result<RunRecord, ExecError> {
    let id = prepared.request.run_id;
    let got = match pool {
        Some(p) => p.take(),
        None => WorkerProcess::spawn(config),
    };
    // A pool's worker goes back to it after the run, or is reported lost.
    let lost = || {
        if let Some(p) = pool {
            p.lost();
        }
    };
    let mut worker = match got {
        Ok(w) => w,
        Err(e) => {
            close(
                history,
                id,
                RunState::Failed,
                ErrorCode::Crashed,
                format!("cannot start a worker process: {e}"),
            )?;
            return Err(ExecError::Worker(e));
        }
    };
    if let Err(e) = worker.send(&Request::Run(Box::new(prepared.request.clone()))) {
        let (code, msg) = worker.death();
        lost();
        close(history, id, RunState::Failed, code, msg)?;
        return Err(ExecError::Worker(e));
    }
    cancel.attach(id, &worker);
    let started = Instant::now();
    let deadline = started + prepared.timeout + prepared.kill_grace;
    let mut cancel_sent: Option<Instant> = None;
    let mut renewed = started;
    // A shared history's lease may be shorter than the default one: renew at a third of it.
    let renew_every = config
        .history_db
        .as_ref()
        .map(|t| t.lease / 3)
        .unwrap_or(RENEW_EVERY)
        .min(RENEW_EVERY);
    let mut owner: Option<String> = None;
    loop {
        if renewed.elapsed() >= renew_every {
            renewed = Instant::now();
            let me = owner.get_or_insert_with(|| super::owner::Owner::current().to_string());
            if let Err(e) = history.renew_leases(me) {
                tracing::warn!(run = id, "cannot renew the lease on the run: {e}");
            }
        }
        if cancel.requested() && cancel_sent.is_none() {
            let _ = history.request_cancel(id);
            let _ = worker.send(&Request::Cancel { run_id: id });
            cancel_sent = Some(Instant::now());
        }
        let limit = match cancel_sent {
            Some(t) => deadline.min(t + prepared.kill_grace),
            None => deadline,
        };
        let now = Instant::now();
        if now >= limit {
            worker.kill();
            lost();
            let (state, code, what) = if cancel_sent.is_some() && now < deadline {
                (
                    RunState::Cancelled,
                    ErrorCode::Cancelled,
                    "run was cancelled".to_string(),
                )
            } else {
                (
                    RunState::TimedOut,
                    ErrorCode::Timeout,
                    format!("run timed out after {}", format_duration(prepared.timeout)),
                )
            };
            let msg = format!(
                "{what}; the worker did not stop within the {} grace period (stuck inside a host or C function) and was killed",
                format_duration(prepared.kill_grace)
            );
            let _ = history.append_log(id, LogLevel::Error, &msg);
            super::cleanup::clean(config, history, id, false);
            close(history, id, state, code, msg)?;
            break;
        }
        match worker.recv_timeout((limit - now).min(Duration::from_millis(100))) {
            Ok(Some(ev)) => {
                on_event(&ev);
                if matches!(ev, Event::Finished { run_id, .. } if run_id == id) {
                    match pool {
                        Some(p) => p.give_back(worker),
                        None => worker.shutdown(),
                    }
                    return Ok(history.get_run(id)?);
                }
            }
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let (code, msg) = worker.death();
                lost();
                let _ = history.append_log(id, LogLevel::Error, &msg);
                // A worker that died after recording a success leaves nothing to undo.
                let ended = history.get_run(id)?;
                super::cleanup::clean(config, history, id, ended.state == RunState::Succeeded);
                close(history, id, RunState::Failed, code, msg)?;
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    Ok(history.get_run(id)?)
}

/// Closes a run with an error, when the worker could not do it.
pub fn close(
    history: &dyn History,
    id: i64,
    state: RunState,
    code: ErrorCode,
    message: String,
) -> Result<(), HistoryError> {
    history.finish_run(
        id,
        &RunEnd {
            state,
            error: Some(RunErrorInfo {
                code,
                message,
                traceback: None,
            }),
            summary: None,
        },
    )?;
    Ok(())
}
