//! Server-Sent Events: `GET /api/v1/events` (everything the daemon's bus carries, filtered by
//! job, run and type) and `GET /api/v1/runs/{id}/logs?follow=true` (one run's log lines from a
//! given sequence number on, live, ending with the run's end).
//!
//! Each stream is fed by a task of its own through a small bounded channel; the task ends when
//! the client goes away (the channel closes) or the stream is done. A client that falls too far
//! behind the bus is told so with a `missed` event and re-reads what it needs.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::response::sse::{Event as Sse, KeepAlive};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::auth::Caller;
use super::runs::{number_param, pairs, run_id};
use super::wire::ErrorBody;
use super::{ApiError, ApiState};
use crate::jobs::events::{Event, Missed, Published};

/// Events waiting for a slow client, per stream.
const STREAM_QUEUE: usize = 64;
/// A followed run's history is re-read at least this often (its events may come from another
/// process, such as `ferry run`, that does not publish on this daemon's bus).
const FOLLOW_POLL: Duration = Duration::from_secs(1);
/// Log lines sent per history read while following.
const FOLLOW_BATCH: u32 = 1000;
/// How often a stream opened with a named token checks that the token still exists: revoking
/// it ends the caller's streams within this time (with a `revoked` event).
const REVOKE_CHECK: Duration = Duration::from_secs(2);

/// Whether the token a stream was opened with has been revoked (never, for the config token
/// and when auth is off; a history that cannot be read does not end the stream).
async fn revoked(state: &ApiState, caller: &Caller) -> bool {
    let Some(hash) = caller.token_hash.clone() else {
        return false;
    };
    matches!(
        state.db(move |h| Ok(h.token_by_hash(&hash)?)).await,
        Ok(None)
    )
}

fn revoked_event(caller: &Caller) -> Sse {
    Sse::default().event("revoked").data(
        json!({ "type": "revoked", "token": caller.name,
                "message": "the token this stream was opened with was revoked" })
        .to_string(),
    )
}

type Sender = tokio::sync::mpsc::Sender<Result<Sse, Infallible>>;

/// An SSE response over the events a task sends into the returned sender.
fn sse_response() -> (Sender, Response) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(STREAM_QUEUE);
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let response = axum::response::sse::Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    (tx, response)
}

fn bus_event(p: &Published) -> Sse {
    Sse::default()
        .id(p.id.to_string())
        .event(p.event.kind())
        .data(serde_json::to_string(&p.event).unwrap_or_else(|_| "{}".into()))
}

fn missed_event(m: Missed) -> Sse {
    Sse::default().event("missed").data(
        json!({ "type": "missed", "count": m.0,
                "message": "events were dropped because this client fell behind; re-read the state you need" })
        .to_string(),
    )
}

/// Which events a client asked for.
struct Filter {
    job: Option<String>,
    run: Option<i64>,
    kinds: Vec<String>,
}

impl Filter {
    fn parse(q: &Option<String>) -> Result<Filter, ApiError> {
        let mut f = Filter {
            job: None,
            run: None,
            kinds: Vec::new(),
        };
        for (k, v) in pairs(q) {
            match k.as_str() {
                "job" => f.job = Some(v),
                "run" => f.run = Some(run_id(&v)?),
                "types" | "type" => {
                    for kind in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        if !Event::KINDS.contains(&kind) {
                            return Err(ApiError::bad_request(format!(
                                "query `types`: unknown event type {kind:?}; expected any of {}",
                                Event::KINDS.join(", ")
                            )));
                        }
                        f.kinds.push(kind.to_string());
                    }
                }
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unknown query parameter `{other}`; expected job, run, types"
                    )));
                }
            }
        }
        Ok(f)
    }

    fn wants(&self, e: &Event) -> bool {
        self.job.as_deref().is_none_or(|j| e.job() == j)
            && self.run.is_none_or(|r| e.run_id() == Some(r))
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| k == e.kind()))
    }
}

/// `GET /api/v1/events?job=&run=&types=run_log,run_finished`: the daemon's events as they
/// happen, each with its number (`id:`), type (`event:`) and JSON (`data:`).
#[utoipa::path(get, path = "/api/v1/events",
    summary = "Server-Sent Events of the daemon: run_queued, run_started, run_progress, run_log, run_finished, job_loaded, job_reload_failed, job_removed (and missed when a client falls behind)",
    params(("job" = Option<String>, Query, description = "only this job's events"),
        ("run" = Option<i64>, Query, description = "only this run's events"),
        ("types" = Option<String>, Query, description = "comma-separated event types")),
    responses((status = 200, description = "an event stream", content_type = "text/event-stream", body = String), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn stream(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let filter = Filter::parse(&q)?;
    let mut listener = state.handle.dispatcher.events().listen();
    let (tx, response) = sse_response();
    let stop = state.shutdown.clone();
    tokio::spawn(async move {
        let mut check = tokio::time::interval(REVOKE_CHECK);
        loop {
            let next = tokio::select! {
                next = listener.next() => next,
                // Only a named token can be revoked: other streams need no timer.
                _ = check.tick(), if caller.token_hash.is_some() => {
                    if revoked(&state, &caller).await {
                        let _ = tx.send(Ok(revoked_event(&caller))).await;
                        return;
                    }
                    continue;
                }
                _ = stop.cancelled() => return,
                _ = tx.closed() => return,
            };
            let Some(next) = next else { return };
            let sse = match next {
                Ok(p) if filter.wants(&p.event) => bus_event(&p),
                Ok(_) => continue,
                Err(m) => missed_event(m),
            };
            if tx.send(Ok(sse)).await.is_err() {
                return;
            }
        }
    });
    Ok(response)
}

/// `GET /api/v1/runs/{id}/logs?follow=true&after=N`: the run's log lines after sequence number
/// `N` (from the history), then new ones as they come, with its progress, until it ends: the
/// last event is `run_finished`. Each line is a `run_log` event whose `id:` is its sequence
/// number, so a client that reconnects with `Last-Event-ID` (or `after`) misses nothing.
pub async fn follow(
    state: ApiState,
    caller: Caller,
    id: i64,
    after: i64,
) -> Result<Response, ApiError> {
    // A run that does not exist is a 404 before the stream starts.
    state.db(move |h| Ok(h.get_run(id)?)).await?;
    let mut listener = state.handle.dispatcher.events().listen();
    let (tx, response) = sse_response();
    let stop = state.shutdown.clone();
    tokio::spawn(async move {
        let mut last = after;
        // The first pass checks the token (the stream may have been opened just before it was
        // revoked), then at most every REVOKE_CHECK.
        let mut last_check: Option<tokio::time::Instant> = None;
        loop {
            // The history is the truth; the bus only says when to look again (and carries
            // progress, which is not a log line).
            let read = state
                .db(move |h| Ok((h.logs(id, last, FOLLOW_BATCH)?, h.get_run(id)?)))
                .await;
            let Ok((lines, run)) = read else { return };
            let full = lines.len() as u32 == FOLLOW_BATCH;
            for l in lines {
                last = l.seq;
                let data = json!({ "type": "run_log", "run_id": id, "job": run.job, "seq": l.seq,
                                   "at": crate::history::format_time(&l.at), "level": l.level, "message": l.message });
                let sse = Sse::default()
                    .id(l.seq.to_string())
                    .event("run_log")
                    .data(data.to_string());
                if tx.send(Ok(sse)).await.is_err() {
                    return;
                }
            }
            if full {
                continue;
            }
            if last_check.is_none_or(|t| t.elapsed() >= REVOKE_CHECK) {
                last_check = Some(tokio::time::Instant::now());
                if revoked(&state, &caller).await {
                    let _ = tx.send(Ok(revoked_event(&caller))).await;
                    return;
                }
            }
            if run.state.is_closed() {
                let end = Event::finished(&run);
                let sse = Sse::default()
                    .event(end.kind())
                    .data(serde_json::to_string(&end).unwrap_or_default());
                let _ = tx.send(Ok(sse)).await;
                return;
            }
            // Wait for news of this run, or the poll interval.
            let wait = tokio::time::sleep(FOLLOW_POLL);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    next = listener.next() => match next {
                        None => return,
                        Some(Err(_)) => break,
                        Some(Ok(p)) if p.event.run_id() == Some(id) => {
                            if let Event::RunProgress { .. } = p.event {
                                if tx.send(Ok(bus_event(&p))).await.is_err() {
                                    return;
                                }
                                continue;
                            }
                            break;
                        }
                        Some(Ok(_)) => {}
                    },
                    _ = tx.closed() => return,
                    _ = stop.cancelled() => return,
                }
            }
        }
    });
    Ok(response)
}

/// Parses `follow` and `after` for [`follow`]; `None` when the client did not ask to follow.
pub fn follow_request(
    q: &Option<String>,
    last_event_id: Option<&str>,
) -> Result<Option<i64>, ApiError> {
    let mut follow = false;
    let mut after = last_event_id
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    for (k, v) in pairs(q) {
        match k.as_str() {
            "follow" => {
                follow = match v.as_str() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "query `follow`: expected true or false, got {other:?}"
                        )));
                    }
                }
            }
            "after" => after = number_param("after", &v, 0, i64::MAX as u64)? as i64,
            _ => {}
        }
    }
    Ok(follow.then_some(after))
}
