//! The one error type of the API: `{"error": {"code", "message"}}` with the matching status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::history::HistoryError;
use crate::jobs::dispatcher::SubmitError;
use crate::jobs::rerun::RerunError;

/// An error answered to an API client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code: bad_request, unauthorized, not_found, method_not_allowed, conflict,
    /// payload_too_large, invalid_params, unavailable, internal.
    pub code: &'static str,
    /// What failed and what was expected.
    pub message: String,
}

impl ApiError {
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
        }
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::CONFLICT,
            code: "conflict",
            message: message.into(),
        }
    }

    /// 413.
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "payload_too_large",
            message: message.into(),
        }
    }

    /// 422.
    pub fn invalid_params(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_params",
            message: message.into(),
        }
    }

    /// 401.
    pub fn unauthorized() -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: "missing or wrong bearer token: send `Authorization: Bearer TOKEN`".into(),
        }
    }

    /// 500: the details go to the daemon's log once, never to the client.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!("internal error answering an API request: {detail}");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "internal error; the details are in the ferry daemon's log".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED
            && let Ok(v) = "Bearer".parse()
        {
            resp.headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}

impl From<HistoryError> for ApiError {
    fn from(e: HistoryError) -> ApiError {
        match e {
            HistoryError::NotFound(_) => ApiError::not_found(e.to_string()),
            HistoryError::Active(..) => ApiError::conflict(e.to_string()),
            other => ApiError::internal(other),
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> ApiError {
        match e {
            SubmitError::UnknownJob(_) => ApiError::not_found(e.to_string()),
            SubmitError::NotLoaded { .. } => ApiError::conflict(e.to_string()),
            SubmitError::Params(p) => ApiError::invalid_params(p.to_string()),
            SubmitError::History(h) => h.into(),
            SubmitError::Rerun(r) => match r {
                RerunError::History(h) => h.into(),
                RerunError::Params(..) => ApiError::invalid_params(r.to_string()),
                RerunError::Move { .. } | RerunError::Seal(_) => ApiError::internal(r),
                RerunError::NotEnded(..)
                | RerunError::NotLoaded(..)
                | RerunError::FileGone { .. } => ApiError::conflict(r.to_string()),
            },
            SubmitError::ShuttingDown => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "unavailable",
                message: e.to_string(),
            },
        }
    }
}
