//! The one dispatcher: every run, whatever its trigger, is submitted here, recorded as queued in
//! the history (so a restart loses nothing), and started when the global concurrency limit and
//! the job's overlap policy allow. After a run it applies retries and moves a watched file to its
//! final folder.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::events::{Bus, Event as BusEvent};
use super::executor;
use super::owner::{Owner, is_ferry_worker};
use super::params::{self, GivenParams, ParamError};
use super::registry::Registry;
use super::spec::{JobSpec, Overlap};
use super::watch::{self, WatchDirs};
use crate::config::Config;
use crate::history::Trigger;
use crate::history::{
    CancelOutcome, FileState, HistoryError, HistoryHandle, HostBeat, NewRun, RunEnd, RunErrorInfo,
    RunRecord, RunState,
};
use crate::lua::ErrorCode;
use crate::sync::{LockExt, RwLockExt};

/// A request to run a job.
#[derive(Debug, Clone)]
pub struct Submit {
    /// The job.
    pub job: String,
    /// Given params (converted and checked against the job's declarations).
    pub params: GivenParams,
    /// Why it runs.
    pub trigger: Trigger,
    /// Do not start before this time.
    pub not_before: Option<DateTime<Utc>>,
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// No such job.
    #[error("job {0:?} does not exist")]
    UnknownJob(String),
    /// The job's script does not load and no earlier version is active.
    #[error("job {job:?} is not loaded: {error}")]
    NotLoaded {
        /// The job.
        job: String,
        /// Its load error.
        error: String,
    },
    /// Params were refused.
    #[error(transparent)]
    Params(#[from] ParamError),
    /// The history could not be written.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The daemon is shutting down.
    #[error("ferry is shutting down; no new runs are accepted")]
    ShuttingDown,
    /// A run cannot be run again.
    #[error(transparent)]
    Rerun(#[from] super::rerun::RerunError),
}

/// The outcome of a submission.
#[derive(Debug, Clone, Copy)]
pub struct Submitted {
    /// The run id.
    pub id: i64,
    /// `queued`, or `skipped` when the overlap policy refused it.
    pub state: RunState,
}

/// Due queued runs read per history query of a dispatch pass.
const DISPATCH_PAGE: u32 = 100;
/// How often a daemon records that it is live (`ferry hosts` lists daemons heard of within
/// three of these).
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// With a shared history, how long a run of a job this host has not loaded is left for other
/// hosts before it fails.
const UNLOADED_GRACE: Duration = Duration::from_secs(60);
/// Ended runs considered per history read of a chain pass.
const CHAIN_BATCH: u32 = 200;
/// How often the dispatch loop does its housekeeping, which also finds runs that other
/// processes queued without waking this one.
pub const HOUSEKEEPING: Duration = Duration::from_secs(1);

struct Running {
    job: String,
    cancel: Arc<executor::Cancel>,
}

struct Inner {
    config: Config,
    history: HistoryHandle,
    registry: Arc<RwLock<Registry>>,
    running: Mutex<HashMap<i64, Running>>,
    /// Signalled whenever a run leaves `running` (what [`Dispatcher::drain`] waits for).
    idle: std::sync::Condvar,
    /// Wakes the dispatch loop: a run queued or ended, a registry change, a stop.
    wake: super::signal::Signal,
    /// The time cron, retries and grace periods are decided by.
    clock: super::clock::Clock,
    accepting: AtomicBool,
    /// Workers started ahead of runs.
    pool: Arc<executor::WorkerPool>,
    /// Runs this daemon finished since it started, by job and end state (a Prometheus counter).
    finished: Mutex<std::collections::BTreeMap<(String, String), u64>>,
    /// This process, as recorded on the runs it claims.
    owner: String,
    /// Runs of dead owners whose worker is still finishing, since when (see `reap`).
    lingering: Mutex<HashMap<i64, std::time::Instant>>,
    /// Seals secret params before they are recorded, opens them for the worker.
    sealer: super::seal::Sealer,
    /// When this daemon last recorded its heartbeat.
    last_beat: Mutex<Option<std::time::Instant>>,
    /// Held by a chain pass (see [`Dispatcher::fire_chains`]).
    chaining: Mutex<()>,
    /// Paused jobs, as the history has them (re-read by housekeeping, so a pause from the
    /// command line takes effect too).
    paused: Mutex<std::collections::HashSet<String>>,
    /// What happens, for listeners (the API's event stream).
    events: Bus,
}

/// Cheap-to-clone handle on the dispatcher.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

impl Dispatcher {
    /// A dispatcher over the given registry and history, deciding by `clock`.
    pub fn new(
        config: Config,
        history: HistoryHandle,
        registry: Arc<RwLock<Registry>>,
        clock: super::clock::Clock,
    ) -> Result<Dispatcher, super::seal::SealError> {
        let sealer = super::seal::Sealer::for_config(&config)?;
        let pool = executor::WorkerPool::new(&config, config.daemon.warm_workers);
        pool.fill();
        let paused = history
            .paused_jobs()
            .map(|v| v.into_iter().map(|(j, _)| j).collect())
            .unwrap_or_default();
        Ok(Dispatcher {
            inner: Arc::new(Inner {
                config,
                history,
                registry,
                running: Mutex::new(HashMap::new()),
                idle: std::sync::Condvar::new(),
                wake: super::signal::Signal::default(),
                clock,
                accepting: AtomicBool::new(true),
                pool,
                finished: Mutex::new(std::collections::BTreeMap::new()),
                owner: Owner::current().to_string(),
                lingering: Mutex::new(HashMap::new()),
                sealer,
                events: Bus::default(),
                paused: Mutex::new(paused),
                chaining: Mutex::new(()),
                last_beat: Mutex::new(None),
            }),
        })
    }

    /// The history.
    pub fn history(&self) -> &HistoryHandle {
        &self.inner.history
    }

    /// The clock the daemon decides by.
    pub fn clock(&self) -> &super::clock::Clock {
        &self.inner.clock
    }

    /// The active spec of a job.
    pub fn spec(&self, job: &str) -> Option<Arc<JobSpec>> {
        self.inner.registry.read_unpoisoned().get(job)
    }

    /// Runs finished since this daemon started, by (job, state); for `/metrics`.
    pub fn finished_counts(&self) -> Vec<((String, String), u64)> {
        self.inner
            .finished
            .lock_unpoisoned()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Workers idle and warm now.
    pub fn warm_workers(&self) -> usize {
        self.inner.pool.idle()
    }

    /// How many runs are going.
    pub fn running_count(&self) -> usize {
        self.inner.running.lock_unpoisoned().len()
    }

    /// Records a run (queued, or skipped by the overlap policy) and wakes the dispatch loop.
    pub fn submit(&self, s: Submit) -> Result<Submitted, SubmitError> {
        match self.submit_claimed(s, None)? {
            Some(submitted) => Ok(submitted),
            // Without an occurrence to claim, a run is always recorded.
            None => Err(SubmitError::ShuttingDown),
        }
    }

    /// Records the run of a cron occurrence due at `scheduled_at` together with the claim of
    /// that occurrence (see [`crate::history::History::create_cron_run`]), as
    /// [`submit`](Self::submit) does; `None` when another process claimed the occurrence.
    pub fn submit_cron(
        &self,
        s: Submit,
        scheduled_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Submitted>, SubmitError> {
        self.submit_claimed(s, Some(scheduled_at))
    }

    fn submit_claimed(
        &self,
        s: Submit,
        occurrence: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Option<Submitted>, SubmitError> {
        if !self.inner.accepting.load(Ordering::SeqCst) {
            return Err(SubmitError::ShuttingDown);
        }
        let spec = {
            let reg = self.inner.registry.read_unpoisoned();
            match reg.entries().find(|(n, _)| **n == s.job) {
                None => return Err(SubmitError::UnknownJob(s.job)),
                Some((_, e)) => match &e.spec {
                    Some(spec) => spec.clone(),
                    None => {
                        return Err(SubmitError::NotLoaded {
                            job: s.job,
                            error: e.error.as_ref().map(|e| e.to_string()).unwrap_or_default(),
                        });
                    }
                },
            }
        };
        let params = self
            .inner
            .sealer
            .seal_params(params::resolve(&spec.params, &s.params)?, &spec.params);
        let history = &self.inner.history;
        let busy = self.job_busy(&spec.name)?;
        // Each dropped file must run exactly once, so file runs always queue. A paused job's
        // schedule fires into `skipped` runs that say so; asked-for runs still run.
        let automatic = matches!(s.trigger, Trigger::Cron { .. } | Trigger::Job { .. });
        // Each upstream run starts its downstream jobs once, so chained runs queue too; and so
        // do the catch-up runs of `missed = "all"`, one per missed occurrence as asked.
        let catch_up_all = matches!(
            s.trigger,
            Trigger::Cron {
                missed: Some(_),
                ..
            }
        ) && spec
            .schedule
            .as_ref()
            .is_some_and(|sc| sc.missed == super::schedule::Missed::All);
        let must_run =
            matches!(s.trigger, Trigger::File { .. } | Trigger::Job { .. }) || catch_up_all;
        let skip = if automatic && self.is_paused(&spec.name) {
            Some("the job is paused")
        } else if busy && spec.overlap == Overlap::Skip && !must_run {
            Some("another run of the job was going (overlap = \"skip\")")
        } else {
            None
        };
        let run = NewRun {
            job: spec.name.clone(),
            trigger: s.trigger.clone(),
            params: Value::Object(params),
            attempt: 1,
            not_before: s.not_before,
            retry_of: None,
            owner: None,
        };
        let id = match occurrence {
            None => history.create_run(&run)?,
            Some(at) => match history.create_cron_run(&run, at, self.owner())? {
                Some(id) => id,
                None => return Ok(None),
            },
        };
        if history.shared() {
            // Whichever host takes the run executes this version (see `queued_version`).
            history.set_script_version(id, &super::versions::hash(&spec.source))?;
        }
        if let Some(reason) = skip {
            history.finish_run(
                id,
                &RunEnd {
                    state: RunState::Skipped,
                    error: None,
                    summary: Some(serde_json::json!({ "reason": reason })),
                },
            )?;
            tracing::info!(job = %spec.name, run = id, "skipped: {reason}");
            self.publish_end(id);
            return Ok(Some(Submitted {
                id,
                state: RunState::Skipped,
            }));
        }
        self.inner.events.publish(BusEvent::RunQueued {
            run_id: id,
            job: spec.name.clone(),
            trigger: s.trigger.kind().to_string(),
            not_before: s.not_before.as_ref().map(crate::history::format_time),
        });
        self.inner.wake.raise();
        Ok(Some(Submitted {
            id,
            state: RunState::Queued,
        }))
    }

    fn job_busy(&self, job: &str) -> Result<bool, HistoryError> {
        if self
            .inner
            .running
            .lock_unpoisoned()
            .values()
            .any(|r| r.job == job)
        {
            return Ok(true);
        }
        self.inner.history.job_queued_now(job)
    }

    /// Starts a run for a file that lies in the job's `processing/` folder and records the
    /// claim. When no run can start, the file is moved to `failed/` with the reason.
    pub fn claim_file(
        &self,
        spec: &JobSpec,
        path: &std::path::Path,
    ) -> Result<Submitted, SubmitError> {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let submit = Submit {
            job: spec.name.clone(),
            params: GivenParams::Json(Default::default()),
            trigger: Trigger::File {
                file: self.inner.config.display_path(path),
            },
            not_before: None,
        };
        match self.submit(submit) {
            Ok(s) => {
                self.inner.history.file_claimed(
                    &spec.name,
                    &name,
                    &path.display().to_string(),
                    size,
                    s.id,
                )?;
                Ok(s)
            }
            Err(e) => {
                if let Some(w) = &spec.watch {
                    let dirs = WatchDirs::new(&self.inner.config, w);
                    let text = format!("the file could not be processed: {e}\n");
                    if let Err(io) = watch::finish(&dirs, path, false, w.after, &text) {
                        tracing::error!(file = %path.display(), "cannot move the file to failed/: {io}");
                    }
                }
                Err(e)
            }
        }
    }

    /// Asks a run to stop. A queued run is closed as `cancelled` at once (its watched file goes
    /// to `failed/`); a running one gets the request recorded in the history (the worker polls
    /// it) and signalled to the executor, which kills the worker if it does not stop within the
    /// grace period.
    pub fn cancel(&self, id: i64) -> Result<CancelOutcome, HistoryError> {
        let outcome = self.inner.history.request_cancel(id)?;
        match outcome {
            CancelOutcome::Closed => {
                let record = self.inner.history.get_run(id)?;
                self.finish_file(&record, None)?;
                super::cleanup::after_end(&self.inner.config, &*self.inner.history, &record);
                tracing::info!(job = %record.job, run = id, "cancelled before it started");
                self.inner.events.publish(BusEvent::finished(&record));
            }
            CancelOutcome::Requested => {
                if let Some(r) = self.inner.running.lock_unpoisoned().get(&id) {
                    r.cancel.request();
                }
            }
            CancelOutcome::AlreadyEnded => {}
        }
        self.inner.wake.raise();
        Ok(outcome)
    }

    /// The event bus: runs queued, started, progressing, logging, finished; jobs (re)loaded.
    pub fn events(&self) -> &Bus {
        &self.inner.events
    }

    /// Publishes the end of a run that closed outside a worker's report.
    fn publish_end(&self, id: i64) {
        match self.inner.history.get_run(id) {
            Ok(r) if r.state.is_closed() => self.inner.events.publish(BusEvent::finished(&r)),
            Ok(_) => {}
            Err(e) => tracing::warn!(run = id, "cannot read the run to report its end: {e}"),
        }
    }

    /// Whether a job is paused: its schedule records `skipped` runs, its folder is not scanned.
    pub fn is_paused(&self, job: &str) -> bool {
        self.inner.paused.lock_unpoisoned().contains(job)
    }

    /// Re-reads the paused jobs from the history.
    pub fn refresh_paused(&self) -> Result<(), HistoryError> {
        let jobs = self.inner.history.paused_jobs()?;
        *self.inner.paused.lock_unpoisoned() = jobs.into_iter().map(|(j, _)| j).collect();
        Ok(())
    }

    /// Pauses or resumes a job (kept in the history across restarts); returns whether that
    /// changed anything. `by` says who, for the record.
    pub fn set_paused(
        &self,
        job: &str,
        paused: bool,
        by: Option<&str>,
    ) -> Result<bool, SubmitError> {
        let known = self
            .inner
            .registry
            .read_unpoisoned()
            .entries()
            .any(|(n, _)| n == job);
        if !known {
            return Err(SubmitError::UnknownJob(job.to_string()));
        }
        let changed = if paused {
            self.inner.history.pause_job(job, by)?
        } else {
            self.inner.history.resume_job(job)?
        };
        self.refresh_paused()?;
        if changed {
            tracing::info!(job, "{}", if paused { "paused" } else { "resumed" });
        }
        Ok(changed)
    }

    /// Starts the downstream jobs (`after`) of the runs that ended since the last pass, once per
    /// upstream run (see [`super::chain`]). Passes never overlap.
    pub fn fire_chains(&self) -> Result<(), HistoryError> {
        let _one_at_a_time = self.inner.chaining.lock_unpoisoned();
        let history = &self.inner.history;
        let specs = self.inner.registry.read_unpoisoned().specs();
        if specs.iter().all(|s| s.after.is_empty()) {
            // No job waits for another: every ended run is considered at once.
            history.set_all_chained()?;
            return Ok(());
        }
        loop {
            let runs = history.unchained_runs(CHAIN_BATCH)?;
            if runs.is_empty() {
                return Ok(());
            }
            let n = runs.len();
            for run in runs {
                // A run that will be retried decides nothing: its last attempt does.
                let retried = specs
                    .iter()
                    .any(|s| s.name == run.job && retry_due(s, &run));
                if !retried {
                    for down in specs
                        .iter()
                        .filter(|s| s.after.iter().any(|a| a.fires(&run.job, run.state)))
                    {
                        if history.chained_run_of(&down.name, run.id)?.is_some() {
                            continue;
                        }
                        let submit = Submit {
                            job: down.name.clone(),
                            params: GivenParams::Json(Default::default()),
                            trigger: Trigger::Job {
                                of: run.id,
                                job: run.job.clone(),
                                state: run.state,
                                summary: run.summary.clone().unwrap_or(Value::Null),
                            },
                            not_before: None,
                        };
                        match self.submit(submit) {
                            Ok(s) => {
                                tracing::info!(job = %down.name, run = s.id, upstream = run.id, "started by the end of run {}", run.id)
                            }
                            Err(e) => {
                                tracing::error!(job = %down.name, upstream = run.id, "cannot start the chained run: {e}")
                            }
                        }
                    }
                }
                history.set_chained(run.id)?;
            }
            if n < CHAIN_BATCH as usize {
                return Ok(());
            }
        }
    }

    /// Runs a run again (see [`super::rerun`]): recorded as queued, announced, dispatched.
    pub fn rerun(&self, id: i64) -> Result<Submitted, SubmitError> {
        if !self.inner.accepting.load(Ordering::SeqCst) {
            return Err(SubmitError::ShuttingDown);
        }
        let record = self.inner.history.get_run(id)?;
        let spec = self.spec(&record.job).ok_or_else(|| {
            SubmitError::Rerun(super::rerun::RerunError::NotLoaded(record.job.clone(), id))
        })?;
        let done = super::rerun::rerun(
            &self.inner.config,
            &*self.inner.history,
            &self.inner.sealer,
            &spec,
            &record,
        )?;
        tracing::info!(job = %spec.name, run = done.id, of = id, "run again");
        self.inner.events.publish(BusEvent::RunQueued {
            run_id: done.id,
            job: spec.name.clone(),
            trigger: done.trigger.kind().to_string(),
            not_before: None,
        });
        self.inner.wake.raise();
        Ok(Submitted {
            id: done.id,
            state: RunState::Queued,
        })
    }

    /// The owner this daemon records on the runs it claims (`host:pid:start`).
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// Records this daemon as live in the history with its load (`ferry hosts`), at most every
    /// [`HEARTBEAT`]; with a shared history, renews the lease of every run it owns.
    pub fn heartbeat(&self) -> Result<(), HistoryError> {
        if self.inner.history.shared() {
            // Every pass (each second): runs claimed and still waiting for a worker keep their
            // lease too, not only those whose executor renews it.
            self.inner.history.renew_leases(&self.inner.owner)?;
        }
        {
            let mut last = self.inner.last_beat.lock_unpoisoned();
            if last.is_some_and(|t| t.elapsed() < HEARTBEAT) {
                return Ok(());
            }
            *last = Some(std::time::Instant::now());
        }
        self.inner.history.host_heartbeat(&HostBeat {
            owner: self.inner.owner.clone(),
            host: super::owner::hostname(),
            listen: self.inner.config.api.listen.clone(),
            running: self.running_count() as u64,
            capacity: self.inner.config.daemon.concurrency as u64,
            load: load_average(),
        })
    }

    /// Periodic upkeep, from the dispatch loop every [`HOUSEKEEPING`]: re-reads the paused
    /// jobs, records the heartbeat, closes the runs of processes that died (a `ferry run`
    /// killed with -9, a daemon before this one) and finishes their files, retries and
    /// clean-up, and starts the chained runs of runs that ended elsewhere.
    fn housekeeping(&self) {
        if let Err(e) = self.refresh_paused() {
            tracing::error!("housekeeping: {e}");
        }
        if let Err(e) = self.heartbeat() {
            tracing::error!("heartbeat: {e}");
        }
        if let Err(e) = self.reap(false) {
            tracing::error!("housekeeping: {e}");
        }
        if let Err(e) = self.fire_chains() {
            tracing::error!("chained runs: {e}");
        }
    }

    /// Closes the open runs whose owner is gone, as `interrupted`, and then retries them when
    /// retries remain (or finishes their watched file), and deletes their temporary files.
    /// A worker whose parent died stops its run and records how it ended itself; such a worker
    /// is given the kill grace to do so (waiting for it when `wait` is set, at start-up, or
    /// looking again at the next pass) before it is killed. Runs whose end is known are never
    /// re-run.
    pub fn reap(&self, wait: bool) -> Result<(), HistoryError> {
        let history = &*self.inner.history;
        let grace = self.inner.config.limits.kill_grace + Duration::from_secs(1);
        let open = history.owned_open_runs()?;
        // Forget lingering workers whose runs have closed since the last pass.
        self.inner
            .lingering
            .lock_unpoisoned()
            .retain(|id, _| open.iter().any(|r| r.id == *id));
        let mut reaped = false;
        for run in open {
            if run.owner.as_deref() == Some(self.inner.owner.as_str()) || !self.owner_gone(&run)? {
                continue;
            }
            reaped = true;
            // A worker pid means something only on the owner's host.
            let local = run
                .owner
                .as_deref()
                .and_then(|o| o.parse::<Owner>().ok())
                .is_none_or(|o| o.is_local());
            let pid = if local {
                history.worker_pid(run.id)?
            } else {
                None
            };
            if let Some(pid) = pid.filter(|p| is_ferry_worker(*p)) {
                let since = *self
                    .inner
                    .lingering
                    .lock_unpoisoned()
                    .entry(run.id)
                    .or_insert_with(std::time::Instant::now);
                if wait {
                    while is_ferry_worker(pid)
                        && since.elapsed() < grace
                        && !history.get_run(run.id)?.state.is_closed()
                    {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                } else if since.elapsed() < grace {
                    continue;
                }
                if is_ferry_worker(pid) && !history.get_run(run.id)?.state.is_closed() {
                    // SAFETY: kill only sends a signal; the pid was checked to be a ferry worker.
                    unsafe {
                        libc::kill(pid as libc::pid_t, libc::SIGKILL);
                    }
                }
            }
            self.inner.lingering.lock_unpoisoned().remove(&run.id);
            let now = history.get_run(run.id)?;
            if now.state.is_closed() {
                // Its worker recorded the end (and cleaned up) after all.
                self.after_orphan(&now)?;
                continue;
            }
            let end = RunEnd {
                state: RunState::Interrupted,
                error: Some(RunErrorInfo {
                    code: ErrorCode::Interrupted,
                    message: "the process that supervised the run went away".into(),
                    traceback: None,
                }),
                summary: None,
            };
            // Closed only while the gone owner still has it: on a shared history a queued run
            // may have been given back or taken by another host since it was listed.
            let closed = match run.owner.as_deref() {
                Some(owner) => history.finish_owned_run(run.id, owner, &end)?,
                None => history.finish_run(run.id, &end)?,
            };
            let record = history.get_run(run.id)?;
            if !record.state.is_closed() {
                continue;
            }
            if closed {
                super::cleanup::clean(&self.inner.config, history, run.id, false);
                tracing::warn!(job = %run.job, run = run.id, owner = ?run.owner, "run was interrupted: its owner went away");
                self.publish_end(run.id);
            }
            self.after_orphan(&record)?;
        }
        if reaped {
            // Writes the dead processes left half-done (temp files, multipart uploads) go now,
            // not at the next start.
            let r = crate::storage::recover(&self.inner.config.storage);
            if r.temp_files > 0 || r.uploads > 0 {
                tracing::info!(
                    temp_files = r.temp_files,
                    uploads = r.uploads,
                    "cleaned up writes of processes that died"
                );
            }
        }
        // Runs that workers of dead owners closed on their own: nobody applied their retry. At
        // start every such run; then those of the last hour (a pass runs every second).
        let since = (!wait).then(|| self.inner.clock.now() - chrono::Duration::hours(1));
        for run in history.interrupted_unretried(since)? {
            if run.retried_by.is_none() && run.owner.as_deref() != Some(self.inner.owner.as_str()) {
                self.after_orphan(&run)?;
            }
        }
        // Watched files whose run ended without anyone moving them (a cancel from another
        // process, a daemon that died after the run).
        for file in history.files_processing()? {
            let Some(run_id) = file.run_id else { continue };
            let run = match history.get_run(run_id) {
                Ok(r) => r,
                Err(HistoryError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            if run.state.is_closed()
                && run.retried_by.is_none()
                && !self.inner.running.lock_unpoisoned().contains_key(&run.id)
                && run.owner.as_deref() != Some(self.inner.owner.as_str())
            {
                self.finish_file(&run, None)?;
            }
        }
        Ok(())
    }

    /// Whether the process that owns an open run is gone.
    fn owner_gone(&self, run: &RunRecord) -> Result<bool, HistoryError> {
        let Some(owner) = run.owner.as_deref() else {
            // Running with no owner: recorded by a ferry from before owners existed.
            return Ok(run.state == RunState::Running);
        };
        match owner.parse::<Owner>() {
            Ok(o) => match o.alive_here() {
                Some(alive) => Ok(!alive),
                None => {
                    // Another host's run: gone when its lease ran out, unless it changed hands
                    // since it was listed (a queued run given back has no lease any more).
                    let now = self.inner.history.get_run(run.id)?;
                    if now.owner != run.owner || now.state.is_closed() {
                        return Ok(false);
                    }
                    self.inner.history.lease_expired(run.id)
                }
            },
            Err(_) => Ok(true),
        }
    }

    /// Retries an interrupted run of a dead owner when retries remain, else finishes its file.
    fn after_orphan(&self, record: &RunRecord) -> Result<(), HistoryError> {
        let Some(spec) = self.spec(&record.job) else {
            return self.finish_file(record, None);
        };
        // A retry takes the watched file with it (in the history's transaction), so when
        // another host retried the run first, finish_file finds no file left to move.
        match self.retry(&spec, record)? {
            Some(_) => Ok(()),
            None => self.finish_file(record, Some(&spec)),
        }
    }

    /// Wakes the dispatch loop (after a registry change, say).
    pub fn wake(&self) {
        self.inner.wake.raise();
    }

    /// Starts queued runs as they become due and does the housekeeping (paused jobs,
    /// heartbeat, runs of processes that died, chained runs) every [`HOUSEKEEPING`], until
    /// [`stop`](Self::stop); then no new run starts. Blocking: the daemon gives it a thread of
    /// its own. It waits for a wake-up (a run queued or ended, a registry change, a stop) or
    /// until the next `not_before` or housekeeping is due, whichever comes first; housekeeping
    /// is also what finds runs that other processes queued.
    pub fn run(&self) {
        self.listen_for_runs();
        let mut next_upkeep = std::time::Instant::now();
        while self.inner.accepting.load(Ordering::SeqCst) {
            if std::time::Instant::now() >= next_upkeep {
                self.housekeeping();
                next_upkeep = std::time::Instant::now() + HOUSEKEEPING;
            }
            let next = self.dispatch_ready().unwrap_or_else(|e| {
                tracing::error!("dispatcher: {e}");
                None
            });
            let upkeep = next_upkeep.saturating_duration_since(std::time::Instant::now());
            let wait = next.map_or(upkeep, |t| self.inner.clock.until(t).min(upkeep));
            self.inner.wake.wait(wait);
        }
    }

    /// Stops the dispatch loop: no new run starts (running ones go on; see [`drain`](Self::drain)).
    pub fn stop(&self) {
        self.inner.accepting.store(false, Ordering::SeqCst);
        self.inner.wake.raise();
    }

    /// With a shared history: wakes the dispatch loop whenever any host queues a run
    /// (PostgreSQL `LISTEN`), on a thread of its own; polling every second stays the fallback.
    fn listen_for_runs(&self) {
        let mut listener = match self.inner.history.queue_listener() {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("cannot listen for queued runs (polling instead): {e}");
                return;
            }
        };
        let this = self.clone();
        std::thread::spawn(move || {
            while this.inner.accepting.load(Ordering::SeqCst) {
                match listener.wait(Duration::from_secs(1)) {
                    Ok(true) => this.inner.wake.raise(),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!("listening for queued runs: {e}");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
        });
    }

    /// Waits for running runs to end: up to `grace`, then cancels them and waits for the
    /// executors (which kill workers that do not stop within their kill grace). Blocking.
    pub fn drain(&self, grace: Duration) {
        self.inner.accepting.store(false, Ordering::SeqCst);
        self.wait_idle(Some(grace));
        let ids: Vec<i64> = self
            .inner
            .running
            .lock_unpoisoned()
            .keys()
            .copied()
            .collect();
        for id in ids {
            tracing::info!(run = id, "cancelling at shutdown");
            let _ = self.cancel(id);
        }
        self.wait_idle(None);
        self.inner.pool.close();
        if let Err(e) = self.inner.history.host_gone(&self.inner.owner) {
            tracing::warn!("cannot remove this daemon from the live hosts: {e}");
        }
    }

    /// Waits until no run is going, or at most `limit`.
    fn wait_idle(&self, limit: Option<Duration>) {
        let running = self.inner.running.lock_unpoisoned();
        let busy = |r: &mut HashMap<i64, Running>| !r.is_empty();
        // A poisoned lock still holds a consistent map (see `lock`): the wait is over either way.
        match limit {
            Some(d) => drop(self.inner.idle.wait_timeout_while(running, d, busy)),
            None => drop(self.inner.idle.wait_while(running, busy)),
        }
    }

    /// Forgets a run that ended (or never started): wakes the dispatch loop, which may start
    /// the next one, and [`drain`](Self::drain) when it was the last.
    fn ended(&self, id: i64) {
        self.inner.running.lock_unpoisoned().remove(&id);
        self.inner.idle.notify_all();
        self.inner.wake.raise();
    }

    /// Starts what can start; returns the earliest future `not_before` among queued runs.
    fn dispatch_ready(&self) -> Result<Option<DateTime<Utc>>, HistoryError> {
        if self.inner.history.shared() {
            return self.dispatch_shared();
        }
        let history = &self.inner.history;
        let next = history.next_not_before(self.inner.clock.now())?;
        let mut after = 0;
        'pages: loop {
            let page = history.runnable(after, DISPATCH_PAGE, self.inner.clock.now())?;
            let full = page.len() as u32 == DISPATCH_PAGE;
            for run in page {
                after = run.id;
                if !self.inner.accepting.load(Ordering::SeqCst)
                    || self.inner.running.lock_unpoisoned().len()
                        >= self.inner.config.daemon.concurrency
                {
                    break 'pages;
                }
                self.consider(run)?;
            }
            if !full {
                break;
            }
        }
        Ok(next)
    }

    /// With a history shared by several hosts: takes due runs in batches, as many as this
    /// daemon has room for (the database hands each run to one host: `FOR UPDATE SKIP
    /// LOCKED`), and starts them; a run its job's overlap policy holds back here is given back
    /// for any host to take.
    fn dispatch_shared(&self) -> Result<Option<DateTime<Utc>>, HistoryError> {
        let history = &self.inner.history;
        let next = history.next_not_before(self.inner.clock.now())?;
        loop {
            let free = self
                .inner
                .config
                .daemon
                .concurrency
                .saturating_sub(self.inner.running.lock_unpoisoned().len());
            if free == 0 || !self.inner.accepting.load(Ordering::SeqCst) {
                break;
            }
            let limit = u32::try_from(free)
                .unwrap_or(DISPATCH_PAGE)
                .min(DISPATCH_PAGE);
            // Jobs whose overlap policy holds their next run back while one goes here.
            let held: Vec<String> = {
                let running = self.inner.running.lock_unpoisoned();
                running
                    .values()
                    .filter(|r| {
                        self.spec(&r.job)
                            .is_none_or(|s| s.overlap != Overlap::Allow)
                    })
                    .map(|r| r.job.clone())
                    .collect()
            };
            // Jobs that allow one run at a time across all hosts.
            let exclusive: Vec<String> = self
                .inner
                .registry
                .read_unpoisoned()
                .specs()
                .iter()
                .filter(|s| s.overlap != Overlap::Allow)
                .map(|s| s.name.clone())
                .collect();
            let batch = history.claim_due(&self.inner.owner, limit, &held, &exclusive)?;
            let full = batch.len() as u32 == limit;
            let mut started = 0;
            for run in batch {
                if self.start_claimed(run)? {
                    started += 1;
                }
            }
            if !full || started == 0 {
                break;
            }
        }
        Ok(next)
    }

    /// Starts a run this daemon has claimed; returns false when it gave the run back.
    fn start_claimed(&self, run: RunRecord) -> Result<bool, HistoryError> {
        let history = &self.inner.history;
        let Some(spec) = self.spec(&run.job) else {
            // Another host may have the job (scripts deployed to some hosts only): give the run
            // back for a while before failing it.
            if self.inner.clock.now() - run.queued_at
                < chrono::Duration::from_std(UNLOADED_GRACE).unwrap_or_default()
            {
                history.release_run(run.id, &self.inner.owner)?;
                return Ok(false);
            }
            executor::close(
                &**history,
                run.id,
                RunState::Failed,
                ErrorCode::Load,
                format!(
                    "job {:?} is not loaded on {} (its script was removed or never loaded)",
                    run.job,
                    super::owner::hostname()
                ),
            )?;
            self.publish_end(run.id);
            self.finish_file(&run, None)?;
            return Ok(true);
        };
        let mut running = self.inner.running.lock_unpoisoned();
        let accepting = self.inner.accepting.load(Ordering::SeqCst);
        let held = spec.overlap != Overlap::Allow && running.values().any(|r| r.job == run.job);
        if held || !accepting || running.len() >= self.inner.config.daemon.concurrency {
            drop(running);
            history.release_run(run.id, &self.inner.owner)?;
            return Ok(false);
        }
        let cancel = Arc::new(executor::Cancel::default());
        running.insert(
            run.id,
            Running {
                job: run.job.clone(),
                cancel: cancel.clone(),
            },
        );
        drop(running);
        self.start(spec, run, cancel);
        Ok(true)
    }

    /// Starts a queued, due run if the concurrency limit and its job's overlap policy allow;
    /// closes it if it was cancelled or its job is gone.
    fn consider(&self, run: RunRecord) -> Result<(), HistoryError> {
        let history = &self.inner.history;
        if run.owner.is_some() {
            // Another process (`ferry run`) supervises it, or this daemon started it already.
            return Ok(());
        }
        let mut running = self.inner.running.lock_unpoisoned();
        if running.contains_key(&run.id) {
            return Ok(());
        }
        if run.cancel_requested {
            drop(running);
            executor::close(
                &**history,
                run.id,
                RunState::Cancelled,
                ErrorCode::Cancelled,
                "run was cancelled before it started".into(),
            )?;
            self.publish_end(run.id);
            return self.finish_file(&run, None);
        }
        if running.len() >= self.inner.config.daemon.concurrency {
            return Ok(());
        }
        let Some(spec) = self.spec(&run.job) else {
            drop(running);
            executor::close(
                &**history,
                run.id,
                RunState::Failed,
                ErrorCode::Load,
                format!(
                    "job {:?} is no longer loaded (its script was removed or never loaded)",
                    run.job
                ),
            )?;
            self.publish_end(run.id);
            return self.finish_file(&run, None);
        };
        if spec.overlap != Overlap::Allow && running.values().any(|r| r.job == run.job) {
            return Ok(());
        }
        if !history.claim_run(run.id, &self.inner.owner)? {
            // Cancelled or taken meanwhile.
            return Ok(());
        }
        let cancel = Arc::new(executor::Cancel::default());
        running.insert(
            run.id,
            Running {
                job: run.job.clone(),
                cancel: cancel.clone(),
            },
        );
        drop(running);
        self.start(spec, run, cancel);
        Ok(())
    }

    /// Executes a claimed run on a thread of its own (the executor blocks on the worker).
    fn start(&self, spec: Arc<JobSpec>, run: RunRecord, cancel: Arc<executor::Cancel>) {
        let this = self.clone();
        let id = run.id;
        tracing::info!(job = %run.job, run = run.id, trigger = run.trigger_kind(), "starting");
        let spawned = std::thread::Builder::new()
            .name(format!("ferry-run-{}", run.id))
            .spawn(move || {
            let config = &this.inner.config;
            let params = match this.inner.sealer.open_params(&run.params) {
                Ok(p) => p,
                Err(e) => {
                    if let Err(e) = executor::close(
                        &*this.inner.history,
                        run.id,
                        RunState::Failed,
                        ErrorCode::Params,
                        e.to_string(),
                    ) {
                        tracing::error!(run = run.id, "{e}");
                    }
                    this.publish_end(run.id);
                    this.ended(run.id);
                    return;
                }
            };
            let mut prepared =
                executor::prepare(config, &spec, run.id, params, run.trigger.clone());
            if let Err(message) = this.queued_version(&spec, &run, &mut prepared) {
                if let Err(e) = executor::close(
                    &*this.inner.history,
                    run.id,
                    RunState::Failed,
                    ErrorCode::Load,
                    message,
                ) {
                    tracing::error!(run = run.id, "{e}");
                }
                this.publish_end(run.id);
                this.ended(run.id);
                return;
            }
            let bus = &this.inner.events;
            let job = run.job.clone();
            // The worker's own end report is not passed on: the end is published from the
            // history once the executor is done, also when the worker died without reporting.
            let mut on_event = |ev: &super::protocol::Event| {
                use super::protocol::Event as W;
                let event = match ev {
                    W::Started { run_id } => BusEvent::RunStarted {
                        run_id: *run_id,
                        job: job.clone(),
                    },
                    W::Progress {
                        run_id,
                        done,
                        total,
                    } => BusEvent::RunProgress {
                        run_id: *run_id,
                        job: job.clone(),
                        done: *done,
                        total: *total,
                    },
                    W::Log {
                        run_id,
                        seq,
                        level,
                        message,
                    } => BusEvent::RunLog {
                        run_id: *run_id,
                        job: job.clone(),
                        seq: *seq,
                        level: *level,
                        message: message.clone(),
                    },
                    W::Ready { .. } | W::Finished { .. } => return,
                };
                bus.publish(event);
            };
            let result = executor::execute(
                config,
                &*this.inner.history,
                &prepared,
                Some(&this.inner.pool),
                &cancel,
                &mut on_event,
            );
            match result {
                Ok(record) => {
                    bus.publish(BusEvent::finished(&record));
                    tracing::info!(job = %record.job, run = record.id, state = %record.state, "finished");
                    *this.inner.finished.lock_unpoisoned()
                        .entry((record.job.clone(), record.state.to_string()))
                        .or_default() += 1;
                    if let Err(e) = this.after_run(&spec, &record) {
                        tracing::error!(run = record.id, "after the run: {e}");
                    }
                }
                Err(e) => {
                    tracing::error!(run = run.id, "run could not be executed: {e}");
                    this.publish_end(run.id);
                }
            }
            this.ended(run.id);
            if let Err(e) = this.fire_chains() {
                tracing::error!("chained runs: {e}");
            }
        });
        if let Err(e) = spawned {
            // The run is still queued: given back, it is taken again at a later pass.
            tracing::error!(run = id, "cannot start a thread for the run: {e}");
            if let Err(e) = self.inner.history.release_run(id, &self.inner.owner) {
                tracing::error!(run = id, "{e}");
            }
            self.ended(id);
        }
    }

    /// With a shared history, a run executes the version of its script it was queued with,
    /// whichever host takes it: when this host has loaded another version, the queued one's
    /// source is read from the history. Errs with the reason when it is not there.
    fn queued_version(
        &self,
        spec: &JobSpec,
        run: &RunRecord,
        prepared: &mut executor::Prepared,
    ) -> Result<(), String> {
        let history = &self.inner.history;
        let Some(queued) = run.script_version.as_deref().filter(|_| history.shared()) else {
            return Ok(());
        };
        if queued == super::versions::hash(&spec.source) {
            return Ok(());
        }
        match history.version(&run.job, queued) {
            Ok(Some(v)) => {
                tracing::info!(job = %run.job, run = run.id, version = queued, "runs the version it was queued with, not the one loaded here");
                prepared.request.source = v.source.unwrap_or_default();
                Ok(())
            }
            Ok(None) => Err(format!(
                "the version {queued} of job {:?} the run was queued with is not in the history",
                run.job
            )),
            Err(e) => Err(format!(
                "cannot read the version {queued} of job {:?} the run was queued with: {e}",
                run.job
            )),
        }
    }

    /// Retries a failed run when retries remain; otherwise moves its watched file.
    fn after_run(&self, spec: &JobSpec, record: &RunRecord) -> Result<(), HistoryError> {
        // A retry takes the watched file with it (see `after_orphan`).
        if self.retry(spec, record)?.is_some() {
            return Ok(());
        }
        self.finish_file(record, Some(spec))
    }

    /// Queues a retry of a run that failed, timed out or was interrupted, if retries remain.
    pub fn retry(&self, spec: &JobSpec, record: &RunRecord) -> Result<Option<i64>, HistoryError> {
        if !retry_due(spec, record) || record.retried_by.is_some() {
            return Ok(None);
        }
        let attempt = record.attempt + 1;
        let max = spec
            .retry_max_delay
            .unwrap_or(self.inner.config.daemon.retry_max_delay);
        let delay = super::retry::delay(spec.retry_delay, record.attempt, max, fastrand::f64());
        let now = self.inner.clock.now();
        let file = record.trigger.file().map(String::from);
        let trigger = Trigger::Retry {
            of: record.id,
            attempt,
            file,
        };
        let Some(id) = self.inner.history.create_retry(&NewRun {
            job: record.job.clone(),
            trigger: trigger.clone(),
            params: record.params.clone(),
            attempt,
            not_before: Some(super::retry::at(now, delay)),
            retry_of: Some(record.id),
            owner: None,
        })?
        else {
            // Another host retried it first.
            return Ok(None);
        };
        if let Some(v) = record
            .script_version
            .as_deref()
            .filter(|_| self.inner.history.shared())
        {
            self.inner.history.set_script_version(id, v)?;
        }
        tracing::info!(job = %record.job, run = record.id, retry = id, attempt, "retry queued");
        self.inner.events.publish(BusEvent::RunQueued {
            run_id: id,
            job: record.job.clone(),
            trigger: "retry".into(),
            not_before: Some(crate::history::format_time(&super::retry::at(now, delay))),
        });
        self.inner.wake.raise();
        Ok(Some(id))
    }

    /// Moves the watched file of a closed run to `archive/` or `failed/` (or deletes it).
    pub fn finish_file(
        &self,
        record: &RunRecord,
        spec: Option<&JobSpec>,
    ) -> Result<(), HistoryError> {
        let history = &self.inner.history;
        let Some(file) = history.file_for_run(record.id)? else {
            return Ok(());
        };
        if file.state != FileState::Processing {
            return Ok(());
        }
        let record = history.get_run(record.id)?;
        let spec = match spec {
            Some(s) => Some(Arc::new(s.clone())),
            None => self.spec(&record.job),
        };
        let Some(watch_spec) = spec.as_ref().and_then(|s| s.watch.clone()) else {
            return Ok(());
        };
        let dirs = WatchDirs::new(&self.inner.config, &watch_spec);
        let succeeded = record.state == RunState::Succeeded;
        let error_text = error_report(&record);
        let path = PathBuf::from(&file.processing_path);
        match watch::finish(&dirs, &path, succeeded, watch_spec.after, &error_text) {
            Ok(moved) => {
                let state = match (succeeded, watch_spec.after) {
                    (false, _) => FileState::Failed,
                    (true, super::spec::AfterFile::Delete) => FileState::Deleted,
                    (true, super::spec::AfterFile::Archive) => FileState::Archived,
                };
                let moved = moved.map(|p| p.display().to_string());
                history.file_finished(file.id, state, moved.as_deref())?;
            }
            Err(e) => tracing::error!(run = record.id, "cannot move {}: {e}", path.display()),
        }
        Ok(())
    }
}

/// Whether a closed run gets a retry: it failed, timed out or was interrupted (not for a load or
/// params error) and attempts remain.
pub fn retry_due(spec: &JobSpec, record: &RunRecord) -> bool {
    let retriable = matches!(
        record.state,
        RunState::Failed | RunState::TimedOut | RunState::Interrupted
    ) && record
        .error
        .as_ref()
        .is_none_or(|e| !matches!(e.code, ErrorCode::Load | ErrorCode::Params));
    retriable && record.attempt <= spec.retries
}

/// The host's one-minute load average (0 when `/proc/loadavg` cannot be read).
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

fn error_report(r: &RunRecord) -> String {
    let err = r.error.clone().unwrap_or(RunErrorInfo {
        code: ErrorCode::Other("?".into()),
        message: "no error recorded".into(),
        traceback: None,
    });
    let mut text = format!(
        "run {} of job {} {}\nerror ({}): {}\n",
        r.id, r.job, r.state, err.code, err.message
    );
    if let Some(tb) = err.traceback {
        text.push_str(&tb);
        text.push('\n');
    }
    text.push_str(&format!("details: ferry runs show {}\n", r.id));
    text
}

#[cfg(test)]
#[path = "dispatcher_tests.rs"]
mod tests;
