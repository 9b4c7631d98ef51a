//! The HTTP API of `ferry serve` (axum): routes, auth and scopes (`auth.rs`), JSON shapes,
//! uploads, downloads, tokens and the audit log (`tokens.rs`).
//!
//! Only this module knows HTTP. Handlers read the history through their own connection and act
//! through the daemon's [`Handle`] (submit, cancel). Blocking work (SQLite, files) runs on
//! blocking threads.

pub mod auth;
mod doc;
mod error;
mod events;
mod jobs;
mod metrics;
mod overview;
mod runs;
mod scripts;
mod templates;
mod tokens;
pub mod ui;
mod upload;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub use error::ApiError;

use crate::daemon::Handle;
use crate::history::{HistoryError, HistoryHandle, HistoryStore};

pub use auth::ROUTES;
pub use doc::openapi_document;

/// The largest JSON request body, in bytes (uploads have their own limit, `[api] max_upload`).
pub const JSON_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// State shared by the handlers.
#[derive(Clone)]
pub struct ApiState {
    /// The daemon.
    pub handle: Handle,
    /// A history connection of the API's own.
    pub history: HistoryHandle,
    token: Option<Arc<String>>,
    /// Held while a job script is written or removed through the API, so the version recorded
    /// last is the file written last.
    script_writes: Arc<std::sync::Mutex<()>>,
    /// Cancelled when the server shuts down: ends the event streams, which would otherwise
    /// hold the graceful shutdown open for ever.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl ApiState {
    /// State for a daemon; opens the API's own history connection.
    pub fn new(handle: Handle) -> Result<ApiState, HistoryError> {
        let history = crate::history::open(&handle.config)?;
        let token = handle.config.api.token.clone().map(Arc::new);
        Ok(ApiState {
            handle,
            history,
            token,
            script_writes: Arc::default(),
            shutdown: tokio_util::sync::CancellationToken::new(),
        })
    }

    /// Runs `f` with the history on a blocking thread.
    pub async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn HistoryStore) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let history = self.history.clone();
        tokio::task::spawn_blocking(move || f(&*history))
            .await
            .map_err(ApiError::internal)?
    }
}

/// The router with every route, auth and JSON fallbacks.
pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/events", get(events::stream))
        .route("/api/v1/jobs", get(jobs::list))
        .route("/api/v1/overview", get(overview::overview))
        // Jobs created from a template (api/templates.rs).
        .route("/api/v1/jobs", post(templates::create))
        .route("/api/v1/jobs/validate", post(scripts::validate_only))
        .route(
            "/api/v1/jobs/{name}",
            get(jobs::detail).put(scripts::put).delete(scripts::delete),
        )
        .route("/api/v1/jobs/{name}/versions", get(scripts::list_versions))
        .route("/api/v1/jobs/{name}/versions/{hash}", get(scripts::version))
        .route("/api/v1/jobs/{name}/source", get(jobs::source))
        .route("/api/v1/jobs/{name}/runs", post(jobs::trigger))
        .route(
            "/api/v1/jobs/{name}/upload",
            post(upload::upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/api/v1/jobs/{name}/pause", post(jobs::pause))
        .route("/api/v1/jobs/{name}/resume", post(jobs::resume))
        .route("/api/v1/runs", get(runs::list))
        .route("/api/v1/runs/delete", post(runs::delete_many))
        .route("/api/v1/runs/{id}", get(runs::detail).delete(runs::delete))
        .route("/api/v1/runs/{id}/logs", get(runs::logs))
        .route("/api/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/api/v1/runs/{id}/rerun", post(runs::rerun))
        .route("/api/v1/runs/{id}/artifacts/{name}", get(runs::artifact))
        .route("/api/v1/audit", get(tokens::audit))
        .route("/api/v1/tokens", get(tokens::list).post(tokens::create))
        .route(
            "/api/v1/tokens/{name}",
            axum::routing::delete(tokens::revoke),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::layer,
        ));
    Router::new()
        .route("/api/v1/health", get(health))
        .merge(api)
        .merge(ui::router())
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .layer(axum::extract::DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state)
}

/// Gives every error the one JSON shape, also those axum answers on its own in plain text (a
/// body over the limit, a path parameter it cannot decode, a rejected extractor): handlers
/// answer with [`ApiError`] already, so an error response that is not JSON came from below them
/// and is rewritten here, keeping its status and headers.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let mut out = ApiError::from_rejection(status, &text).into_response();
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

async fn no_method(method: Method, uri: Uri) -> ApiError {
    ApiError {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: format!("{method} is not allowed on {}", uri.path()),
        field: None,
    }
}

/// `GET /api/v1/openapi.json`: the document generated from the handlers and their response
/// types (`api/doc.rs`).
#[utoipa::path(get, path = "/api/v1/openapi.json", summary = "This document", tag = "daemon",
    responses((status = 200, description = "The OpenAPI document", body = Object),
        (status = "default", description = "An error", body = wire::ErrorBody)))]
async fn openapi() -> Response {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = DOCUMENT.get_or_init(|| openapi_document().to_string());
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        text.as_str(),
    )
        .into_response()
}

/// `GET /api/v1/health`: open to all.
#[utoipa::path(get, path = "/api/v1/health", summary = "Liveness and counts", tag = "daemon",
    security(()),
    responses((status = 200, body = wire::Health),
        (status = "default", description = "An error", body = wire::ErrorBody)))]
async fn health(State(state): State<ApiState>) -> Result<axum::Json<wire::Health>, ApiError> {
    let jobs = state.handle.registry_read().specs().len();
    let running = state.handle.dispatcher.running_count();
    let queued = state
        .db(|h| {
            Ok(crate::history::History::count_in_state(
                h,
                crate::history::RunState::Queued,
            )?)
        })
        .await?;
    Ok(axum::Json(wire::Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        jobs,
        running,
        queued,
    }))
}

/// Refuses to listen beyond loopback without a token (`[api] token` or a named token:
/// `auth_on`).
pub fn check_bind(addr: &SocketAddr, auth_on: bool) -> Result<(), String> {
    if !auth_on && !addr.ip().is_loopback() {
        return Err(format!(
            "refusing to serve the API on {addr} without a token: anyone who can reach it could run jobs. \
             Set [api] token in ferry.toml or FERRY_TOKEN, create one with `ferry tokens create`, or listen on a loopback address such as 127.0.0.1"
        ));
    }
    Ok(())
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let streams = state.shutdown.clone();
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            streams.cancel();
        })
        .await
}
