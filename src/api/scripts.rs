//! Job scripts as resources: `PUT /api/v1/jobs/{name}` (create or replace; the body is the Lua
//! source), `POST /api/v1/jobs/validate` (check only), `DELETE /api/v1/jobs/{name}`, and the
//! versions a job's script went through (`GET /api/v1/jobs/{name}/versions[/{hash}]`).
//!
//! A script is validated exactly as `ferry check` does before anything is written; an invalid
//! one is answered 422 and changes nothing. Writes go through [`crate::jobs::scripts`] (atomic)
//! and the daemon's reload picks them up like a hand edit.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};

use super::auth::Caller;
use super::runs::{page_only, pairs};
use super::wire::{ErrorBody, JobDeleted, ScriptWrite, Validated, VersionPage, VersionView};
use super::{ApiError, ApiState};
use crate::jobs::scripts::{self, MAX_SCRIPT};
use crate::jobs::spec::LoadError;
use crate::jobs::versions;
use crate::sync::LockExt;

/// The job name a script is checked as when `POST /api/v1/jobs/validate` names none.
const UNNAMED: &str = "unnamed";

pub(super) fn check_name(name: &str) -> Result<(), ApiError> {
    if scripts::valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid job name {name:?}: use 1 to 64 letters, digits, `_` and `-` (`validate` is reserved)"
        ))
        .with_field("name"))
    }
}

/// The script in a request body: `text/plain` (or no content type), not empty, at most
/// [`MAX_SCRIPT`] bytes of UTF-8.
fn source_of(headers: &HeaderMap, body: &Bytes) -> Result<String, ApiError> {
    if let Some(ct) = headers.get(axum::http::header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("text/plain") {
            return Err(ApiError::unsupported_media_type(format!(
                "content type {ct:?}: send the Lua source as `text/plain`"
            )));
        }
    }
    if body.len() > MAX_SCRIPT {
        return Err(ApiError::too_large(format!(
            "the script is {} bytes; the limit is {MAX_SCRIPT} bytes",
            body.len()
        )));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "empty body: send the job's Lua source as the request body",
        ));
    }
    String::from_utf8(body.to_vec()).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not UTF-8 text (invalid byte at offset {}): send the Lua source as UTF-8",
            e.utf8_error().valid_up_to()
        ))
    })
}

fn invalid_script(e: LoadError) -> ApiError {
    ApiError::invalid_script(e.to_string())
}

/// Validates `source` as job `name` (its top level in a child process, then the spec checks and
/// the `after` cycle check against the jobs loaded now).
pub(super) fn validate(state: &ApiState, name: &str, source: &str) -> Result<(), ApiError> {
    let config = &state.handle.config;
    let spec = scripts::validate(config, name, source).map_err(invalid_script)?;
    state
        .handle
        .registry_read()
        .refuse_cycle(config, spec)
        .map_err(invalid_script)?;
    Ok(())
}

/// `PUT /api/v1/jobs/{name}`: creates or replaces the job's script → 201 (new) or 200 with
/// `{"job", "hash", "created", "changed"}` (`changed`: the file's text differed). The daemon's
/// reload loads it like a hand edit and records the version as written through the API by the
/// caller's token.
#[utoipa::path(put, path = "/api/v1/jobs/{name}",
    summary = "Create or replace the job's script (validated as `ferry check` does; 422 invalid_script and nothing changes when it does not load)",
    params(("name" = String, Path, description = "1 to 64 letters, digits, `_` and `-`")),
    request_body(content = String, content_type = "text/plain", description = "The Lua source of the job script (UTF-8, at most 1 MiB)"),
    responses((status = 200, description = "Replaced", body = ScriptWrite),
        (status = 201, description = "Created", body = ScriptWrite), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn put(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<ScriptWrite>), ApiError> {
    check_name(&name)?;
    let source = source_of(&headers, &body)?;
    let hash = versions::hash(&source);
    let s = state.clone();
    let (job, h) = (name.clone(), hash.clone());
    let (created, changed) = tokio::task::spawn_blocking(move || {
        validate(&s, &job, &source)?;
        let config = &s.handle.config;
        // One write at a time, so `changed` compares with what the previous write left.
        let _writing = s.script_writes.lock_unpoisoned();
        let old = std::fs::read(scripts::path_of(config, &job)).ok();
        if old.as_deref() == Some(source.as_bytes()) {
            return Ok::<_, ApiError>((false, false));
        }
        s.handle.api_writes.add(&job, &h, &caller.name);
        let created = scripts::write(config, &job, &source).map_err(ApiError::internal)?;
        Ok((created, true))
    })
    .await
    .map_err(ApiError::internal)??;
    if changed {
        tracing::info!(job = %name, hash = %hash, created, "job script written through the API");
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(ScriptWrite {
            job: name,
            hash,
            created,
            changed,
        }),
    ))
}

/// `POST /api/v1/jobs/validate?name=NAME`: checks the body as the script of job NAME (optional)
/// and writes nothing → `{"valid": true, "job", "hash"}`, or 422.
#[utoipa::path(post, path = "/api/v1/jobs/validate",
    summary = "Check a job script as `ferry check` does, writing nothing",
    params(("name" = Option<String>, Query, description = "the job name to check it as (default `unnamed`)")),
    request_body(content = String, content_type = "text/plain", description = "The Lua source of the job script (UTF-8, at most 1 MiB)"),
    responses((status = 200, description = "Valid", body = Validated), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn validate_only(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Validated>, ApiError> {
    let mut name = None;
    for (k, v) in pairs(&q) {
        match k.as_str() {
            "name" => {
                check_name(&v)?;
                name = Some(v);
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter `{other}`; expected name"
                )));
            }
        }
    }
    let source = source_of(&headers, &body)?;
    let name = name.unwrap_or_else(|| UNNAMED.to_owned());
    let hash = versions::hash(&source);
    let (s, job) = (state.clone(), name.clone());
    tokio::task::spawn_blocking(move || validate(&s, &job, &source))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(Validated {
        valid: true,
        job: name,
        hash,
    }))
}

/// `DELETE /api/v1/jobs/{name}`: removes the job's script (its runs and versions stay in the
/// history) → `{"job", "deleted": true}`, or 404.
#[utoipa::path(delete, path = "/api/v1/jobs/{name}",
    summary = "Remove the job's script (its runs and versions stay in the history)",
    params(("name" = String, Path, description = "1 to 64 letters, digits, `_` and `-`")),
    responses((status = 200, description = "Deleted", body = JobDeleted), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn delete(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<JobDeleted>, ApiError> {
    check_name(&name)?;
    let (s, job) = (state.clone(), name.clone());
    let removed = tokio::task::spawn_blocking(move || {
        let _writing = s.script_writes.lock_unpoisoned();
        scripts::remove(&s.handle.config, &job).map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)??;
    if !removed {
        return Err(ApiError::not_found(format!("job {name:?} does not exist")));
    }
    tracing::info!(job = %name, "job script deleted through the API");
    Ok(Json(JobDeleted {
        job: name,
        deleted: true,
    }))
}

/// `GET /api/v1/jobs/{name}/versions?page=1&page_size=20`: the versions, newest first, without
/// their sources. 404 for a job that has no versions and is not loaded.
#[utoipa::path(get, path = "/api/v1/jobs/{name}/versions",
    summary = "The versions of the job's script, newest first, without their sources",
    params(("name" = String, Path, description = "job name"),
        ("page" = Option<u64>, Query, description = "from 1"),
        ("page_size" = Option<u64>, Query, description = "1-500 (default 20)")),
    responses((status = 200, body = VersionPage), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn list_versions(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<VersionPage>, ApiError> {
    check_name(&name)?;
    let (page, page_size) = page_only(&q, 20)?;
    let job = name.clone();
    let (items, total) = state
        .db(move |h| {
            Ok(h.versions(&job, page_size as u32, (page - 1).saturating_mul(page_size))?)
        })
        .await?;
    let known = state
        .handle
        .registry_read()
        .entries()
        .any(|(n, _)| *n == name);
    if total == 0 && !known {
        return Err(ApiError::not_found(format!("job {name:?} does not exist")));
    }
    Ok(Json(VersionPage {
        job: name,
        items: items.iter().map(VersionView::from).collect(),
        page,
        page_size,
        total,
    }))
}

/// `GET /api/v1/jobs/{name}/versions/{hash}`: one version with its source.
#[utoipa::path(get, path = "/api/v1/jobs/{name}/versions/{hash}",
    summary = "One version of the job's script, with its source",
    params(("name" = String, Path, description = "job name"),
        ("hash" = String, Path, description = "SHA-256 of the source, 64 lowercase hex digits")),
    responses((status = 200, body = VersionView), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn version(
    State(state): State<ApiState>,
    Path((name, hash)): Path<(String, String)>,
) -> Result<Json<VersionView>, ApiError> {
    check_name(&name)?;
    if !versions::is_hash(&hash) {
        return Err(ApiError::bad_request(format!(
            "invalid version {hash:?}: expected the 64 lowercase hex digits of a SHA-256"
        )));
    }
    let (job, h) = (name.clone(), hash.clone());
    let found = state.db(move |db| Ok(db.version(&job, &h)?)).await?;
    let v =
        found.ok_or_else(|| ApiError::not_found(format!("job {name:?} has no version {hash}")))?;
    Ok(Json(VersionView {
        job: Some(name),
        ..VersionView::from(&v)
    }))
}
