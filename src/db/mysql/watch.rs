//! Stopping a statement that blocks inside the server when the run is being stopped.
//!
//! A statement waiting for its first row (a long `SELECT`, `SLEEP`, a lock wait) blocks the
//! run's thread in a socket read, where no cancel check runs. A connection opened inside a run
//! (a cancel scope is installed, see [`crate::cancel`]) gets a watcher thread that looks at the
//! run's interrupt every [`POLL`] while a statement is in flight ([`Watch::arm`]), and once it
//! says stop, opens a second connection and sends `KILL QUERY` for this one: the server stops
//! the statement and the blocked read returns its error.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use mysql::prelude::Queryable;

use super::MysqlTarget;
use crate::cancel::Interrupt;

/// How often the watcher looks at the interrupt while a statement runs.
const POLL: Duration = Duration::from_millis(25);

struct Shared {
    target: MysqlTarget,
    connection_id: u32,
    /// Statements in flight (armed guards).
    busy: AtomicUsize,
    /// Set once `KILL QUERY` was sent.
    killed: AtomicBool,
    stop: AtomicBool,
}

impl Shared {
    /// Sends `KILL QUERY` for the connection from a second one, because the run is being
    /// stopped. Best effort: when it fails the statement runs on until the worker's watchdog
    /// ends the process.
    fn kill(&self) {
        if self.killed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.stop_statement();
    }

    /// Sends `KILL QUERY` for the connection from a second one. The statement `KILL` has
    /// completed when this returns; a connection that was idle by then is not affected (its next
    /// statement runs normally).
    fn stop_statement(&self) {
        if let Ok(mut c) = self.target.open_conn() {
            let _ = c.query_drop(format!("KILL QUERY {}", self.connection_id));
        }
    }
}

/// The watcher of one connection; stops its thread when dropped.
pub(super) struct Watch {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A statement in flight; the watcher stands down when it is dropped.
pub(super) struct Armed<'a>(&'a AtomicUsize);

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Watch {
    /// Starts watching connection `connection_id` of `target`, with a thread when the calling
    /// thread has a cancel scope.
    pub(super) fn start(target: MysqlTarget, connection_id: u32) -> Watch {
        let shared = Arc::new(Shared {
            target,
            connection_id,
            busy: AtomicUsize::new(0),
            killed: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let thread = crate::cancel::current().and_then(|interrupt| {
            let s = shared.clone();
            std::thread::Builder::new()
                .name("ferry-mysql-watch".into())
                .spawn(move || watch(&s, &interrupt))
                .ok()
        });
        Watch { shared, thread }
    }

    /// Marks a statement in flight until the guard is dropped.
    pub(super) fn arm(&self) -> Armed<'_> {
        self.shared.busy.fetch_add(1, Ordering::SeqCst);
        Armed(&self.shared.busy)
    }

    /// Sends `KILL QUERY` now (once per connection).
    pub(super) fn kill_now(&self) {
        self.shared.kill();
    }

    /// Stops the running statement (an abandoned query's result) without cancelling anything.
    pub(super) fn stop_statement(&self) {
        self.shared.stop_statement();
    }

    /// Whether `KILL QUERY` was sent for this connection because the run is being stopped.
    pub(super) fn killed(&self) -> bool {
        self.shared.killed.load(Ordering::SeqCst)
    }

    /// The server's id of the connection.
    pub(super) fn connection_id(&self) -> u32 {
        self.shared.connection_id
    }
}

fn watch(s: &Shared, interrupt: &Interrupt) {
    while !s.stop.load(Ordering::SeqCst) {
        std::thread::park_timeout(POLL);
        if s.busy.load(Ordering::SeqCst) > 0 && !s.killed.load(Ordering::SeqCst) && interrupt() {
            s.kill();
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
