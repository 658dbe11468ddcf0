//! The call page's timeline as geometry: messages and what the metrics count (core's
//! [`Evidence`]) become shapes with x and width in px. Pure, so that tests check positions
//! exactly; `pages/calls.rs` draws them as SVG.

use callgrade_core::{Evidence, Message, Role};
use serde_json::Value;

/// Agent turns that start this long after the caller stops are slow: the dashboard's own
/// threshold (the transcript highlights the same turns); the builtins have none.
pub const SLOW_SECONDS: f64 = 2.0;
/// Room left of the time axis, for the lanes' names.
pub const LEFT: f64 = 80.0;
/// The time axis' length in px on the call page.
pub const PLOT: f64 = 960.0;
/// Room right of the axis, for the last tick's label.
pub const RIGHT: f64 = 24.0;

#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    pub px_per_second: f64,
    /// The drawing's whole width, margins included.
    pub width: f64,
    pub bars: Vec<Bar>,
    pub overlaps: Vec<Overlap>,
    pub gaps: Vec<Gap>,
    pub silences: Vec<Span>,
    pub tools: Vec<Tool>,
    pub ticks: Vec<Tick>,
}

/// An x range and the times it stands for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub x: f64,
    pub width: f64,
    pub start: f64,
    pub end: f64,
}

/// One utterance on its lane.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// Its index in the transcript (`#msg-{message}`).
    pub message: usize,
    pub agent: bool,
    pub span: Span,
}

/// Simultaneous speech that an interruption metric counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlap {
    pub span: Span,
    pub interrupter: usize,
    pub by_agent: bool,
}

/// The latency before an agent turn: from the caller's end to the agent's start.
#[derive(Debug, Clone, PartialEq)]
pub struct Gap {
    pub span: Span,
    pub agent_message: usize,
    pub slow: bool,
}

/// A function call, on the agent's lane.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub message: usize,
    pub x: f64,
    pub at: f64,
    pub name: String,
    pub arguments: String,
    pub result: String,
    /// Why it failed (core's rule: no result, or an error in it); `None` when it succeeded.
    pub failed: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tick {
    pub x: f64,
    pub seconds: f64,
}

/// The timeline of a call lasting `duration` seconds, its axis `plot` px long; `None` when no
/// agent or caller message has both times. `speech` false (a text conversation) leaves out
/// overlaps and silences, which the metrics do not measure there.
pub fn layout(
    messages: &[Message],
    duration: f64,
    evidence: &Evidence,
    plot: f64,
    speech: bool,
) -> Option<Timeline> {
    let timed = |m: &Message| match (m.start_offset, m.end_offset) {
        (Some(s), Some(e)) if s.is_finite() && e.is_finite() && e >= s => Some((s, e)),
        _ => None,
    };
    let speaking = |m: &Message| matches!(m.role, Role::Bot | Role::User);
    let times: Vec<Option<(f64, f64)>> = messages
        .iter()
        .map(|m| timed(m).filter(|_| speaking(m)))
        .collect();
    // The axis covers the call, and any message that runs past its end.
    let last = times.iter().flatten().map(|t| t.1).reduce(f64::max)?;
    let total = duration.max(last).max(1.0);
    let pps = plot / total;
    let x = |t: f64| LEFT + t.clamp(0.0, total) * pps;
    let span = |start: f64, end: f64| Span {
        x: x(start),
        width: x(end) - x(start),
        start,
        end,
    };

    let bars = times
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let (s, e) = (*t)?;
            Some(Bar {
                message: i,
                agent: messages[i].role == Role::Bot,
                span: span(s, e),
            })
        })
        .collect();
    let overlaps = evidence
        .interruptions
        .iter()
        .filter(|_| speech)
        .map(|i| Overlap {
            span: span(i.start, i.start + i.seconds),
            interrupter: i.interrupter,
            by_agent: messages[i.interrupter].role == Role::Bot,
        })
        .collect();
    let gaps = evidence
        .latencies
        .iter()
        .filter_map(|l| {
            let start = messages[l.agent_message].start_offset?;
            Some(Gap {
                span: span(start - l.seconds, start),
                agent_message: l.agent_message,
                slow: l.seconds > SLOW_SECONDS,
            })
        })
        .collect();
    let silences = evidence
        .silences
        .iter()
        .filter(|_| speech)
        .map(|&(s, e)| span(s, e))
        .collect();
    let tools = evidence
        .tool_calls
        .iter()
        .filter_map(|c| {
            let at = tool_time(messages, c.message)?;
            let data = |i: usize| messages[i].data.as_ref();
            let call = data(c.message);
            let arguments = call
                .and_then(|d| {
                    d.get("arguments")
                        .or_else(|| d.pointer("/function/arguments"))
                })
                .map(brief)
                .unwrap_or_default();
            let result = c
                .result
                .and_then(data)
                .map(|d| {
                    let said = ["result", "content", "error"]
                        .iter()
                        .find_map(|k| d.get(*k));
                    brief(said.unwrap_or(d))
                })
                .unwrap_or_default();
            Some(Tool {
                message: c.message,
                x: x(at),
                at,
                name: c.name.clone().unwrap_or_else(|| "tool".to_owned()),
                arguments,
                result,
                failed: (!c.ok).then(|| c.reason.clone().unwrap_or_default()),
            })
        })
        .collect();
    let step = tick_step(total);
    let ticks = (0..)
        .map(|k| k as f64 * step)
        .take_while(|t| *t <= total + 1e-9)
        .map(|t| Tick {
            x: x(t),
            seconds: t,
        })
        .collect();
    Some(Timeline {
        px_per_second: pps,
        width: LEFT + plot + RIGHT,
        bars,
        overlaps,
        gaps,
        silences,
        tools,
        ticks,
    })
}

/// A tool row's own time, else the start of the next agent message, else the end of the
/// previous one.
fn tool_time(messages: &[Message], i: usize) -> Option<f64> {
    let own = messages[i].start_offset.or(messages[i].end_offset);
    let is_bot = |m: &&Message| m.role == Role::Bot;
    own.or_else(|| {
        messages[i + 1..]
            .iter()
            .filter(is_bot)
            .find_map(|m| m.start_offset)
    })
    .or_else(|| {
        messages[..i]
            .iter()
            .rev()
            .filter(is_bot)
            .find_map(|m| m.end_offset)
    })
    .filter(|t| t.is_finite())
}

/// The smallest of the usual steps that leaves at most ten ticks.
fn tick_step(total: f64) -> f64 {
    const STEPS: [f64; 12] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    ];
    STEPS
        .into_iter()
        .find(|s| total / s <= 10.0)
        .unwrap_or((total / 10.0).ceil())
}

/// JSON for a tooltip: a string as is, anything else compact; cut at 200 characters.
fn brief(v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// A tool row's name in the transcript: `data.name`, or OpenAI's `data.function.name`.
pub fn tool_label(m: &Message) -> &str {
    m.data
        .as_ref()
        .and_then(|d| d.get("name").or_else(|| d.pointer("/function/name")))
        .and_then(Value::as_str)
        .unwrap_or("tool")
}

#[cfg(test)]
mod tests {
    use super::*;
    use callgrade_core::{evidence, BuiltinConfig, Conversation};
    use serde_json::json;

    fn msg(role: Role, content: &str, times: Option<(f64, f64)>, data: Option<Value>) -> Message {
        Message {
            role,
            content: content.to_owned(),
            start_offset: times.map(|t| t.0),
            end_offset: times.map(|t| t.1),
            start_at_ms: None,
            end_at_ms: None,
            data,
        }
    }

    fn draw(duration: f64, messages: &[Message], speech: bool) -> Option<Timeline> {
        let conv = Conversation {
            duration_seconds: duration,
            messages,
            ended_reason: "customer-ended-call",
            audio: None,
            trace: None,
        };
        let e = evidence(&conv, &BuiltinConfig::default());
        layout(messages, duration, &e, 960.0, speech)
    }

    /// 40 s on 960 px: 24 px a second, from x = 80.
    fn call() -> Vec<Message> {
        vec![
            msg(Role::Bot, "Hello, how can I help?", Some((1.0, 3.0)), None), // 0
            msg(Role::User, "Where is my order A1?", Some((4.0, 6.5)), None), // 1
            msg(
                Role::FunctionCall,
                "",
                None,
                Some(json!({"id": "c1", "type": "function",
                    "function": {"name": "lookup_order", "arguments": "{\"order\":\"A1\"}"}})),
            ), // 2
            msg(
                Role::FunctionCallResult,
                "",
                None,
                Some(json!({"id": "c1", "error": "timeout"})),
            ), // 3
            msg(
                Role::Bot,
                "Let me check that for you now",
                Some((9.0, 12.0)),
                None,
            ), // 4
            msg(Role::User, "Actually, never mind", Some((11.5, 13.0)), None), // 5
            msg(Role::User, "Bye", Some((30.0, 31.0)), None),                 // 6
        ]
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} ≠ {b}");
    }

    #[test]
    fn bars_overlaps_gaps_silences_and_tools_at_their_times() {
        let t = draw(40.0, &call(), true).unwrap();
        close(t.px_per_second, 24.0);
        close(t.width, 80.0 + 960.0 + 24.0);
        let bars: Vec<(usize, bool, f64, f64)> = t
            .bars
            .iter()
            .map(|b| (b.message, b.agent, b.span.x, b.span.width))
            .collect();
        // x = 80 + 24 × start, width = 24 × length.
        assert_eq!(
            bars,
            [
                (0, true, 104.0, 48.0),
                (1, false, 176.0, 60.0),
                (4, true, 296.0, 72.0),
                (5, false, 356.0, 36.0),
                (6, false, 800.0, 24.0),
            ]
        );
        // [5] starts at 11.5 while [4] goes on to 12.0: 0.5 s, 12 px.
        assert_eq!(t.overlaps.len(), 1);
        let o = &t.overlaps[0];
        assert_eq!((o.interrupter, o.by_agent), (5, false));
        close(o.span.x, 80.0 + 11.5 * 24.0);
        close(o.span.width, 12.0);
        close(o.span.end - o.span.start, 0.5);
        // The agent answers [1] (ends 6.5) at 9.0: 2.5 s, slow; [0] follows no caller message.
        assert_eq!(t.gaps.len(), 1);
        let g = &t.gaps[0];
        assert_eq!((g.agent_message, g.slow), (4, true));
        close(g.span.x, 80.0 + 6.5 * 24.0);
        close(g.span.width, 60.0);
        close(g.span.end - g.span.start, 2.5);
        // Nobody speaks from 13 to 30 s (17 s) and from 31 to 40 s (9 s, under 10 s).
        assert_eq!(t.silences.len(), 1);
        close(t.silences[0].x, 80.0 + 13.0 * 24.0);
        close(t.silences[0].width, 17.0 * 24.0);
        // The untimed call sits at the next agent message's start; its name is OpenAI's.
        assert_eq!(t.tools.len(), 1);
        let tool = &t.tools[0];
        assert_eq!(
            (
                tool.name.as_str(),
                tool.arguments.as_str(),
                tool.result.as_str()
            ),
            ("lookup_order", "{\"order\":\"A1\"}", "timeout")
        );
        close(tool.x, 80.0 + 9.0 * 24.0);
        assert_eq!(tool.failed.as_deref(), Some("error: timeout"));
        // Ticks every 5 s from 0 to 40.
        let ticks: Vec<f64> = t.ticks.iter().map(|k| k.seconds).collect();
        assert_eq!(ticks, [0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0]);
        close(t.ticks[8].x, 80.0 + 960.0);
    }

    #[test]
    fn the_metrics_rules_decide_what_is_marked() {
        let mut m = call();
        // A backchannel over the agent, and a 0.1 s overlap: neither is an interruption.
        m[5] = msg(Role::User, "Uh-huh", Some((11.5, 12.5)), None);
        m.push(msg(Role::Bot, "Goodbye", Some((30.9, 32.0)), None));
        let t = draw(40.0, &m, true).unwrap();
        assert!(t.overlaps.is_empty(), "{:?}", t.overlaps);
        // A successful result, and a tool row without result placed by its own time.
        m[3].data = Some(json!({"id": "c1", "result": {"status": "shipped"}}));
        m[2].start_offset = Some(7.0);
        let t = draw(40.0, &m, true).unwrap();
        assert_eq!(t.tools[0].failed, None);
        assert_eq!(t.tools[0].result, "{\"status\":\"shipped\"}");
        close(t.tools[0].x, 80.0 + 7.0 * 24.0);
    }

    #[test]
    fn a_text_conversation_has_no_overlaps_or_silences_and_no_times_no_timeline() {
        let t = draw(40.0, &call(), false).unwrap();
        assert!(t.overlaps.is_empty() && t.silences.is_empty());
        assert_eq!((t.bars.len(), t.gaps.len(), t.tools.len()), (5, 1, 1));
        let untimed: Vec<Message> = call()
            .into_iter()
            .map(|m| Message {
                start_offset: None,
                end_offset: None,
                ..m
            })
            .collect();
        assert_eq!(draw(40.0, &untimed, true), None);
    }

    #[test]
    fn a_message_past_the_calls_end_widens_the_axis() {
        let m = vec![msg(Role::Bot, "Hi", Some((10.0, 20.0)), None)];
        let t = draw(12.0, &m, true).unwrap();
        close(t.px_per_second, 48.0);
        close(t.bars[0].span.x + t.bars[0].span.width, 80.0 + 960.0);
        assert_eq!(t.ticks.last().unwrap().seconds, 20.0);
    }
}
