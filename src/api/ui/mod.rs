//! The web UI of `ferry serve`: plain HTML, CSS and JavaScript modules embedded in the binary,
//! served on the API's listener. The pages hold no data and no secret: they read everything
//! from the JSON API with the browser's credential (the session cookie, see [`session`]).
//!
//! Routes: `/`, `/jobs`, `/jobs/{name}`, `/runs`, `/runs/{id}` and `/login` answer the one
//! page (`index.html`), whose script shows the view the path names; `/ui/{file}` answers the
//! assets; `/ui/login`, `/ui/logout` and `/ui/session` sign in and out.

pub mod session;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::{ApiError, ApiState};

/// An embedded file of the UI.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Its name under `/ui/`.
    pub name: &'static str,
    /// Its media type.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static str,
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_str!(concat!("assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the UI; the whole is kept under [`MAX_UI_BYTES`] (a test checks).
pub const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("lua.js", JS),
    asset!("overview.js", JS),
    asset!("jobs.js", JS),
    asset!("job.js", JS),
    asset!("runs.js", JS),
    asset!("run.js", JS),
    asset!("login.js", JS),
    asset!("scope.js", JS),
];

/// The budget of the whole UI, uncompressed.
pub const MAX_UI_BYTES: usize = 200 * 1024;

/// The size of the whole UI, uncompressed, in bytes.
pub fn total_size() -> usize {
    ASSETS.iter().map(|a| a.body.len()).sum()
}

/// The paths that answer the page.
pub const PAGES: &[&str] = &[
    "/",
    "/jobs",
    "/jobs/{name}",
    "/runs",
    "/runs/{id}",
    "/login",
];

/// What the browser may load and connect to: this server only, no inline script or style, no
/// framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn answer(asset: &Asset) -> Response {
    let mut resp = ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response();
    let h = resp.headers_mut();
    // Revalidated each time: an upgraded binary serves its own assets at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    resp
}

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

async fn page() -> Response {
    match find("index.html") {
        Some(a) => answer(a),
        None => ApiError::internal("the UI's index.html is not embedded").into_response(),
    }
}

async fn asset(Path(name): Path<String>) -> Response {
    match find(&name) {
        Some(a) => answer(a),
        None => ApiError::not_found(format!("the UI has no file {name:?}")).into_response(),
    }
}

/// The UI's routes (no auth layer: the pages hold no data, and the API they call checks).
pub fn router() -> Router<ApiState> {
    let mut r = Router::new()
        .route("/ui/login", post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/session", get(session::session))
        .route("/ui/{name}", get(asset));
    for p in PAGES {
        r = r.route(p, get(page));
    }
    r
}
