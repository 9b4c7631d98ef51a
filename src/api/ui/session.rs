//! Signing in to the web UI and what protects cookie-authenticated requests.
//!
//! With auth on (`[api] token` or a named token), the login page posts a token to
//! `POST /ui/login`; when it is the config token or a named one, the
//! answer sets two cookies: `ferry_token` (the token, `HttpOnly` so no script can read it,
//! `SameSite=Strict` so no other site's request carries it) and `ferry_csrf` (a random value the
//! page's script reads and sends back as the `X-Ferry-CSRF` header on every state-changing
//! request: the double-submit pattern). A request authenticated by the cookie that changes
//! something must carry that header with the cookie's value, and, when it names an `Origin`,
//! come from this server's own origin. `Authorization: Bearer` keeps working as before and needs
//! neither. The cookie holds the token itself, so every request looks it up again: the session
//! acts with that token's name and scope, and ends the moment the token is revoked.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::api::{ApiError, ApiState, auth};

/// The cookie that holds the token (`HttpOnly`).
pub const TOKEN_COOKIE: &str = "ferry_token";
/// The cookie that holds the CSRF value, readable by the page's script.
pub const CSRF_COOKIE: &str = "ferry_csrf";
/// The header that carries the CSRF value back.
pub const CSRF_HEADER: &str = "x-ferry-csrf";

/// How a request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// No token is configured (nor created): nothing to prove.
    Open,
    /// `Authorization: Bearer` with the token.
    Bearer,
    /// The `ferry_token` cookie with the token.
    Cookie,
}

/// The value of the cookie `name`, percent-decoded.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| {
            form_urlencoded::parse(format!("v={v}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        })
}

fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Whether a method changes something (and so needs the CSRF checks).
pub fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Refuses a state-changing request that a browser says comes from another site: its `Origin`
/// is not this server (`Host`), or its `Sec-Fetch-Site` is `cross-site`. Clients that send
/// neither (curl, the CLI) pass. This also protects the token-less loopback mode, where no
/// cookie is needed for a forged request to act.
pub fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site")
    {
        return Err(ApiError::forbidden(
            "cross-site request refused: state-changing requests must come from the ferry UI itself",
        ));
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let own = ["http://", "https://"]
        .iter()
        .any(|scheme| origin.strip_prefix(scheme) == Some(host));
    if host.is_empty() || !own {
        return Err(ApiError::forbidden(format!(
            "request from origin {origin:?} refused: state-changing requests must come from this server ({host})"
        )));
    }
    Ok(())
}

/// The double-submit check of a cookie-authenticated request that changes state.
pub fn check_csrf(headers: &HeaderMap) -> Result<(), ApiError> {
    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    let expected = cookie(headers, CSRF_COOKIE);
    match (sent, expected) {
        (Some(sent), Some(expected)) if !expected.is_empty() && same(sent, &expected) => Ok(()),
        _ => Err(ApiError::forbidden(format!(
            "missing or wrong {CSRF_HEADER} header: a request signed in by cookie that changes \
             something must send the value of the {CSRF_COOKIE} cookie in it"
        ))),
    }
}

/// A random value for the CSRF cookie: 32 bytes from the OS, hex.
fn random_hex() -> String {
    use chacha20poly1305::aead::OsRng;
    use chacha20poly1305::aead::rand_core::RngCore;
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn set_cookie(resp: &mut Response, text: String) -> Result<(), ApiError> {
    let value = HeaderValue::from_str(&text)
        .map_err(|e| ApiError::internal(format!("cannot build a Set-Cookie header: {e}")))?;
    resp.headers_mut().append(header::SET_COOKIE, value);
    Ok(())
}

fn encode(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    token: String,
}

/// `POST /ui/login` with `{"token": "..."}`: 204 and the session cookies when it is the
/// token, 401 when not, 404 when no token is configured (there is nothing to sign in to).
pub async fn login(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_origin(&headers)?;
    let body: LoginBody = crate::api::jobs::parse_body(&body)?;
    let s = state.clone();
    let given = body.token.clone();
    let (on, caller) = tokio::task::spawn_blocking(move || {
        Ok::<_, ApiError>((auth::auth_on(&s)?, auth::resolve(&s, &given)?))
    })
    .await
    .map_err(ApiError::internal)??;
    if !on {
        return Err(ApiError::not_found(
            "no token is configured ([api] token, FERRY_TOKEN, ferry tokens create): the UI needs no login",
        ));
    }
    let Some(caller) = caller else {
        return Err(ApiError {
            message: "wrong token: give [api] token (FERRY_TOKEN) or a token made by `ferry tokens create`".into(),
            ..ApiError::unauthorized()
        });
    };
    tracing::info!(token = %caller.name, "signed in to the UI");
    let token = body.token.as_str();
    let mut resp = StatusCode::NO_CONTENT.into_response();
    set_cookie(
        &mut resp,
        format!(
            "{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
            encode(token)
        ),
    )?;
    set_cookie(
        &mut resp,
        format!("{CSRF_COOKIE}={}; Path=/; SameSite=Strict", random_hex()),
    )?;
    Ok(resp)
}

/// `POST /ui/logout`: clears the session cookies.
pub async fn logout(headers: HeaderMap) -> Result<Response, ApiError> {
    check_origin(&headers)?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    for name in [TOKEN_COOKIE, CSRF_COOKIE] {
        set_cookie(
            &mut resp,
            format!("{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"),
        )?;
    }
    Ok(resp)
}

/// `GET /ui/session`: `{"auth": "none"|"token", "signed_in": bool, "name", "scope"}` (the
/// token's name and scope when signed in), for the page to choose between the login form and
/// the app.
pub async fn session(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let s = state.clone();
    let (on, who) = tokio::task::spawn_blocking(move || {
        Ok::<_, ApiError>((auth::auth_on(&s)?, auth::identify(&s, &headers).ok()))
    })
    .await
    .map_err(ApiError::internal)??;
    let auth = if on { "token" } else { "none" };
    let (name, scope) = match &who {
        Some((c, _)) => (Some(c.name.as_str()), Some(c.scope.as_str())),
        None => (None, None),
    };
    Ok(axum::Json(serde_json::json!({
        "auth": auth,
        "signed_in": who.is_some(),
        "name": name,
        "scope": scope,
    })))
}
