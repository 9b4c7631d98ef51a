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

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// Every `$ref` of `v`.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(items) => items.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_names_a_schema_of_the_document() {
        let doc = super::openapi_document();
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(found.len() > 50, "only {} references", found.len());
        for r in found {
            let name = r.strip_prefix("#/components/schemas/").unwrap_or(r);
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "{r} is not in the document"
            );
        }
        // Schemas are named for what they are on the wire, not for the Rust types.
        let names: Vec<&String> = doc["components"]["schemas"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert!(names.iter().all(|n| !n.ends_with("View")), "{names:?}");
        // No rustdoc link leaks into the descriptions people read.
        assert!(
            !doc.to_string().contains("[`"),
            "a rustdoc link in the document"
        );
    }
}
