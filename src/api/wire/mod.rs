//! The JSON the HTTP API answers with: types of its own, built from the history's and the jobs'
//! records, so no history type is the wire format. Each derives (or implements) `ToSchema`: the
//! OpenAPI document (`api/doc.rs`) is generated from them, and a test checks real answers
//! against it.
//!
//! Field names, their order and their `null`s are the API's stable shape (the web UI in
//! `api/ui/` and the CLI's client in `cli/client.rs` read them).

mod enums;
mod jobs;
mod runs;
mod tokens;

use serde::Serialize;
use utoipa::ToSchema;

pub use jobs::{
    BrokenJob, JobDeleted, JobList, Overview, PauseChange, RunSlice, ScriptWrite,
    TemplateJobCreated, Upcoming, Uploaded, Validated, VersionPage, VersionView,
};
pub use runs::{
    ArtifactView, CancelAccepted, DeleteResult, DeleteResults, LogLineView, LogPage,
    NotificationView, ProgressView, RerunCreated, RunDeleted, RunDetail, RunErrorView, RunPage,
    RunView, run_views,
};
pub use tokens::{AuditPage, AuditView, TokenCreated, TokenList, TokenRevoked, TokenView};

use crate::history::RunState;

/// Every error: `{"error": {"code", "message", "field"?}}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code.
    #[schema(schema_with = enums::api_error_codes)]
    pub code: &'static str,
    /// One line for people.
    pub message: String,
    /// The request field the error is about (a param's name, `at`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
}

/// `GET /api/v1/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
    /// The daemon's version.
    pub version: &'static str,
    /// Jobs known (loaded or not).
    pub jobs: usize,
    /// Runs going now on this host.
    pub running: usize,
    /// Runs waiting in the queue.
    pub queued: u64,
}

/// The bytes of a file (a download, an upload's `file` field).
pub struct FileBytes;

impl utoipa::PartialSchema for FileBytes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::Binary,
            )))
            .into()
    }
}

impl ToSchema for FileBytes {}

/// A run asked for: its id and state (`queued`, or `skipped` by an overlap policy).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Submitted {
    /// The new run.
    pub id: i64,
    /// Its state.
    pub state: RunState,
}
