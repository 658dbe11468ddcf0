//! Agents, with their connectors, and the project's simulator endpoint.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use callgrade_app::admin::{self, AgentDraft, AgentPatch, ConnectorChange};
use callgrade_app::simulation;
use callgrade_core::{Agent, SimulatorSettings};
use callgrade_store::SimulatorSettingsPatch;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{parse_id, ApiJson, ApiPath};
use crate::auth::ApiProject;
use crate::{ApiError, AppState};

/// An agent as submitted.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentBody {
    #[schema(schema_with = callgrade_core::name_schema)]
    name: String,
    #[schema(schema_with = phone_or_blank)]
    phone_number: Option<String>,
    /// What the agent is for; its prompt, for judges and `openai_chat`.
    description: Option<String>,
    /// How callgrade calls the agent: `{"kind": "http_turn", "url", "headers"}` or
    /// `{"kind": "openai_chat", "base_url", "model", "api_key" | "api_key_env",
    /// "system_prompt", "tools"}`; null for none.
    #[schema(schema_with = new_connector)]
    connector: Option<Value>,
    /// The ids vendors know the agent by (a Vapi assistant id, a Retell or ElevenLabs agent
    /// id): a vendor's webhook that names one is this agent's. Unique in the project.
    #[serde(default, deserialize_with = "not_null")]
    #[schema(schema_with = external_ids)]
    external_ids: Option<Vec<String>>,
}

fn external_ids() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(callgrade_core::CALL_ID_MAX_CHARS))
                .pattern(Some(r"\S")),
        )
        .max_items(Some(admin::MAX_EXTERNAL_IDS))
        .unique_items(true)
        .build()
}

/// A phone number, or blank (or null) for none, as forms send it.
fn phone_or_blank() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .pattern(Some(r"^\s*(?:\+[0-9]{1,14})?\s*$"))
        .description(Some(
            "`+` then digits, at most 15 characters; blank or null for none",
        ))
        .build()
}

/// A connector or null; a replacement may keep a stored header with `"***"`.
fn nullable_connector(keeps: bool) -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(callgrade_core::connector_schema(keeps))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}

fn new_connector() -> utoipa::openapi::schema::Schema {
    nullable_connector(false)
}

fn replaced_connector() -> utoipa::openapi::schema::Schema {
    nullable_connector(true)
}

/// Changes to an agent; a field left out is kept, `null` clears it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentPatchBody {
    /// A new name (it cannot be cleared).
    #[serde(default, deserialize_with = "not_null")]
    #[schema(schema_with = callgrade_core::name_schema)]
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = phone_or_blank)]
    phone_number: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    /// A new connector; `"***"` for a secret keeps its stored value; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = replaced_connector)]
    connector: Option<Option<Value>>,
    /// The vendor ids, replaced whole (`[]` for none).
    #[serde(default, deserialize_with = "not_null")]
    #[schema(schema_with = external_ids)]
    external_ids: Option<Vec<String>>,
}

/// A field that may be left out but not sent as `null`.
fn not_null<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Tells a field sent as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn connector_change(value: Option<&Option<Value>>) -> ConnectorChange<'_> {
    match value {
        None => ConnectorChange::Keep,
        Some(None) | Some(Some(Value::Null)) => ConnectorChange::Remove,
        Some(Some(v)) => ConnectorChange::Set(v),
    }
}

#[derive(Serialize, ToSchema)]
pub struct AgentList {
    data: Vec<Agent>,
}

/// Creates an agent; its id is the `agent_id` senders put in webhook payloads.
#[utoipa::path(post, path = "/api/v1/agents", tag = "agents", request_body = AgentBody,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = Agent), (status = 400, body = crate::error::ErrorBody),
              (status = 409, description = "An external id is another agent's", body = crate::error::ErrorBody)))]
pub async fn create_agent(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiJson(body): ApiJson<AgentBody>,
) -> Result<(StatusCode, Json<Agent>), ApiError> {
    let connector = match &body.connector {
        None | Some(Value::Null) => ConnectorChange::Keep,
        Some(v) => ConnectorChange::Set(v),
    };
    let draft = AgentDraft {
        name: &body.name,
        phone_number: body.phone_number.as_deref(),
        description: body.description.as_deref(),
        connector,
        external_ids: body.external_ids.as_deref(),
    };
    let agent = admin::create_agent(&state.app, project.id, draft).await?;
    Ok((StatusCode::CREATED, Json(agent)))
}

/// Lists the project's agents.
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = AgentList)))]
pub async fn list_agents(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
) -> Result<Json<AgentList>, ApiError> {
    let data = state.app.store.list_agents(project.id).await?;
    Ok(Json(AgentList { data }))
}

/// One agent.
#[utoipa::path(get, path = "/api/v1/agents/{id}", tag = "agents",
    params(("id" = i64, Path, description = "The agent id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Agent), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_agent(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Agent>, ApiError> {
    let missing = || ApiError::not_found(format!("no agent {id:?} in this project"));
    let numeric = parse_id(&id).ok_or_else(missing)?;
    let (agent, _) = state
        .app
        .store
        .agent(project.id, numeric)
        .await?
        .ok_or_else(missing)?;
    Ok(Json(agent))
}

/// Changes some of an agent's fields; those left out are kept.
#[utoipa::path(patch, path = "/api/v1/agents/{id}", tag = "agents", request_body = AgentPatchBody,
    params(("id" = i64, Path, description = "The agent id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Agent), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "An external id is another agent's", body = crate::error::ErrorBody)))]
pub async fn patch_agent(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AgentPatchBody>,
) -> Result<Json<Agent>, ApiError> {
    let numeric = parse_id(&id)
        .ok_or_else(|| ApiError::not_found(format!("no agent {id:?} in this project")))?;
    let patch = AgentPatch {
        name: body.name.as_deref(),
        phone_number: body.phone_number.as_ref().map(Option::as_deref),
        description: body.description.as_ref().map(Option::as_deref),
        connector: connector_change(body.connector.as_ref()),
        external_ids: body.external_ids.as_deref(),
    };
    Ok(Json(
        admin::patch_agent(&state.app, project.id, numeric, patch).await?,
    ))
}

/// The project's simulator endpoint: the LLM that plays the caller (the key is never shown).
#[utoipa::path(get, path = "/api/v1/simulator", tag = "agents",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = SimulatorSettings)))]
pub async fn get_simulator(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
) -> Result<Json<SimulatorSettings>, ApiError> {
    Ok(Json(
        simulation::simulator_settings(&state.app, project.id).await?,
    ))
}

/// Changes the simulator endpoint: an OpenAI-compatible base URL (…/v1), a model, a key (write
/// only), the project's simulated runs in flight and each run's token budget. A field left
/// out is kept; `""` clears a text field.
#[utoipa::path(put, path = "/api/v1/simulator", tag = "agents",
    request_body = SimulatorSettingsPatch,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = SimulatorSettings), (status = 400, body = crate::error::ErrorBody)))]
pub async fn put_simulator(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiJson(patch): ApiJson<SimulatorSettingsPatch>,
) -> Result<Json<SimulatorSettings>, ApiError> {
    Ok(Json(
        simulation::configure_simulator(&state.app, project.id, &patch).await?,
    ))
}
