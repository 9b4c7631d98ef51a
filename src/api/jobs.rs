//! `/api/v1/jobs`: list, detail, trigger a run.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::wire::{ErrorBody, JobList, PauseChange, Submitted};
use super::{ApiError, ApiState};
use crate::history::Trigger;
use crate::jobs::dispatcher::Submit;
use crate::jobs::params::GivenParams;
use crate::jobs::view::JobView;

/// How many of a job's newest runs its `recent_runs` shows.
const RECENT_RUNS: u32 = 20;

/// The largest script `GET /api/v1/jobs/{name}/source` answers.
const MAX_SOURCE: u64 = 1024 * 1024;

fn views(state: &ApiState, only: Option<&str>) -> Result<Vec<JobView>, ApiError> {
    let entries: Vec<(String, crate::jobs::registry::JobEntry)> = {
        let reg = state.handle.registry_read();
        reg.entries()
            .filter(|(n, _)| only.is_none_or(|o| o == n.as_str()))
            .map(|(n, e)| (n.clone(), e.clone()))
            .collect()
    };
    let next = state.handle.next_runs_now();
    let paused = state.history.paused_jobs()?;
    let mut out = Vec::new();
    for (name, entry) in entries {
        let recent = state.history.latest_runs(&name, RECENT_RUNS)?;
        let since = paused.iter().find(|(j, _)| *j == name).map(|(_, t)| *t);
        out.push(
            JobView::new(
                &state.handle.config,
                &name,
                &entry,
                recent.first(),
                next.get(&name).copied(),
            )
            .with_paused(since)
            .with_recent(&recent),
        );
    }
    Ok(out)
}

/// `GET /api/v1/jobs`.
#[utoipa::path(get, path = "/api/v1/jobs", summary = "List jobs",
    responses((status = 200, body = JobList), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn list(State(state): State<ApiState>) -> Result<Json<JobList>, ApiError> {
    let s = state.clone();
    let items = tokio::task::spawn_blocking(move || views(&s, None))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(JobList { items }))
}

/// `GET /api/v1/jobs/{name}`.
#[utoipa::path(get, path = "/api/v1/jobs/{name}", summary = "One job",
    params(("name" = String, Path, description = "job name")),
    responses((status = 200, body = JobView), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn detail(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let s = state.clone();
    let n = name.clone();
    let mut items = tokio::task::spawn_blocking(move || views(&s, Some(&n)))
        .await
        .map_err(ApiError::internal)??;
    items
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("job {name:?} does not exist")))
}

/// `GET /api/v1/jobs/{name}/source`: the job's script as `text/plain`.
#[utoipa::path(get, path = "/api/v1/jobs/{name}/source", summary = "The job's script (text/plain)",
    params(("name" = String, Path, description = "job name")),
    responses((status = 200, description = "The Lua source", content_type = "text/plain", body = String), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn source(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let path = {
        let reg = state.handle.registry_read();
        reg.entries()
            .find(|(n, _)| **n == name)
            .map(|(_, e)| e.path.clone())
    }
    .ok_or_else(|| ApiError::not_found(format!("job {name:?} does not exist")))?;
    let text = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let file = std::fs::File::open(&path)?;
        let mut text = String::new();
        file.take(MAX_SOURCE + 1).read_to_string(&mut text)?;
        Ok::<_, std::io::Error>((path, text))
    })
    .await
    .map_err(ApiError::internal)?;
    let (path, text) = text.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            ApiError::not_found(format!("the script of job {name:?} is gone"))
        }
        _ => ApiError::internal(format!("job {name:?}: cannot read its script: {e}")),
    })?;
    if text.len() as u64 > MAX_SOURCE {
        return Err(ApiError::too_large(format!(
            "{}: the script is larger than {MAX_SOURCE} bytes",
            state.handle.config.display_path(&path)
        )));
    }
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// The body of `POST /api/v1/jobs/{name}/runs` (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerBody {
    /// The run's params, checked against the job's declarations (422 invalid_params).
    #[serde(default)]
    #[schema(value_type = Object)]
    params: Map<String, Value>,
    /// Do not start before this time (RFC 3339, a date, or epoch seconds).
    #[serde(default)]
    at: Option<String>,
}

/// Parses a JSON body, answering 400 with the parser's position for malformed JSON.
pub fn parse_body<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// `POST /api/v1/jobs/{name}/runs` with `{"params": {...}, "at": "RFC 3339"}` (both optional).
#[utoipa::path(post, path = "/api/v1/jobs/{name}/runs",
    summary = "Trigger a run (queued, or skipped by the job's overlap policy)",
    params(("name" = String, Path, description = "job name")),
    request_body(content = TriggerBody, description = "optional"),
    responses((status = 201, description = "Queued", body = Submitted), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn trigger(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Submitted>), ApiError> {
    let body: TriggerBody = parse_body(&body)?;
    let not_before =
        match &body.at {
            None => None,
            Some(text) => Some(crate::units::parse_instant(text).map_err(|m| {
                ApiError::invalid_params(format!("field `at`: {m}")).with_field("at")
            })?),
        };
    let dispatcher = state.handle.dispatcher.clone();
    let submit = Submit {
        job: name,
        params: GivenParams::Json(body.params),
        trigger: Trigger::Api,
        not_before,
    };
    let submitted = tokio::task::spawn_blocking(move || dispatcher.submit(submit))
        .await
        .map_err(ApiError::internal)??;
    Ok((
        StatusCode::CREATED,
        Json(Submitted {
            id: submitted.id,
            state: submitted.state,
        }),
    ))
}

/// `POST /api/v1/jobs/{name}/pause` and `.../resume`: → `{"job", "paused", "changed"}`.
async fn set_paused(
    state: ApiState,
    name: String,
    paused: bool,
) -> Result<Json<PauseChange>, ApiError> {
    let dispatcher = state.handle.dispatcher.clone();
    let job = name.clone();
    let changed =
        tokio::task::spawn_blocking(move || dispatcher.set_paused(&job, paused, Some("api")))
            .await
            .map_err(ApiError::internal)??;
    Ok(Json(PauseChange {
        job: name,
        paused,
        changed,
    }))
}

/// `POST /api/v1/jobs/{name}/pause`: the schedule records skipped runs and dropped files wait
/// until the job is resumed; runs asked for still run.
#[utoipa::path(post, path = "/api/v1/jobs/{name}/pause",
    summary = "Pause the job: its schedule records skipped runs and dropped files wait; runs asked for still run",
    params(("name" = String, Path, description = "job name")),
    responses((status = 200, body = PauseChange), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn pause(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<PauseChange>, ApiError> {
    set_paused(state, name, true).await
}

/// `POST /api/v1/jobs/{name}/resume`.
#[utoipa::path(post, path = "/api/v1/jobs/{name}/resume", summary = "Resume a paused job",
    params(("name" = String, Path, description = "job name")),
    responses((status = 200, body = PauseChange), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn resume(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<PauseChange>, ApiError> {
    set_paused(state, name, false).await
}
