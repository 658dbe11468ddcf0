//! An agent under test or observation, and the test scenarios written for it.

use chrono::{DateTime, Utc};
use serde::Serialize;
#[cfg(feature = "openapi")]
use utoipa::ToSchema;

use crate::{ConnectorView, Direction, Persona, StopRules, ToolMock};

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Agent {
    /// The `agent_id` that senders put in webhook payloads.
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub phone_number: Option<String>,
    pub description: Option<String>,
    /// How callgrade reaches the agent to simulate callers; null when something else calls it.
    pub connector: Option<ConnectorView>,
    /// The ids vendors know it by (a Vapi assistant id, a Retell or ElevenLabs agent id): a
    /// vendor's call that names one of them is this agent's.
    pub external_ids: Vec<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Scenario {
    pub id: i64,
    pub project_id: i64,
    pub agent_id: i64,
    pub name: String,
    /// What the simulated caller does.
    pub instructions: String,
    /// What a successful call achieves, for judges.
    pub expected_outcome_prompt: String,
    pub tags: Vec<String>,
    pub direction: Direction,
    /// The tester's number: the call's from_phone_number (inbound) or to_phone_number (outbound).
    pub tester_phone_number: Option<String>,
    /// Who the simulated caller is.
    pub persona: Option<Persona>,
    /// What the simulated caller says first (else the caller's LLM opens).
    pub first_message: Option<String>,
    /// What the agent's tools answer in this scenario.
    pub tool_mocks: Vec<ToolMock>,
    /// What a tool call no mock matches answers (default: an error object naming the tool).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
    pub unmatched_tool_result: Option<serde_json::Value>,
    pub stop_rules: StopRules,
    /// Runs and is reported, but does not gate a result.
    pub quarantined: bool,
    pub created_at: DateTime<Utc>,
}
