//! The daemon's event bus: what happens to runs and jobs, as it happens, for whoever listens
//! (the API's Server-Sent Events, the web UI, notifications).
//!
//! Publishing never blocks and never fails: the bus is a bounded broadcast channel
//! ([`CAPACITY`] events). A listener that falls that far behind loses the oldest events and is
//! told so ([`Missed`]), so it can re-read the state it cares about from the history. Nobody
//! listening costs nothing but the event's construction.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::history::{LogLevel, RunErrorInfo, RunRecord, RunState};

/// Events kept for slow listeners before the oldest are dropped for them.
pub const CAPACITY: usize = 4096;

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A run was recorded and waits for its turn (or its time).
    RunQueued {
        /// The run.
        run_id: i64,
        /// Its job.
        job: String,
        /// Why it runs (`manual`, `api`, `cron`, `file`, `retry`).
        trigger: String,
        /// Not before this time (RFC 3339), for runs scheduled ahead.
        #[serde(skip_serializing_if = "Option::is_none")]
        not_before: Option<String>,
    },
    /// A worker started the run.
    RunStarted {
        /// The run.
        run_id: i64,
        /// Its job.
        job: String,
    },
    /// The run reported progress.
    RunProgress {
        /// The run.
        run_id: i64,
        /// Its job.
        job: String,
        /// Units done.
        done: u64,
        /// Units in all, when known.
        total: Option<u64>,
    },
    /// The run logged a line (already redacted and stored).
    RunLog {
        /// The run.
        run_id: i64,
        /// Its job.
        job: String,
        /// The line's sequence number in the history (for `logs?after=`), when known.
        seq: Option<i64>,
        /// Severity.
        level: LogLevel,
        /// Text.
        message: String,
    },
    /// The run ended.
    RunFinished {
        /// The run.
        run_id: i64,
        /// Its job.
        job: String,
        /// How it ended.
        state: RunState,
        /// Its error, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<RunErrorInfo>,
    },
    /// A job's script loaded (first time or changed).
    JobLoaded {
        /// The job.
        job: String,
    },
    /// A job's changed script does not load; the previous version (if any) stays active.
    JobReloadFailed {
        /// The job.
        job: String,
        /// The load error, with file and line.
        error: String,
    },
    /// A job's script was removed.
    JobRemoved {
        /// The job.
        job: String,
    },
}

impl Event {
    /// The event's type name (`run_log`, `job_loaded`, ...), as in its JSON and the SSE `event:`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::RunQueued { .. } => "run_queued",
            Event::RunStarted { .. } => "run_started",
            Event::RunProgress { .. } => "run_progress",
            Event::RunLog { .. } => "run_log",
            Event::RunFinished { .. } => "run_finished",
            Event::JobLoaded { .. } => "job_loaded",
            Event::JobReloadFailed { .. } => "job_reload_failed",
            Event::JobRemoved { .. } => "job_removed",
        }
    }

    /// Every type name, for validating filters.
    pub const KINDS: &'static [&'static str] = &[
        "run_queued",
        "run_started",
        "run_progress",
        "run_log",
        "run_finished",
        "job_loaded",
        "job_reload_failed",
        "job_removed",
    ];

    /// The run it is about, if any.
    pub fn run_id(&self) -> Option<i64> {
        match self {
            Event::RunQueued { run_id, .. }
            | Event::RunStarted { run_id, .. }
            | Event::RunProgress { run_id, .. }
            | Event::RunLog { run_id, .. }
            | Event::RunFinished { run_id, .. } => Some(*run_id),
            _ => None,
        }
    }

    /// The job it is about.
    pub fn job(&self) -> &str {
        match self {
            Event::RunQueued { job, .. }
            | Event::RunStarted { job, .. }
            | Event::RunProgress { job, .. }
            | Event::RunLog { job, .. }
            | Event::RunFinished { job, .. }
            | Event::JobLoaded { job }
            | Event::JobReloadFailed { job, .. }
            | Event::JobRemoved { job } => job,
        }
    }

    /// The end of a closed run, as an event.
    pub fn finished(r: &RunRecord) -> Event {
        Event::RunFinished {
            run_id: r.id,
            job: r.job.clone(),
            state: r.state,
            error: r.error.clone(),
        }
    }
}

/// An event with its number on the bus (increasing by one per event).
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// The number (the SSE `id:`).
    pub id: u64,
    /// The event.
    pub event: Event,
}

/// The bus. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<Arc<Published>>,
    next: Arc<AtomicU64>,
}

impl Default for Bus {
    fn default() -> Bus {
        let (tx, _) = broadcast::channel(CAPACITY);
        Bus {
            tx,
            next: Arc::new(AtomicU64::new(1)),
        }
    }
}

/// A listener fell behind by this many events, which it will not see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missed(pub u64);

/// A listener's end of the bus.
pub struct Listener {
    rx: broadcast::Receiver<Arc<Published>>,
}

impl Listener {
    /// The next event, or `Err(Missed)` once after falling behind; `None` when the bus is gone.
    pub async fn next(&mut self) -> Option<Result<Arc<Published>, Missed>> {
        match self.rx.recv().await {
            Ok(p) => Some(Ok(p)),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Err(Missed(n))),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl Bus {
    /// Publishes an event to everyone listening now.
    pub fn publish(&self, event: Event) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        // No listener is not an error: the event simply goes nowhere.
        let _ = self.tx.send(Arc::new(Published { id, event }));
    }

    /// Starts listening: every event published from now on.
    pub fn listen(&self) -> Listener {
        Listener {
            rx: self.tx.subscribe(),
        }
    }

    /// How many listen now (for metrics).
    pub fn listeners(&self) -> usize {
        self.tx.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(n: i64) -> Event {
        Event::RunLog {
            run_id: 1,
            job: "j".into(),
            seq: Some(n),
            level: LogLevel::Info,
            message: format!("line {n}"),
        }
    }

    #[tokio::test]
    async fn listeners_get_events_in_order_and_are_told_what_they_missed() {
        let bus = Bus::default();
        bus.publish(log(0));
        let mut l = bus.listen();
        bus.publish(log(1));
        bus.publish(log(2));
        let a = l.next().await.unwrap().unwrap();
        let b = l.next().await.unwrap().unwrap();
        assert_eq!((a.event.clone(), b.id), (log(1), a.id + 1));
        for i in 0..(CAPACITY as i64 + 10) {
            bus.publish(log(i));
        }
        assert_eq!(l.next().await.unwrap(), Err(Missed(10)));
        assert_eq!(l.next().await.unwrap().unwrap().event, log(10));
    }

    #[test]
    fn events_serialise_with_their_type() {
        let v = serde_json::to_value(log(3)).unwrap();
        assert_eq!(v["type"], "run_log");
        assert_eq!(v["seq"], 3);
        assert_eq!(log(3).kind(), "run_log");
        assert!(Event::KINDS.contains(&log(3).kind()));
    }
}
