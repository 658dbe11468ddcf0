//! Outbound webhooks: a project's endpoints (created, tested, enabled or disabled, rotated,
//! deleted), their deliveries with every attempt, and replays.

use super::*;
use callgrade_app::webhooks::{self, WithSecret};
use callgrade_core::outbound::EventType;
use callgrade_store::{OutboundFilter, OutboundStatus, WebhookEndpoint};
use std::collections::HashMap;

/// The events a form may subscribe to, in the order shown.
fn subscribable() -> impl Iterator<Item = EventType> {
    EventType::ALL.into_iter().filter(|t| *t != EventType::Test)
}

/// What the page shows above the endpoints: a secret shown once, or why a form failed.
enum Notice {
    Secret(WithSecret),
    Problems(Vec<String>),
    Said(String),
}

/// The typed values of the create form, kept on an error.
#[derive(Default)]
struct Typed {
    url: String,
    description: String,
    events: Vec<String>,
    cekura: bool,
}

pub async fn webhooks(State(state): State<AppState>, admin: Admin, Path(id): Path<String>) -> Page {
    let project = load_project(&state, &id).await?;
    webhooks_page(&state, &admin, &project, None, Typed::default()).await
}

async fn webhooks_page(
    state: &AppState,
    admin: &Admin,
    project: &Project,
    notice: Option<Notice>,
    typed: Typed,
) -> Page {
    let endpoints = state.app.store.list_endpoints(project.id).await?;
    let filter = OutboundFilter {
        limit: 50,
        ..Default::default()
    };
    let deliveries = webhooks::deliveries(&state.app, project.id, &filter).await?;
    let url_of = |endpoint: i64| {
        endpoints
            .iter()
            .find(|e| e.id == endpoint)
            .map_or("(deleted)", |e| e.url.as_str())
            .to_owned()
    };
    let base = format!("/projects/{}/webhooks", project.id);
    let events = if typed.events.is_empty() {
        vec!["call.evaluated".to_owned(), "result.completed".to_owned()]
    } else {
        typed.events.clone()
    };
    Ok(page("Webhooks", Some(admin), Some(project), html! {
        h1 { "Outbound webhooks" }
        p.muted { "Events signed per Standard Webhooks, delivered at least once and retried for about a day; "
            "docs/webhooks.md shows their payloads and how to verify them." }
        @match &notice {
            Some(Notice::Secret(w)) => div.card #notice {
                p { "The signing secret of " code { (w.endpoint.url) } ", shown this once:" }
                pre #secret { (w.secret) }
                p.muted { "Verify each request's " code { "webhook-signature" } " with it (Standard Webhooks libraries take it as is)." }
            },
            Some(Notice::Problems(problems)) => div.card #notice {
                p.bad { "Not saved:" }
                ul { @for p in problems { li { (p) } } }
            },
            Some(Notice::Said(text)) => div.card #notice { p { (text) } },
            None => {},
        }
        h2 { "Endpoints" }
        @if endpoints.is_empty() {
            div.empty { p { "No endpoint yet. Add one below to be told when calls are evaluated, runs finish or webhook requests are refused." } }
        } @else {
            table #endpoints {
                tr { th { "URL" } th { "Events" } th { "State" } th { "" } }
                @for e in &endpoints { (endpoint_row(admin, &base, e)) }
            }
        }
        h2 { "Add an endpoint" }
        form.card method="post" action={ (base) "/endpoints" } {
            (csrf(admin))
            label { "URL " input type="url" name="url" required placeholder="https://ops.example.com/callgrade" value=(typed.url); }
            fieldset {
                legend { "Events" }
                @for t in subscribable() {
                    label.inline {
                        input type="checkbox" name={ "event:" (t.as_str()) } checked[events.iter().any(|e| e == t.as_str())];
                        " " code { (t.as_str()) }
                    }
                }
            }
            label { "Description " input type="text" name="description" maxlength="500" value=(typed.description); }
            label.inline { input type="checkbox" name="cekura_secret_header" checked[typed.cekura]; " also send the secret in " code { "X-CEKURA-SECRET" } " (for consumers written for Cekura)" }
            button type="submit" { "Add endpoint" }
        }
        h2 { "Recent deliveries" }
        @if deliveries.data.is_empty() {
            div.empty { p { "Nothing sent yet." } }
        } @else {
            form method="post" action={ (base) "/replay-failed" } {
                (csrf(admin))
                button.secondary type="submit" { "Replay every failed delivery of the last 3 days" }
            }
            table #outbound {
                tr { th { "Created" } th { "Event" } th { "Endpoint" } th { "Status" } th { "Attempts" } th { "Last answer" } }
                @for d in &deliveries.data {
                    tr {
                        td { a href={ (base) "/deliveries/" (d.id) } { (when(d.created_at)) } }
                        td { code { (d.event_type) } }
                        td { code { (url_of(d.endpoint_id)) } }
                        td { (status_badge(d.status)) @if let Some(next) = d.next_attempt_at { " " span.muted { "next " (when(next)) } } }
                        td { (d.attempt_count) }
                        td {
                            @if let Some(s) = d.last_status { "HTTP " (s) " " }
                            @if let Some(e) = &d.last_error { span.muted { (e) } }
                        }
                    }
                }
            }
        }
    }).into_response())
}

fn status_badge(status: OutboundStatus) -> Markup {
    match status {
        OutboundStatus::Delivered => html! { span.ok { "delivered" } },
        OutboundStatus::Failed => html! { span.bad { "failed" } },
        s => html! { span.warn { (s.as_str()) } },
    }
}

fn endpoint_row(admin: &Admin, base: &str, e: &WebhookEndpoint) -> Markup {
    let action = |what: &str| format!("{base}/endpoints/{}/{what}", e.id);
    html! {
        tr id={ "endpoint-" (e.id) } {
            td { code { (e.url) } @if !e.description.is_empty() { br; span.muted { (e.description) } } }
            td { @for name in &e.events { code { (name) } " " } }
            td {
                @if e.enabled { span.ok { "enabled" } } @else { span.bad { "disabled" } }
                @if let Some(reason) = &e.disabled_reason { br; span.bad.reason { (reason) } }
                @if let Some(since) = e.failing_since { br; span.warn { "failing since " (when(since)) } }
                @if let Some(until) = e.previous_secret_until { br; span.muted { "old secret signs until " (when(until)) } }
            }
            td.actions {
                @for (what, label) in [("test", "Send test"), ("toggle", if e.enabled { "Disable" } else { "Enable" }), ("rotate", "Rotate secret"), ("delete", "Delete")] {
                    form method="post" action=(action(what)) {
                        (csrf(admin))
                        button.secondary type="submit" { (label) }
                    }
                }
            }
        }
    }
}

/// The create form's fields: `url`, `description`, `cekura_secret_header`, and an
/// `event:<type>` checkbox per event.
pub async fn create_endpoint(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Page {
    check_csrf(&admin, form.get("_csrf").map_or("", String::as_str))?;
    let project = load_project(&state, &id).await?;
    let typed = Typed {
        url: form.get("url").cloned().unwrap_or_default(),
        description: form.get("description").cloned().unwrap_or_default(),
        events: subscribable()
            .map(EventType::as_str)
            .filter(|t| form.contains_key(&format!("event:{t}")))
            .map(str::to_owned)
            .collect(),
        cekura: form.contains_key("cekura_secret_header"),
    };
    let body = serde_json::json!({
        "url": typed.url.trim(),
        "events": typed.events,
        "description": typed.description,
        "cekura_secret_header": typed.cekura,
    });
    match webhooks::create_endpoint(&state.app, project.id, &body).await {
        Ok(created) => {
            webhooks_page(
                &state,
                &admin,
                &project,
                Some(Notice::Secret(created)),
                Typed::default(),
            )
            .await
        }
        Err(e @ AppError::Invalid(_)) => {
            let notice = Notice::Problems(e.problems());
            webhooks_page(&state, &admin, &project, Some(notice), typed).await
        }
        Err(e) => Err(e.into()),
    }
}

/// One endpoint's buttons: `test`, `toggle`, `rotate`, `delete`.
pub async fn endpoint_action(
    State(state): State<AppState>,
    admin: Admin,
    Path((id, endpoint_id, what)): Path<(String, String, String)>,
    Form(form): Form<CsrfForm>,
) -> Page {
    check_csrf(&admin, &form.csrf)?;
    let project = load_project(&state, &id).await?;
    let missing = || {
        error(
            StatusCode::NOT_FOUND,
            "no such webhook endpoint in this project",
        )
    };
    let endpoint_id: i64 = endpoint_id.parse().map_err(|_| missing())?;
    let app = &state.app;
    let notice = match what.as_str() {
        "test" => match webhooks::send_test(app, project.id, endpoint_id).await {
            Ok(_) => Notice::Said(
                "A test event is on its way; it appears under Recent deliveries.".into(),
            ),
            Err(AppError::Conflict(why)) => Notice::Said(why),
            Err(e) => return Err(e.into()),
        },
        "toggle" => {
            let endpoint = webhooks::endpoint(app, project.id, endpoint_id).await?;
            let body = serde_json::json!({"enabled": !endpoint.enabled});
            let changed = webhooks::update_endpoint(app, project.id, endpoint_id, &body).await?;
            Notice::Said(format!(
                "{} is {}.",
                changed.url,
                if changed.enabled {
                    "enabled"
                } else {
                    "disabled"
                }
            ))
        }
        "rotate" => {
            Notice::Secret(webhooks::rotate_secret(app, project.id, endpoint_id, None).await?)
        }
        "delete" => {
            webhooks::delete_endpoint(app, project.id, endpoint_id).await?;
            Notice::Said("The endpoint and its deliveries are deleted.".into())
        }
        _ => return Err(missing()),
    };
    webhooks_page(&state, &admin, &project, Some(notice), Typed::default()).await
}

pub async fn replay_failed(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Page {
    check_csrf(&admin, &form.csrf)?;
    let project = load_project(&state, &id).await?;
    let since = state.app.now() - chrono::TimeDelta::days(3);
    let n = webhooks::replay_failed(&state.app, project.id, None, since).await?;
    let notice = Notice::Said(format!(
        "{n} failed deliver{} queued again.",
        if n == 1 { "y" } else { "ies" }
    ));
    webhooks_page(&state, &admin, &project, Some(notice), Typed::default()).await
}

pub async fn outbound_delivery(
    State(state): State<AppState>,
    admin: Admin,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Page {
    let project = load_project(&state, &id).await?;
    let missing = || error(StatusCode::NOT_FOUND, "no such delivery in this project");
    let delivery_id: i64 = delivery_id.parse().map_err(|_| missing())?;
    let d = webhooks::delivery(&state.app, project.id, delivery_id).await?;
    let base = format!("/projects/{}/webhooks", project.id);
    Ok(page("Outbound delivery", Some(&admin), Some(&project), html! {
        h1 { "Delivery " (d.delivery.id) }
        div.card {
            p { code { (d.delivery.event_type) } " · " (status_badge(d.delivery.status)) " · " (d.delivery.attempt_count) " attempts · webhook-id " code { (d.delivery.msg_id) } }
            @if let Some(next) = d.delivery.next_attempt_at { p.muted { "Next attempt " (when(next)) } }
            @if matches!(d.delivery.status, OutboundStatus::Delivered | OutboundStatus::Failed) {
                form method="post" action={ (base) "/deliveries/" (d.delivery.id) "/replay" } {
                    (csrf(&admin))
                    button type="submit" { "Replay" }
                }
            }
        }
        h2 { "Attempts" }
        @if d.attempts.is_empty() { div.empty { p { "Not attempted yet." } } }
        @else {
            table #attempts {
                tr { th { "At" } th { "Answer" } th { "Took" } th { "Error" } th { "Request headers" } }
                @for a in &d.attempts {
                    tr {
                        td { (when(a.attempted_at)) }
                        td {
                            @if let Some(s) = a.status { @if (200..300).contains(&s) { span.ok { (s) } } @else { span.bad { (s) } } }
                            @if let Some(r) = &a.response { @if !r.is_empty() { pre.snippet { (r) } } }
                        }
                        td { (a.duration_ms) " ms" }
                        td { @if let Some(e) = &a.error { span.bad { (e) } } }
                        td { (json_block(&a.request_headers)) }
                    }
                }
            }
        }
        h2 { "Body" }
        (json_block(&d.payload))
        p { a href=(base) { "← Webhooks" } }
    }).into_response())
}

pub async fn replay_delivery(
    State(state): State<AppState>,
    admin: Admin,
    Path((id, delivery_id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Page {
    check_csrf(&admin, &form.csrf)?;
    let project = load_project(&state, &id).await?;
    let missing = || error(StatusCode::NOT_FOUND, "no such delivery in this project");
    let delivery_id: i64 = delivery_id.parse().map_err(|_| missing())?;
    webhooks::replay(&state.app, project.id, delivery_id).await?;
    Ok(see_other(&format!(
        "/projects/{}/webhooks/deliveries/{delivery_id}",
        project.id
    )))
}
