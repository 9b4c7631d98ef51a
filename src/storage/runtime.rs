//! The one tokio runtime that drives object_store, and the blocking bridge to it.
//!
//! The storage API is synchronous: a worker runs one job at a time on one thread, and its Lua
//! bindings block on I/O. Every async object_store call goes through [`block_on`], which also
//! polls the caller's [`Interrupt`] so that a timeout or cancel stops a wait promptly instead of
//! after the network gives up. Never call the storage API from inside an async task: use
//! `spawn_blocking` (whose threads may block on this runtime).

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::runtime::Runtime;

/// Asks a blocking storage call to give up: returns `true` once the caller is being stopped
/// (a run's timeout or cancel). Checked a few times per second while a call waits.
pub use crate::cancel::Interrupt;

/// How often a waiting call checks its [`Interrupt`].
const INTERRUPT_POLL: Duration = Duration::from_millis(50);

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The shared runtime: two worker threads, enough for a few uploads in flight and the HTTP
/// connection tasks, started on first use.
pub(crate) fn runtime() -> Result<&'static Runtime, std::io::Error> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("ferry-storage")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| std::io::Error::other(format!("cannot start the storage runtime: {e}")))
}

/// Why a blocking wait ended without a result.
#[derive(Debug)]
pub(crate) enum Wait {
    /// The interrupt fired.
    Interrupted,
    /// The runtime could not be started.
    Runtime(std::io::Error),
}

/// Runs a future to completion on the storage runtime, giving up when `interrupt` fires.
pub(crate) fn block_on<F: Future>(
    fut: F,
    interrupt: Option<&Interrupt>,
) -> Result<F::Output, Wait> {
    let rt = runtime().map_err(Wait::Runtime)?;
    match interrupt {
        None => Ok(rt.block_on(fut)),
        Some(stop) => rt.block_on(async {
            tokio::pin!(fut);
            let mut tick = tokio::time::interval(INTERRUPT_POLL);
            loop {
                tokio::select! {
                    out = &mut fut => return Ok(out),
                    _ = tick.tick() => {
                        if stop() {
                            return Err(Wait::Interrupted);
                        }
                    }
                }
            }
        }),
    }
}

/// Runs a clean-up future (an abort) for at most `limit`; `None` when it did not finish. Not
/// interruptible: it runs precisely when the caller is being stopped.
pub(crate) fn block_on_for<F: Future>(fut: F, limit: Duration) -> Option<F::Output> {
    let rt = runtime().ok()?;
    rt.block_on(async { tokio::time::timeout(limit, fut).await.ok() })
}

/// The shared runtime, for the other blocking bridges to async clients (the HTTP client of
/// scripts): one runtime per process for every outbound connection.
pub(crate) fn runtime_handle() -> Result<&'static Runtime, std::io::Error> {
    runtime()
}

/// [`block_on`] for other modules: `Err(None)` when `interrupt` fired, `Err(Some(e))` when the
/// runtime could not be started.
pub(crate) fn block_on_interruptible<F: Future>(
    fut: F,
    interrupt: &Interrupt,
) -> Result<F::Output, Option<std::io::Error>> {
    block_on(fut, Some(interrupt)).map_err(|w| match w {
        Wait::Interrupted => None,
        Wait::Runtime(e) => Some(e),
    })
}
