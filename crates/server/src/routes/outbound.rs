//! Outbound webhooks: a project's endpoints, their secrets, and the deliveries sent to them
//! with every attempt; replays.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use callgrade_app::webhooks::{self, WithSecret};
use callgrade_core::outbound::{EventType, ENDPOINT_DESCRIPTION_MAX_CHARS, ENDPOINT_URL_MAX_CHARS};
use callgrade_store::{
    OutboundDelivery, OutboundDeliveryDetail, OutboundFilter, OutboundStatus, Page, WebhookEndpoint,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{parse_id, ApiJson, ApiPath, ApiQuery, PageLimit};
use crate::auth::ApiProject;
use crate::{ApiError, AppState};

/// An endpoint as created.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointBody {
    /// Where events are posted: http(s), no credentials, no fragment. Its host must resolve to
    /// a public address unless the server allows its network (`--allow-webhooks-to`).
    #[schema(schema_with = endpoint_url)]
    url: String,
    /// The event types to send.
    #[schema(schema_with = event_types)]
    events: Vec<String>,
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = description)]
    description: Option<String>,
    /// Also send the signing secret in `X-CEKURA-SECRET`, for consumers written for Cekura's
    /// webhooks. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cekura_secret_header: Option<bool>,
}

/// Changes to an endpoint; a field left out (or null) is kept. Enabling a disabled endpoint
/// clears why it was disabled.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointPatchBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = nullable_endpoint_url)]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = nullable_event_types)]
    events: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = description)]
    description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cekura_secret_header: Option<bool>,
}

fn endpoint_url() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(ENDPOINT_URL_MAX_CHARS))
        .pattern(Some(
            r"^https?://[^\s/?#@\x00-\x1f\x7f]+([/?][^\s#\x00-\x1f\x7f]*)?$",
        ))
        .build()
}

/// Null, or what `inner` describes (a PATCH keeps a field sent as null).
fn or_null(inner: impl Into<utoipa::openapi::schema::Schema>) -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(inner.into())
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}

fn nullable_endpoint_url() -> utoipa::openapi::schema::Schema {
    or_null(endpoint_url())
}

fn nullable_event_types() -> utoipa::openapi::schema::Schema {
    or_null(event_types())
}

fn event_types() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    let names = EventType::ALL
        .into_iter()
        .filter(|t| *t != EventType::Test)
        .map(EventType::as_str);
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(names)),
        )
        .min_items(Some(1))
        .build()
}

fn description() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .max_length(Some(ENDPOINT_DESCRIPTION_MAX_CHARS))
        .build()
}

/// An endpoint with its signing secret, shown this once.
#[derive(Serialize, ToSchema)]
pub struct EndpointWithSecret {
    #[serde(flatten)]
    endpoint: WebhookEndpoint,
    /// `whsec_…`: verify `webhook-signature` with it (Standard Webhooks).
    secret: String,
}

impl From<WithSecret> for EndpointWithSecret {
    fn from(w: WithSecret) -> Self {
        Self {
            endpoint: w.endpoint,
            secret: w.secret,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct EndpointList {
    data: Vec<WebhookEndpoint>,
}

fn endpoint_id(id: &str) -> Result<i64, ApiError> {
    parse_id(id).ok_or_else(|| {
        ApiError::not_found(format!("webhook endpoint {id:?} not found in this project"))
    })
}

/// Creates an endpoint; the answer carries its signing secret, shown this once.
#[utoipa::path(post, path = "/api/v1/webhook-endpoints", tag = "webhooks",
    request_body = EndpointBody,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = EndpointWithSecret),
              (status = 400, body = crate::error::ErrorBody)))]
pub async fn create_endpoint(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiJson(body): ApiJson<EndpointBody>,
) -> Result<(StatusCode, Json<EndpointWithSecret>), ApiError> {
    let body = serde_json::to_value(&body).map_err(|_| callgrade_app::AppError::Internal)?;
    let created = webhooks::create_endpoint(&state.app, project.id, &body).await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// The project's endpoints (without their secrets).
#[utoipa::path(get, path = "/api/v1/webhook-endpoints", tag = "webhooks",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = EndpointList)))]
pub async fn list_endpoints(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
) -> Result<Json<EndpointList>, ApiError> {
    let data = state.app.store.list_endpoints(project.id).await?;
    Ok(Json(EndpointList { data }))
}

/// One endpoint.
#[utoipa::path(get, path = "/api/v1/webhook-endpoints/{id}", tag = "webhooks",
    params(("id" = i64, Path, description = "The endpoint id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = WebhookEndpoint), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_endpoint(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<WebhookEndpoint>, ApiError> {
    let id = endpoint_id(&id)?;
    Ok(Json(webhooks::endpoint(&state.app, project.id, id).await?))
}

/// Changes some of an endpoint's fields.
#[utoipa::path(patch, path = "/api/v1/webhook-endpoints/{id}", tag = "webhooks",
    request_body = EndpointPatchBody,
    params(("id" = i64, Path, description = "The endpoint id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = WebhookEndpoint), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn patch_endpoint(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<EndpointPatchBody>,
) -> Result<Json<WebhookEndpoint>, ApiError> {
    let id = endpoint_id(&id)?;
    let body = serde_json::to_value(&body).map_err(|_| callgrade_app::AppError::Internal)?;
    Ok(Json(
        webhooks::update_endpoint(&state.app, project.id, id, &body).await?,
    ))
}

/// Deletes an endpoint with its deliveries and their attempts.
#[utoipa::path(delete, path = "/api/v1/webhook-endpoints/{id}", tag = "webhooks",
    params(("id" = i64, Path, description = "The endpoint id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = endpoint_id(&id)?;
    webhooks::delete_endpoint(&state.app, project.id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How long the old secret keeps signing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RotateQuery {
    /// Minutes during which the old secret signs beside the new one (default 1440, a day; 0
    /// ends it at once).
    #[param(minimum = 0, maximum = 10080)]
    overlap_minutes: Option<i64>,
}

/// A new signing secret, shown this once; the old one keeps signing for the overlap.
#[utoipa::path(post, path = "/api/v1/webhook-endpoints/{id}/rotate-secret", tag = "webhooks",
    params(("id" = i64, Path, description = "The endpoint id"), RotateQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = EndpointWithSecret), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<RotateQuery>,
) -> Result<Json<EndpointWithSecret>, ApiError> {
    let id = endpoint_id(&id)?;
    let rotated = webhooks::rotate_secret(&state.app, project.id, id, q.overlap_minutes).await?;
    Ok(Json(rotated.into()))
}

/// Sends a `test` event to the endpoint now, whatever it subscribes to.
#[utoipa::path(post, path = "/api/v1/webhook-endpoints/{id}/test", tag = "webhooks",
    params(("id" = i64, Path, description = "The endpoint id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 202, description = "Queued; follow it in its deliveries", body = OutboundDelivery),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "The endpoint is disabled", body = crate::error::ErrorBody)))]
pub async fn send_test(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<OutboundDelivery>), ApiError> {
    let id = endpoint_id(&id)?;
    let delivery = webhooks::send_test(&state.app, project.id, id).await?;
    Ok((StatusCode::ACCEPTED, Json(delivery)))
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusParam {
    Pending,
    Sending,
    Delivered,
    Failed,
}

impl From<StatusParam> for OutboundStatus {
    fn from(s: StatusParam) -> Self {
        match s {
            StatusParam::Pending => Self::Pending,
            StatusParam::Sending => Self::Sending,
            StatusParam::Delivered => Self::Delivered,
            StatusParam::Failed => Self::Failed,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OutboundQuery {
    /// Only this endpoint's deliveries.
    endpoint_id: Option<i64>,
    #[param(inline)]
    status: Option<StatusParam>,
    #[param(inline)]
    limit: Option<PageLimit>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Outbound deliveries, newest first: one per event and endpoint, with where it stands.
#[utoipa::path(get, path = "/api/v1/webhook-deliveries", tag = "webhooks", params(OutboundQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Page<OutboundDelivery>),
              (status = 400, body = crate::error::ErrorBody),
              (status = 404, description = "No such endpoint", body = crate::error::ErrorBody)))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiQuery(q): ApiQuery<OutboundQuery>,
) -> Result<Json<Page<OutboundDelivery>>, ApiError> {
    let filter = OutboundFilter {
        endpoint_id: q.endpoint_id,
        status: q.status.map(Into::into),
        cursor: q.cursor,
        limit: PageLimit::or_default(q.limit),
    };
    Ok(Json(
        webhooks::deliveries(&state.app, project.id, &filter).await?,
    ))
}

fn delivery_id(id: &str) -> Result<i64, ApiError> {
    parse_id(id).ok_or_else(|| {
        ApiError::not_found(format!(
            "outbound delivery {id:?} not found in this project"
        ))
    })
}

/// One delivery: the body it sends and every attempt (request headers without the secret,
/// status, the start of the answer, duration, error).
#[utoipa::path(get, path = "/api/v1/webhook-deliveries/{id}", tag = "webhooks",
    params(("id" = i64, Path, description = "The delivery id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = OutboundDeliveryDetail),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_delivery(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<OutboundDeliveryDetail>, ApiError> {
    let id = delivery_id(&id)?;
    Ok(Json(webhooks::delivery(&state.app, project.id, id).await?))
}

/// Sends a delivered or failed delivery again (the same `webhook-id`), from the start of the
/// retry schedule.
#[utoipa::path(post, path = "/api/v1/webhook-deliveries/{id}/replay", tag = "webhooks",
    params(("id" = i64, Path, description = "The delivery id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 202, body = OutboundDelivery), (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "It is still pending", body = crate::error::ErrorBody)))]
pub async fn replay(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<OutboundDelivery>), ApiError> {
    let id = delivery_id(&id)?;
    let delivery = webhooks::replay(&state.app, project.id, id).await?;
    Ok((StatusCode::ACCEPTED, Json(delivery)))
}

/// Which failed deliveries to replay.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayFailedBody {
    /// Failed deliveries created at or after this time.
    since: DateTime<Utc>,
    /// Only this endpoint's.
    #[serde(default)]
    endpoint_id: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct Replayed {
    replayed: u64,
}

/// Replays every failed delivery since a time (of one endpoint, when given).
#[utoipa::path(post, path = "/api/v1/webhook-deliveries/replay-failed", tag = "webhooks",
    request_body = ReplayFailedBody,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 202, body = Replayed), (status = 400, body = crate::error::ErrorBody),
              (status = 404, description = "No such endpoint", body = crate::error::ErrorBody)))]
pub async fn replay_failed(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiJson(body): ApiJson<ReplayFailedBody>,
) -> Result<(StatusCode, Json<Replayed>), ApiError> {
    let replayed =
        webhooks::replay_failed(&state.app, project.id, body.endpoint_id, body.since).await?;
    Ok((StatusCode::ACCEPTED, Json(Replayed { replayed })))
}
