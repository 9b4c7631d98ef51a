//! `/api/v1/jobs`: list, detail, trigger a run.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ApiError, ApiState};
use crate::history::{History, RunFilter};
use crate::jobs::dispatcher::Submit;
use crate::jobs::params::GivenParams;
use crate::jobs::trigger::Trigger;
use crate::jobs::view::JobView;

fn views(state: &ApiState, only: Option<&str>) -> Result<Vec<JobView>, ApiError> {
    let entries: Vec<(String, crate::jobs::registry::JobEntry)> = {
        let reg = state
            .handle
            .registry
            .read()
            .unwrap_or_else(|p| p.into_inner());
        reg.entries()
            .filter(|(n, _)| only.is_none_or(|o| o == n.as_str()))
            .map(|(n, e)| (n.clone(), e.clone()))
            .collect()
    };
    let next = state
        .handle
        .next_runs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut out = Vec::new();
    for (name, entry) in entries {
        let (last, _) = state.history.list_runs(&RunFilter {
            job: Some(name.clone()),
            limit: 1,
            ..Default::default()
        })?;
        out.push(JobView::new(
            &state.handle.config,
            &name,
            &entry,
            last.first(),
            next.get(&name).copied(),
        ));
    }
    Ok(out)
}

/// `GET /api/v1/jobs`.
pub async fn list(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let s = state.clone();
    let items = tokio::task::spawn_blocking(move || views(&s, None))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(json!({ "items": items })))
}

/// `GET /api/v1/jobs/{name}`.
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerBody {
    #[serde(default)]
    params: Map<String, Value>,
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
pub async fn trigger(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body: TriggerBody = parse_body(&body)?;
    let not_before = match &body.at {
        None => None,
        Some(text) => Some(
            crate::units::parse_instant(text)
                .map_err(|m| ApiError::invalid_params(format!("field `at`: {m}")))?,
        ),
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
        Json(json!({ "id": submitted.id, "state": submitted.state })),
    ))
}
