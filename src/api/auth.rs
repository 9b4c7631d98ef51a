//! Who a request is and what it may do: named tokens with a scope (`read` < `run` < `admin`),
//! the `[api] token` of ferry.toml as the admin token `config`, the one table that gives every
//! route its scope ([`ROUTES`]), and the audit record of every state-changing request.
//!
//! Auth is on when `[api] token` is set or any named token exists (`ferry tokens create`); with
//! neither, every request acts as `anonymous` with the admin scope (loopback only, see
//! [`super::check_bind`]). Tokens are looked up in the history on every request, so a revoked
//! one is refused at once.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::Digest;
use subtle::ConstantTimeEq;

use super::ui::session::{self, Credential};
use super::{ApiError, ApiState};
use crate::history::NewAudit;

/// What a token may do; each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Read jobs, runs, logs, artifacts, events, metrics.
    Read,
    /// Also trigger, cancel and rerun runs, upload files, pause and resume jobs.
    Run,
    /// Also write and delete jobs, delete runs, read the audit log.
    Admin,
}

impl Scope {
    /// Its name: `read`, `run` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Run => "run",
            Scope::Admin => "admin",
        }
    }

    /// The scope named `s`, if any.
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "run" => Some(Scope::Run),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

/// One route: its method and path as registered in the router, the scope it needs (`None`:
/// no token at all) and, for a state-changing route, the action the audit log records.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// The HTTP method.
    pub method: &'static str,
    /// The path, with `{param}`s.
    pub path: &'static str,
    /// The scope a token needs; `None` for routes open to all.
    pub scope: Option<Scope>,
    /// The audit log's name of the action, for routes that change something.
    pub audit: Option<&'static str>,
}

const fn r(
    method: &'static str,
    path: &'static str,
    scope: Scope,
    audit: Option<&'static str>,
) -> Route {
    Route {
        method,
        path,
        scope: Some(scope),
        audit,
    }
}

use Scope::{Admin, Read, Run};

/// Every route with its scope, as registered in the router. The test of the OpenAPI document
/// compares the two, and a route missing here is refused (500) rather than left open.
pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/api/v1/health",
        scope: None,
        audit: None,
    },
    r("GET", "/api/v1/events", Read, None),
    r("GET", "/metrics", Read, None),
    r("GET", "/api/v1/openapi.json", Read, None),
    r("GET", "/api/v1/jobs", Read, None),
    r("POST", "/api/v1/jobs", Admin, Some("job.create")),
    r("GET", "/api/v1/overview", Read, None),
    r("POST", "/api/v1/jobs/validate", Admin, None),
    r("GET", "/api/v1/jobs/{name}", Read, None),
    r("PUT", "/api/v1/jobs/{name}", Admin, Some("job.write")),
    r("DELETE", "/api/v1/jobs/{name}", Admin, Some("job.delete")),
    r("GET", "/api/v1/jobs/{name}/versions", Read, None),
    r("GET", "/api/v1/jobs/{name}/versions/{hash}", Read, None),
    r("GET", "/api/v1/jobs/{name}/source", Read, None),
    r("POST", "/api/v1/jobs/{name}/runs", Run, Some("run.trigger")),
    r(
        "POST",
        "/api/v1/jobs/{name}/upload",
        Run,
        Some("run.upload"),
    ),
    r("POST", "/api/v1/jobs/{name}/pause", Run, Some("job.pause")),
    r(
        "POST",
        "/api/v1/jobs/{name}/resume",
        Run,
        Some("job.resume"),
    ),
    r("GET", "/api/v1/runs", Read, None),
    r("POST", "/api/v1/runs/delete", Admin, Some("run.delete")),
    r("GET", "/api/v1/runs/{id}", Read, None),
    r("DELETE", "/api/v1/runs/{id}", Admin, Some("run.delete")),
    r("GET", "/api/v1/runs/{id}/logs", Read, None),
    r("POST", "/api/v1/runs/{id}/cancel", Run, Some("run.cancel")),
    r("POST", "/api/v1/runs/{id}/rerun", Run, Some("run.rerun")),
    r("GET", "/api/v1/runs/{id}/artifacts/{name}", Read, None),
    r("GET", "/api/v1/audit", Admin, None),
    r("GET", "/api/v1/tokens", Admin, None),
    r("POST", "/api/v1/tokens", Admin, Some("token.create")),
    r(
        "DELETE",
        "/api/v1/tokens/{name}",
        Admin,
        Some("token.revoke"),
    ),
];

/// The name `[api] token` of ferry.toml goes by.
pub const CONFIG_TOKEN: &str = "config";
/// The name requests go by when auth is off.
pub const ANONYMOUS: &str = "anonymous";
/// The name the CLI goes by when it manages tokens on the history directly.
pub const LOCAL: &str = "local";

/// Who made a request, put into the request's extensions by the auth layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name (`config`, `anonymous` when auth is off).
    pub name: String,
    /// Its scope.
    pub scope: Scope,
    /// The SHA-256 of a named token (the config token and `anonymous` have none): what a
    /// long-lived stream re-checks so that revoking the token ends it.
    pub token_hash: Option<String>,
}

/// What a handler can add to its response for the audit log: the target when the path alone
/// does not say it (the runs a bulk delete removed, the token a create made).
#[derive(Debug, Clone)]
pub struct AuditTarget(pub String);

/// A new token: `ferry_` and 64 hex digits (32 random bytes from the OS).
pub fn new_token() -> String {
    use chacha20poly1305::aead::OsRng;
    use chacha20poly1305::aead::rand_core::RngCore;
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("ferry_{hex}")
}

/// The SHA-256 of a token, hex: what the history keeps.
pub fn hash_token(token: &str) -> String {
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `name` is a valid token name: 1 to 64 letters, digits, `_`, `-` and `.`, and none
/// of the names ferry itself uses (`config`, `anonymous`, `local`).
pub fn check_token_name(name: &str) -> Result<(), String> {
    let shaped = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !shaped {
        return Err(format!(
            "invalid token name {name:?}: use 1 to 64 letters, digits, `_`, `-` and `.`"
        ));
    }
    if [CONFIG_TOKEN, ANONYMOUS, LOCAL].contains(&name) {
        return Err(format!(
            "the token name {name:?} is reserved by ferry; choose another"
        ));
    }
    Ok(())
}

/// Why a token could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The name is malformed or reserved.
    #[error("{0}")]
    Name(String),
    /// A token of that name exists.
    #[error("a token named {0:?} exists already; revoke it first or choose another name")]
    Taken(String),
    /// The history could not be written.
    #[error(transparent)]
    History(#[from] crate::history::HistoryError),
}

/// Creates the token `name` with `scope` in the history and returns its value, which is not
/// kept anywhere (only its SHA-256 is).
pub fn create_token(
    history: &dyn crate::history::HistoryStore,
    name: &str,
    scope: Scope,
) -> Result<String, TokenError> {
    check_token_name(name).map_err(TokenError::Name)?;
    let token = new_token();
    if !history.create_token(name, &hash_token(&token), scope.as_str())? {
        return Err(TokenError::Taken(name.to_owned()));
    }
    Ok(token)
}

/// Whether requests need a token: `[api] token` is set or a named token exists.
pub fn auth_on(state: &ApiState) -> Result<bool, ApiError> {
    Ok(state.token.is_some() || state.history.has_tokens()?)
}

/// The caller a presented token stands for, if any: the config token, then the named ones.
pub fn resolve(state: &ApiState, given: &str) -> Result<Option<Caller>, ApiError> {
    if given.is_empty() {
        return Ok(None);
    }
    if let Some(t) = state.token.as_deref()
        && bool::from(given.as_bytes().ct_eq(t.as_bytes()))
    {
        return Ok(Some(Caller {
            name: CONFIG_TOKEN.to_owned(),
            scope: Scope::Admin,
            token_hash: None,
        }));
    }
    let hash = hash_token(given);
    let found = state.history.token_by_hash(&hash)?;
    Ok(found.and_then(|(name, scope)| {
        Scope::parse(&scope).map(|scope| Caller {
            name,
            scope,
            token_hash: Some(hash),
        })
    }))
}

/// The caller of a request by its bearer header (a wrong one is refused even with a good
/// cookie), then the UI's cookie; `anonymous` when auth is off.
pub fn identify(state: &ApiState, headers: &HeaderMap) -> Result<(Caller, Credential), ApiError> {
    if let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let given = given.strip_prefix("Bearer ").unwrap_or("");
        return match resolve(state, given)? {
            Some(c) => Ok((c, Credential::Bearer)),
            None if !auth_on(state)? => Ok((anonymous(), Credential::Open)),
            None => Err(ApiError::unauthorized()),
        };
    }
    if let Some(given) = session::cookie(headers, session::TOKEN_COOKIE)
        && let Some(c) = resolve(state, &given)?
    {
        return Ok((c, Credential::Cookie));
    }
    if auth_on(state)? {
        Err(ApiError::unauthorized())
    } else {
        Ok((anonymous(), Credential::Open))
    }
}

fn anonymous() -> Caller {
    Caller {
        name: ANONYMOUS.to_owned(),
        scope: Scope::Admin,
        token_hash: None,
    }
}

/// The route `method path` (as registered), if it is in [`ROUTES`].
pub fn route_of(method: &Method, path: &str) -> Option<&'static Route> {
    ROUTES
        .iter()
        .find(|r| r.method == method.as_str() && r.path == path)
}

/// The values of a concrete path's `{param}` segments, joined by `/`.
fn params_of(template: &str, path: &str) -> String {
    template
        .split('/')
        .zip(path.split('/'))
        .filter(|(t, _)| t.starts_with('{'))
        .map(|(_, v)| v)
        .collect::<Vec<_>>()
        .join("/")
}

/// The auth layer of every API route: identifies the caller, checks the route's scope and,
/// for state-changing requests, the checks against cross-site forgery (see [`session`]);
/// records audited actions once they are answered.
pub async fn layer(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    let Some(matched) = req.extensions().get::<MatchedPath>().cloned() else {
        return ApiError::internal("a request reached the auth layer without a matched route")
            .into_response();
    };
    let Some(route) = route_of(req.method(), matched.as_str()) else {
        return ApiError::internal(format!(
            "route {} {} has no scope in api::auth::ROUTES",
            req.method(),
            matched.as_str()
        ))
        .into_response();
    };
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_else(|| "unknown".to_owned());
    let path = req.uri().path().to_owned();
    let s = state.clone();
    let headers = req.headers().clone();
    let method = req.method().clone();
    let checked = tokio::task::spawn_blocking(move || {
        let (caller, cred) = identify(&s, &headers)?;
        Ok::<_, ApiError>((caller, cred))
    })
    .await
    .map_err(ApiError::internal)
    .and_then(|r| r);
    let (caller, cred) = match checked {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let refused = check(route, &caller, cred, &method, req.headers()).err();
    req.extensions_mut().insert(caller.clone());
    let resp = match refused {
        Some(e) => e.into_response(),
        None => next.run(req).await,
    };
    if let Some(action) = route.audit {
        let target = resp
            .extensions()
            .get::<AuditTarget>()
            .map(|t| t.0.clone())
            .unwrap_or_else(|| params_of(route.path, &path));
        let status = resp.status().as_u16();
        let history = state.history.clone();
        let written = tokio::task::spawn_blocking(move || {
            history.record_audit(&NewAudit {
                actor: &caller.name,
                source: &source,
                action,
                target: &target,
                status,
            })
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("cannot record an audit entry: {e}"),
            Err(e) => tracing::error!("cannot record an audit entry: {e}"),
        }
    }
    resp
}

/// The scope and cross-site checks of an identified request.
fn check(
    route: &Route,
    caller: &Caller,
    cred: Credential,
    method: &Method,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    if let Some(need) = route.scope
        && caller.scope < need
    {
        return Err(ApiError::forbidden(format!(
            "{} {} needs the `{}` scope; token {:?} has `{}`",
            route.method,
            route.path,
            need.as_str(),
            caller.name,
            caller.scope.as_str()
        )));
    }
    if session::changes_state(method) {
        session::check_origin(headers)?;
        if cred == Credential::Cookie {
            session::check_csrf(headers)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_ordered_and_named() {
        assert!(Scope::Admin > Scope::Run && Scope::Run > Scope::Read);
        for s in [Scope::Read, Scope::Run, Scope::Admin] {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
        assert_eq!(Scope::parse("write"), None);
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), "ferry_".len() + 64);
        assert_eq!(hash_token(&a).len(), 64);
        assert_ne!(hash_token(&a), hash_token(&b));
    }

    #[test]
    fn token_names_are_checked() {
        assert!(check_token_name("ci-bot.1").is_ok());
        assert!(check_token_name("").is_err());
        assert!(check_token_name("a b").is_err());
        assert!(check_token_name(&"x".repeat(65)).is_err());
        assert!(check_token_name("config").unwrap_err().contains("reserved"));
    }

    #[test]
    fn the_target_is_the_path_parameters() {
        assert_eq!(
            params_of("/api/v1/runs/{id}/cancel", "/api/v1/runs/7/cancel"),
            "7"
        );
        assert_eq!(params_of("/api/v1/jobs/{name}", "/api/v1/jobs/etl"), "etl");
    }
}
