//! Dashboard pages. Thin like the API handlers: read the store, render.

use axum::extract::{Path, Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use callgrade_core::{BuiltinKey, MetricDefinition, Role};
use callgrade_store::{
    CallDetail, CallFilter, CallKind, DeliveryFilter, DeliveryOutcome, Project, RunFilter,
};
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{csrf, error, json_block, or_dash, page, verdict, WebError};
use super::session::{cleared_cookie, new_session_cookie, Admin};
use crate::{cekura_webhook_url, project_webhook_url, AppState};
use callgrade_app::{admin, metrics};

/// Agent turns that start this long after the user stops are highlighted.
const SLOW_SECONDS: f64 = 2.0;

type Page = Result<Response, WebError>;

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to.to_owned())]).into_response()
}

async fn load_project(state: &AppState, id: &str) -> Result<Project, WebError> {
    let missing = || error(StatusCode::NOT_FOUND, "no such project");
    let id: i64 = id.parse().map_err(|_| missing())?;
    state.app.store.project(id).await?.ok_or_else(missing)
}

fn check_csrf(admin: &Admin, submitted: &str) -> Result<(), WebError> {
    if admin.csrf_ok(submitted) {
        Ok(())
    } else {
        Err(error(
            StatusCode::FORBIDDEN,
            "this form has expired; reload the page and try again",
        ))
    }
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn seconds(v: f64) -> String {
    format!("{v:.2} s")
}

// ---- sign-in ----

pub async fn login_page(State(state): State<AppState>) -> Html<String> {
    login_form(&state, None).await
}

async fn login_form(state: &AppState, problem: Option<&str>) -> Html<String> {
    let configured = matches!(admin::admin_token_hash(&state.app).await, Ok(Some(_)));
    page(
        "Sign in",
        None,
        None,
        html! {
            h1 { "Sign in" }
            @if !configured {
                div.empty {
                    p { "No admin token exists yet. Create one on the server:" }
                    pre { "callgrade admin token" }
                }
            }
            @if let Some(p) = problem { p.bad { (p) } }
            form.card method="post" action="/login" {
                label { "Admin token " input type="password" name="token" autocomplete="current-password" autofocus; }
                " "
                button type="submit" { "Sign in" }
            }
        },
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

pub async fn login(State(state): State<AppState>, Form(form): Form<LoginForm>) -> Response {
    if admin::admin_token_matches(&state.app, &form.token).await {
        if let Some(cookie) = new_session_cookie(&state).await {
            let mut response = see_other("/");
            response.headers_mut().insert(SET_COOKIE, cookie);
            return response;
        }
    }
    (
        StatusCode::UNAUTHORIZED,
        login_form(&state, Some("That is not the admin token.")).await,
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(rename = "_csrf")]
    csrf: String,
}

pub async fn logout(admin: Admin, Form(form): Form<CsrfForm>) -> Page {
    check_csrf(&admin, &form.csrf)?;
    let mut response = see_other("/login");
    response.headers_mut().insert(SET_COOKIE, cleared_cookie());
    Ok(response)
}

// ---- projects ----

pub async fn home(State(state): State<AppState>, admin: Admin) -> Page {
    let projects = state.app.store.list_projects().await?;
    Ok(page("Projects", Some(&admin), None, html! {
        h1 { "Projects" }
        @if projects.is_empty() {
            div.empty { p { "No projects yet. A project is an environment (staging, production…) with its own webhook URL and API key." } }
        } @else {
            table {
                tr { th { "Name" } th { "Webhook URL" } th { "Key" } th { "Created" } }
                @for p in &projects {
                    tr {
                        td { a href={ "/projects/" (p.id) } { (p.name) } }
                        td { code { (project_webhook_url(&state.settings.public_url, p.id)) } }
                        td { code { (p.key_prefix) "…" } }
                        td { (when(p.created_at)) }
                    }
                }
            }
        }
        h2 { "New project" }
        form.card method="post" action="/projects" {
            (csrf(&admin))
            input type="text" name="name" placeholder="staging" required;
            " "
            button type="submit" { "Create project" }
        }
    }).into_response())
}

#[derive(Deserialize)]
pub struct NameForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    name: String,
}

pub async fn create_project(
    State(state): State<AppState>,
    admin: Admin,
    Form(form): Form<NameForm>,
) -> Page {
    check_csrf(&admin, &form.csrf)?;
    let (project, key) = admin::create_project(&state.app, &form.name).await?;
    Ok(key_page(&state, &admin, &project, key.expose(), "Project created").into_response())
}

/// Shows a key once, with the URLs that use it.
fn key_page(
    state: &AppState,
    admin: &Admin,
    project: &Project,
    key: &str,
    title: &str,
) -> Html<String> {
    page(
        title,
        Some(admin),
        Some(project),
        html! {
            h1 { (title) ": " (project.name) }
            div.card {
                p.warn { "This API key is shown only now. Store it in your sender's secrets." }
                div.copy { code #api-key { (key) } button.secondary type="button" data-copy=(key) { "Copy" } }
            }
            (webhook_urls(state, project))
            p { a href={ "/projects/" (project.id) } { "Go to the project" } }
        },
    )
}

fn webhook_urls(state: &AppState, project: &Project) -> Markup {
    let own = project_webhook_url(&state.settings.public_url, project.id);
    let cekura = cekura_webhook_url(&state.settings.public_url);
    html! {
        div.card {
            h2 { "Webhook" }
            p { "Send each finished call's transcript here, with the header " code { "X-CEKURA-API-KEY" } "." }
            div.copy { span.muted { "Project URL" } code { (own) } button.secondary type="button" data-copy=(own) { "Copy" } }
            div.copy { span.muted { "Cekura's path" } code { (cekura) } button.secondary type="button" data-copy=(cekura) { "Copy" } }
        }
    }
}

fn curl_example(state: &AppState, project: &Project, agent_id: i64) -> String {
    format!(
        "curl -X POST {} \\\n  -H \"X-CEKURA-API-KEY: $CALLGRADE_KEY\" -H \"Content-Type: application/json\" \\\n  -d '{{\"agent_id\": {agent_id}, \"calls\": [{{\"id\": \"first-call\", \"startedAt\": \"2025-10-15T09:22:21Z\", \"endedAt\": \"2025-10-15T09:23:30Z\", \"messages\": [{{\"role\": \"bot\", \"content\": \"Hi, how can I help?\", \"start_time\": 0.4, \"end_time\": 1.9}}, {{\"role\": \"user\", \"content\": \"I have a billing question.\", \"start_time\": 2.6, \"end_time\": 4.0}}]}}]}}'",
        project_webhook_url(&state.settings.public_url, project.id)
    )
}

pub async fn project(State(state): State<AppState>, admin: Admin, Path(id): Path<String>) -> Page {
    let project = load_project(&state, &id).await?;
    let agents = state.app.store.list_agents(project.id).await?;
    let has_calls = !state
        .app
        .store
        .list_calls(
            project.id,
            &CallFilter {
                limit: 1,
                ..Default::default()
            },
        )
        .await?
        .data
        .is_empty();
    let example_agent = agents.first().map_or(1, |a| a.id);
    Ok(page(&project.name, Some(&admin), Some(&project), html! {
        h1 { (project.name) }
        @if !has_calls {
            div.empty {
                h2 { "Send your first call" }
                @if agents.is_empty() { p { "Create an agent below first; its id is the " code { "agent_id" } " of the payload." } }
                p { "With your project key in " code { "CALLGRADE_KEY" } ":" }
                pre #first-call { (curl_example(&state, &project, example_agent)) }
            }
        }
        (webhook_urls(&state, &project))
        div.card {
            h2 { "API key" }
            p { "Current key: " code { (project.key_prefix) "…" } ". Rotating makes the old key stop working at once." }
            form method="post" action={ "/projects/" (project.id) "/rotate-key" } {
                (csrf(&admin))
                button.secondary type="submit" { "Rotate the key" }
            }
            form method="post" action={ "/projects/" (project.id) "/settings" } {
                (csrf(&admin))
                label { "Listening window (s) " input type="number" name="listening_window_seconds" min="1" max="86400" value=(project.listening_window_seconds); }
                " "
                label { "Run deadline (s) " input type="number" name="run_deadline_seconds" min="60" max="604800" value=(project.run_deadline_seconds); }
                " " button.secondary type="submit" { "Save settings" }
            }
        }
        h2 { "Agents" }
        @if agents.is_empty() {
            p.muted { "No agents yet." }
        } @else {
            table {
                tr { th { "agent_id" } th { "Name, phone and description (edit and save)" } }
                @for a in &agents {
                    tr {
                        td { code { (a.id) } }
                        td {
                            form method="post" action={ "/projects/" (project.id) "/agents/" (a.id) } {
                                (csrf(&admin))
                                input type="text" name="name" value=(a.name) required;
                                " " input type="text" name="phone_number" placeholder="+14155551234" value=[a.phone_number.as_deref()];
                                " " input type="text" name="description" size="40" value=[a.description.as_deref()];
                                " " button.secondary type="submit" { "Save" }
                            }
                        }
                    }
                }
            }
        }
        form.card method="post" action={ "/projects/" (project.id) "/agents" } {
            (csrf(&admin))
            input type="text" name="name" placeholder="support-bot" required;
            " "
            input type="text" name="phone_number" placeholder="+14155551234 (optional)";
            " "
            input type="text" name="description" placeholder="what the agent is for (optional)";
            " "
            button type="submit" { "Create agent" }
        }
    }).into_response())
}

#[derive(Deserialize)]
pub struct AgentForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    name: String,
    #[serde(default)]
    phone_number: String,
    #[serde(default)]
    description: String,
}

pub async fn create_agent(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Form(form): Form<AgentForm>,
) -> Page {
    check_csrf(&admin, &form.csrf)?;
    let project = load_project(&state, &id).await?;
    admin::create_agent(&state.app, project.id, form.draft()).await?;
    Ok(see_other(&format!("/projects/{}", project.id)))
}

impl AgentForm {
    fn draft(&self) -> admin::AgentDraft<'_> {
        admin::AgentDraft {
            name: &self.name,
            phone_number: Some(&self.phone_number),
            description: Some(&self.description),
        }
    }
}

pub async fn update_agent(
    State(state): State<AppState>,
    admin: Admin,
    Path((id, agent_id)): Path<(String, String)>,
    Form(form): Form<AgentForm>,
) -> Page {
    check_csrf(&admin, &form.csrf)?;
    let project = load_project(&state, &id).await?;
    let agent_id: i64 = agent_id
        .parse()
        .map_err(|_| error(StatusCode::NOT_FOUND, "no such agent"))?;
    admin::update_agent(&state.app, project.id, agent_id, form.draft()).await?;
    Ok(see_other(&format!("/projects/{}", project.id)))
}

#[derive(Deserialize)]
pub struct SettingsForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    listening_window_seconds: i64,
    run_deadline_seconds: i64,
}

pub async fn update_settings(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Form(form): Form<SettingsForm>,
) -> Page {
    check_csrf(&admin, &form.csrf)?;
    let project = load_project(&state, &id).await?;
    let settings = callgrade_store::ProjectSettings {
        listening_window_seconds: Some(form.listening_window_seconds),
        run_deadline_seconds: Some(form.run_deadline_seconds),
    };
    admin::configure_project(&state.app, project.id, &settings).await?;
    Ok(see_other(&format!("/projects/{}", project.id)))
}

pub async fn rotate_key(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Page {
    check_csrf(&admin, &form.csrf)?;
    let project = load_project(&state, &id).await?;
    let key = state.app.store.rotate_key(project.id).await?;
    Ok(key_page(&state, &admin, &project, key.expose(), "Key rotated").into_response())
}

// ---- calls ----

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
fn given(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn parse_time(s: &Option<String>) -> Option<i64> {
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
                        td { a href={ "/projects/" (project.id) "/calls/" (s.call_id) } { (s.id) } }
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

pub async fn call(
    State(state): State<AppState>,
    admin: Admin,
    Path((id, call_id)): Path<(String, String)>,
) -> Page {
    let project = load_project(&state, &id).await?;
    let call = state
        .app
        .store
        .call(project.id, &call_id)
        .await?
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "no such call in this project"))?;
    let s = &call.summary;
    Ok(page(&s.id, Some(&admin), Some(&project), html! {
        h1 { "Call " code { (s.id) } }
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
            table {
                tr { th { "Metric" } th { "Rule" } th { "Actual" } th { "Result" } }
                @for r in &rubric.rules {
                    tr { td { (r.metric) } td { code { (format!("{:?} {}", r.op, r.expected)) } } td { (or_dash(r.actual.as_ref())) } td { (verdict(r.passed)) } }
                }
            }
        }
        h2 { "Metadata" }
        (json_block(&call.metadata))
        details { summary { "Raw payload, as received" } (json_block(&call.raw)) }
    }).into_response())
}

/// Each turn with speaker, offset and duration; the gap before agent turns as latency (slow ones
/// highlighted); overlaps marked as interruptions; tool rows folded.
fn timeline(call: &CallDetail) -> Markup {
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
                    td { (match m.role { Role::Bot => "Agent", Role::User => "User", Role::System => "System", Role::FunctionCall => "Tool call", Role::FunctionCallResult => "Tool result" }) }
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

// ---- runs ----

pub async fn runs(State(state): State<AppState>, admin: Admin, Path(id): Path<String>) -> Page {
    let project = load_project(&state, &id).await?;
    let runs = state
        .app
        .store
        .list_runs(
            project.id,
            &RunFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .await?;
    Ok(page("Runs", Some(&admin), Some(&project), html! {
        h1 { "Test runs" }
        @if runs.data.is_empty() {
            div.empty { p { "No test runs yet. Start some with " code { "callgrade test start" } " or " code { "POST /api/v1/results" } "." } }
        } @else {
            table {
                tr { th { "Run" } th { "Result" } th { "Scenario" } th { "Tester" } th { "Status" } th { "Matched by" } th { "Call" } th { "Success" } th { "Why" } th { "Attach a call" } }
                @for r in &runs.data {
                    tr {
                        td { (r.id) } td { a href={ "/projects/" (project.id) "/results/" (r.result_id) } { (r.result_id) } } td { (r.scenario_name) }
                        td { (or_dash(r.tester_phone_number.as_deref())) }
                        td { (r.status.as_str()) @if r.late { " " span.warn { "late" } } }
                        td { (or_dash(r.matched_by.map(|m| m.as_str()))) }
                        td { @if let Some(c) = &r.call_id { a href={ "/projects/" (project.id) "/calls/" (c) } { "open" } } @else { span.muted { "–" } } }
                        td { (verdict(r.success)) }
                        td { (or_dash(r.error_message.as_deref())) }
                        td {
                            // Ambiguous and late calls are attached by hand.
                            @if r.status != callgrade_core::RunStatus::Cancelled && (r.call_id.is_none() || r.late) {
                                form method="post" action={ "/projects/" (project.id) "/runs/" (r.id) "/attach" } {
                                    (csrf(&admin))
                                    input type="text" name="call_id" placeholder="call id" size="12" required value=[r.call_id.as_deref()];
                                    " " button.secondary type="submit" { "Attach" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }).into_response())
}

// ---- deliveries ----

#[derive(Deserialize)]
pub struct DeliveriesQuery {
    outcome: Option<String>,
    cursor: Option<String>,
}

pub async fn deliveries(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Query(q): Query<DeliveriesQuery>,
) -> Page {
    let project = load_project(&state, &id).await?;
    let rejected_only = q.outcome.as_deref() == Some("rejected");
    let filter = DeliveryFilter {
        outcome: rejected_only.then_some(DeliveryOutcome::Rejected),
        cursor: q.cursor.clone(),
        limit: 50,
    };
    let log = state.app.store.list_deliveries(project.id, &filter).await?;
    Ok(page("Deliveries", Some(&admin), Some(&project), html! {
        h1 { "Webhook deliveries" }
        p.nav {
            a href={ "/projects/" (project.id) "/deliveries" } { "All" }
            a href={ "/projects/" (project.id) "/deliveries?outcome=rejected" } { "Failures only" }
        }
        @if log.data.is_empty() {
            div.empty { p { "No deliveries " @if rejected_only { "rejected " } "yet. Every authenticated webhook request is listed here, accepted or not." } }
        } @else {
            table #deliveries {
                tr { th { "Received" } th { "Status" } th { "Route" } th { "Size" } th { "Calls" } th { "Problems" } }
                @for d in &log.data {
                    tr {
                        td { a href={ "/projects/" (project.id) "/deliveries/" (d.id) } { (when(d.received_at)) } }
                        td { @if d.status < 300 { span.ok { (d.status) } } @else { span.bad { (d.status) " " (d.error.as_deref().unwrap_or("")) } } }
                        td { code { (d.route) } }
                        td { (d.body_size) " B" }
                        td { (d.accepted_calls) }
                        td {
                            @if let Some(detail) = &d.detail { (detail) }
                            @if !d.errors.is_empty() { ul { @for e in &d.errors { li { code { (e.path) } ": " (e.message) } } } }
                        }
                    }
                }
            }
        }
        @if let Some(next) = &log.next_cursor {
            p { a href={ "/projects/" (project.id) "/deliveries?cursor=" (next) @if rejected_only { "&outcome=rejected" } } { "Older →" } }
        }
    }).into_response())
}

pub async fn delivery(
    State(state): State<AppState>,
    admin: Admin,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Page {
    let project = load_project(&state, &id).await?;
    let missing = || error(StatusCode::NOT_FOUND, "no such delivery in this project");
    let delivery_id: i64 = delivery_id.parse().map_err(|_| missing())?;
    let d = state
        .app
        .store
        .delivery(project.id, delivery_id)
        .await?
        .ok_or_else(missing)?;
    Ok(page("Delivery", Some(&admin), Some(&project), html! {
        h1 { "Delivery " (d.summary.id) }
        div.card {
            p { (when(d.summary.received_at)) " · " code { (d.summary.route) } " · HTTP " (d.summary.status) " · " (d.summary.body_size) " bytes" }
            @if let Some(detail) = &d.summary.detail { p.bad { (detail) } }
            @if !d.summary.errors.is_empty() { ul { @for e in &d.summary.errors { li { code { (e.path) } ": " (e.message) } } } }
        }
        h2 { "Body" @if d.body_truncated { " " span.muted { "(cut at the log's cap)" } } }
        pre { (d.body.as_deref().unwrap_or("")) }
    }).into_response())
}

#[derive(Deserialize)]
pub struct AttachForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    call_id: String,
}

pub async fn attach(
    State(state): State<AppState>,
    admin: Admin,
    Path((id, run_id)): Path<(String, String)>,
    Form(form): Form<AttachForm>,
) -> Page {
    check_csrf(&admin, &form.csrf)?;
    let project = load_project(&state, &id).await?;
    let run_id: i64 = run_id
        .parse()
        .map_err(|_| error(StatusCode::NOT_FOUND, "no such run"))?;
    callgrade_app::runs::attach(&state.app, project.id, run_id, &form.call_id).await?;
    Ok(see_other(&format!("/projects/{}/runs", project.id)))
}

// ---- metrics ----

const TRY_EXAMPLE: &str = r#"{"name": "mentions_refund", "kind": "script", "output": "binary",
 "config": {"script": "result = data.transcript.contains(\"refund\");"}}"#;

#[derive(Deserialize, Default)]
pub struct MetricsQuery {
    agent_id: Option<String>,
}

pub async fn metrics(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Query(q): Query<MetricsQuery>,
) -> Page {
    let project = load_project(&state, &id).await?;
    let agent_id: Option<i64> = q.agent_id.as_deref().and_then(|a| a.parse().ok());
    metrics_page(&state, &admin, &project, agent_id, None).await
}

/// One day's aggregates, for the charts.
struct Day {
    label: String,
    summary: Vec<callgrade_store::MetricSummary>,
}

/// The name of the project's metric that computes a builtin, preferring one on the catalogue's
/// settings: columns and charts follow the computation, whatever the metric is called. The
/// builtin's own key when the project has no such metric (it then shows no values).
fn builtin_metric_name(metrics: &[callgrade_store::Metric], key: BuiltinKey) -> &str {
    let computes = |m: &&callgrade_store::Metric, defaults: bool| {
        matches!(&m.spec.definition,
            MetricDefinition::Builtin { key: k, config, .. } if *k == key && (!defaults || config.is_none()))
    };
    metrics
        .iter()
        .find(|m| computes(m, true))
        .or_else(|| metrics.iter().find(|m| computes(m, false)))
        .map_or(key.as_str(), |m| m.spec.name.as_str())
}

impl Day {
    fn get(&self, metric: &str) -> Option<&callgrade_store::MetricSummary> {
        self.summary.iter().find(|m| m.metric_name == metric)
    }
}

/// How a chart reads one day's value.
type DayValue<'a> = dyn Fn(&Day) -> Option<f64> + 'a;

/// A chart's series: its name and how to read a day's value.
type Series<'a> = (&'a str, &'a DayValue<'a>);

/// A small line chart as inline SVG: one polyline per series, days along the x axis.
fn chart(title: &str, days: &[Day], series: &[Series<'_>]) -> Markup {
    const W: f64 = 520.0;
    const H: f64 = 140.0;
    const COLORS: [&str; 3] = ["#3552d6", "#b54708", "#137a3f"];
    let values: Vec<Vec<Option<f64>>> = series
        .iter()
        .map(|(_, f)| days.iter().map(f).collect())
        .collect();
    let max = values
        .iter()
        .flatten()
        .flatten()
        .fold(0.0_f64, |m, v| m.max(*v))
        .max(1e-9);
    let x = |i: usize| 30.0 + i as f64 * (W - 40.0) / (days.len().max(2) - 1) as f64;
    let y = |v: f64| H - 20.0 - v / max * (H - 40.0);
    html! {
        figure.card {
            figcaption {
                strong { (title) } " "
                @if values.iter().flatten().all(Option::is_none) { span.muted { "no data in these days" } }
                @else { span.muted { "max " (format!("{max:.2}")) } }
            }
            svg width=(W) height=(H) viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(title) {
                line x1="30" y1=(H - 20.0) x2=(W - 10.0) y2=(H - 20.0) stroke="#d0d5dd" {}
                @for (s, points) in values.iter().enumerate() {
                    polyline fill="none" stroke=(COLORS[s % 3]) stroke-width="2"
                        points=(points.iter().enumerate().filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), y(v)))).collect::<Vec<_>>().join(" ")) {}
                    // Dots, so a lone day still shows.
                    @for (i, v) in points.iter().enumerate() {
                        @if let Some(v) = v { circle cx=(format!("{:.1}", x(i))) cy=(format!("{:.1}", y(*v))) r="3" fill=(COLORS[s % 3]) {} }
                    }
                }
                @for (i, d) in days.iter().enumerate() {
                    @if i % 2 == 0 { text x=(x(i)) y=(H - 4.0) font-size="9" text-anchor="middle" fill="#667085" { (d.label) } }
                }
            }
            p.muted { @for (s, (name, _)) in series.iter().enumerate() { span style={ "color:" (COLORS[s % 3]) } { "■ " (name) } " " } }
        }
    }
}

async fn metrics_page(
    state: &AppState,
    admin: &Admin,
    project: &Project,
    agent_id: Option<i64>,
    tried: Option<Markup>,
) -> Page {
    let metrics = state.app.store.list_metrics(project.id).await?;
    let agents = state.app.store.list_agents(project.id).await?;
    // Fourteen days of per-metric aggregates, one summary per day.
    let today = state.app.now().date_naive();
    let mut days = Vec::new();
    for back in (0..14).rev() {
        let day = today - chrono::Days::new(back);
        let from = day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
        let summary = state
            .app
            .store
            .metrics_summary(
                project.id,
                agent_id,
                Some(from.timestamp_millis()),
                Some((from + chrono::TimeDelta::days(1)).timestamp_millis()),
            )
            .await?;
        days.push(Day {
            label: day.format("%m-%d").to_string(),
            summary,
        });
    }
    let [latency, user_interrupting, agent_interrupting, duration] = [
        BuiltinKey::AgentLatency,
        BuiltinKey::UserInterruptingAgent,
        BuiltinKey::AgentInterruptingUser,
        BuiltinKey::CallDuration,
    ]
    .map(|key| builtin_metric_name(&metrics, key));
    // The closures only live while the charts render (they are not Send).
    let charts = {
        // Pass rate per metric, for the (up to three) metrics that have a pass condition.
        let judged: Vec<String> = metrics
            .iter()
            .filter(|m| {
                m.spec.pass.is_some() || m.spec.output == callgrade_core::OutputType::Binary
            })
            .map(|m| m.spec.name.clone())
            .take(3)
            .collect();
        let readers: Vec<Box<DayValue<'_>>> = judged
            .iter()
            .map(|name| {
                let name = name.clone();
                Box::new(move |d: &Day| d.get(&name).and_then(|m| m.pass_rate)) as Box<DayValue<'_>>
            })
            .collect();
        let pass_series: Vec<Series<'_>> = judged
            .iter()
            .zip(&readers)
            .map(|(n, r)| (n.as_str(), r.as_ref()))
            .collect();
        html! {
            (chart("Agent latency (s)", &days, &[
                ("p50", &|d: &Day| d.get(latency).and_then(|m| m.p50)),
                ("p90", &|d: &Day| d.get(latency).and_then(|m| m.p90)),
            ]))
            (chart("Interruptions per call", &days, &[
                ("user", &|d: &Day| d.get(user_interrupting).and_then(|m| m.avg)),
                ("agent", &|d: &Day| d.get(agent_interrupting).and_then(|m| m.avg)),
            ]))
            (chart("Calls per day", &days, &[("calls", &|d: &Day| d.get(duration).map(|m| (m.count + m.without_value) as f64))]))
            (chart("Pass rate", &days, &pass_series))
        }
    };
    let since = (state.app.now() - chrono::TimeDelta::days(7)).timestamp_millis();
    let summary = state
        .app
        .store
        .metrics_summary(project.id, None, Some(since), None)
        .await?;
    let rubric = state.app.store.rubric(project.id).await?;
    let number = |v: Option<f64>| v.map(|n| format!("{n:.3}"));
    Ok(page("Metrics", Some(admin), Some(project), html! {
        h1 { "Metrics" }
        form.filters method="get" {
            label { "Agent " select name="agent_id" {
                option value="" { "all" }
                @for a in &agents { option value=(a.id) selected[agent_id == Some(a.id)] { (a.name) } }
            } }
            button type="submit" { "Show" }
        }
        h2 { "Last 14 days" }
        div #charts { (charts) }
        h2 { "Last 7 days" }
        @if summary.is_empty() {
            p.muted { "No evaluated calls in the last 7 days." }
        } @else {
            table #summary {
                tr { th { "Metric" } th { "Results" } th { "Without value" } th { "Pass rate" } th { "Avg" } th { "p50" } th { "p90" } }
                @for m in &summary {
                    tr {
                        td { (m.metric_name) }
                        td { (m.count) }
                        td { (m.without_value) }
                        td { (or_dash(m.pass_rate.map(|r| format!("{:.0}%", r * 100.0)))) }
                        td { (or_dash(number(m.avg))) }
                        td { (or_dash(number(m.p50))) }
                        td { (or_dash(number(m.p90))) }
                    }
                }
            }
        }
        h2 { "Rubric" }
        @if rubric.is_empty() {
            p.muted { "No rules: every evaluated call succeeds. Set rules with " code { "PUT /api/v1/rubric" } " or " code { "callgrade metrics apply" } "." }
        } @else {
            ul { @for r in &rubric { li { code { (r.metric) " " (format!("{:?}", r.op).to_lowercase()) " " (r.value) } } } }
        }
        h2 { "Try a metric on a call" }
        form.card method="post" action={ "/projects/" (project.id) "/metrics/try" } {
            (csrf(admin))
            p { "A metric definition (JSON, as for " code { "POST /api/v1/metrics" } ") and a call id; nothing is stored." }
            textarea name="definition" rows="4" cols="100" { (TRY_EXAMPLE) }
            br;
            input type="text" name="call_id" placeholder="call id" required;
            " " button type="submit" { "Try" }
        }
        @if let Some(tried) = tried { (tried) }
        h2 { "Create or change a metric" }
        form.card method="post" action={ "/projects/" (project.id) "/metrics/save" } {
            (csrf(admin))
            p { "A definition as JSON. A metric with the same name is replaced (its version goes up; old results are kept)." }
            textarea name="definition" rows="4" cols="100" { (TRY_EXAMPLE) }
            br;
            button type="submit" { "Save" }
        }
        h2 { "Definitions" }
        table #definitions {
            tr { th { "Name" } th { "Kind" } th { "Output" } th { "Applies to" } th { "Version" } th { "Configuration" } }
            @for m in &metrics {
                tr {
                    td { (m.spec.name) @if !m.spec.enabled { " " span.muted { "(disabled)" } } }
                    td { (m.spec.kind().as_str()) }
                    td { (m.spec.output.as_str()) }
                    td { (m.spec.applies_to.as_str()) }
                    td { (m.version) }
                    td { code { (m.spec.config()) } }
                }
            }
        }
    }).into_response())
}

#[derive(Deserialize)]
pub struct TryForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    definition: String,
    call_id: String,
}

pub async fn try_metric(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Form(form): Form<TryForm>,
) -> Page {
    check_csrf(&admin, &form.csrf)?;
    let project = load_project(&state, &id).await?;
    let outcome = match serde_json::from_str::<callgrade_core::MetricDraft>(&form.definition) {
        Err(e) => Err(format!("the definition is not valid: {e}")),
        Ok(draft) => metrics::try_metric(&state.app, project.id, draft, form.call_id.trim())
            .await
            .map_err(|e| match e {
                callgrade_app::AppError::Invalid(_) => e.problems().join("; "),
                other => other.to_string(),
            }),
    };
    let tried = match outcome {
        Ok(e) => html! {
            div.card #tried {
                p { "Status " strong { (e.status.as_str()) } " · value " code { (or_dash(e.value.as_ref())) } " · pass " (verdict(e.passed)) }
                p { (e.explanation) }
            }
        },
        Err(problem) => html! { div.card #tried { p.bad { (problem) } } },
    };
    metrics_page(&state, &admin, &project, None, Some(tried)).await
}

#[derive(Deserialize)]
pub struct SaveForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    definition: String,
}

/// Creates a metric, or replaces the one with the same name.
pub async fn save_metric(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Form(form): Form<SaveForm>,
) -> Page {
    check_csrf(&admin, &form.csrf)?;
    let project = load_project(&state, &id).await?;
    let draft: callgrade_core::MetricDraft =
        serde_json::from_str(&form.definition).map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                &format!("The definition is not valid: {e}."),
            )
        })?;
    metrics::save(&state.app, project.id, draft).await?;
    Ok(see_other(&format!("/projects/{}/metrics", project.id)))
}

pub async fn result(
    State(state): State<AppState>,
    admin: Admin,
    Path((id, result_id)): Path<(String, String)>,
) -> Page {
    let project = load_project(&state, &id).await?;
    let missing = || error(StatusCode::NOT_FOUND, "no such result in this project");
    let result_id: i64 = result_id.parse().map_err(|_| missing())?;
    let result = state
        .app
        .store
        .result(project.id, result_id)
        .await?
        .ok_or_else(missing)?;
    let c = &result.counts;
    Ok(page("Result", Some(&admin), Some(&project), html! {
        h1 { "Result " (result.id) @if let Some(name) = &result.name { " · " (name) } }
        div.card {
            p { (c.total) (if c.total == 1 { " run · " } else { " runs · " }) span.ok { (c.completed) " completed" } " · " span.bad { (c.failed) " failed" } " · "
                span.warn { (c.timeout) " timed out" } " · " (c.cancelled) " cancelled · "
                (c.pending + c.in_progress + c.awaiting_transcript + c.evaluating) " waiting"
                @if result.finished { " · finished" } }
        }
        table #runs {
            tr { th { "Run" } th { "Scenario" } th { "Status" } th { "Matched by" } th { "Call" } th { "Success" } th { "Why" } }
            @for r in &result.runs {
                tr {
                    td { (r.id) } td { (r.scenario_name) }
                    td { (r.status.as_str()) @if r.late { " " span.warn { "late" } } }
                    td { (or_dash(r.matched_by.map(|m| m.as_str()))) }
                    td { @if let Some(call) = &r.call_id { a href={ "/projects/" (project.id) "/calls/" (call) } { "open" } } @else { span.muted { "–" } } }
                    td { (verdict(r.success)) }
                    td { (or_dash(r.error_message.as_deref())) }
                }
            }
        }
    }).into_response())
}
