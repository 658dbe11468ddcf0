//! Calls: the filtered list, one call with its timeline, evaluating again.

use super::*;

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
                        td { (or_dash(s.agent_id)) }
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
    let s = &call.summary;
    let raw_link = format!("/projects/{}/calls/{}/raw", project.id, s.call_id);
    Ok(page(&s.external_id, Some(&admin), Some(&project), html! {
        h1 { "Call " code { (s.external_id) } }
        div.card {
            p {
                "Started " (when(s.started_at)) " · " (seconds(s.duration_seconds)) " · ended: " (s.ended_reason)
                " · agent " (or_dash(s.agent_id)) " · from " (or_dash(s.from_phone_number.as_deref())) " to " (or_dash(s.to_phone_number.as_deref()))
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
        h2 { "Transcript" }
        (timeline(&call))
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
                        td { (verdict(e.passed)) }
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

/// Each turn with speaker, offset and duration; the gap before agent turns as latency (slow ones
/// highlighted); overlaps marked as interruptions; tool rows folded.
pub(super) fn timeline(call: &CallDetail) -> Markup {
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
    html! {
        table #timeline {
            tr { th { "#" } th { "Speaker" } th { "At" } th { "Length" } th { "Gap" } th { "Text" } }
            @for (i, (m, gap)) in call.messages.iter().zip(gaps).enumerate() {
                @let slow = m.role == Role::Bot && gap.is_some_and(|g| g > SLOW_SECONDS);
                @let class = match gap { Some(g) if g < 0.0 => "overlap", _ if slow => "slow", _ => "" };
                tr class=(class) {
                    td { (i) }
                    td { (speaker(m.role)) }
                    td { (or_dash(m.start_offset.map(seconds))) }
                    td { (or_dash(m.start_offset.zip(m.end_offset).map(|(s, e)| seconds(e - s)))) }
                    td {
                        @match gap {
                            Some(g) if g < 0.0 => { span.warn { "interrupts (" (seconds(-g)) " overlap)" } },
                            Some(g) if m.role == Role::Bot => { "latency " (seconds(g)) },
                            Some(g) => { (seconds(g)) },
                            None => { "" },
                        }
                    }
                    td {
                        @if matches!(m.role, Role::FunctionCall | Role::FunctionCallResult) {
                            details { summary { (m.data.as_ref().and_then(|d| d.get("name")).and_then(|n| n.as_str()).unwrap_or("tool")) }
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
