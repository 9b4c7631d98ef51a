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
    /// Stable code: bad_request, unauthorized, forbidden, not_found, method_not_allowed, conflict,
    /// payload_too_large, unsupported_media_type, invalid_params, invalid_script, unavailable,
    /// internal (and,
    /// from the HTTP layer, timeout and length_required).
    pub code: &'static str,
    /// What failed and what was expected.
    pub message: String,
    /// The request field the error is about (a param's name, `at`), for forms that show
    /// errors beside their fields; answered as `error.field`.
    pub field: Option<String>,
}

impl ApiError {
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
            field: None,
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
            field: None,
        }
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::CONFLICT,
            code: "conflict",
            message: message.into(),
            field: None,
        }
    }

    /// 413.
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "payload_too_large",
            message: message.into(),
            field: None,
        }
    }

    /// 422.
    pub fn invalid_params(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_params",
            message: message.into(),
            field: None,
        }
    }

    /// 422: a job script that does not load; the message lists every problem as
    /// `scripts/NAME.lua:LINE: ...`.
    pub fn invalid_script(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid_script",
            message: message.into(),
            field: None,
        }
    }

    /// The same error, about the request field `field`.
    pub fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    /// 403: a state-changing request that may come from another site.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: message.into(),
            field: None,
        }
    }

    /// 401.
    pub fn unauthorized() -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: "missing or wrong bearer token: send `Authorization: Bearer TOKEN`".into(),
            field: None,
        }
    }

    /// 415.
    pub fn unsupported_media_type(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            message: message.into(),
            field: None,
        }
    }

    /// 503 `unavailable`: the daemon cannot do it now (the client may ask again).
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            message: message.into(),
            field: None,
        }
    }

    /// The error for a response axum (or a layer) produced on its own, as plain text: a body
    /// over the limit, a request it could not decode. `text` is what it said.
    pub fn from_rejection(status: StatusCode, text: &str) -> ApiError {
        let code = match status.as_u16() {
            400 => "bad_request",
            401 => "unauthorized",
            403 => "forbidden",
            404 => "not_found",
            405 => "method_not_allowed",
            408 => "timeout",
            409 => "conflict",
            411 => "length_required",
            413 => "payload_too_large",
            415 => "unsupported_media_type",
            422 => "bad_request",
            503 => "unavailable",
            s if s >= 500 => "internal",
            _ => "bad_request",
        };
        if code == "internal" {
            return ApiError::internal(format!("{status}: {text}"));
        }
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!(
                "request body larger than the limit of {} bytes (uploads go to /api/v1/jobs/NAME/upload, limited by [api] max_upload)",
                super::JSON_BODY_LIMIT
            )
        } else {
            let text = text.trim();
            let text = if text.is_empty() {
                status.canonical_reason().unwrap_or("request refused")
            } else {
                text
            };
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => String::new(),
            }
        };
        ApiError {
            status,
            code,
            message,
            field: None,
        }
    }

    /// 500: the details go to the daemon's log once, never to the client.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!("internal error answering an API request: {detail}");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "internal error; the details are in the ferry daemon's log".into(),
            field: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = super::wire::ErrorBody {
            error: super::wire::ErrorDetail {
                code: self.code,
                message: self.message,
                field: self.field,
            },
        };
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
            SubmitError::Params(p) => ApiError::invalid_params(p.to_string()).with_field(p.name()),
            SubmitError::History(h) => h.into(),
            SubmitError::Rerun(r) => match r {
                RerunError::History(h) => h.into(),
                RerunError::Params(..) => ApiError::invalid_params(r.to_string()),
                RerunError::Move { .. } | RerunError::Seal(_) => ApiError::internal(r),
                RerunError::NotEnded(..)
                | RerunError::NotLoaded(..)
                | RerunError::FileGone { .. } => ApiError::conflict(r.to_string()),
            },
            SubmitError::ShuttingDown => ApiError::unavailable(e.to_string()),
        }
    }
}
