//! The cron trigger: fires runs at their schedule's occurrences and, after downtime, handles
//! the occurrences missed while the daemon was not running according to each job's `missed`
//! policy (`skip`: one `skipped` record; `once`: one catch-up run; `all`: a run per occurrence,
//! bounded by `[daemon] catchup_max` within `[daemon] catchup_window`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::dispatcher::{Dispatcher, Submit};
use super::params::GivenParams;
use super::schedule::{Missed, Schedule};
use super::spec::JobSpec;
use crate::config::Config;
use crate::history::Trigger;
use crate::history::{HistoryError, NewRun, RunEnd, RunState, format_time};

/// Next occurrences per job.
#[derive(Debug, Default)]
pub struct CronTrigger {
    next: HashMap<String, (String, DateTime<Utc>)>,
}

fn key(s: &Schedule) -> String {
    format!("{}|{}", s.expr, s.timezone)
}

impl CronTrigger {
    /// The next occurrence of a job, as planned.
    pub fn next_of(&self, job: &str) -> Option<DateTime<Utc>> {
        self.next.get(job).map(|(_, t)| *t)
    }

    /// The earliest planned occurrence of any job (the trigger loop sleeps until then).
    pub fn earliest(&self) -> Option<DateTime<Utc>> {
        self.next.values().map(|(_, t)| *t).min()
    }

    /// Handles the occurrences of every scheduled job missed before `now` (call once at start).
    pub fn catch_up(
        &mut self,
        config: &Config,
        dispatcher: &Dispatcher,
        specs: &[std::sync::Arc<JobSpec>],
        now: DateTime<Utc>,
    ) {
        for spec in specs {
            let Some(schedule) = &spec.schedule else {
                continue;
            };
            if let Err(e) = catch_up_job(config, dispatcher, spec, schedule, now) {
                tracing::error!(job = %spec.name, "cannot handle missed occurrences: {e}");
            }
            if let Some(next) = schedule.next_after(now) {
                self.next.insert(spec.name.clone(), (key(schedule), next));
            }
        }
    }

    /// Fires the occurrences due at `now`; picks up new and changed schedules.
    pub fn tick(
        &mut self,
        dispatcher: &Dispatcher,
        specs: &[std::sync::Arc<JobSpec>],
        now: DateTime<Utc>,
    ) {
        let history = dispatcher.history();
        self.next
            .retain(|job, _| specs.iter().any(|s| &s.name == job && s.schedule.is_some()));
        for spec in specs {
            let Some(schedule) = &spec.schedule else {
                continue;
            };
            let k = key(schedule);
            let entry = self.next.get(&spec.name);
            let due = match entry {
                Some((old, t)) if *old == k => *t,
                _ => {
                    if let Some(next) = schedule.next_after(now) {
                        self.next.insert(spec.name.clone(), (k, next));
                    }
                    if history
                        .schedule_last_fire(&spec.name)
                        .ok()
                        .flatten()
                        .is_none()
                    {
                        let _ = history.schedule_set_last_fire(&spec.name, now);
                    }
                    continue;
                }
            };
            if now < due {
                continue;
            }
            let not_before = (!schedule.jitter.is_zero()).then(|| {
                let ms = (schedule.jitter.as_millis() as f64 * fastrand::f64()) as i64;
                due + chrono::Duration::milliseconds(ms)
            });
            let submit = Submit {
                job: spec.name.clone(),
                params: GivenParams::Json(Default::default()),
                trigger: Trigger::Cron {
                    scheduled_at: format_time(&due),
                    missed: None,
                },
                not_before,
            };
            // Every daemon on a shared history sees the occurrence come: one of them queues it,
            // the claim and the run in one transaction.
            match dispatcher.submit_cron(submit, due) {
                Ok(Some(s)) => {
                    tracing::debug!(job = %spec.name, run = s.id, state = %s.state, "cron fired")
                }
                Ok(None) => {
                    tracing::debug!(job = %spec.name, "cron occurrence fired by another process")
                }
                Err(e) => tracing::error!(job = %spec.name, "cron could not start a run: {e}"),
            }
            if let Err(e) = history.schedule_set_last_fire(&spec.name, due) {
                tracing::error!(job = %spec.name, "cannot record the cron fire: {e}");
            }
            match schedule.next_after(due.max(now)) {
                Some(next) => {
                    self.next.insert(spec.name.clone(), (k, next));
                }
                None => {
                    self.next.remove(&spec.name);
                }
            }
        }
    }
}

fn catch_up_job(
    config: &Config,
    dispatcher: &Dispatcher,
    spec: &JobSpec,
    schedule: &Schedule,
    now: DateTime<Utc>,
) -> Result<(), HistoryError> {
    let history = dispatcher.history();
    let Some(last) = history.schedule_last_fire(&spec.name)? else {
        history.schedule_set_last_fire(&spec.name, now)?;
        return Ok(());
    };
    let window = chrono::Duration::from_std(config.daemon.catchup_window)
        .unwrap_or(chrono::Duration::days(1));
    let mut t = last.max(now - window);
    let mut missed = Vec::new();
    let mut count: u32 = 0;
    while let Some(next) = schedule.next_after(t) {
        if next > now {
            break;
        }
        count = count.saturating_add(1);
        if missed.len() < config.daemon.catchup_max as usize {
            missed.push(next);
        } else if let Some(l) = missed.last_mut() {
            // Keep the newest occurrence last for `once`.
            *l = next;
        }
        t = next;
        if count >= 1_000_000 {
            break;
        }
    }
    let (Some(first), Some(latest)) = (missed.first().copied(), missed.last().copied()) else {
        return Ok(());
    };
    // On a shared history every daemon starting up sees the same missed occurrences: each
    // occurrence is claimed with its run, so the one that records it first catches up, once.
    match schedule.missed {
        Missed::Skip => {
            let trigger = Trigger::Cron {
                scheduled_at: format_time(&latest),
                missed: Some(count),
            };
            let run = NewRun {
                job: spec.name.clone(),
                trigger: trigger.clone(),
                params: serde_json::json!({}),
                attempt: 1,
                not_before: None,
                retry_of: None,
                owner: None,
            };
            let Some(id) = history.create_cron_run(&run, latest, dispatcher.owner())? else {
                return Ok(());
            };
            tracing::info!(job = %spec.name, count, "missed occurrences while ferry was not running");
            history.finish_run(
                id,
                &RunEnd {
                    state: RunState::Skipped,
                    error: None,
                    summary: Some(serde_json::json!({
                        "reason": "missed while ferry was not running (missed = \"skip\")",
                        "missed": count,
                        "first": format_time(&first),
                        "last": format_time(&latest),
                    })),
                },
            )?;
        }
        Missed::Once => submit_catch_up(dispatcher, spec, latest, count),
        Missed::All => {
            for at in &missed {
                submit_catch_up(dispatcher, spec, *at, count);
            }
        }
    }
    history.schedule_set_last_fire(&spec.name, latest)?;
    Ok(())
}

fn submit_catch_up(dispatcher: &Dispatcher, spec: &JobSpec, at: DateTime<Utc>, count: u32) {
    let submit = Submit {
        job: spec.name.clone(),
        params: GivenParams::Json(Default::default()),
        trigger: Trigger::Cron {
            scheduled_at: format_time(&at),
            missed: Some(count),
        },
        not_before: None,
    };
    match dispatcher.submit_cron(submit, at) {
        Ok(Some(_)) => {
            tracing::info!(job = %spec.name, count, "missed occurrences while ferry was not running")
        }
        Ok(None) => {
            tracing::debug!(job = %spec.name, "missed occurrence caught up by another process")
        }
        Err(e) => tracing::error!(job = %spec.name, "cannot queue a catch-up run: {e}"),
    }
}

#[cfg(test)]
#[path = "cron_tests.rs"]
mod tests;
