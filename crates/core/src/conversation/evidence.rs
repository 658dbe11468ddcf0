//! What the metrics count, event by event, for showing it: the dashboard's timeline draws these,
//! so that the picture and the numbers agree.

use super::*;

/// An overlap an interruption metric counts: at least `min_overlap_seconds`, not a backchannel.
#[derive(Debug, Clone, PartialEq)]
pub struct Interruption {
    /// Message indices.
    pub interrupted: usize,
    pub interrupter: usize,
    /// When both speak, in seconds from the call's start.
    pub start: f64,
    pub seconds: f64,
}

/// A sample of `agent_latency`: the gap from a user message's end to the next agent message's
/// start, when it is not an overlap.
#[derive(Debug, Clone, PartialEq)]
pub struct Latency {
    pub user_message: usize,
    pub agent_message: usize,
    pub seconds: f64,
}

/// A function call as `tool_call_success` sees it: paired with its result, failed or not.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub message: usize,
    pub result: Option<usize>,
    /// `data.name`, `data.function.name` or the content.
    pub name: Option<String>,
    pub ok: bool,
    /// Why it failed: no result, or the error its result reports.
    pub reason: Option<String>,
}

/// The events of one conversation that the builtin metrics count.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Evidence {
    /// Both directions, in the interrupters' order.
    pub interruptions: Vec<Interruption>,
    pub latencies: Vec<Latency>,
    /// Stretches of at least `silence_threshold_seconds` in which nobody speaks, as (start, end).
    pub silences: Vec<(f64, f64)>,
    pub tool_calls: Vec<ToolCall>,
}

/// The events the interruption, latency, silence and tool-call metrics count in `conv`.
pub fn evidence(conv: &Conversation, cfg: &BuiltinConfig) -> Evidence {
    let p = Prepared::new(conv);
    let mut interruptions: Vec<Interruption> = [true, false]
        .into_iter()
        .flat_map(|by_bot| interruptions(&p, cfg, by_bot).events)
        .filter_map(|(interrupted, interrupter, seconds)| {
            // The overlap starts with the interrupter, who starts later.
            let start = p.rows.iter().find(|r| r.idx == interrupter)?.start?;
            Some(Interruption {
                interrupted,
                interrupter,
                start,
                seconds,
            })
        })
        .collect();
    interruptions.sort_by_key(|i| i.interrupter);
    let latencies = handoffs_to_agent(&p)
        .filter_map(|(user, agent)| {
            let seconds = agent.start? - user.end?;
            (seconds >= 0.0).then_some(Latency {
                user_message: user.idx,
                agent_message: agent.idx,
                seconds,
            })
        })
        .collect();
    let silences = match p.duration {
        Ok(d) if p.bot.timed + p.user.timed > 0 => silent_stretches(&p, d)
            .into_iter()
            .filter(|(s, e)| e - s > EPS && e - s >= cfg.silence_threshold_seconds - EPS)
            .collect(),
        _ => Vec::new(),
    };
    let tool_calls = pair_tool_calls(conv.messages)
        .0
        .into_iter()
        .map(|(message, result)| {
            let (ok, reason) = tool_outcome(conv.messages, result);
            ToolCall {
                message,
                result,
                name: tool_name(&conv.messages[message]).map(str::to_owned),
                ok,
                reason,
            }
        })
        .collect();
    Evidence {
        interruptions,
        latencies,
        silences,
        tool_calls,
    }
}
