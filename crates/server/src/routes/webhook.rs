//! The transcript webhook: Cekura's path (project from the key) and our per-project path.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use callgrade_core::{parse_json, validate_batch, FieldError};
use callgrade_store::{IngestOutcome, NewDelivery, Project, Receipt};
use serde_json::Value;

use crate::auth::{project_for_key, webhook_key};
use crate::{ApiError, AppState};

pub const CEKURA_PATH: &str = "/test_framework/custom-provider-transcript-webhook/";

/// Receives call transcripts on Cekura's own path (also without the trailing slash); the
/// project is the key's.
#[utoipa::path(post, path = "/test_framework/custom-provider-transcript-webhook/", tag = "webhook",
    request_body(content = Object, content_type = "application/json",
        description = "`{agent_id?, calls: [...]}` as in Cekura's custom provider contract"),
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
    request_body(content = Object, content_type = "application/json",
        description = "`{agent_id?, calls: [...]}` as in Cekura's custom provider contract"),
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
    Path(project_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Receipt>), ApiError> {
    let missing = || ApiError::not_found(format!("no project with id {project_id:?}"));
    let id = project_id.parse::<i64>().map_err(|_| missing())?;
    let project = state.store.project(id).await?.ok_or_else(missing)?;
    let key_project = project_for_key(&state, webhook_key(&headers)?).await?;
    if key_project.id != project.id {
        return Err(ApiError::unauthorized(
            "this key belongs to another project; use that project's webhook URL or key",
        ));
    }
    let route = format!("/webhooks/custom/{id}");
    receive(&state, &project, &route, &headers, body).await
}

/// Everything after authentication: read, check, validate, store. Every outcome is recorded in
/// the delivery log.
async fn receive(
    state: &AppState,
    project: &Project,
    route: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Receipt>), ApiError> {
    let settings = &state.settings;
    let received_at = state.clock.now();
    let delivery = |bytes: &[u8]| {
        NewDelivery::new(
            project.id,
            received_at,
            route,
            bytes,
            settings.delivery_body_cap,
        )
    };

    let bytes = match axum::body::to_bytes(body, settings.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(e) => {
            if caused_by::<tower_http::timeout::TimeoutError>(&e) {
                let error = ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    "the request body arrived too slowly; send it at once",
                );
                return Err(reject(state, delivery(b""), error).await);
            }
            let too_large = caused_by::<http_body_util::LengthLimitError>(&e);
            if !too_large {
                return Err(ApiError::bad_request("the request body could not be read"));
            }
            let mut record = delivery(b"");
            record.body_size = headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(settings.max_body_bytes + 1);
            let error = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the body is over the limit of {} bytes; send fewer calls per request",
                    settings.max_body_bytes
                ),
            );
            return Err(reject(state, record, error).await);
        }
    };

    if !is_json(headers) {
        let error = ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/json",
        );
        return Err(reject(state, delivery(&bytes), error).await);
    }

    let body: Value = match parse_json(&bytes) {
        Ok(v) => v,
        Err(e) => {
            let error = ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.to_string())
                .with_errors(vec![FieldError::new("$", e.to_string())]);
            return Err(reject(state, delivery(&bytes), error).await);
        }
    };

    let batch = match validate_batch(&body, &settings.limits) {
        Ok(batch) => batch,
        Err(errors) => {
            let error = callgrade_store::RejectedDelivery::invalid_payload(errors).into();
            return Err(reject(state, delivery(&bytes), error).await);
        }
    };

    let calls = batch.calls.len();
    match state.store.ingest(batch, delivery(&bytes)).await? {
        IngestOutcome::Accepted(receipt) => {
            if receipt.created > 0 {
                state.jobs_ready.notify_waiters();
            }
            tracing::info!(
                project_id = project.id,
                calls,
                created = receipt.created,
                delivery_id = receipt.delivery_id,
                "webhook accepted"
            );
            Ok((StatusCode::ACCEPTED, Json(receipt)))
        }
        IngestOutcome::Rejected(rejection) => {
            tracing::info!(project_id = project.id, status = rejection.status, error = %rejection.error, "webhook rejected");
            Err(rejection.into())
        }
    }
}

/// Whether an error, or anything in its chain of causes, is a `T`.
fn caused_by<T: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(err) = current {
        if err.is::<T>() {
            return true;
        }
        current = err.source();
    }
    false
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Logs a rejection in the delivery log and gives it back to answer with. A failure to log does
/// not change the answer: the request was refused either way.
async fn reject(state: &AppState, delivery: NewDelivery, error: ApiError) -> ApiError {
    tracing::info!(project_id = delivery.project_id, status = error.status.as_u16(), error = %error.body.error, "webhook rejected");
    if let Err(e) = state
        .store
        .record_delivery(delivery, error.to_rejected_delivery())
        .await
    {
        tracing::warn!(error = %e, "could not record a rejected delivery");
    }
    error
}
