//! Schemas of the history's enums as the API shows them. They are implemented here, by hand,
//! from each enum's own list of names, so the history does not depend on the document's crate.

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{Object, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::history::{ErrorCode, LogLevel, NotificationState, RunState, Trigger, VersionOrigin};

/// The codes of [`crate::api::ApiError`] (see `api/error.rs`).
const API_ERROR_CODES: [&str; 12] = [
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "conflict",
    "payload_too_large",
    "unsupported_media_type",
    "invalid_params",
    "invalid_script",
    "unavailable",
    "internal",
];

/// A string that is one of `names`.
pub(super) fn one_of<'a>(names: impl IntoIterator<Item = &'a str>, about: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(names))
        .description(Some(about))
        .build()
}

/// The codes of an error answer.
pub(super) fn api_error_codes() -> Object {
    one_of(API_ERROR_CODES, "Stable error code")
}

/// A run's error code: the known ones, though a history written by another version may hold
/// others (shown as written).
pub(super) fn error_code() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .examples(ErrorCode::KNOWN.iter().map(|c| c.as_str().to_owned()))
        .description(Some(
            "Stable code: load, params, run, timeout, memory, cancelled, crashed, interrupted \
             (a history written by another version may hold others)",
        ))
        .build()
}

/// A run's trigger: an object with its `kind` and the kind's detail.
pub(super) fn trigger() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("kind", one_of(Trigger::KINDS, "Why the run started"))
        .required("kind")
        .description(Some(
            "Why the run started: `kind` plus its detail (`scheduled_at` and `missed` of cron, \
             `file` of a dropped file, `of` the run a retry, rerun or chained job comes from, \
             `attempt` of a retry, `job`, `state`, `summary` of the upstream run)",
        ))
        .build()
}

macro_rules! string_enum_schema {
    ($ty:ty, $names:expr, $about:literal) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                one_of($names, $about).into()
            }
        }
        impl ToSchema for $ty {}
    };
}

string_enum_schema!(
    RunState,
    RunState::ALL.map(RunState::as_str),
    "The state of a run"
);
string_enum_schema!(
    LogLevel,
    [LogLevel::Info, LogLevel::Warn, LogLevel::Error].map(LogLevel::as_str),
    "Severity of a log line"
);
string_enum_schema!(
    NotificationState,
    [
        NotificationState::Pending,
        NotificationState::Sent,
        NotificationState::Failed
    ]
    .map(NotificationState::as_str),
    "Where a delivery stands"
);
string_enum_schema!(
    VersionOrigin,
    [VersionOrigin::Api, VersionOrigin::File].map(VersionOrigin::as_str),
    "Written through PUT /api/v1/jobs/{name}, or an edit of the file in scripts/"
);
