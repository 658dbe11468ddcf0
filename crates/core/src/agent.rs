//! An agent under test or observation, and the test scenarios written for it.

use chrono::{DateTime, Utc};
use serde::Serialize;
#[cfg(feature = "openapi")]
use utoipa::ToSchema;

use crate::Direction;

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Agent {
    /// The `agent_id` that senders put in webhook payloads.
    pub id: i64,
    pub project_id: i64,
    pub name: String,
    pub phone_number: Option<String>,
    pub description: Option<String>,
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
    pub created_at: DateTime<Utc>,
}
