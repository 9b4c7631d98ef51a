//! `/api/v1/runs`: paged history, detail, logs, cancel, delete, artifact download.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::jobs::parse_body;
use super::wire::{
    ArtifactView, CancelAccepted, DeleteResult, DeleteResults, ErrorBody, FileBytes, LogLineView,
    LogPage, NotificationView, RerunCreated, RunDeleted, RunDetail, RunPage, RunView, run_views,
};
use super::{ApiError, ApiState};
use crate::history::{CancelOutcome, HistoryError, RunFilter, RunState};

/// Largest page size.
pub(super) const MAX_PAGE_SIZE: u32 = 500;

pub(super) fn run_id(text: &str) -> Result<i64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("run id must be an integer, got {text:?}")))
}

pub(super) fn pairs(q: &Option<String>) -> Vec<(String, String)> {
    q.as_deref()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn time_param(name: &str, v: &str) -> Result<DateTime<Utc>, ApiError> {
    crate::units::parse_instant(v)
        .map_err(|m| ApiError::bad_request(format!("query `{name}`: {m}")))
}

/// `page` and `page_size` from a query that may hold nothing else (1 and `default_size` when
/// absent): the paging of lists other than runs.
pub(super) fn page_only(q: &Option<String>, default_size: u64) -> Result<(u64, u64), ApiError> {
    let (mut page, mut page_size) = (1u64, default_size);
    for (k, v) in pairs(q) {
        match k.as_str() {
            "page" => page = number_param("page", &v, 1, u64::from(u32::MAX))?,
            "page_size" => page_size = number_param("page_size", &v, 1, u64::from(MAX_PAGE_SIZE))?,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}`; expected page, page_size"
                )));
            }
        }
    }
    Ok((page, page_size))
}

pub(super) fn number_param(name: &str, v: &str, min: u64, max: u64) -> Result<u64, ApiError> {
    v.parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "query `{name}`: expected a whole number from {min} to {max}, got {v:?}"
            ))
        })
}

/// `GET /api/v1/runs?job=&state=&since=&until=&page=1&page_size=20`; `state` may be repeated
/// or comma-separated.
#[utoipa::path(get, path = "/api/v1/runs", summary = "Runs, newest first",
    params(
        ("job" = Option<String>, Query, description = "only this job"),
        ("state" = Option<String>, Query, description = "only these states (repeated or comma-separated)"),
        ("since" = Option<String>, Query, description = "queued at or after (RFC 3339 or a duration ago such as `2h`)"),
        ("until" = Option<String>, Query, description = "queued before"),
        ("page" = Option<u64>, Query, description = "from 1"),
        ("page_size" = Option<u64>, Query, description = "1-500 (default 20)"),
    ),
    responses((status = 200, body = RunPage), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Json<RunPage>, ApiError> {
    let mut filter = RunFilter::default();
    let (mut page, mut page_size) = (1u64, 20u64);
    for (k, v) in pairs(&q) {
        match k.as_str() {
            "job" => filter.job = Some(v),
            "state" => {
                for s in v.split(',').filter(|s| !s.is_empty()) {
                    filter.states.push(
                        s.parse::<RunState>()
                            .map_err(|m| ApiError::bad_request(format!("query `state`: {m}")))?,
                    );
                }
            }
            "since" => filter.since = Some(time_param("since", &v)?),
            "until" => filter.until = Some(time_param("until", &v)?),
            "page" => page = number_param("page", &v, 1, u64::from(u32::MAX))?,
            "page_size" => page_size = number_param("page_size", &v, 1, u64::from(MAX_PAGE_SIZE))?,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}`; expected job, state, since, until, page, page_size"
                )));
            }
        }
    }
    filter.limit = page_size as u32;
    filter.offset = (page - 1).saturating_mul(page_size);
    let (items, total) = state.db(move |h| Ok(h.list_runs(&filter)?)).await?;
    Ok(Json(RunPage {
        items: run_views(&items),
        page,
        page_size,
        total,
    }))
}

/// `GET /api/v1/runs/{id}`: the run with its artifacts and notifications.
#[utoipa::path(get, path = "/api/v1/runs/{id}", summary = "One run with its artifacts and notifications",
    params(("id" = i64, Path, description = "run id")),
    responses((status = 200, body = RunDetail), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn detail(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<RunDetail>, ApiError> {
    let id = run_id(&id)?;
    let (run, artifacts, notifications) = state
        .db(move |h| Ok((h.get_run(id)?, h.artifacts(id)?, h.notifications(id)?)))
        .await?;
    Ok(Json(RunDetail {
        run: RunView::from(&run),
        artifacts: artifacts.iter().map(ArtifactView::from).collect(),
        notifications: notifications.iter().map(NotificationView::from).collect(),
    }))
}

/// `GET /api/v1/runs/{id}/logs?after=N&limit=M`: lines after sequence number N, for tailing;
/// with `follow=true`, a Server-Sent Events stream instead (see `events::follow`).
#[utoipa::path(get, path = "/api/v1/runs/{id}/logs",
    summary = "Log lines after a sequence number; with follow=true a Server-Sent Events stream of run_log events (and one run_finished), resumable with Last-Event-ID",
    params(
        ("id" = i64, Path, description = "run id"),
        ("after" = Option<i64>, Query, description = "sequence number to read after (default 0)"),
        ("limit" = Option<u32>, Query, description = "1-10000 (default 1000)"),
        ("follow" = Option<bool>, Query, description = "stream the lines as Server-Sent Events"),
    ),
    responses(
        (status = 200, description = "The lines (JSON), or an event stream with follow=true",
            content((LogPage = "application/json"), (String = "text/event-stream"))),
        (status = "default", description = "An error", body = ErrorBody)))]
pub async fn logs(
    State(state): State<ApiState>,
    axum::Extension(caller): axum::Extension<super::auth::Caller>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let id = run_id(&id)?;
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    if let Some(after) = super::events::follow_request(&q, last_event_id)? {
        return super::events::follow(state, caller, id, after).await;
    }
    let (mut after, mut limit) = (0i64, 1000u32);
    for (k, v) in pairs(&q) {
        match k.as_str() {
            "after" => after = number_param("after", &v, 0, i64::MAX as u64)? as i64,
            "limit" => limit = number_param("limit", &v, 1, 10_000)? as u32,
            "follow" => {}
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}`; expected after, limit, follow"
                )));
            }
        }
    }
    let (lines, run) = state
        .db(move |h| Ok((h.logs(id, after, limit)?, h.get_run(id)?)))
        .await?;
    let next = lines.last().map(|l| l.seq).unwrap_or(after);
    Ok(Json(LogPage {
        items: lines.iter().map(LogLineView::from).collect(),
        next_after: next,
        state: run.state,
    })
    .into_response())
}

/// `POST /api/v1/runs/{id}/cancel`.
#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel",
    summary = "Cancel a run: a queued run is closed as cancelled now, a running one is asked to stop; 409 when it has ended",
    params(("id" = i64, Path, description = "run id")),
    responses((status = 202, body = CancelAccepted), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn cancel(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<CancelAccepted>), ApiError> {
    let id = run_id(&id)?;
    let dispatcher = state.handle.dispatcher.clone();
    let outcome = tokio::task::spawn_blocking(move || dispatcher.cancel(id))
        .await
        .map_err(ApiError::internal)??;
    let run = state.db(move |h| Ok(h.get_run(id)?)).await?;
    if outcome == CancelOutcome::AlreadyEnded {
        return Err(ApiError::conflict(format!(
            "run {id} has already ended ({})",
            run.state
        )));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(CancelAccepted {
            id,
            state: run.state,
            cancel_requested: true,
        }),
    ))
}

/// `POST /api/v1/runs/{id}/rerun`: a new run with the same params (and the same watched file,
/// moved back from `failed/`) → 201 `{"id", "state", "of"}`.
#[utoipa::path(post, path = "/api/v1/runs/{id}/rerun",
    summary = "Run again with the same params (and the same watched file, moved back); 409 while it is open",
    params(("id" = i64, Path, description = "run id")),
    responses((status = 201, body = RerunCreated), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn rerun(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<RerunCreated>), ApiError> {
    let id = run_id(&id)?;
    let dispatcher = state.handle.dispatcher.clone();
    let submitted = tokio::task::spawn_blocking(move || dispatcher.rerun(id))
        .await
        .map_err(ApiError::internal)??;
    let created = RerunCreated {
        id: submitted.id,
        state: submitted.state,
        of: id,
    };
    Ok((StatusCode::CREATED, Json(created)))
}

/// `DELETE /api/v1/runs/{id}`: 409 while it is queued or running.
#[utoipa::path(delete, path = "/api/v1/runs/{id}",
    summary = "Delete a run with its logs and artifacts; 409 while it is queued or running",
    params(("id" = i64, Path, description = "run id")),
    responses((status = 200, body = RunDeleted), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn delete(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<RunDeleted>, ApiError> {
    let id = run_id(&id)?;
    state.db(move |h| Ok(h.delete_run(id)?)).await?;
    remove_artifacts(&state, id);
    Ok(Json(RunDeleted { id, deleted: true }))
}

/// The body of `POST /api/v1/runs/delete`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteMany {
    /// The runs to delete.
    ids: Vec<Value>,
}

/// `POST /api/v1/runs/delete` with `{"ids": [...]}`: per-item results.
#[utoipa::path(post, path = "/api/v1/runs/delete",
    summary = "Delete several runs; one result per id (open runs and unknown ids fail alone)",
    request_body = DeleteMany,
    responses((status = 200, body = DeleteResults), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn delete_many(
    State(state): State<ApiState>,
    body: Bytes,
) -> Result<axum::response::Response, ApiError> {
    let body: DeleteMany = parse_body(&body)?;
    if body.ids.is_empty() {
        return Err(ApiError::bad_request(
            "field `ids`: expected a non-empty list of run ids",
        ));
    }
    let results = state
        .db(move |h| {
            let mut results = Vec::new();
            for raw in body.ids {
                let outcome = match raw.as_i64() {
                    None => Err(format!("not a run id: {raw}")),
                    Some(id) => h.delete_run(id).map_err(|e| match e {
                        HistoryError::NotFound(_) | HistoryError::Active(..) => e.to_string(),
                        other => ApiError::internal(other).message,
                    }),
                };
                results.push(DeleteResult {
                    ok: outcome.is_ok(),
                    error: outcome.err(),
                    id: raw,
                });
            }
            Ok(results)
        })
        .await?;
    let done: Vec<String> = results
        .iter()
        .filter(|r| r.ok)
        .map(|r| r.id.to_string())
        .collect();
    for id in results
        .iter()
        .filter(|r| r.ok)
        .filter_map(|r| r.id.as_i64())
    {
        remove_artifacts(&state, id);
    }
    let deleted = done.len();
    let mut resp = axum::response::IntoResponse::into_response(Json(DeleteResults {
        deleted,
        failed: results.len() - deleted,
        results,
    }));
    // The audit log names the runs deleted.
    resp.extensions_mut()
        .insert(super::auth::AuditTarget(done.join(",")));
    Ok(resp)
}

/// Removes a deleted run's artifact copies; a failure is logged (the daemon's retention sweeps
/// what is left).
fn remove_artifacts(state: &ApiState, id: i64) {
    if let Err(e) = crate::jobs::artifacts::remove_run(&state.handle.config.storage, id) {
        tracing::warn!("run {id}: cannot remove its artifact copies: {e}");
    }
}

/// `GET /api/v1/runs/{id}/artifacts/{name}`: the file the run recorded (its own copy), streamed.
#[utoipa::path(get, path = "/api/v1/runs/{id}/artifacts/{name}",
    summary = "Download an artifact: the run's own copy of the file it recorded (ETag: its SHA-256)",
    params(("id" = i64, Path, description = "run id"), ("name" = String, Path, description = "artifact name")),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream", body = FileBytes),
        (status = "default", description = "An error", body = ErrorBody)))]
pub async fn artifact(
    State(state): State<ApiState>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = run_id(&id)?;
    let artifacts = state.db(move |h| Ok(h.artifacts(id)?)).await?;
    let art = artifacts
        .into_iter()
        .find(|a| a.name == name)
        .ok_or_else(|| ApiError::not_found(format!("run {id} has no artifact {name:?}")))?;
    let storage = state.handle.config.storage.clone();
    let (store_url, path, copy) = (art.store.clone(), art.path.clone(), art.copy.clone());
    let (len, reader) = tokio::task::spawn_blocking(move || {
        // The run's own copy when it kept one: what it recorded, whatever happened to the
        // store path since. Older artifacts are read from their store.
        let (store, path) = match copy {
            Some(copy) => (crate::storage::artifact_area(&storage)?, copy),
            None => {
                let registry = crate::storage::StoreRegistry::new(storage);
                (registry.open(&store_url, Default::default())?, path)
            }
        };
        let len = store.stat(&path)?.map(|m| m.size);
        let reader = store.open(&path)?;
        Ok::<_, crate::storage::StorageError>((len, reader))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| {
        ApiError::not_found(format!("artifact {name:?} of run {id} cannot be read: {e}"))
    })?;
    // The store reader blocks; a blocking thread feeds the response body through a small channel.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match std::io::Read::read(&mut reader, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx
                        .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    let stream = tokio_stream_from(rx);
    let mut resp = Body::from_stream(stream).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(len) = len {
        headers.insert(header::CONTENT_LENGTH, len.into());
    }
    if let Some(sha) = &art.sha256
        && let Ok(v) = header::HeaderValue::from_str(&format!("\"{sha}\""))
    {
        headers.insert(header::ETAG, v);
    }
    let safe: String = name
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .collect();
    if let Ok(v) = header::HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
