//! The one error type of the HTTP edge. Its public body is `{error, detail, errors}`; internal
//! causes are logged with context and never sent to clients.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use callgrade_app::AppError;
use callgrade_core::FieldError;
use callgrade_core::{Rejection, RejectionKind};
use callgrade_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable machine code, e.g. `invalid_payload`, `unauthorized`.
    pub error: String,
    /// A sentence for humans.
    pub detail: String,
    /// Every problem found, each with its JSON path.
    pub errors: Vec<FieldError>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: error.into(),
                detail: detail.into(),
                errors: Vec::new(),
            },
            retry_after: None,
        }
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.body.errors = errors;
        self
    }

    pub fn unauthorized(detail: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn rate_limited(wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests for this project; retry in {seconds} s"),
        );
        e.retry_after = Some(seconds);
        e
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// A request body with problems, each with its path.
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        Rejection::invalid_payload(errors).into()
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }
}

/// How the webhook answers each outcome: the one place its statuses are chosen. The delivery
/// log records what this gives.
pub fn webhook_answer(outcome: Option<RejectionKind>) -> u16 {
    let status = match outcome {
        None => StatusCode::ACCEPTED,
        Some(RejectionKind::InvalidPayload | RejectionKind::MalformedJson) => {
            StatusCode::BAD_REQUEST
        }
        Some(RejectionKind::Conflict) => StatusCode::CONFLICT,
        Some(RejectionKind::UnsupportedMediaType) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Some(RejectionKind::PayloadTooLarge) => StatusCode::PAYLOAD_TOO_LARGE,
        Some(RejectionKind::BodyTimeout) => StatusCode::REQUEST_TIMEOUT,
        Some(RejectionKind::Unauthorized) => StatusCode::UNAUTHORIZED,
        // Only the vendors' routes meet events they do not store; they answer 200.
        Some(RejectionKind::IgnoredEvent) => StatusCode::OK,
    };
    status.as_u16()
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        let status =
            StatusCode::from_u16(webhook_answer(Some(r.kind))).unwrap_or(StatusCode::BAD_REQUEST);
        Self::new(status, r.kind.code(), r.detail).with_errors(r.errors)
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::NotFound(detail) => Self::not_found(detail),
            AppError::Invalid(errors) => Self::invalid(errors),
            AppError::BadRequest(detail) => Self::bad_request(detail),
            AppError::AlreadyExists(detail) => {
                Self::new(StatusCode::CONFLICT, "already_exists", detail)
            }
            AppError::Conflict(detail) => Self::new(StatusCode::CONFLICT, "conflict", detail),
            AppError::Rejected(rejection) => rejection.into(),
            AppError::Upstream(detail) => {
                Self::new(StatusCode::BAD_GATEWAY, "judge_unavailable", detail)
            }
            AppError::Unavailable(detail) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", detail)
            }
            AppError::Internal => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the server could not complete the request; nothing was stored, retry later",
            ),
        }
    }
}

/// Reads go to the store directly; their failures map as the use cases' do.
impl From<StoreError> for ApiError {
    #[track_caller]
    fn from(e: StoreError) -> Self {
        AppError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// How the vendors' webhook routes answer: 200 for a stored call and for an event that carries
/// none (vendors retry anything else), 401 for a bad signature, the webhook's status otherwise.
pub fn vendor_answer(outcome: Option<RejectionKind>) -> u16 {
    match outcome {
        None | Some(RejectionKind::IgnoredEvent) => StatusCode::OK.as_u16(),
        other => webhook_answer(other),
    }
}

/// How the OTLP trace route answers: 200 for a stored export, as OTLP/HTTP requires.
pub fn otlp_answer(outcome: Option<RejectionKind>) -> u16 {
    match outcome {
        None => StatusCode::OK.as_u16(),
        other => webhook_answer(other),
    }
}

/// How the observe endpoint answers: 201 with the stored call, as Cekura does.
pub fn observe_answer(outcome: Option<RejectionKind>) -> u16 {
    match outcome {
        None => StatusCode::CREATED.as_u16(),
        other => webhook_answer(other),
    }
}
