//! Test runs: the list, attaching a call by hand, one result.

use super::*;

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
