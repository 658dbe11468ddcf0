//! A trace's latency, turn by turn. Voice frameworks trace a conversation as a root span with
//! one span per turn and, inside it, one per stage: Pipecat `conversation` → `turn` → `stt`,
//! `llm`, `tts`; LiveKit `agent_session` → `user_turn` (the caller's speech) and `agent_turn`
//! → `llm_node`/`llm_request`, `tts_node`/`tts_request`, `function_tool`; Cekura's generic shape
//! `conversation` → `stt`, `llm`, `tts`, `s2s`, `tool_call`. Each stage's figure is read from
//! the attribute its framework records it in, and is the span's duration only when there is
//! none (the measure says which it was). Spans of no known kind are counted, never dropped.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::TraceSpan;

/// What a span is, from its name (or, failing that, its `gen_ai.operation.name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SpanRole {
    Conversation,
    /// An agent's turn (Pipecat's `turn`, LiveKit's `agent_turn`).
    Turn,
    /// The caller's turn (LiveKit's `user_turn`), which leads to the next agent turn.
    UserTurn,
    Stt,
    Llm,
    Tts,
    /// A speech-to-speech (realtime) model.
    S2s,
    Tool,
    Other,
}

impl SpanRole {
    pub fn of(span: &TraceSpan) -> Self {
        let name = span.name.to_ascii_lowercase();
        let is = |stem: &str| name == stem || name.starts_with(&format!("{stem}_"));
        match name.as_str() {
            "conversation" | "agent_session" => return Self::Conversation,
            "turn" | "agent_turn" => return Self::Turn,
            "user_turn" => return Self::UserTurn,
            "tool_call" | "function_tool" | "function_call" => return Self::Tool,
            _ => {}
        }
        if is("stt") {
            return Self::Stt;
        }
        if is("llm") {
            return Self::Llm;
        }
        if is("tts") {
            return Self::Tts;
        }
        if is("s2s") {
            return Self::S2s;
        }
        match span
            .attributes
            .get("gen_ai.operation.name")
            .and_then(Value::as_str)
        {
            Some("chat" | "text_completion" | "generate_content") => Self::Llm,
            Some("stt") => Self::Stt,
            Some("tts") => Self::Tts,
            Some("execute_tool") => Self::Tool,
            _ => Self::Other,
        }
    }

    /// A stage of a turn, whose time the breakdown reports.
    fn is_stage(self) -> bool {
        matches!(
            self,
            Self::Stt | Self::Llm | Self::Tts | Self::S2s | Self::Tool
        )
    }
}

/// One figure of a turn, in milliseconds, and where it was read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TurnMeasure {
    pub ms: f64,
    /// The attribute it came from (`metrics.ttfb`, `lk.response.ttft`, …), or `duration` when
    /// it is the span's length.
    pub source: String,
    /// The span it was read on.
    pub span_id: String,
}

/// One agent turn's latency, by stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TurnTiming {
    /// 1-based, in the order the turns started.
    pub index: usize,
    /// Milliseconds from the trace's first span.
    pub start_ms: f64,
    pub end_ms: f64,
    /// Speech to text.
    pub stt: Option<TurnMeasure>,
    /// The LLM's (or speech-to-speech model's) time to first token.
    pub llm_ttft: Option<TurnMeasure>,
    /// Text to speech's time to first byte.
    pub tts_ttfb: Option<TurnMeasure>,
    /// Time in tool calls, summed.
    pub tool: Option<TurnMeasure>,
    /// The ids of the turn's spans.
    pub spans: Vec<String>,
}

/// A trace's turns and what it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TraceBreakdown {
    pub trace_id: String,
    /// The earliest span's start, nanoseconds since the Unix epoch.
    pub start_unix_nano: i64,
    pub end_unix_nano: i64,
    pub turns: Vec<TurnTiming>,
    pub span_count: usize,
    /// Spans of no kind the breakdown knows, kept and shown as they came.
    pub other_spans: usize,
}

/// The breakdown of one trace's spans; `None` when there are none.
pub fn breakdown(spans: &[TraceSpan]) -> Option<TraceBreakdown> {
    let first = spans.iter().min_by_key(|s| s.start_unix_nano)?;
    let origin = first.start_unix_nano;
    let end = spans
        .iter()
        .map(|s| s.end_unix_nano)
        .max()
        .unwrap_or(origin);
    let roles: Vec<SpanRole> = spans.iter().map(SpanRole::of).collect();
    let groups = group_into_turns(spans, &roles);
    let turns = groups
        .into_iter()
        .enumerate()
        .map(|(i, members)| measure_turn(i + 1, origin, spans, &roles, &members))
        .collect();
    Some(TraceBreakdown {
        trace_id: first.trace_id.clone(),
        start_unix_nano: origin,
        end_unix_nano: end,
        turns,
        span_count: spans.len(),
        other_spans: roles.iter().filter(|r| **r == SpanRole::Other).count(),
    })
}

/// The spans of each turn (indices into `spans`), turns in start order.
fn group_into_turns(spans: &[TraceSpan], roles: &[SpanRole]) -> Vec<Vec<usize>> {
    let by_id: HashMap<&str, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id.as_str(), i))
        .collect();
    // The nearest ancestor (or the span itself) of a role; a cycle or a missing parent ends it.
    let ancestor = |mut i: usize, role: SpanRole| -> Option<usize> {
        for _ in 0..=spans.len() {
            if roles[i] == role {
                return Some(i);
            }
            i = *by_id.get(spans[i].parent_span_id.as_deref()?)?;
        }
        None
    };
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| (spans[i].start_unix_nano, i));
    let anchors: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&i| roles[i] == SpanRole::Turn)
        .collect();

    if anchors.is_empty() {
        // No turn spans: a new turn begins where a stage comes round again (speech to text
        // after the agent answered, or an answer after its speech).
        let mut turns: Vec<Vec<usize>> = Vec::new();
        let mut seen: Vec<SpanRole> = Vec::new();
        for &i in order.iter().filter(|&&i| roles[i].is_stage()) {
            let role = roles[i];
            let again = match role {
                SpanRole::Stt => seen.iter().any(|r| *r != SpanRole::Stt),
                SpanRole::Llm | SpanRole::S2s => seen.contains(&SpanRole::Tts),
                _ => false,
            };
            if turns.is_empty() || again {
                turns.push(Vec::new());
                seen.clear();
            }
            seen.push(role);
            turns.last_mut().expect("pushed").push(i);
        }
        return turns;
    }

    let mut turns: Vec<Vec<usize>> = anchors.iter().map(|&a| vec![a]).collect();
    let slot = |a: usize| anchors.iter().position(|&x| x == a).expect("an anchor");
    for &i in &order {
        if roles[i] == SpanRole::Turn || roles[i] == SpanRole::Conversation {
            continue;
        }
        let turn = if let Some(a) = ancestor(i, SpanRole::Turn) {
            slot(a)
        } else if let Some(u) = ancestor(i, SpanRole::UserTurn) {
            // The caller's turn belongs with the agent's answer to it: the next agent turn.
            let start = spans[u].start_unix_nano;
            anchors
                .iter()
                .position(|&a| spans[a].start_unix_nano >= start)
                .unwrap_or(anchors.len() - 1)
        } else if roles[i].is_stage() {
            // A stage outside any turn goes with the turn under way when it started.
            let start = spans[i].start_unix_nano;
            anchors
                .iter()
                .rposition(|&a| spans[a].start_unix_nano <= start)
                .unwrap_or(0)
        } else {
            continue;
        };
        turns[turn].push(i);
    }
    turns
}

/// Seconds-valued attributes that hold a stage's figure, by stage, in order of preference.
const STT_KEYS: &[&str] = &[
    "metrics.ttfb",
    "stt.ttfb",
    "stt.latency",
    "lk.transcription_delay",
];
const LLM_KEYS: &[&str] = &[
    "metrics.ttfb",
    "lk.response.ttft",
    "gen_ai.response.time_to_first_chunk",
    "llm.ttft",
];
const TTS_KEYS: &[&str] = &["metrics.ttfb", "lk.response.ttfb", "tts.ttfb"];

fn measure_turn(
    index: usize,
    origin: i64,
    spans: &[TraceSpan],
    roles: &[SpanRole],
    members: &[usize],
) -> TurnTiming {
    let of = |wanted: &[SpanRole]| -> Vec<usize> {
        members
            .iter()
            .copied()
            .filter(|&i| wanted.contains(&roles[i]))
            .collect()
    };
    let stt_spans = of(&[SpanRole::Stt]);
    let stt = keyed(spans, &stt_spans, STT_KEYS, None)
        // LiveKit records the transcription delay on the caller's turn (or its end-of-turn
        // detection), not on a span of its own.
        .or_else(|| keyed(spans, members, &["lk.transcription_delay"], None))
        .or_else(|| outermost_duration(spans, &stt_spans));
    let llm = of(&[SpanRole::Llm, SpanRole::S2s]);
    let llm_ttft = keyed(spans, &llm, LLM_KEYS, Some("lk.llm_metrics"))
        .or_else(|| keyed(spans, members, &[], Some("lk.llm_metrics")))
        .or_else(|| outermost_duration(spans, &llm));
    let tts = of(&[SpanRole::Tts]);
    let tts_ttfb = keyed(spans, &tts, TTS_KEYS, Some("lk.tts_metrics"))
        .or_else(|| keyed(spans, members, &[], Some("lk.tts_metrics")))
        .or_else(|| outermost_duration(spans, &tts));
    let tools = of(&[SpanRole::Tool]);
    let tool = (!tools.is_empty()).then(|| TurnMeasure {
        ms: tools.iter().map(|&i| spans[i].duration_ms()).sum(),
        source: "duration".into(),
        span_id: spans[tools[0]].span_id.clone(),
    });
    let start = members
        .iter()
        .map(|&i| spans[i].start_unix_nano)
        .min()
        .unwrap_or(origin);
    let end = members
        .iter()
        .map(|&i| spans[i].end_unix_nano)
        .max()
        .unwrap_or(start);
    TurnTiming {
        index,
        start_ms: (start - origin) as f64 / 1e6,
        end_ms: (end - origin) as f64 / 1e6,
        stt,
        llm_ttft,
        tts_ttfb,
        tool,
        spans: members.iter().map(|&i| spans[i].span_id.clone()).collect(),
    }
}

/// The first of `candidates` (in start order) carrying one of `keys` (seconds), or a `ttft` /
/// `ttfb` inside the JSON object of the `metrics` attribute (LiveKit's `lk.llm_metrics`).
fn keyed(
    spans: &[TraceSpan],
    candidates: &[usize],
    keys: &[&str],
    metrics: Option<&str>,
) -> Option<TurnMeasure> {
    let mut sorted = candidates.to_vec();
    sorted.sort_by_key(|&i| spans[i].start_unix_nano);
    sorted.into_iter().find_map(|i| {
        let span = &spans[i];
        let found = keys
            .iter()
            .find_map(|k| seconds(span.attributes.get(*k)?).map(|s| (s, (*k).to_owned())))
            .or_else(|| {
                let key = metrics?;
                let doc = match span.attributes.get(key)? {
                    Value::String(s) => serde_json::from_str::<Value>(s).ok()?,
                    other => other.clone(),
                };
                ["ttft", "ttfb"]
                    .into_iter()
                    .find_map(|k| seconds(doc.get(k)?).map(|s| (s, format!("{key}.{k}"))))
            });
        found.map(|(s, source)| TurnMeasure {
            // Rounded to the microsecond: 0.7 s is 700 ms, not 700.0000000000001.
            ms: (s * 1e6).round() / 1e3,
            source,
            span_id: span.span_id.clone(),
        })
    })
}

/// The duration of the first span among `candidates` that no other candidate encloses (an
/// `llm_node` rather than the `llm_request` inside it).
fn outermost_duration(spans: &[TraceSpan], candidates: &[usize]) -> Option<TurnMeasure> {
    let ids: Vec<&str> = candidates
        .iter()
        .map(|&i| spans[i].span_id.as_str())
        .collect();
    let mut sorted = candidates.to_vec();
    sorted.sort_by_key(|&i| spans[i].start_unix_nano);
    let i = sorted
        .iter()
        .copied()
        .find(|&i| {
            spans[i]
                .parent_span_id
                .as_deref()
                .is_none_or(|p| !ids.contains(&p))
        })
        .or_else(|| sorted.first().copied())?;
    Some(TurnMeasure {
        ms: spans[i].duration_ms(),
        source: "duration".into(),
        span_id: spans[i].span_id.clone(),
    })
}

/// A non-negative, finite number of seconds (as a number or a numeric string).
fn seconds(v: &Value) -> Option<f64> {
    let s = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    (s.is_finite() && s >= 0.0).then_some(s)
}
