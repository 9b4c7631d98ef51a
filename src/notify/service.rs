//! The notifier of `ferry serve`: a listener on the event bus records, for each run that ends,
//! the notifications its job calls for (pending rows in the history, so a restart loses
//! nothing), and a delivery task sends them, retrying with backoff up to the configured
//! attempts. Both are tasks of their own: the dispatcher only publishes its events (which never
//! blocks) and is never slowed by a receiver that is slow or down. At most [`BATCH`] deliveries
//! are in flight at once.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::payload::Message;
use super::rules::{MAX_BACKOFF, Outcome, Plan};
use super::send::Sender;
use crate::config::Config;
use crate::history::{
    Attempt, HistoryError, HistoryHandle, NewNotification, Notification, NotificationState,
    RunState,
};
use crate::jobs::events::{Bus, Event};
use crate::jobs::registry::Registry;
use crate::jobs::spec::JobSpec;
use crate::sync::RwLockExt;

/// Deliveries attempted at once.
pub const BATCH: u32 = 16;
/// How long deliveries in flight may go on at shutdown.
pub const STOP_GRACE: Duration = Duration::from_secs(3);
/// The longest the delivery task sleeps before looking at the history again.
const IDLE: Duration = Duration::from_secs(30);

struct Ctx {
    config: Config,
    history: HistoryHandle,
    registry: Arc<RwLock<Registry>>,
    sender: Sender,
    wake: Notify,
}

/// The running notifier; [`Notifier::stop`] ends its tasks.
pub struct Notifier {
    stop_tx: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Notifier {
    /// Starts listening on `bus` and delivering (pending deliveries of an earlier daemon
    /// included).
    pub fn start(
        config: Config,
        history: HistoryHandle,
        registry: Arc<RwLock<Registry>>,
        bus: &Bus,
    ) -> Notifier {
        let ctx = Arc::new(Ctx {
            sender: Sender::new(config.notify.delivery.timeout),
            config,
            history,
            registry,
            wake: Notify::new(),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let listener = bus.listen();
        let tasks = vec![
            tokio::spawn(plan_loop(ctx.clone(), listener, stop_rx.clone())),
            tokio::spawn(deliver_loop(ctx, stop_rx)),
        ];
        Notifier { stop_tx, tasks }
    }

    /// Records the notifications of the runs that ended so far, gives deliveries in flight
    /// [`STOP_GRACE`] to finish, and stops. Pending deliveries (those cut short too) stay in the
    /// history for the next start.
    pub async fn stop(self) {
        let _ = self.stop_tx.send(true);
        let until = tokio::time::Instant::now() + STOP_GRACE;
        for t in self.tasks {
            let abort = t.abort_handle();
            if tokio::time::timeout_at(until, t).await.is_err() {
                // Dropping the delivery task's set of attempts aborts them.
                abort.abort();
            }
        }
    }
}

/// How far before the last event it handled a notifier that fell behind the bus looks for
/// runs that ended (events and history times come from clocks a moment apart).
const CATCH_UP_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(5);
/// Runs read again per catch-up.
const CATCH_UP_LIMIT: u32 = 100_000;

async fn plan_loop(
    ctx: Arc<Ctx>,
    mut listener: crate::jobs::events::Listener,
    mut stop: watch::Receiver<bool>,
) {
    // When the last event was taken off the bus: after a gap, the runs that ended since are
    // read back from the history, so none goes without its notifications.
    let mut caught_up_to = Utc::now();
    loop {
        // Events already published are handled before a stop is, so the ends of runs drained
        // at shutdown are recorded.
        let next = tokio::select! {
            biased;
            ev = listener.next() => ev,
            _ = stop.changed() => break,
        };
        let published = match next {
            None => break,
            Some(Ok(p)) => p,
            Some(Err(missed)) => {
                let since = caught_up_to - CATCH_UP_MARGIN;
                caught_up_to = Utc::now();
                tracing::warn!(
                    missed = missed.0,
                    "notifications: fell behind the event stream; reading the runs that ended since {since} from the history"
                );
                let c = ctx.clone();
                let ended = tokio::task::spawn_blocking(move || {
                    c.history.runs_ended_since(since, CATCH_UP_LIMIT)
                })
                .await;
                match ended {
                    Ok(Ok(runs)) => {
                        for (run_id, job) in runs {
                            plan_finished(&ctx, run_id, &job).await;
                        }
                    }
                    Ok(Err(e)) => tracing::error!("notifications: catching up: {e}"),
                    Err(e) => tracing::error!("notifications: catching up: {e}"),
                }
                continue;
            }
        };
        caught_up_to = Utc::now();
        let Event::RunFinished {
            run_id, job, state, ..
        } = &published.event
        else {
            continue;
        };
        if matches!(
            state,
            RunState::Succeeded
                | RunState::Failed
                | RunState::TimedOut
                | RunState::Interrupted
                | RunState::Skipped
        ) {
            plan_finished(&ctx, *run_id, job).await;
        }
    }
}

/// Records the notifications of a run that ended, under its job's rules (a run already
/// recorded is not recorded twice: see `add_notification`).
async fn plan_finished(ctx: &Arc<Ctx>, run_id: i64, job: &str) {
    // Most jobs notify nothing: that is known without reading the history.
    let spec = ctx.registry.read_unpoisoned().get(job);
    let plan = ctx
        .config
        .notify
        .plan(spec.as_ref().and_then(|s| s.notify.as_ref()));
    if plan.on.is_empty() || plan.channels.is_empty() {
        return;
    }
    let c = ctx.clone();
    match tokio::task::spawn_blocking(move || plan_run(&c, run_id, spec, plan)).await {
        Ok(Ok(0)) => {}
        Ok(Ok(_)) => ctx.wake.notify_one(),
        Ok(Err(e)) => tracing::error!(run = run_id, "notifications: {e}"),
        Err(e) => tracing::error!(run = run_id, "notifications: {e}"),
    }
}

/// Records the notifications a run that ended calls for under its job's `plan`; returns how
/// many.
fn plan_run(
    ctx: &Ctx,
    run_id: i64,
    spec: Option<Arc<JobSpec>>,
    plan: Plan,
) -> Result<usize, HistoryError> {
    let history = &*ctx.history;
    let run = history.get_run(run_id)?;
    let outcome = match run.state {
        RunState::Succeeded => {
            let after_failure = plan.on.contains(&Outcome::Recovered)
                && matches!(
                    history.previous_outcome(&run.job, run.id)?,
                    Some(RunState::Failed | RunState::TimedOut | RunState::Interrupted)
                );
            if after_failure {
                Outcome::Recovered
            } else {
                Outcome::Success
            }
        }
        RunState::Failed | RunState::TimedOut | RunState::Interrupted => {
            // A run that will be retried decides nothing: its last attempt does.
            if spec
                .as_ref()
                .is_some_and(|s| crate::jobs::dispatcher::retry_due(s, &run))
            {
                return Ok(0);
            }
            Outcome::Failure
        }
        RunState::Skipped => Outcome::Skipped,
        _ => return Ok(0),
    };
    if !plan.on.contains(&outcome) {
        return Ok(0);
    }
    let mut added = 0;
    for ch in &plan.channels {
        let new = NewNotification {
            run_id: run.id,
            job: run.job.clone(),
            event: outcome.as_str().to_string(),
            channel: ch.kind().to_string(),
            target: ch.target(),
        };
        if history.add_notification(&new)?.is_some() {
            added += 1;
        }
    }
    Ok(added)
}

async fn deliver_loop(ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            break;
        }
        let c = ctx.clone();
        let due = tokio::task::spawn_blocking(move || {
            let due = c.history.due_notifications(Utc::now(), BATCH)?;
            let next = c.history.next_notification_at()?;
            Ok::<_, HistoryError>((due, next))
        })
        .await;
        let (due, next) = match due {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::error!("notifications: {e}");
                (Vec::new(), Some(Utc::now() + chrono::Duration::seconds(1)))
            }
            Err(e) => {
                tracing::error!("notifications: {e}");
                (Vec::new(), Some(Utc::now() + chrono::Duration::seconds(1)))
            }
        };
        if !due.is_empty() {
            let mut set = JoinSet::new();
            for n in due {
                set.spawn(deliver(ctx.clone(), n));
            }
            while set.join_next().await.is_some() {}
            continue;
        }
        let wait = next
            .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(IDLE)
            .min(IDLE);
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = ctx.wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One attempt of one delivery, recorded.
async fn deliver(ctx: Arc<Ctx>, n: Notification) {
    let c = ctx.clone();
    let (job, run_id) = (n.job.clone(), n.run_id);
    let run = tokio::task::spawn_blocking(move || c.history.get_run(run_id)).await;
    let run = match run {
        Ok(Ok(r)) => r,
        Ok(Err(HistoryError::NotFound(_))) => {
            return record(&ctx, &n, Err("the run was deleted".into())).await;
        }
        Ok(Err(e)) => return tracing::error!(run = run_id, "notifications: {e}"),
        Err(e) => return tracing::error!(run = run_id, "notifications: {e}"),
    };
    let spec = ctx.registry.read_unpoisoned().get(&job);
    let plan = ctx
        .config
        .notify
        .plan(spec.as_ref().and_then(|s| s.notify.as_ref()));
    let Some(channel) = plan
        .channels
        .into_iter()
        .find(|c| c.kind() == n.channel && c.target() == n.target)
    else {
        let why = format!(
            "the {} channel is no longer configured for job {job}",
            n.channel
        );
        return record(&ctx, &n, Err(why)).await;
    };
    let msg = Message {
        event: &n.event,
        run: &run,
        link: format!("{}/runs/{}", ctx.config.notify.public_url, run.id),
    };
    let result = ctx
        .sender
        .send(n.id, &channel, ctx.config.notify.smtp.as_ref(), &msg)
        .await
        .map_err(|e| e.to_string());
    record(&ctx, &n, result).await;
}

async fn record(ctx: &Arc<Ctx>, n: &Notification, result: Result<(), String>) {
    let delivery = ctx.config.notify.delivery;
    let attempts = n.attempts + 1;
    let attempt = match &result {
        Ok(()) => {
            tracing::info!(job = %n.job, run = n.run_id, channel = %n.channel, target = %n.target, event = %n.event, "notification sent");
            Attempt {
                state: NotificationState::Sent,
                reason: None,
                next_at: None,
            }
        }
        Err(reason) if attempts >= delivery.attempts => {
            tracing::warn!(job = %n.job, run = n.run_id, channel = %n.channel, target = %n.target, attempts, "notification failed for good: {reason}");
            Attempt {
                state: NotificationState::Failed,
                reason: Some(reason.clone()),
                next_at: None,
            }
        }
        Err(reason) => {
            let delay =
                crate::jobs::retry::delay(delivery.backoff, attempts, MAX_BACKOFF, fastrand::f64());
            tracing::warn!(job = %n.job, run = n.run_id, channel = %n.channel, target = %n.target, attempts, "notification not delivered, trying again in {delay:?}: {reason}");
            Attempt {
                state: NotificationState::Pending,
                reason: Some(reason.clone()),
                next_at: Some(crate::jobs::retry::at(Utc::now(), delay)),
            }
        }
    };
    let (c, id) = (ctx.clone(), n.id);
    match tokio::task::spawn_blocking(move || c.history.notification_attempted(id, &attempt)).await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(notification = id, "notifications: {e}"),
        Err(e) => tracing::error!(notification = id, "notifications: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{NewRun, RunEnd};
    use crate::jobs::events::{CAPACITY, Event};
    use crate::jobs::testkit::Fixture;

    /// A notifier that falls behind the bus reads the runs that ended meanwhile from the
    /// history: none goes without its notification.
    #[tokio::test(flavor = "current_thread")]
    async fn a_notifier_that_fell_behind_catches_up_from_the_history() {
        let job = crate::jobs::spec::spec_for_tests("j", serde_json::json!({}));
        // Port 9 (discard) on loopback: deliveries fail, the records are what is checked.
        let toml = "[notify]\non = [\"success\"]\nwebhook = \"http://127.0.0.1:9/hook\"\n";
        let f = Fixture::new(toml, Utc::now(), vec![job]);
        let bus = f.dispatcher.events().clone();
        let notifier = Notifier::start(f.config.clone(), f.history().clone(), f.registry(), &bus);
        let history = f.history().clone();
        let run = history
            .create_run(&NewRun {
                job: "j".into(),
                trigger: crate::history::Trigger::Api,
                params: serde_json::json!({}),
                attempt: 1,
                not_before: None,
                retry_of: None,
                owner: None,
            })
            .unwrap();
        history
            .finish_run(
                run,
                &RunEnd {
                    state: RunState::Succeeded,
                    error: None,
                    summary: None,
                },
            )
            .unwrap();
        // The run's end is never published; a flood of other events overflows the notifier's
        // place on the bus before it runs (one thread: it runs when this test awaits).
        for seq in 0..(CAPACITY as i64 + 10) {
            bus.publish(Event::RunLog {
                run_id: 0,
                job: "other".into(),
                seq: Some(seq),
                level: crate::history::LogLevel::Info,
                message: String::new(),
            });
        }
        let mut recorded = Vec::new();
        for _ in 0..500 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            recorded = history.notifications(run).unwrap();
            if !recorded.is_empty() {
                break;
            }
        }
        notifier.stop().await;
        assert_eq!(recorded.len(), 1, "the run's notification was recorded");
        assert_eq!(recorded[0].event, "success");
    }
}
