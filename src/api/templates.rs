//! `POST /api/v1/jobs`: creates a job from a template (`crate::jobs::templates`) in one call —
//! the script is generated, validated exactly like `PUT /api/v1/jobs/{name}` and written
//! through the same atomic path; optionally a first run is asked for at once or at a time.

use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::jobs::parse_body;
use super::scripts::{check_name, validate};
use super::wire::{ErrorBody, Submitted, TemplateJobCreated};
use super::{ApiError, ApiState};
use crate::history::Trigger;
use crate::jobs::dispatcher::Submit;
use crate::jobs::params::GivenParams;
use crate::jobs::scripts;
use crate::jobs::templates::{self, Job, TemplateError};
use crate::jobs::versions;
use crate::sync::LockExt;

/// How long a `"run"` request waits for the daemon's reload to load the new script.
const LOAD_WAIT: Duration = Duration::from_secs(60);

/// The body of `POST /api/v1/jobs`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TemplateJob)]
pub struct CreateBody {
    /// The job name: 1 to 64 letters, digits, `_` and `-` (required).
    name: Option<String>,
    /// Which plugin function the job calls (required): export, import, backup, restore,
    /// redis_import, redis_backup.
    template: Option<String>,
    /// The options of the plugin function (docs/plugins.md), checked against the plugin's
    /// schema; no `password` (redis templates read the secret `redis_password`).
    #[schema(value_type = Option<Object>)]
    params: Option<Value>,
    /// The job's description.
    description: Option<String>,
    /// The job's `schedule`: a cron string or `{cron, timezone, missed, jitter}`.
    schedule: Option<Value>,
    /// The job's `watch`: a folder (with an optional pattern) or `{path, pattern, settle,
    /// after, poll}`.
    watch: Option<Value>,
    /// `now` or `at`: ask for a first run once the daemon has loaded the job.
    run: Option<String>,
    /// With `run: at`: the time of the first run (RFC 3339).
    at: Option<String>,
    /// Replace an existing job's script (409 conflict otherwise).
    #[serde(default)]
    replace: bool,
}

fn template_error(e: TemplateError) -> ApiError {
    match e {
        TemplateError::UnknownTemplate { .. } => {
            ApiError::bad_request(e.to_string()).with_field("template")
        }
        TemplateError::Null { .. } | TemplateError::Password { .. } => {
            ApiError::invalid_script(e.to_string()).with_field("params")
        }
    }
}

/// When the first run is asked for: not at all, now, or not before an instant.
enum FirstRun {
    None,
    Now,
    At(chrono::DateTime<chrono::Utc>),
}

fn first_run(run: Option<&str>, at: Option<&str>) -> Result<FirstRun, ApiError> {
    match (run, at) {
        (None, None) => Ok(FirstRun::None),
        (Some("now"), None) => Ok(FirstRun::Now),
        (Some("at"), Some(text)) => crate::units::parse_instant(text)
            .map(FirstRun::At)
            .map_err(|m| ApiError::invalid_params(format!("field `at`: {m}")).with_field("at")),
        (Some("at"), None) => Err(ApiError::bad_request(
            "`\"run\": \"at\"` needs `at`: the time of the first run (RFC 3339)",
        )
        .with_field("at")),
        (Some("now") | None, Some(_)) => {
            Err(ApiError::bad_request("`at` goes with `\"run\": \"at\"`").with_field("at"))
        }
        (Some(other), _) => Err(ApiError::bad_request(format!(
            "field `run`: expected \"now\" or \"at\", got {other:?}"
        ))
        .with_field("run")),
    }
}

/// `POST /api/v1/jobs` with `{"name", "template", "params", "description", "schedule",
/// "watch", "run": "now"|"at", "at", "replace"}` → 201 (or 200 when it replaced a job) with
/// `{"job", "template", "hash", "created", "source", "run": {"id", "state"} | null}`.
/// 400: malformed request or unknown template; 409: the job exists and `replace` is not true;
/// 422: the generated script does not pass `ferry check` (unknown option, bad value), nothing
/// written.
#[utoipa::path(post, path = "/api/v1/jobs",
    summary = "Create a job from a template: the generated Lua script calls a shipped plugin with the options baked in, is validated as `ferry check` does (422 invalid_script, nothing written) and is written like PUT /api/v1/jobs/{name}; optionally asks for a first run now or at a time",
    request_body = CreateBody,
    responses((status = 200, description = "Replaced (`replace: true`)", body = TemplateJobCreated),
        (status = 201, description = "Created", body = TemplateJobCreated), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn create(
    State(state): State<ApiState>,
    axum::Extension(caller): axum::Extension<super::auth::Caller>,
    body: Bytes,
) -> Result<(StatusCode, Json<TemplateJobCreated>), ApiError> {
    let body: CreateBody = parse_body(&body)?;
    let name = body
        .name
        .ok_or_else(|| ApiError::bad_request("field `name` is required").with_field("name"))?;
    check_name(&name)?;
    let template = body.template.ok_or_else(|| {
        ApiError::bad_request(format!(
            "field `template` is required; known templates: {}",
            templates::known()
        ))
        .with_field("template")
    })?;
    let template = templates::find(&template).map_err(template_error)?;
    let params = match body.params {
        None => Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "field `params`: expected an object of the template's options, got {}",
                json_type(&other)
            ))
            .with_field("params"));
        }
    };
    let first = first_run(body.run.as_deref(), body.at.as_deref())?;
    let source = templates::generate(&Job {
        name: &name,
        template,
        params: &params,
        description: body.description.as_deref(),
        schedule: body.schedule.as_ref(),
        watch: body.watch.as_ref(),
    })
    .map_err(template_error)?;
    let hash = versions::hash(&source);
    let replace = body.replace;
    let (s, job, h, src) = (state.clone(), name.clone(), hash.clone(), source.clone());
    let created = tokio::task::spawn_blocking(move || {
        validate(&s, &job, &src)?;
        let config = &s.handle.config;
        let _writing = s.script_writes.lock_unpoisoned();
        let path = scripts::path_of(config, &job);
        if path.exists() && !replace {
            return Err(ApiError::conflict(format!(
                "job {job:?} exists; send `\"replace\": true` to replace its script"
            )));
        }
        if std::fs::read(&path).ok().as_deref() == Some(src.as_bytes()) {
            return Ok(false);
        }
        s.handle.api_writes.add(&job, &h, &caller.name);
        scripts::write(config, &job, &src).map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)??;
    tracing::info!(job = %name, template = template.name, hash = %hash, "job created from a template");
    let run = match first {
        FirstRun::None => None,
        FirstRun::Now => Some(submit(&state, &name, &source, None).await?),
        FirstRun::At(t) => Some(submit(&state, &name, &source, Some(t)).await?),
    };
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(TemplateJobCreated {
            job: name,
            template: template.name.to_string(),
            hash,
            created,
            source,
            run,
        }),
    ))
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Waits until the daemon's reload has loaded `source` as job `name`, then asks for a run.
async fn submit(
    state: &ApiState,
    name: &str,
    source: &str,
    not_before: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Submitted, ApiError> {
    let deadline = Instant::now() + LOAD_WAIT;
    loop {
        let loaded = state
            .handle
            .registry_read()
            .get(name)
            .is_some_and(|spec| spec.source == source);
        if loaded {
            break;
        }
        if Instant::now() >= deadline {
            return Err(ApiError::unavailable(format!(
                "job {name:?} was written but the daemon did not load it within {}s; ask for the run with POST /api/v1/jobs/{name}/runs",
                LOAD_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dispatcher = state.handle.dispatcher.clone();
    let submit = Submit {
        job: name.to_owned(),
        params: GivenParams::Json(Map::new()),
        trigger: Trigger::Api,
        not_before,
    };
    let submitted = tokio::task::spawn_blocking(move || dispatcher.submit(submit))
        .await
        .map_err(ApiError::internal)??;
    Ok(Submitted {
        id: submitted.id,
        state: submitted.state,
    })
}
