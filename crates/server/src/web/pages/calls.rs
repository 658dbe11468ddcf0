//! Calls: the filtered list, one call with its timeline, evaluating again.

use super::*;
use crate::web::timeline::{layout, tool_label, Timeline, LEFT, PLOT};
use callgrade_core::AnalysedRecording;
use callgrade_core::{BuiltinConfig, Channel, Conversation, Evidence, Message};

#[derive(Clone, Deserialize, serde::Serialize, Default)]
pub struct CallsQuery {
    agent_id: Option<String>,
    started_from: Option<String>,
    started_before: Option<String>,
    ended_reason: Option<String>,
    /// "pass" or "fail".
    success: Option<String>,
    /// "test" or "production".
    kind: Option<String>,
    failing_metric: Option<String>,
    q: Option<String>,
    cursor: Option<String>,
}

/// An empty form field means "any".
pub(super) fn given(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

pub(super) fn parse_time(s: &Option<String>) -> Option<i64> {
    let s = s.as_deref()?.trim();
    if s.is_empty() {
        return None;
    }
    callgrade_core::parse_datetime(s)
        .or_else(|| callgrade_core::parse_datetime(&format!("{s}:00")))
        .map(|t| t.timestamp_millis())
}

pub async fn calls(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Query(q): Query<CallsQuery>,
) -> Page {
    let project = load_project(&state, &id).await?;
    let agents = state.app.store.list_agents(project.id).await?;
    let agent_id = q.agent_id.as_deref().and_then(|a| a.parse().ok());
    let filter = CallFilter {
        agent_id,
        started_from_ms: parse_time(&q.started_from),
        started_before_ms: parse_time(&q.started_before),
        ended_reason: given(&q.ended_reason),
        success: given(&q.success).map(|s| s == "pass"),
        kind: match given(&q.kind).as_deref() {
            Some("test") => Some(CallKind::Test),
            Some("production") => Some(CallKind::Production),
            _ => None,
        },
        failing_metric: given(&q.failing_metric),
        text: given(&q.q),
        cursor: q.cursor.clone(),
        limit: 50,
        ..Default::default()
    };
    let metrics = state.app.store.list_metrics(project.id).await?;
    let page_of = state.app.store.list_calls(project.id, &filter).await?;
    // The columns' metric values for the whole page, in one query.
    let call_ids: Vec<String> = page_of.data.iter().map(|c| c.call_id.clone()).collect();
    let [latency, user_interrupting, agent_interrupting] = [
        BuiltinKey::AgentLatency,
        BuiltinKey::UserInterruptingAgent,
        BuiltinKey::AgentInterruptingUser,
    ]
    .map(|key| builtin_metric_name(&metrics, key));
    let values = state
        .app
        .store
        .metric_values(
            project.id,
            &call_ids,
            &[latency, user_interrupting, agent_interrupting],
        )
        .await?;
    let value_of = |call: &str, metric: &str| {
        values
            .iter()
            .find(|(c, m, _)| c == call && m == metric)
            .and_then(|(_, _, v)| v.as_f64())
    };
    let rows: Vec<(&callgrade_store::CallSummary, Option<f64>, Option<f64>)> = page_of
        .data
        .iter()
        .map(|s| {
            let interruptions = match (
                value_of(&s.call_id, user_interrupting),
                value_of(&s.call_id, agent_interrupting),
            ) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
            };
            (s, value_of(&s.call_id, latency), interruptions)
        })
        .collect();
    // The next page keeps the filters.
    let next = page_of.next_cursor.as_ref().map(|c| {
        let keep = CallsQuery {
            cursor: Some(c.clone()),
            ..q.clone()
        };
        format!(
            "/projects/{}/calls?{}",
            project.id,
            serde_urlencoded::to_string(&keep).unwrap_or_default()
        )
    });
    Ok(page("Calls", Some(&admin), Some(&project), html! {
        h1 { "Calls" }
        form.filters method="get" {
            label { "Agent " select name="agent_id" {
                option value="" { "all" }
                @for a in &agents { option value=(a.id) selected[agent_id == Some(a.id)] { (a.name) } }
            } }
            label { "From " input type="datetime-local" name="started_from" value=[q.started_from.as_deref()]; }
            label { "Before " input type="datetime-local" name="started_before" value=[q.started_before.as_deref()]; }
            label { "End reason " input type="text" name="ended_reason" size="14" value=[q.ended_reason.as_deref()]; }
            label { "Result " select name="success" {
                option value="" { "any" }
                option value="pass" selected[q.success.as_deref() == Some("pass")] { "pass" }
                option value="fail" selected[q.success.as_deref() == Some("fail")] { "fail" }
            } }
            label { "Kind " select name="kind" {
                option value="" { "all" }
                option value="test" selected[q.kind.as_deref() == Some("test")] { "test runs" }
                option value="production" selected[q.kind.as_deref() == Some("production")] { "production" }
            } }
            label { "Failing metric " select name="failing_metric" {
                option value="" { "none" }
                @for m in &metrics { option value=(m.spec.name) selected[q.failing_metric.as_deref() == Some(m.spec.name.as_str())] { (m.spec.name) } }
            } }
            label { "Text " input type="search" name="q" value=[q.q.as_deref()]; }
            button type="submit" { "Filter" }
        }
        @if rows.is_empty() {
            div.empty { p { "No calls match. Calls appear here as soon as the webhook accepts them; if they don't, the " a href={ "/projects/" (project.id) "/deliveries?outcome=rejected" } { "rejected deliveries" } " say why." } }
        } @else {
            table #calls {
                tr { th { "Started" } th { "Call" } th { "Agent" } th { "Duration" } th { "Latency p50" } th { "Interruptions" } th { "Run" } th { "Success" } }
                @for (s, latency, interruptions) in rows.iter().copied() {
                    tr {
                        td { (when(s.started_at)) }
                        td { a href={ "/projects/" (project.id) "/calls/" (s.call_id) } { (s.external_id) } }
                        td { (agent_name(&project, &agents, s.agent_id)) }
                        td { (seconds(s.duration_seconds)) }
                        td { (or_dash(latency.map(seconds))) }
                        td { (or_dash(interruptions)) }
                        td { (or_dash(s.run_id)) " " span.muted { (s.match_outcome.as_str()) } }
                        td { (verdict(s.success)) }
                    }
                }
            }
        }
        @if let Some(next) = next { p { a href=(next) { "Older calls →" } } }
    }).into_response())
}

/// A metric's pass on the call page: the rubric's rule outcome when the rubric judges the
/// metric (that decides the call's success), else its own pass condition, muted, saying it
/// does not decide (a red "fail" on a passing call reads as the reason it failed).
fn metric_pass(
    e: &callgrade_core::Evaluation,
    rubric: Option<&callgrade_core::RubricVerdict>,
) -> Markup {
    let rules: Vec<_> = rubric
        .map(|r| {
            r.rules
                .iter()
                .filter(|r| r.metric == e.metric_name)
                .collect()
        })
        .unwrap_or_default();
    if !rules.is_empty() {
        let passed = rules
            .iter()
            .map(|r| r.passed)
            .try_fold(true, |all, p| p.map(|p| all && p));
        return html! { (verdict(passed)) " " span.muted { "rubric" } };
    }
    match e.passed {
        None => verdict(None),
        Some(p) => html! {
            span.muted title="Not in the rubric: it does not decide the call's success" {
                (if p { "pass" } else { "fail" }) " · not in the rubric"
            }
        },
    }
}

/// An agent by its name (linked to its page), or its id when it is gone.
fn agent_name(project: &Project, agents: &[callgrade_core::Agent], id: Option<i64>) -> Markup {
    match id {
        None => or_dash(None::<i64>),
        Some(id) => match agents.iter().find(|a| a.id == id) {
            Some(a) => html! { a href={ "/projects/" (project.id) "/agents/" (id) } { (a.name) } },
            None => html! { "#" (id) },
        },
    }
}

async fn load_call(
    state: &AppState,
    id: &str,
    call_id: &str,
) -> Result<(Project, CallDetail), WebError> {
    let project = load_project(state, id).await?;
    let call = state
        .app
        .store
        .call(project.id, call_id)
        .await?
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "no such call in this project"))?;
    Ok((project, call))
}

pub async fn call(
    State(state): State<AppState>,
    admin: Admin,
    Path((id, call_id)): Path<(String, String)>,
) -> Page {
    let (project, call) = load_call(&state, &id, &call_id).await?;
    let recording = state.app.store.recording(project.id, &call_id).await?;
    // The page has the call: its trace is read by id, not through the call again.
    let trace = match call.trace_id.clone() {
        Some(id) => Some(callgrade_app::traces::trace(&state.app, project.id, id).await?),
        None => None,
    };
    let agents = state.app.store.list_agents(project.id).await?;
    let s = &call.summary;
    let raw_link = format!("/projects/{}/calls/{}/raw", project.id, s.call_id);
    Ok(page(&s.external_id, Some(&admin), Some(&project), html! {
        h1 { "Call " code { (s.external_id) } }
        div.card {
            p {
                "Started " (when(s.started_at)) " · " (seconds(s.duration_seconds)) " · ended: " (s.ended_reason)
                " · agent " (agent_name(&project, &agents, s.agent_id)) " · from " (or_dash(s.from_phone_number.as_deref())) " to " (or_dash(s.to_phone_number.as_deref()))
            }
            p { "Match: " strong { (s.match_outcome.as_str()) } @if let Some(run) = s.run_id { " · run " (run) } @if let Some(r) = &call.match_reason { " · " span.muted { (r) } } }
            @if !call.match_candidates.is_empty() {
                p { "Candidate runs: " @for c in &call.match_candidates { code { (c) } " " } " — attach the call to one from the "
                    a href={ "/projects/" (project.id) "/runs" } { "runs page" } "." }
            }
            p { "Success: " (verdict(s.success)) " · message times read as " code { (call.message_times.as_str()) } }
            form method="post" action={ "/projects/" (project.id) "/calls/" (s.call_id) "/evaluate" } {
                (csrf(&admin))
                button.secondary type="submit" { "Re-evaluate" }
            }
        }
        @if !call.warnings.is_empty() {
            div.card.warnings {
                h2 { "Warnings" }
                ul { @for w in &call.warnings { li { code { (w.path) } " " (w.message) } } }
            }
        }
        h2 { "Transcript" }
        (timeline(&call))
        @if let Some(r) = &recording {
            (recording_player(&project, &call, &r.audio))
        }
        @if let Some(trace) = &trace {
            (super::traces::trace_section(trace, &format!("/api/v1/calls/{}/trace", s.call_id)))
        }
        h2 { "Metrics" }
        @if call.evaluations.is_empty() {
            p.muted { "Not evaluated yet." }
        } @else {
            table #metrics {
                tr { th { "Metric" } th { "Value" } th { "Pass" } th { "Explanation" } th { "Provenance" } }
                @for e in &call.evaluations {
                    tr {
                        td { (e.metric_name) br; span.muted { (e.kind.as_str()) " v" (e.metric_version) } }
                        td { @match &e.value { Some(v) => { code { (v) } }, None => { span.muted { (e.status.as_str()) } } } }
                        td { (metric_pass(e, call.rubric.as_ref())) }
                        td { (e.explanation) }
                        td { @if let Some(model) = e.details.get("model").and_then(|m| m.as_str()) { "model " code { (model) } } }
                    }
                }
            }
        }
        @if let Some(rubric) = &call.rubric {
            h2 { "Rubric" }
            @if let Some(why) = &rubric.undecided {
                p.bad { "Could not decide: " (why) }
            }
            table {
                tr { th { "Metric" } th { "Rule" } th { "Actual" } th { "Result" } }
                @for r in &rubric.rules {
                    tr { td { (r.metric) } td { code { (format!("{:?} {}", r.op, r.expected)) } } td { (or_dash(r.actual.as_ref())) } td { (verdict(r.passed)) } }
                }
            }
        }
        h2 { "Metadata" }
        (json_preview(&call.metadata, &raw_link))
        details { summary { "Raw payload, as received" } (json_preview(&call.raw, &raw_link)) }
    }).into_response())
}

/// A call's payload as received, to download whole (the page shows only its beginning).
/// The call's recording for the page's player, with range requests so it can seek.
pub async fn call_recording(
    State(state): State<AppState>,
    _admin: Admin,
    Path((id, call_id)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Page {
    let project = load_project(&state, &id).await?;
    crate::routes::recordings::serve(&state, project.id, &call_id, &headers)
        .await
        .map_err(|_| error(StatusCode::NOT_FOUND, "this call has no recording"))
}

pub async fn call_raw(
    State(state): State<AppState>,
    _admin: Admin,
    Path((id, call_id)): Path<(String, String)>,
) -> Page {
    let (_, call) = load_call(&state, &id, &call_id).await?;
    let disposition = format!("attachment; filename=\"call-{call_id}.json\"");
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/json".to_owned(),
            ),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        axum::Json(call.raw),
    )
        .into_response())
}

/// The conversation drawn on its time axis, then the transcript its shapes link to. What is
/// marked (interruptions, latency, silences, failed tools) is what the builtin metrics count,
/// with their default settings.
pub(super) fn timeline(call: &CallDetail) -> Markup {
    let s = &call.summary;
    let conversation = Conversation {
        duration_seconds: s.duration_seconds,
        messages: &call.messages,
        ended_reason: &s.ended_reason,
        audio: None,
        trace: None,
    };
    let evidence = callgrade_core::evidence(&conversation, &BuiltinConfig::default());
    // Overlaps and silences are speech; the metrics do not measure them in a text conversation.
    let speech = s.channel != Channel::Text;
    let drawing = layout(&call.messages, s.duration_seconds, &evidence, PLOT, speech);
    html! {
        @match &drawing {
            Some(t) => { (timeline_svg(t, &call.messages, speech)) },
            None => { p.muted #no-timeline { "No message times: the timeline needs them." } },
        }
        (transcript(call, &evidence, speech))
    }
}

// The lanes' and the axis' heights in px.
const AGENT_Y: f64 = 26.0;
const CALLER_Y: f64 = 60.0;
const LANE: f64 = 24.0;
const AXIS_Y: f64 = 96.0;
const HEIGHT: f64 = 116.0;

/// The timeline as SVG, 1 unit a px; hover shows `<title>`s, a click goes to the message. Every
/// element has a closing tag: in HTML, `<line>` without one swallows what follows.
fn timeline_svg(t: &Timeline, messages: &[Message], speech: bool) -> Markup {
    let px = |v: f64| format!("{v:.2}");
    let lane_y = |agent: bool| if agent { AGENT_Y } else { CALLER_Y };
    let both = (AGENT_Y - 4.0, CALLER_Y + LANE - AGENT_Y + 8.0);
    let said = |i: usize| {
        let text = &messages[i].content;
        match text.char_indices().nth(120) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.clone(),
        }
    };
    html! {
        div #timeline {
            svg width=(px(t.width)) height=(HEIGHT) viewBox={ "0 0 " (px(t.width)) " " (HEIGHT) }
                role="img" aria-label="Conversation timeline" data-px-per-second=(t.px_per_second) data-left=(LEFT) {
                text.lane x="8" y=(AGENT_Y + 16.0) { "Agent" }
                text.lane x="8" y=(CALLER_Y + 16.0) { "Caller" }
                @for s in &t.silences {
                    rect.silence x=(px(s.x)) y=(both.0) width=(px(s.width)) height=(both.1) {
                        title { "Silence: " (seconds(s.end - s.start)) " from " (seconds(s.start)) }
                    }
                }
                @for b in &t.bars {
                    a href={ "#msg-" (b.message) } {
                        // At least 1 px, so that a very short utterance can still be seen.
                        rect class={ "bar " (if b.agent { "agent" } else { "caller" }) } x=(px(b.span.x)) y=(lane_y(b.agent))
                            width=(px(b.span.width.max(1.0))) height=(LANE) rx="3" {
                            title { "#" (b.message) " " (if b.agent { "Agent" } else { "Caller" }) ", "
                                (seconds(b.span.start)) "–" (seconds(b.span.end)) ": " (said(b.message)) }
                        }
                    }
                }
                @for o in &t.overlaps {
                    a href={ "#msg-" (o.interrupter) } {
                        rect.overlap x=(px(o.span.x)) y=(both.0) width=(px(o.span.width)) height=(both.1) {
                            title { (if o.by_agent { "Agent interrupts the caller: " } else { "Caller interrupts the agent: " })
                                (seconds(o.span.end - o.span.start)) " overlap" }
                        }
                    }
                }
                @for g in &t.gaps {
                    @let mid = AGENT_Y + LANE / 2.0;
                    g class=(if g.slow { "gap slow" } else { "gap" }) {
                        title { "Latency " (seconds(g.span.end - g.span.start)) (if g.slow { ", slow" } else { "" }) }
                        line x1=(px(g.span.x)) x2=(px(g.span.x + g.span.width)) y1=(mid) y2=(mid) {}
                        text.latency x=(px(g.span.x + g.span.width / 2.0)) y=(AGENT_Y - 8.0) text-anchor="middle" {
                            (format!("{:.1} s", g.span.end - g.span.start))
                        }
                    }
                }
                @for tool in &t.tools {
                    a href={ "#msg-" (tool.message) } {
                        @let label = html! {
                            title { (tool.name) "(" (tool.arguments) ") → " (tool.result) " · "
                                @match &tool.failed { Some(why) => { "failed: " (why) }, None => { "ok" } } }
                        };
                        @if tool.failed.is_some() {
                            path.tool.failed d={ "M" (px(tool.x)) "," (AGENT_Y - 7.0) " l7,7 l-7,7 l-7,-7 z" } { (label) }
                        } @else {
                            circle.tool.ok cx=(px(tool.x)) cy=(AGENT_Y) r="5" { (label) }
                        }
                    }
                }
                line.axis x1=(LEFT) x2=(px(t.ticks.last().map_or(LEFT, |k| k.x))) y1=(AXIS_Y) y2=(AXIS_Y) {}
                @for k in &t.ticks {
                    line.axis x1=(px(k.x)) x2=(px(k.x)) y1=(AXIS_Y) y2=(AXIS_Y + 4.0) {}
                    text.tick x=(px(k.x)) y=(AXIS_Y + 16.0) text-anchor="middle" { (k.seconds) " s" }
                }
            }
            p.muted.legend {
                span.key.agent {} "agent " span.key.caller {} "caller "
                @if speech { span.key.overlap {} "interruption (≥ " (BuiltinConfig::default().min_overlap_seconds) " s, backchannels excepted) " span.key.silence {} "silence (≥ " (BuiltinConfig::default().silence_threshold_seconds) " s) " }
                "· latency before each agent turn, red above " (SLOW_SECONDS) " s · tools: " span.ok { "●" } " ok, " span.bad { "◆" } " failed"
                @if !speech { " · a text conversation: overlaps and silences are not measured" }
            }
        }
    }
}

/// Each turn with speaker, offset and duration; the gap before agent turns as latency (slow ones
/// highlighted); counted interruptions marked; tool rows folded. Row `msg-{i}` is message `i`.
fn transcript(call: &CallDetail, evidence: &Evidence, speech: bool) -> Markup {
    // The gap from the previous speaker's end to this turn's start (negative: an overlap).
    let mut previous: Option<(Role, Option<f64>)> = None;
    let gaps: Vec<Option<f64>> = call
        .messages
        .iter()
        .map(|m| {
            if !matches!(m.role, Role::Bot | Role::User) {
                return None;
            }
            let gap = match (previous, m.start_offset) {
                (Some((role, Some(end))), Some(start)) if role != m.role => Some(start - end),
                _ => None,
            };
            previous = Some((m.role, m.end_offset));
            gap
        })
        .collect();
    let counted = |i: usize| speech && evidence.interruptions.iter().any(|x| x.interrupter == i);
    // A result row is named after its call, which OpenAI-style results do not repeat.
    let tool_name = |i: usize, m: &Message| {
        evidence
            .tool_calls
            .iter()
            .find(|c| c.message == i || c.result == Some(i))
            .and_then(|c| c.name.clone())
            .unwrap_or_else(|| tool_label(m).to_owned())
    };
    html! {
        table #transcript {
            tr { th { "#" } th { "Speaker" } th { "At" } th { "Length" } th { "Gap" } th { "Text" } }
            @for (i, (m, gap)) in call.messages.iter().zip(gaps).enumerate() {
                @let slow = m.role == Role::Bot && gap.is_some_and(|g| g > SLOW_SECONDS);
                @let class = match gap { Some(g) if g < 0.0 && counted(i) => "overlap", _ if slow => "slow", _ => "" };
                tr id={ "msg-" (i) } class=(class) data-at=[m.start_offset] {
                    td { (i) }
                    td { (speaker(m.role)) }
                    td { (or_dash(m.start_offset.map(seconds))) }
                    td { (or_dash(m.start_offset.zip(m.end_offset).map(|(s, e)| seconds(e - s)))) }
                    td {
                        @match gap {
                            Some(g) if g < 0.0 && counted(i) => { span.warn { "interrupts (" (seconds(-g)) " overlap)" } },
                            Some(g) if g < 0.0 => { span.muted { (seconds(-g)) " overlap, not an interruption" } },
                            Some(g) if m.role == Role::Bot => { "latency " (seconds(g)) },
                            Some(g) => { (seconds(g)) },
                            None => { "" },
                        }
                    }
                    td {
                        @if matches!(m.role, Role::FunctionCall | Role::FunctionCallResult) {
                            details { summary { (tool_name(i, m)) }
                                @if let Some(d) = &m.data { (json_block(d)) } }
                        } @else {
                            (m.content)
                        }
                    }
                }
            }
        }
    }
}

pub async fn evaluate(
    State(state): State<AppState>,
    admin: Admin,
    Path((id, call_id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Page {
    check_csrf(&admin, &form.csrf)?;
    let project = load_project(&state, &id).await?;
    callgrade_app::evaluation::enqueue(&state.app, project.id, &call_id).await?;
    Ok(see_other(&format!(
        "/projects/{}/calls/{call_id}",
        project.id
    )))
}

// The waveform's rows: caller above, agent below, each `WAVE` px tall.
const WAVE: f64 = 36.0;
const WAVE_HEIGHT: f64 = 2.0 * WAVE + 30.0;

/// The recording: a player, and both channels' waveforms on the timeline's time axis with what
/// the audio metrics measured (each latency at the caller's ear, each barge-in and how long the
/// agent took to stop). A click on the waveform or on a transcript row plays from there.
fn recording_player(project: &Project, call: &CallDetail, r: &AnalysedRecording) -> Markup {
    let duration = (r.duration_ms as f64 / 1000.0).max(call.summary.duration_seconds);
    let pps = if duration > 0.0 { PLOT / duration } else { 0.0 };
    let width = LEFT + PLOT + crate::web::timeline::RIGHT;
    let x = |ms: u64| LEFT + ms as f64 / 1000.0 * pps;
    let px = |v: f64| format!("{v:.2}");
    // At most one bar per px: each bar is the loudest bucket under it.
    let bars = |peaks: &[u8]| -> Vec<(f64, f64)> {
        let per_px = (f64::from(r.bucket_ms) / 1000.0 * pps).max(1e-9);
        let mut out: Vec<(f64, f64)> = Vec::new();
        for (i, &p) in peaks.iter().enumerate() {
            let at = (i as f64 * per_px).floor();
            match out.last_mut() {
                Some((x0, h)) if *x0 == at => *h = h.max(f64::from(p)),
                _ => out.push((at, f64::from(p))),
            }
        }
        out
    };
    let t = &r.timeline;
    // Caller speech end → the next agent speech start.
    let latencies: Vec<(u64, u64)> = t
        .caller
        .iter()
        .filter_map(|c| {
            t.agent
                .iter()
                .find(|a| a.start_ms >= c.end_ms)
                .map(|a| (c.end_ms, a.start_ms))
        })
        .collect();
    // The caller starting while the agent speaks, and when the agent stopped.
    let barge_ins: Vec<(u64, u64)> = t
        .caller
        .iter()
        .filter_map(|c| {
            t.agent
                .iter()
                .find(|a| a.start_ms < c.start_ms && a.end_ms > c.start_ms)
                .map(|a| (c.start_ms, a.end_ms))
        })
        .collect();
    let src = format!(
        "/projects/{}/calls/{}/recording",
        project.id, call.summary.call_id
    );
    let clipped = r.timeline.clipped.iter().any(|&c| c > 0.001);
    html! {
        h2 { "Recording" }
        div.card #recording-card {
            audio #recording controls preload="metadata" src=(src) {
                a href=(src) { "Download the recording" }
            }
            p.muted {
                (seconds(r.duration_ms as f64 / 1000.0)) ", " (r.channels) " channels at " (r.sample_rate) " Hz, " (r.content_type)
                " · speech found in " (t.frame_ms) " ms frames (level ≥ " (t.detector.threshold_dbfs) " dBFS)"
                " · " a href=(src) download { "download" }
            }
            @if clipped {
                p.warn { "Clipping: " (format!("{:.1}", t.clipped[0] * 100.0)) " % of the caller's samples and "
                    (format!("{:.1}", t.clipped[1] * 100.0)) " % of the agent's are at full scale; levels and the detector may be off." }
            }
            svg #waveform width=(px(width)) height=(WAVE_HEIGHT) viewBox={ "0 0 " (px(width)) " " (WAVE_HEIGHT) }
                role="img" aria-label="Waveform of the recording: caller above, agent below; click to play from a moment"
                data-px-per-second=(pps) data-left=(LEFT) {
                text.lane x="8" y=(WAVE * 0.5 + 4.0) { "Caller" }
                text.lane x="8" y=(WAVE * 1.5 + 8.0) { "Agent" }
                @for (row, peaks) in [(0.0, &r.envelope[0]), (1.0, &r.envelope[1])] {
                    @let mid = row * (WAVE + 4.0) + WAVE / 2.0;
                    @for (bx, h) in bars(peaks) {
                        @let half = (h / 255.0 * WAVE / 2.0).max(0.5);
                        rect class=(if row == 0.0 { "wave caller" } else { "wave agent" }) x=(px(LEFT + bx)) y=(px(mid - half)) width="1" height=(px(2.0 * half)) {}
                    }
                }
                @for (end, start) in &latencies {
                    line.latency x1=(px(x(*end))) x2=(px(x(*start))) y1=(px(WAVE + 2.0)) y2=(px(WAVE + 2.0)) {
                        title { "Latency at the caller's ear: " (start - end) " ms" }
                    }
                }
                @for (at, stopped) in &barge_ins {
                    rect.bargein x=(px(x(*at))) y="0" width=(px((x(*stopped) - x(*at)).max(1.0))) height=(px(2.0 * WAVE + 4.0)) {
                        title { "Barge-in at " (seconds(*at as f64 / 1000.0)) ": the agent stopped after " (stopped - at) " ms" }
                    }
                }
                text.axis x=(px(LEFT)) y=(px(WAVE_HEIGHT - 6.0)) { "0 s" }
                text.axis x=(px(LEFT + PLOT)) y=(px(WAVE_HEIGHT - 6.0)) text-anchor="end" { (seconds(duration)) }
            }
            p.muted { (latencies.len()) " answers measured at the caller's ear, " (barge_ins.len()) " barge-ins; click the waveform or a transcript row to play from it." }
        }
    }
}
