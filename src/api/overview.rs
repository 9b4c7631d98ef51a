//! `GET /api/v1/overview`: what a person wants to see first — what runs now, what failed
//! lately, what comes next, counts by state and the jobs whose script does not load.
//!
//! Every list is capped (`limit`) and comes with its total; the full lists are the paged
//! `GET /api/v1/runs` with the matching filters.

use std::collections::BTreeMap;

use super::runs::{number_param, pairs};
use super::wire::{BrokenJob, ErrorBody, Overview, RunSlice, Upcoming, run_views};
use super::{ApiError, ApiState};
use crate::history::{RunFilter, RunRecord, RunState, format_time};
use axum::Json;
use axum::extract::{RawQuery, State};
use chrono::{DateTime, Utc};

/// Runs counted as failures in the overview.
const FAILURES: [RunState; 3] = [RunState::Failed, RunState::TimedOut, RunState::Interrupted];

/// `GET /api/v1/overview?limit=10`.
#[utoipa::path(get, path = "/api/v1/overview",
    summary = "What runs now, failures of the last 24 h, upcoming runs, counts by state, jobs that do not load",
    params(("limit" = Option<u32>, Query, description = "items per list, 1-100 (default 10)", minimum = 1, maximum = 100)),
    responses((status = 200, body = Overview), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn overview(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Overview>, ApiError> {
    let mut limit = 10u32;
    for (k, v) in pairs(&q) {
        match k.as_str() {
            "limit" => limit = number_param("limit", &v, 1, 100)? as u32,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}`; expected limit"
                )));
            }
        }
    }
    let s = state.clone();
    let overview = tokio::task::spawn_blocking(move || build(&s, limit, Utc::now()))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(overview))
}

/// A capped list of runs in some states (queued at or after `since`) and how many there are.
fn runs_in(
    state: &ApiState,
    states: &[RunState],
    since: Option<DateTime<Utc>>,
    limit: u32,
) -> Result<RunSlice, ApiError> {
    let (items, total) = state.history.list_runs(&RunFilter {
        states: states.to_vec(),
        since,
        limit,
        ..Default::default()
    })?;
    Ok(RunSlice {
        items: run_views(&items),
        total,
    })
}

fn build(state: &ApiState, limit: u32, now: DateTime<Utc>) -> Result<Overview, ApiError> {
    let mut counts = BTreeMap::new();
    for s in RunState::ALL {
        counts.insert(s.as_str().to_string(), 0);
    }
    for (s, n) in state.history.count_by_state()? {
        counts.insert(s.as_str().to_string(), n);
    }
    let since = now - chrono::Duration::hours(24);
    let running = runs_in(state, &[RunState::Running], None, limit)?;
    let queued = runs_in(state, &[RunState::Queued], None, limit)?;
    let failures = runs_in(state, &FAILURES, Some(since), limit)?;

    let next = state.handle.next_runs_now();
    let paused: Vec<String> = state
        .history
        .paused_jobs()?
        .into_iter()
        .map(|(j, _)| j)
        .collect();
    let mut upcoming: Vec<(DateTime<Utc>, Upcoming)> = Vec::new();
    let mut broken = Vec::new();
    {
        let reg = state.handle.registry_read();
        for (name, entry) in reg.entries() {
            if let Some(e) = &entry.error {
                broken.push(BrokenJob {
                    name: name.clone(),
                    file: state.handle.config.display_path(&entry.path),
                    loaded: entry.spec.is_some(),
                    error: e.to_string(),
                });
            }
            let schedule = entry.spec.as_ref().and_then(|s| s.schedule.as_ref());
            let at = next
                .get(name)
                .copied()
                .or_else(|| schedule.and_then(|s| s.next_after(now)));
            if let (Some(at), Some(s)) = (at, schedule) {
                upcoming.push((
                    at,
                    Upcoming {
                        kind: "cron",
                        job: name.clone(),
                        at: format_time(&at),
                        cron: Some(s.expr.clone()),
                        run_id: None,
                        trigger: None,
                        paused: paused.contains(name),
                    },
                ));
            }
        }
    }
    for run in state.history.upcoming_runs(now, limit)? {
        upcoming.push(at_entry(&run, &paused));
    }
    upcoming.sort_by_key(|u| u.0);
    upcoming.truncate(limit as usize);
    Ok(Overview {
        now: format_time(&now),
        counts,
        running,
        queued,
        failures,
        failures_since: format_time(&since),
        upcoming: upcoming.into_iter().map(|(_, v)| v).collect(),
        broken_jobs: broken,
    })
}

/// A queued run that waits for its time, as an upcoming entry.
fn at_entry(run: &RunRecord, paused: &[String]) -> (DateTime<Utc>, Upcoming) {
    let at = run.not_before.unwrap_or(run.queued_at);
    (
        at,
        Upcoming {
            kind: "at",
            job: run.job.clone(),
            at: format_time(&at),
            cron: None,
            run_id: Some(run.id),
            trigger: Some(run.trigger_kind().to_owned()),
            paused: paused.contains(&run.job),
        },
    )
}
