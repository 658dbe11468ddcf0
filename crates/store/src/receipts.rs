//! What an ingest request answers: each call's receipt and the request's, assembled the same
//! way by both backends.

use callgrade_core::{CallFacts, Decision, NewCall, PhoneNumber};

use crate::model::*;

/// What matching looks at in a received call.
pub(crate) fn call_facts(call: &NewCall) -> CallFacts<'_> {
    CallFacts {
        started_at: call.started_at,
        ended_at: call.ended_at,
        to_phone_number: call.to_phone_number.as_ref().map(PhoneNumber::as_str),
        from_phone_number: call.from_phone_number.as_ref().map(PhoneNumber::as_str),
    }
}

/// The receipt of a call stored by this request.
pub(crate) fn created_receipt(
    call: &NewCall,
    call_id: String,
    agent_id: Option<i64>,
    decision: Decision,
) -> CallReceipt {
    CallReceipt {
        external_id: call.external_id.clone(),
        call_id,
        status: CallStatus::Created,
        agent_id,
        message_times: call.message_times,
        warnings: call.warnings.clone(),
        run_id: decision.run_id,
        matched_by: decision.matched_by,
        match_outcome: decision.outcome,
        candidates: decision.candidates,
        reason: decision.reason,
        redactions: call.redactions.clone(),
    }
}

pub(crate) fn receipt(
    delivery: &NewDelivery,
    delivery_id: i64,
    calls: Vec<CallReceipt>,
) -> Receipt {
    let count = |status| calls.iter().filter(|r| r.status == status).count();
    let (created, updated) = (count(CallStatus::Created), count(CallStatus::Updated));
    Receipt {
        accepted: calls.len(),
        created,
        updated,
        duplicates: calls.len() - created - updated,
        format: delivery.format.as_str(),
        delivery_id,
        calls,
    }
}
