//! The transcript webhook: Cekura's path (project from the key) and our per-project path.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use callgrade_app::ingest::{self, Delivery};
use callgrade_core::{Rejection, RejectionKind};
use callgrade_store::{Project, Receipt};

use super::{caused_by, ApiPath};
use crate::auth::{project_for_key, webhook_key};
use crate::error::webhook_answer;
use crate::{ApiError, AppState};

pub const CEKURA_PATH: &str = "/test_framework/custom-provider-transcript-webhook/";
pub const PROJECT_PATH: &str = "/webhooks/custom/{project_id}";

/// Receives call transcripts on Cekura's own path (also without the trailing slash); the
/// project is the key's.
#[utoipa::path(post, path = "/test_framework/custom-provider-transcript-webhook/", tag = "webhook",
    request_body(content = callgrade_core::WebhookBody, content_type = "application/json",
        description = "Cekura's custom-provider contract"),
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Every call is durably stored", body = Receipt),
        (status = 400, description = "Invalid payload or malformed JSON; nothing stored", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown key", body = crate::error::ErrorBody),
        (status = 409, description = "A call id was already received with different content", body = crate::error::ErrorBody),
        (status = 413, description = "Body over the limit", body = crate::error::ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = crate::error::ErrorBody)))]
pub async fn cekura_path(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Receipt>), ApiError> {
    let project = project_for_key(&state, webhook_key(&headers)?).await?;
    receive(&state, &project, CEKURA_PATH, &headers, body).await
}

/// Receives call transcripts on the project's own URL; the key must be this project's.
#[utoipa::path(post, path = "/webhooks/custom/{project_id}", tag = "webhook",
    params(("project_id" = i64, Path, description = "The project's id, as in the URL `project create` prints")),
    request_body(content = callgrade_core::WebhookBody, content_type = "application/json",
        description = "Cekura's custom-provider contract"),
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Every call is durably stored", body = Receipt),
        (status = 400, description = "Invalid payload or malformed JSON; nothing stored", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or unknown key, or another project's key", body = crate::error::ErrorBody),
        (status = 404, description = "No such project", body = crate::error::ErrorBody),
        (status = 409, description = "A call id was already received with different content", body = crate::error::ErrorBody),
        (status = 413, description = "Body over the limit", body = crate::error::ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = crate::error::ErrorBody)))]
pub async fn project_path(
    State(state): State<AppState>,
    ApiPath(project_id): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Receipt>), ApiError> {
    let missing = || ApiError::not_found(format!("no project with id {project_id:?}"));
    let id = project_id.parse::<i64>().map_err(|_| missing())?;
    let project = state.app.store.project(id).await?.ok_or_else(missing)?;
    let key_project = project_for_key(&state, webhook_key(&headers)?).await?;
    if key_project.id != project.id {
        return Err(ApiError::unauthorized(
            "this key belongs to another project; use that project's webhook URL or key",
        ));
    }
    let route = format!("/webhooks/custom/{id}");
    receive(&state, &project, &route, &headers, body).await
}

/// Reads the body within the transport's limits, then hands it to the ingest use case, which
/// validates, stores and records every outcome in the delivery log.
async fn receive(
    state: &AppState,
    project: &Project,
    route: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Receipt>), ApiError> {
    let delivery = Delivery {
        project,
        route,
        received_at: state.app.now(),
        answer: webhook_answer,
        format: callgrade_core::Format::Custom,
    };
    let limit = state.settings.max_body_bytes;
    let (bytes, _reserved) =
        read_body(state, &delivery, headers, body, limit, Compression::Refused).await?;
    let receipt = ingest::receive(&state.app, &delivery, bytes, is_json(headers)).await?;
    Ok((StatusCode::ACCEPTED, Json(receipt)))
}

/// Whether a route takes compressed bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compression {
    Refused,
    /// The route reads `Content-Encoding` itself (and inflates what it accepts, within its limit).
    ByRoute,
}

/// Reads an ingest route's body within the transport's limits: not compressed (unless the
/// route decodes it), within
/// `--max-body-bytes` and the body deadline, its memory reserved from the in-flight budget
/// (held while the returned permit lives). A body refused here is in the delivery log.
pub(super) async fn read_body(
    state: &AppState,
    delivery: &Delivery<'_>,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    compression: Compression,
) -> Result<(Bytes, tokio::sync::OwnedSemaphorePermit), ApiError> {
    // What the request says its body weighs: recorded for bodies refused unread, and reserved.
    let announced: Option<usize> = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let encoded = compressed(headers);
    if let Some(encoding) = encoded
        .clone()
        .filter(|_| compression == Compression::Refused)
    {
        let rejection = Rejection::new(
            RejectionKind::UnsupportedMediaType,
            format!("Content-Encoding {encoding:?} is not accepted; send the JSON uncompressed"),
        );
        return Err(
            ingest::refuse_unread(&state.app, delivery, announced.unwrap_or(0), rejection)
                .await
                .into(),
        );
    }
    // Memory for this body is reserved before it is read (by what it announces, else the
    // limit) and held until it is stored; a burst of large bodies is taken a few at a time.
    // A compressed body may inflate to the limit, so it reserves that.
    let budget = state.settings.http.webhook_bytes_in_flight;
    let expected = match encoded {
        Some(_) => limit,
        None => announced.unwrap_or(limit),
    };
    let want = crate::kib(expected.min(limit).min(budget));
    let Ok(reserved) = state
        .webhook_budget
        .clone()
        .acquire_many_owned(u32::try_from(want).unwrap_or(u32::MAX))
        .await
    else {
        return Err(ApiError::from(callgrade_app::AppError::Unavailable(
            "the server is shutting down".into(),
        )));
    };
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let (rejection, size) = if caused_by::<crate::deadline::BodyDeadlineExceeded>(&e) {
                let rejection = Rejection::new(
                    RejectionKind::BodyTimeout,
                    "the request body did not arrive whole within the body deadline (--body-timeout); send it at once",
                );
                (rejection, 0)
            } else if caused_by::<http_body_util::LengthLimitError>(&e) {
                let rejection = Rejection::new(
                    RejectionKind::PayloadTooLarge,
                    format!(
                        "the body is over the limit of {limit} bytes; send fewer calls per request"
                    ),
                );
                (rejection, announced.unwrap_or(limit + 1))
            } else {
                return Err(ApiError::bad_request("the request body could not be read"));
            };
            let refused = ingest::refuse_unread(&state.app, delivery, size, rejection).await;
            return Err(refused.into());
        }
    };
    Ok((bytes, reserved))
}

/// The body's encoding when it is anything but plain bytes; a gzip body read as JSON would only
/// be reported as malformed.
fn compressed(headers: &HeaderMap) -> Option<String> {
    let encoding = headers.get(CONTENT_ENCODING)?;
    let encoding = String::from_utf8_lossy(encoding.as_bytes())
        .trim()
        .to_owned();
    (!encoding.eq_ignore_ascii_case("identity")).then(|| encoding.chars().take(40).collect())
}

pub(super) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}
