//! The OpenAPI document of the API, generated: every handler carries its `#[utoipa::path]`
//! (path, parameters, request body, answers) and every answer is a type of `api/wire/` that
//! derives its schema. `GET /api/v1/openapi.json` serves it; tests/api.rs checks that it lists
//! every route of the router and that real answers match its schemas.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{events, jobs, metrics, overview, runs, scripts, templates, tokens, upload};

/// What the document says of the API as a whole.
const ABOUT: &str = "HTTP API of `ferry serve`: jobs, runs, logs, artifacts, uploads. Every \
endpoint but /api/v1/health needs `Authorization: Bearer TOKEN` when auth is on ([api] token or \
a named token; each token has a scope, read < run < admin, and a wrong scope answers 403 \
`forbidden` naming the missing scope) (or the web UI's session cookie, with the `X-Ferry-CSRF` \
header on state-changing requests; see docs/http-api.md). Errors: {\"error\": {\"code\", \
\"message\"}}.";

#[derive(OpenApi)]
#[openapi(
    info(title = "ferry", description = ABOUT),
    paths(
        super::health,
        super::openapi,
        metrics::metrics,
        events::stream,
        jobs::list,
        templates::create,
        overview::overview,
        scripts::validate_only,
        jobs::detail,
        scripts::put,
        scripts::delete,
        jobs::source,
        scripts::list_versions,
        scripts::version,
        jobs::trigger,
        upload::upload,
        jobs::pause,
        jobs::resume,
        runs::list,
        runs::delete_many,
        runs::detail,
        runs::delete,
        runs::logs,
        runs::cancel,
        runs::rerun,
        runs::artifact,
        tokens::audit,
        tokens::list,
        tokens::create,
        tokens::revoke,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

/// Declares the `bearer` scheme every operation but health asks for.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of the API, as JSON.
pub fn openapi_document() -> serde_json::Value {
    // The document is plain data (strings, maps, lists): serialising it cannot fail.
    serde_json::to_value(ApiDoc::openapi()).unwrap_or(serde_json::Value::Null)
}
