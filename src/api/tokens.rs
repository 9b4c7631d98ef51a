//! Managing tokens and reading the audit log over the API (admin scope): `GET /api/v1/tokens`,
//! `POST /api/v1/tokens` (the token's value is answered once), `DELETE /api/v1/tokens/{name}`,
//! `GET /api/v1/audit`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::auth::{self, AuditTarget, Scope, TokenError};
use super::jobs::parse_body;
use super::runs::page_only;
use super::wire::{
    AuditPage, AuditView, ErrorBody, TokenCreated, TokenList, TokenRevoked, TokenView,
};
use super::{ApiError, ApiState};

/// The body of `POST /api/v1/tokens`.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// 1 to 64 letters, digits, `_` and `-`.
    name: String,
    /// `read`, `run` or `admin`.
    scope: String,
}

/// `GET /api/v1/tokens`: `{"items": [{name, scope, created_at, last_used}]}`, never a value.
#[utoipa::path(get, path = "/api/v1/tokens", summary = "The named API tokens (never their values)",
    responses((status = 200, body = TokenList), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn list(State(state): State<ApiState>) -> Result<Json<TokenList>, ApiError> {
    let items = state.db(|h| Ok(h.tokens()?)).await?;
    Ok(Json(TokenList {
        items: items.iter().map(TokenView::from).collect(),
    }))
}

/// `POST /api/v1/tokens` with `{"name", "scope"}` → 201 `{"name", "scope", "token"}`: the only
/// time the token is shown.
#[utoipa::path(post, path = "/api/v1/tokens",
    summary = "Create a named token with a scope; the answer is the only time its value is shown",
    request_body = NewToken,
    responses((status = 201, body = TokenCreated), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn create(State(state): State<ApiState>, body: Bytes) -> Result<Response, ApiError> {
    let body: NewToken = parse_body(&body)?;
    let scope = Scope::parse(&body.scope).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown scope {:?}: expected read, run or admin",
            body.scope
        ))
        .with_field("scope")
    })?;
    let name = body.name.clone();
    let token = state
        .db(move |h| {
            auth::create_token(h, &name, scope).map_err(|e| match e {
                TokenError::Name(m) => ApiError::bad_request(m).with_field("name"),
                TokenError::Taken(_) => ApiError::conflict(e.to_string()).with_field("name"),
                TokenError::History(h) => h.into(),
            })
        })
        .await?;
    tracing::info!(token = %body.name, scope = scope.as_str(), "API token created");
    let mut resp = (
        StatusCode::CREATED,
        Json(TokenCreated {
            name: body.name.clone(),
            scope: scope.as_str().to_owned(),
            token,
        }),
    )
        .into_response();
    resp.extensions_mut().insert(AuditTarget(body.name));
    Ok(resp)
}

/// `DELETE /api/v1/tokens/{name}` → `{"name", "revoked": true}`, or 404.
#[utoipa::path(delete, path = "/api/v1/tokens/{name}", summary = "Revoke a named token",
    params(("name" = String, Path, description = "token name")),
    responses((status = 200, body = TokenRevoked), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn revoke(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<TokenRevoked>, ApiError> {
    let n = name.clone();
    let removed = state.db(move |h| Ok(h.revoke_token(&n)?)).await?;
    if !removed {
        return Err(ApiError::not_found(format!("no token named {name:?}")));
    }
    tracing::info!(token = %name, "API token revoked");
    Ok(Json(TokenRevoked {
        name,
        revoked: true,
    }))
}

/// `GET /api/v1/audit?page=1&page_size=50`: the audit log, newest first.
#[utoipa::path(get, path = "/api/v1/audit", summary = "The audit log, newest first",
    params(("page" = Option<u64>, Query, description = "from 1"),
        ("page_size" = Option<u64>, Query, description = "1-500 (default 50)")),
    responses((status = 200, body = AuditPage), (status = "default", description = "An error", body = ErrorBody)))]
pub async fn audit(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Json<AuditPage>, ApiError> {
    let (page, page_size) = page_only(&q, 50)?;
    let (items, total) = state
        .db(move |h| Ok(h.audit(page_size as u32, (page - 1).saturating_mul(page_size))?))
        .await?;
    Ok(Json(AuditPage {
        items: items.iter().map(AuditView::from).collect(),
        page,
        page_size,
        total,
    }))
}
