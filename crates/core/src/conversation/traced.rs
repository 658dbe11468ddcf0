//! The trace metrics: each stage of the agent's turns as its own tracing measured it
//! ([`TraceBreakdown`], from the spans that share the call's `trace_id`), where the transcript
//! and the recording can only see the sum. Results are seconds like every other builtin.

use super::*;
use crate::{TraceBreakdown, TurnMeasure, TurnTiming};

pub(super) const NO_TRACE: &str = "the call has no trace (no spans with its trace_id)";

pub(super) fn not_applicable() -> BuiltinOutcome {
    BuiltinOutcome {
        explanation: format!("Not applicable: {NO_TRACE}."),
        not_applicable: true,
        ..BuiltinOutcome::not_computable(NO_TRACE.to_owned(), Vec::new())
    }
}

/// A stage of a turn.
#[derive(Debug, Clone, Copy)]
pub(super) enum Stage {
    Stt,
    LlmTtft,
    TtsTtfb,
    Tool,
}

impl Stage {
    fn of(self, turn: &TurnTiming) -> Option<&TurnMeasure> {
        match self {
            Self::Stt => turn.stt.as_ref(),
            Self::LlmTtft => turn.llm_ttft.as_ref(),
            Self::TtsTtfb => turn.tts_ttfb.as_ref(),
            Self::Tool => turn.tool.as_ref(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Stt => "speech to text",
            Self::LlmTtft => "the LLM's time to first token",
            Self::TtsTtfb => "text to speech's time to first byte",
            Self::Tool => "time in tool calls",
        }
    }
}

/// The median over the turns that have the stage, with every turn's figure in the details.
pub(super) fn stage(t: &TraceBreakdown, stage: Stage) -> BuiltinOutcome {
    let samples: Vec<(usize, &TurnMeasure)> = t
        .turns
        .iter()
        .filter_map(|turn| Some((turn.index, stage.of(turn)?)))
        .collect();
    if samples.is_empty() {
        return BuiltinOutcome::not_computable(
            format!(
                "none of the trace's {} turn{} has a span for {}",
                t.turns.len(),
                plural(t.turns.len()),
                stage.describe()
            ),
            Vec::new(),
        );
    }
    let mut secs: Vec<f64> = samples.iter().map(|(_, m)| m.ms / 1000.0).collect();
    secs.sort_unstable_by(f64::total_cmp);
    let p50 = percentile(&secs, 50.0);
    let from_duration = samples
        .iter()
        .filter(|(_, m)| m.source == "duration")
        .count();
    let details = json!({
        "trace_id": t.trace_id,
        "turns": t.turns.len(),
        "count": secs.len(),
        "p50": r6(p50),
        "p90": r6(percentile(&secs, 90.0)),
        "max": r6(secs[secs.len() - 1]),
        "avg": r6(secs.iter().sum::<f64>() / secs.len() as f64),
        "samples": samples.iter().map(|(turn, m)| json!({
            "turn": turn,
            "seconds": r6(m.ms / 1000.0),
            "source": m.source,
            "span_id": m.span_id,
        })).collect::<Vec<_>>(),
    });
    let warnings = match (stage, from_duration) {
        (Stage::Tool, _) | (_, 0) => Vec::new(),
        (_, n) => vec![format!(
            "{n} of {} figure{} {} span durations: the spans carry no {} attribute",
            secs.len(),
            plural(secs.len()),
            if n == 1 { "is a" } else { "are" },
            stage.describe()
        )],
    };
    BuiltinOutcome::number(
        p50,
        format!(
            "In the trace, {} takes {p50:.3} s at the median over {} turn{}.",
            stage.describe(),
            secs.len(),
            plural(secs.len())
        ),
        details,
        warnings,
    )
}
