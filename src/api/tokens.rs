//! Managing tokens and reading the audit log over the API (admin scope): `GET /api/v1/tokens`,
//! `POST /api/v1/tokens` (the token's value is answered once), `DELETE /api/v1/tokens/{name}`,
//! `GET /api/v1/audit`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::auth::{self, AuditTarget, Scope, TokenError};
use super::jobs::parse_body;
use super::runs::page_only;
use super::{ApiError, ApiState};

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    scope: String,
}

/// `GET /api/v1/tokens`: `{"items": [{name, scope, created_at, last_used}]}`, never a value.
pub async fn list(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let items = state.db(|h| Ok(h.tokens()?)).await?;
    Ok(Json(json!({ "items": items })))
}

/// `POST /api/v1/tokens` with `{"name", "scope"}` → 201 `{"name", "scope", "token"}`: the only
/// time the token is shown.
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
        Json(json!({ "name": body.name, "scope": scope.as_str(), "token": token })),
    )
        .into_response();
    resp.extensions_mut().insert(AuditTarget(body.name));
    Ok(resp)
}

/// `DELETE /api/v1/tokens/{name}` → `{"name", "revoked": true}`, or 404.
pub async fn revoke(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let n = name.clone();
    let removed = state.db(move |h| Ok(h.revoke_token(&n)?)).await?;
    if !removed {
        return Err(ApiError::not_found(format!("no token named {name:?}")));
    }
    tracing::info!(token = %name, "API token revoked");
    Ok(Json(json!({ "name": name, "revoked": true })))
}

/// `GET /api/v1/audit?page=1&page_size=50`: the audit log, newest first.
pub async fn audit(
    State(state): State<ApiState>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let (page, page_size) = page_only(&q, 50)?;
    let (items, total) = state
        .db(move |h| Ok(h.audit(page_size as u32, (page - 1).saturating_mul(page_size))?))
        .await?;
    Ok(Json(
        json!({ "items": items, "page": page, "page_size": page_size, "total": total }),
    ))
}
