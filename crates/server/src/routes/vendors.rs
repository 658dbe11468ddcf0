//! Vendors' own post-call webhooks: Vapi, Retell and ElevenLabs, each on Cekura's provider path
//! (the project from `X-CEKURA-API-KEY`) and on a per-project path for senders that cannot set
//! a header (the vendor's signature, with the project's saved secret, is then the only proof).

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use callgrade_app::ingest::{self, Delivery, Signed, VendorOutcome};
use callgrade_core::{signature, Vendor};
use callgrade_store::{Project, Receipt};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::webhook::{is_json, read_body, Compression};
use super::{parse_id, ApiPath, ApiQuery};
use crate::auth::{project_for_key, webhook_key};
use crate::error::vendor_answer;
use crate::{ApiError, AppState};

pub const VAPI_PATH: &str = "/observability/v1/vapi/observe/";
pub const RETELL_PATH: &str = "/observability/v1/retell/observe/";
pub const ELEVENLABS_PATH: &str = "/observability/v1/elevenlabs/observe/";

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct VendorQuery {
    /// The callgrade agent the calls are for; without it, the agent whose `external_ids`
    /// holds the vendor's assistant or agent id.
    #[param(minimum = 1)]
    agent_id: Option<i64>,
}

/// What a vendor's webhook is answered with.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum VendorReply {
    /// The call is durably stored.
    Stored(Receipt),
    /// The event carries no finished call; it is acknowledged and in the delivery log.
    Ignored(IgnoredEvent),
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IgnoredEvent {
    /// Always true.
    ignored: bool,
    /// The vendor's event type, as sent.
    event: String,
    reason: String,
}

macro_rules! vendor_routes {
    ($vendor:expr, $cekura_doc:literal, $cekura_fn:ident, $cekura_path:literal, $project_doc:literal, $project_fn:ident, $project_path:literal) => {
        #[doc = $cekura_doc]
        #[utoipa::path(post, path = $cekura_path, tag = "webhook", params(VendorQuery),
            request_body(content = Object, content_type = "application/json", description = "The vendor's webhook body, as the vendor sends it"),
            security(("api_key" = [])),
            responses(
                (status = 200, description = "The call is durably stored, or the event (one that carries no finished call) acknowledged", body = VendorReply),
                (status = 400, description = "Not a valid body of this vendor, or no agent found; nothing stored", body = crate::error::ErrorBody),
                (status = 401, description = "Missing or unknown key, or a signature that does not match the saved secret", body = crate::error::ErrorBody),
                (status = 409, description = "The call id was already received with different content", body = crate::error::ErrorBody),
                (status = 413, description = "Body over the limit", body = crate::error::ErrorBody),
                (status = 415, description = "Content-Type is not application/json", body = crate::error::ErrorBody)))]
        pub async fn $cekura_fn(
            State(state): State<AppState>,
            ApiQuery(query): ApiQuery<VendorQuery>,
            headers: HeaderMap,
            body: Body,
        ) -> Result<Json<VendorReply>, ApiError> {
            let project = project_for_key(&state, webhook_key(&headers)?).await?;
            let route = $cekura_path;
            receive(&state, &project, $vendor, route, &headers, body, query.agent_id, false).await
        }

        #[doc = $project_doc]
        #[utoipa::path(post, path = $project_path, tag = "webhook", params(
                ("project_id" = i64, Path, description = "The project's id"), VendorQuery),
            request_body(content = Object, content_type = "application/json", description = "The vendor's webhook body, as the vendor sends it"),
            responses(
                (status = 200, description = "The call is durably stored, or the event (one that carries no finished call) acknowledged", body = VendorReply),
                (status = 400, description = "Not a valid body of this vendor, or no agent found; nothing stored", body = crate::error::ErrorBody),
                (status = 401, description = "No secret saved for this vendor, or a missing or wrong signature", body = crate::error::ErrorBody),
                (status = 404, description = "No such project", body = crate::error::ErrorBody),
                (status = 409, description = "The call id was already received with different content", body = crate::error::ErrorBody),
                (status = 413, description = "Body over the limit", body = crate::error::ErrorBody),
                (status = 415, description = "Content-Type is not application/json", body = crate::error::ErrorBody)))]
        pub async fn $project_fn(
            State(state): State<AppState>,
            ApiPath(project_id): ApiPath<String>,
            ApiQuery(query): ApiQuery<VendorQuery>,
            headers: HeaderMap,
            body: Body,
        ) -> Result<Json<VendorReply>, ApiError> {
            let project = project_at(&state, &project_id).await?;
            let route = format!("/webhooks/{}/{}", $vendor.as_str(), project.id);
            receive(&state, &project, $vendor, &route, &headers, body, query.agent_id, true).await
        }
    };
}

vendor_routes!(
    Vendor::Vapi,
    "Receives Vapi's server messages on Cekura's path; the project is the key's. Only `end-of-call-report` is stored. With a Vapi secret saved, `X-Vapi-Secret` (or `Authorization: Bearer`) must match it too.",
    vapi_cekura_path,
    "/observability/v1/vapi/observe/",
    "Receives Vapi's server messages on the project's own URL: `X-Vapi-Secret` (or `Authorization: Bearer`) must match the saved Vapi secret. Only `end-of-call-report` is stored.",
    vapi_project_path,
    "/webhooks/vapi/{project_id}"
);
vendor_routes!(
    Vendor::Retell,
    "Receives Retell's call webhooks on Cekura's path; the project is the key's. `call_ended` and `call_analyzed` make one call, the analysis added in either order. With a Retell API key saved, `X-Retell-Signature` must match it too.",
    retell_cekura_path,
    "/observability/v1/retell/observe/",
    "Receives Retell's call webhooks on the project's own URL: `X-Retell-Signature` must match the saved Retell API key. `call_ended` and `call_analyzed` make one call.",
    retell_project_path,
    "/webhooks/retell/{project_id}"
);
vendor_routes!(
    Vendor::ElevenLabs,
    "Receives ElevenLabs' post-call webhooks on Cekura's path; the project is the key's. `post_call_transcription` is stored. With a webhook secret saved, `ElevenLabs-Signature` must match it too (made within 30 minutes).",
    elevenlabs_cekura_path,
    "/observability/v1/elevenlabs/observe/",
    "Receives ElevenLabs' post-call webhooks on the project's own URL: `ElevenLabs-Signature` must match the saved webhook secret and be made within 30 minutes.",
    elevenlabs_project_path,
    "/webhooks/elevenlabs/{project_id}"
);

/// The project a per-project URL names, within its rate limit.
async fn project_at(state: &AppState, project_id: &str) -> Result<Project, ApiError> {
    let missing = || ApiError::not_found(format!("no project with id {project_id:?}"));
    let id = parse_id(project_id).ok_or_else(missing)?;
    let project = state.app.store.project(id).await?.ok_or_else(missing)?;
    state
        .rate_limiter
        .check(project.id)
        .map_err(ApiError::rate_limited)?;
    Ok(project)
}

#[allow(clippy::too_many_arguments)]
async fn receive(
    state: &AppState,
    project: &Project,
    vendor: Vendor,
    route: &str,
    headers: &HeaderMap,
    body: Body,
    agent_id: Option<i64>,
    signature_required: bool,
) -> Result<Json<VendorReply>, ApiError> {
    let delivery = Delivery {
        project,
        route,
        received_at: state.app.now(),
        answer: vendor_answer,
        format: vendor.format(),
    };
    let limit = state.settings.max_body_bytes;
    let (bytes, _reserved) =
        read_body(state, &delivery, headers, body, limit, Compression::Refused).await?;
    // Only the headers a vendor proves itself with are passed on.
    let signed: Vec<(&'static str, String)> = [
        signature::VAPI_HEADER,
        "authorization",
        signature::RETELL_HEADER,
        signature::ELEVENLABS_HEADER,
    ]
    .into_iter()
    .filter_map(|name| {
        let value = headers.get(name)?;
        Some((name, String::from_utf8_lossy(value.as_bytes()).into_owned()))
    })
    .collect();
    let signed = Signed {
        headers: &signed,
        required: signature_required,
    };
    let outcome = ingest::receive_vendor(
        &state.app,
        &delivery,
        vendor,
        bytes,
        is_json(headers),
        signed,
        agent_id,
    )
    .await?;
    Ok(Json(match outcome {
        VendorOutcome::Stored(receipt) => VendorReply::Stored(receipt),
        VendorOutcome::Ignored { event, reason } => VendorReply::Ignored(IgnoredEvent {
            ignored: true,
            event,
            reason,
        }),
    }))
}
