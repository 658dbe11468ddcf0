//! The webhook delivery log.

use super::*;

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
