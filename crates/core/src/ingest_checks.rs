//! The checks of a webhook batch that need what is stored: does the agent exist, does the named
//! run exist and belong to it, did a resent id come with other content. The store looks the
//! facts up inside its transaction; the wording and paths are decided here.

use crate::{FieldError, NewCall};

/// The webhook's `agent_id` names no agent of the key's project.
pub fn unknown_agent(agent_id: i64) -> FieldError {
    FieldError::new(
        "agent_id",
        format!("no agent with id {agent_id} in this project (`callgrade agent list --project …` shows the ids)"),
    )
}

/// Checks a call's `run_id` against the run's agent (`None`: no such run in the project); as
/// Cekura does, one bad run rejects the whole batch. Gives the agent the call belongs to.
pub fn check_named_run(
    call: &NewCall,
    run_id: i64,
    run_agent: Option<i64>,
    batch_agent: Option<i64>,
) -> Result<i64, FieldError> {
    let path = format!("calls[{}].run_id", call.index);
    match (run_agent, batch_agent) {
        (None, _) => Err(FieldError::new(
            path,
            format!("Run IDs not found or deleted: [{run_id}]"),
        )),
        (Some(run_agent), Some(agent_id)) if run_agent != agent_id => Err(FieldError::new(
            path,
            format!("run {run_id} belongs to agent {run_agent}, not to agent_id {agent_id}"),
        )),
        (Some(run_agent), _) => Ok(run_agent),
    }
}

/// A resent call whose content differs from what was stored under its id.
pub fn content_conflict(call: &NewCall) -> FieldError {
    FieldError::new(
        format!("calls[{}].id", call.index),
        format!(
            "{:?} was already received with different content; send a new id, or resend it unchanged",
            call.external_id
        ),
    )
}
