//! A call's trace on its page: the agent's turns stage by stage (a bar per turn, to the same
//! scale), then every span as a tree, those of no known kind included.

use callgrade_app::traces::CallTrace;
use callgrade_core::{SpanRole, SpanStatus, TraceSpan, TurnMeasure};
use maud::{html, Markup};
use std::collections::HashMap;

/// The stages of a turn, with their bar colours (classes in app.css).
const STAGES: [(&str, &str); 4] = [
    ("Speech to text", "stt"),
    ("LLM first token", "llm"),
    ("TTS first byte", "tts"),
    ("Tools", "tool"),
];
/// Width of the widest turn's bar.
const BAR_PX: f64 = 320.0;
/// Attributes shown beside a span; the rest are in its raw JSON from the API.
const SHOWN_ATTRIBUTES: usize = 6;

fn ms(m: &Option<TurnMeasure>) -> Markup {
    match m {
        Some(m) => html! {
            (format!("{:.0} ms", m.ms))
            @if m.source == "duration" { " " span.muted title="No attribute gave this figure: it is the span's length." { "(span)" } }
        },
        None => html! { span.muted { "–" } },
    }
}

pub(super) fn trace_section(trace: &CallTrace, api_path: &str) -> Markup {
    html! {
        h2 { "Trace" }
        @match &trace.breakdown {
            None => p.muted {
                "No span of trace " code { (trace.trace_id) } " has arrived yet: export it to "
                code { "/v1/traces" } " and it is linked here."
            },
            Some(b) => {
                p.muted {
                    "Trace " code { (trace.trace_id) } " · " (b.span_count) " spans"
                    @if b.other_spans > 0 { ", " (b.other_spans) " of no kind the breakdown knows" }
                    " · every span with its attributes: " code { (api_path) }
                }
                @let widest = b.turns.iter().map(|t| [&t.stt, &t.llm_ttft, &t.tts_ttfb, &t.tool].iter().filter_map(|m| m.as_ref()).map(|m| m.ms).sum::<f64>()).fold(0.0, f64::max);
                table #trace-turns {
                    tr { th { "Turn" } th { "At" } @for (label, _) in STAGES { th { (label) } } th { "Where the time went" } }
                    @for t in &b.turns {
                        tr {
                            td { (t.index) }
                            td { (format!("{:.1} s", t.start_ms / 1000.0)) }
                            td { (ms(&t.stt)) } td { (ms(&t.llm_ttft)) } td { (ms(&t.tts_ttfb)) } td { (ms(&t.tool)) }
                            td { (stage_bar(t, widest)) }
                        }
                    }
                }
                p.muted { @for (label, class) in STAGES { span class={ "swatch " (class) } {} " " (label) " " } }
                details {
                    summary { "All " (trace.spans.len()) " spans" }
                    (span_tree(&trace.spans, b.start_unix_nano))
                }
            }
        }
    }
}

/// One turn's stages side by side, to the scale of the widest turn.
fn stage_bar(t: &callgrade_core::TurnTiming, widest: f64) -> Markup {
    let mut x = 0.0;
    let mut parts = Vec::new();
    for ((label, class), m) in STAGES
        .iter()
        .zip([&t.stt, &t.llm_ttft, &t.tts_ttfb, &t.tool])
    {
        if let Some(m) = m {
            let w = if widest > 0.0 {
                m.ms / widest * BAR_PX
            } else {
                0.0
            };
            parts.push((label, class, x, w, m.ms));
            x += w;
        }
    }
    html! {
        svg width=(BAR_PX) height="14" role="img" aria-label={ "Turn " (t.index) " by stage" } {
            @for (label, class, x, w, ms) in parts {
                rect class={ "stage " (class) } x=(format!("{x:.1}")) y="1" width=(format!("{w:.1}")) height="12" {
                    title { (label) ": " (format!("{ms:.0} ms")) }
                }
            }
        }
    }
}

/// The spans in tree order (children under their parent, by start), indented by depth.
fn span_tree(spans: &[TraceSpan], origin: i64) -> Markup {
    let ids: HashMap<&str, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id.as_str(), i))
        .collect();
    let mut children: HashMap<Option<usize>, Vec<usize>> = HashMap::new();
    for (i, s) in spans.iter().enumerate() {
        // A span whose parent did not arrive (or is itself) is shown as a root.
        let parent = s
            .parent_span_id
            .as_deref()
            .and_then(|p| ids.get(p).copied())
            .filter(|&p| p != i);
        children.entry(parent).or_default().push(i);
    }
    let mut rows = Vec::with_capacity(spans.len());
    let mut seen = vec![false; spans.len()];
    let mut stack: Vec<(usize, usize)> = children
        .get(&None)
        .map(|r| r.iter().rev().map(|&i| (i, 0)).collect())
        .unwrap_or_default();
    while let Some((i, depth)) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        rows.push((i, depth));
        if let Some(kids) = children.get(&Some(i)) {
            stack.extend(kids.iter().rev().map(|&k| (k, depth + 1)));
        }
    }
    // Spans in a parent cycle reach no root: listed at the end rather than lost.
    rows.extend((0..spans.len()).filter(|&i| !seen[i]).map(|i| (i, 0)));
    html! {
        table #trace-spans {
            tr { th { "Span" } th { "Kind" } th { "Start" } th { "Duration" } th { "Status" } th { "Attributes" } }
            @for (i, depth) in rows {
                @let s = &spans[i];
                @let role = SpanRole::of(s);
                tr {
                    td style={ "padding-left:" (0.4 + depth as f64 * 1.2) "em" } { code { (s.name) } }
                    td { @if role == SpanRole::Other { span.muted { "unknown" } } @else { (format!("{role:?}").to_lowercase()) } }
                    td { (format!("{:.0} ms", (s.start_unix_nano - origin) as f64 / 1e6)) }
                    td { (format!("{:.0} ms", s.duration_ms())) }
                    td { @match s.status {
                        SpanStatus::Error => span.bad { "error" @if let Some(m) = &s.status_message { ": " (m) } },
                        other => span.muted { (other.as_str()) },
                    } }
                    td.attributes {
                        @for (k, v) in s.attributes.iter().take(SHOWN_ATTRIBUTES) {
                            code { (k) "=" (short(v)) } " "
                        }
                        @if s.attributes.len() > SHOWN_ATTRIBUTES { span.muted { "+" (s.attributes.len() - SHOWN_ATTRIBUTES) " more" } }
                    }
                }
            }
        }
    }
}

fn short(v: &serde_json::Value) -> String {
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match text.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}
