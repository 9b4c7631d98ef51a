//! systemd integration of `ferry serve` (`Type=notify`, see `contrib/ferry.service`): `READY=1`
//! once the API listens, `STOPPING=1` when a shutdown starts, and watchdog pings every half
//! `WATCHDOG_USEC`, each sent only after the run history answered a query, so a daemon whose
//! database or runtime hangs stops pinging and systemd restarts it. Everything is a no-op when
//! the daemon was not started by systemd (`NOTIFY_SOCKET` unset).

use std::time::Duration;

use sd_notify::NotifyState;

use crate::history::{HistoryHandle, RunState};

/// Tells systemd the daemon is ready, with a status line (`systemctl status` shows it).
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd the daemon is stopping (running jobs get their grace period).
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: waiting for running jobs"),
    ]);
}

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

/// The watchdog interval systemd asked for (half of `WATCHDOG_USEC`), if it asked. As
/// `sd_watchdog_enabled(3)`: a `WATCHDOG_PID` naming another process means the request is not
/// for this one.
fn watchdog_interval() -> Option<Duration> {
    std::env::var_os("NOTIFY_SOCKET")?;
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.trim().parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    if usec == 0 {
        return None;
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(100)))
}

/// Starts the watchdog pings when systemd asked for them; they stop when `stop` fires.
pub fn spawn_watchdog(
    history: HistoryHandle,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let every = watchdog_interval()?;
    tracing::info!(every_ms = every.as_millis() as u64, "systemd watchdog on");
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            let h = history.clone();
            let probe =
                tokio::task::spawn_blocking(move || h.count_in_state(RunState::Running)).await;
            match probe {
                Ok(Ok(_)) => send(&[NotifyState::Watchdog]),
                Ok(Err(e)) => tracing::warn!("watchdog: the run history does not answer: {e}"),
                Err(e) => tracing::warn!("watchdog: probe failed: {e}"),
            }
        }
    }))
}
