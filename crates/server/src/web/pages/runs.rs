//! Test runs: the list, attaching a call by hand, one result with its gate, one run with its
//! conversation.

use super::*;
use callgrade_app::runs::{self as use_runs, Baseline};
use callgrade_core::{Change, GateOptions, GateReport, GateVerdict, Message, RunMode, Tally};
use callgrade_store::Run;

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
                        td { a href={ "/projects/" (project.id) "/runs/" (r.id) } { (r.id) } } td { a href={ "/projects/" (project.id) "/results/" (r.result_id) } { (r.result_id) } } td { (r.scenario_name) }
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
                                    input type="text" name="call_id" placeholder="call id (yours or ours)" aria-label="Call id (the sender's or ours)" size="16" required value=[r.call_id.as_deref()];
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
    let call_id = callgrade_app::calls::resolve(&state.app, project.id, &form.call_id).await?;
    callgrade_app::runs::attach(&state.app, project.id, run_id, &call_id).await?;
    Ok(see_other(&format!("/projects/{}/runs", project.id)))
}

/// Which result the gate compares with: one picked by id or label, else the newest finished
/// result with this result's own label.
#[derive(Deserialize, Default)]
pub struct ResultQuery {
    baseline: Option<String>,
    baseline_label: Option<String>,
}

fn result_id_of(s: &str) -> Result<i64, WebError> {
    s.parse()
        .map_err(|_| error(StatusCode::NOT_FOUND, "no such result in this project"))
}

pub async fn result(
    State(state): State<AppState>,
    admin: Admin,
    Path((id, result_id)): Path<(String, String)>,
    Query(q): Query<ResultQuery>,
) -> Page {
    let project = load_project(&state, &id).await?;
    let result_id = result_id_of(&result_id)?;
    Ok(result_page(&state, &admin, &project, result_id, &q, None)
        .await?
        .into_response())
}

async fn result_page(
    state: &AppState,
    admin: &Admin,
    project: &Project,
    result_id: i64,
    q: &ResultQuery,
    notice: Option<Markup>,
) -> Result<Html<String>, WebError> {
    let result = state
        .app
        .store
        .result(project.id, result_id)
        .await?
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "no such result in this project"))?;
    let picked_label = given(&q.baseline_label);
    let mut no_baseline_why = None;
    let baseline = match given(&q.baseline) {
        Some(picked) => match picked.parse() {
            Ok(id) => Some(Baseline::Result(id)),
            Err(_) => {
                no_baseline_why = Some(format!("{picked:?} is not a result id"));
                None
            }
        },
        None => picked_label
            .as_deref()
            .or(result.label.as_deref())
            .map(Baseline::Label),
    };
    let options = GateOptions::default();
    let report = match use_runs::gate(&state.app, project.id, result.id, baseline, &options).await {
        Ok(report) => report,
        // A baseline that is not there (yet) is "no baseline" on the page, not an error page.
        Err(AppError::NotFound(why)) if baseline.is_some() => {
            no_baseline_why = Some(why);
            use_runs::gate(&state.app, project.id, result.id, None, &options).await?
        }
        Err(e) => return Err(e.into()),
    };
    let c = &result.counts;
    let base = format!("/projects/{}", project.id);
    Ok(page(
        "Result",
        Some(admin),
        Some(project),
        html! {
            h1 { "Result " (result.id) @if let Some(name) = &result.name { " · " (name) } }
            @if let Some(notice) = notice { (notice) }
            @let polled = !result.finished;
            @let self_url = format!("{base}/results/{}", result.id);
            @let done = c.completed + c.failed + c.timeout + c.cancelled;
            // While runs are under way the counts and the runs table refresh in place (the forms
            // between them do not, so nothing typed is lost).
            div #result-progress hx-get=[polled.then_some(&self_url)] hx-select=[polled.then_some("#result-progress")]
                hx-trigger=[polled.then_some("every 2s")] hx-swap=[polled.then_some("outerHTML")] {
            div.card {
                p { "Mode " strong { (result.mode.as_str()) } " · label " (or_dash(result.label.as_deref())) " · agent " (result.agent_id) " · created " (when(result.created_at)) }
                p { (c.total) (if c.total == 1 { " run · " } else { " runs · " }) span.ok { (c.completed) " completed" } " · " span.bad { (c.failed) " failed" } " · "
                    span.warn { (c.timeout) " timed out" } " · " (c.cancelled) " cancelled · "
                    (c.pending + c.in_progress + c.awaiting_transcript + c.evaluating) " waiting"
                    @if result.finished { " · finished" } }
                @if polled {
                    p { label { "Progress " progress max=(c.total) value=(done) { (done) " of " (c.total) } } " " (done) " of " (c.total) " runs done" }
                }
                form method="post" action={ (base) "/results/" (result.id) "/rerun-failed" } {
                    (csrf(admin))
                    button.secondary type="submit" { "Run failed scenarios again" }
                }
            }
            }
            h2 { "Gate" }
            (gate_section(&base, &report, baseline, no_baseline_why.as_deref()))
            form.filters method="get" {
                label { "Compare with result " input type="text" name="baseline" size="6" value=[q.baseline.as_deref()]; }
                label { "or the newest finished labelled " input type="text" name="baseline_label" size="12" value=[picked_label.as_deref()]; }
                button.secondary type="submit" { "Compare" }
            }
            h2 { "Runs" }
            div #result-runs hx-get=[polled.then_some(&self_url)] hx-select=[polled.then_some("#result-runs")]
                hx-trigger=[polled.then_some("every 2s")] hx-swap=[polled.then_some("outerHTML")] {
            table #runs {
                tr { th { "Run" } th { "Scenario" } th { "Status" } th { "Stop reason" } th { "Matched by" } th { "Call" } th { "Success" } th { "Why" } }
                @for r in &result.runs {
                    tr {
                        td { a href={ (base) "/runs/" (r.id) } { (r.id) } }
                        td { (r.scenario_name) @if r.quarantined { " " span.warn { "quarantined" } } }
                        td { (r.status.as_str()) @if r.late { " " span.warn { "late" } } }
                        td { (or_dash(r.stop_reason.map(|s| s.as_str()))) }
                        td { (or_dash(r.matched_by.map(|m| m.as_str()))) }
                        td { @if let Some(call) = &r.call_id { a href={ (base) "/calls/" (call) } { "open" } } @else { span.muted { "–" } } }
                        td { (verdict(r.success)) }
                        td { (or_dash(r.error_message.as_deref())) }
                    }
                }
            }
            }
        },
    ))
}

/// "70 % [40–89 %]": the pass rate and its 95 % Wilson interval.
fn pass_rate(t: &Tally) -> Markup {
    match (t.pass_rate, t.interval) {
        (Some(rate), Some(i)) => html! {
            (format!("{:.0} % ", rate * 100.0))
            span.muted { (format!("[{:.0}–{:.0} %]", i.low * 100.0, i.high * 100.0)) }
        },
        _ => html! { span.muted { "no decided run" } },
    }
}

/// As the gate's reasons print it: four decimals, or scientific where they would read as zero.
fn p_value(p: f64) -> String {
    if p >= 1e-4 {
        format!("{p:.4}")
    } else {
        format!("{p:.1e}")
    }
}

fn change(c: Change) -> Markup {
    match c {
        Change::Regressed => html! { span.bad { "regressed" } },
        Change::Improved => html! { span.ok { "improved" } },
        Change::Unchanged => html! { "unchanged" },
        Change::NoBaseline => html! { span.muted { "no baseline" } },
    }
}

/// pass^k: every run of the scenario passed.
fn pass_all(t: &Tally) -> Markup {
    if t.pass_all {
        html! { span.ok title="every run passed" { "✓" } }
    } else {
        html! { span.bad title="not every run passed" { "✗" } }
    }
}

/// The verdict with its reasons, and per scenario the counts, pass^k, the interval and the
/// change against the baseline.
fn gate_section(
    base: &str,
    report: &GateReport,
    asked: Option<Baseline<'_>>,
    no_baseline_why: Option<&str>,
) -> Markup {
    let compared = report.baseline_result_id.is_some();
    html! {
        div.card #verdict {
            p { "Verdict: "
                @match report.verdict {
                    GateVerdict::Pass => span.ok { "pass" },
                    GateVerdict::Fail => span.bad { "fail" },
                    GateVerdict::Undecided => span.warn { "undecided" },
                }
                " · "
                @match (report.baseline_result_id, asked) {
                    (Some(id), Some(Baseline::Label(label))) => { "baseline " a href={ (base) "/results/" (id) } { "result " (id) } span.muted { " (the newest finished labelled " (label) ")" } },
                    (Some(id), _) => { "baseline " a href={ (base) "/results/" (id) } { "result " (id) } },
                    (None, _) => { span.muted { "no baseline" } @if let Some(why) = no_baseline_why { span.muted { ": " (why) } } },
                }
            }
            @if !report.reasons.is_empty() {
                ul { @for r in &report.reasons { li { (r) } } }
            }
        }
        table #gate {
            tr {
                th { "Scenario" } th { "Passed" } th { "Failed" } th { "Undecided" } th { "pass^k" } th { "Pass rate [95 % CI]" }
                @if compared { th { "Baseline passed / failed / undecided" } th { "Change" } th { "p" } }
            }
            @for s in &report.scenarios {
                tr {
                    td { (s.scenario_name) @if s.quarantined { " " span.warn title="reported, never gates" { "quarantined" } } }
                    td { (s.current.passed) } td { (s.current.failed) } td { (s.current.undecided) }
                    td { (pass_all(&s.current)) }
                    td { (pass_rate(&s.current)) }
                    @if compared {
                        td { @if let Some(b) = &s.baseline { (b.passed) " / " (b.failed) " / " (b.undecided) } @else { span.muted { "–" } } }
                        td { (change(s.change)) }
                        td { (or_dash(s.p_value.map(p_value))) }
                    }
                }
            }
            @let o = &report.overall;
            tr.total {
                td { "All but quarantined" } td { (o.passed) } td { (o.failed) } td { (o.undecided) }
                td { (pass_all(o)) } td { (pass_rate(o)) }
                @if compared { td {} td {} td {} }
            }
        }
    }
}

/// "Run failed scenarios again": a new result of the failed and undecided runs' scenarios.
pub async fn rerun_failed(
    State(state): State<AppState>,
    admin: Admin,
    Path((id, result_id)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Page {
    check_csrf(&admin, &form.csrf)?;
    let project = load_project(&state, &id).await?;
    let result_id = result_id_of(&result_id)?;
    match use_runs::rerun_failed(&state.app, project.id, result_id).await {
        Ok(rerun) => Ok(see_other(&format!(
            "/projects/{}/results/{}",
            project.id, rerun.id
        ))),
        // Nothing to run again is a state of the result, said on its page.
        Err(AppError::Conflict(why)) => {
            let notice =
                html! { div.card #notice { p.warn { "Nothing to run again: " (why) "." } } };
            let html = result_page(
                &state,
                &admin,
                &project,
                result_id,
                &ResultQuery::default(),
                Some(notice),
            )
            .await?;
            Ok((StatusCode::CONFLICT, html).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

async fn load_run(state: &AppState, id: &str, run_id: &str) -> Result<(Project, Run), WebError> {
    let project = load_project(state, id).await?;
    let missing = || error(StatusCode::NOT_FOUND, "no such run in this project");
    let run_id: i64 = run_id.parse().map_err(|_| missing())?;
    let run = state
        .app
        .store
        .run(project.id, run_id)
        .await?
        .ok_or_else(missing)?;
    Ok((project, run))
}

/// One run: its scenario and persona, how it stopped, what it spent, and its conversation.
pub async fn run(
    State(state): State<AppState>,
    admin: Admin,
    Path((id, run_id)): Path<(String, String)>,
) -> Page {
    let (project, run) = load_run(&state, &id, &run_id).await?;
    let scenario = state
        .app
        .store
        .scenario(project.id, run.scenario_id)
        .await?;
    let conversation = conversation(&state, &project, &run).await?;
    let base = format!("/projects/{}", project.id);
    let u = &run.usage;
    let title = format!("Run {}", run.id);
    Ok(page(&title, Some(&admin), Some(&project), html! {
        h1 { (title) " · " (run.scenario_name) }
        div.card #run {
            p {
                "Status " strong { (run.status.as_str()) } @if run.late { " " span.warn { "late" } }
                " · success " (verdict(run.success))
                " · mode " (run.mode.as_str())
                " · result " a href={ (base) "/results/" (run.result_id) } { (run.result_id) }
                @if let Some(call) = &run.call_id { " · " a href={ (base) "/calls/" (call) } { "the call" } }
            }
            p {
                "Scenario " strong { (run.scenario_name) } @if run.quarantined { " " span.warn { "quarantined" } }
                " · " (run.direction.as_str())
                " · created " (when(run.created_at))
                @if let Some(t) = run.finished_at { " · finished " (when(t)) }
            }
            @if let Some(persona) = scenario.as_ref().and_then(|s| s.persona.as_ref()) {
                p #persona {
                    "Persona " strong { (persona.name) } " · language " (persona.language)
                    " · traits "
                    @if persona.traits.is_empty() { span.muted { "none" } }
                    @else { (persona.traits.iter().map(trait_name).collect::<Vec<_>>().join(", ")) }
                }
                @if !persona.description.trim().is_empty() { p.muted { (persona.description) } }
            }
            @if run.mode == RunMode::Simulate {
                p #usage {
                    "Stop reason " (or_dash(run.stop_reason.map(|s| s.as_str())))
                    " · caller " (u.caller_requests) " requests, " (u.caller_tokens) " tokens"
                    " · agent " (u.agent_requests) " requests, " (u.agent_tokens) " tokens"
                    " · judge " (u.judge_requests) " requests, " (u.judge_tokens) " tokens"
                }
            } @else if u.judge_requests > 0 {
                // An external run's call is judged too.
                p #usage { "Judge " (u.judge_requests) " requests, " (u.judge_tokens) " tokens" }
            }
            @if let Some(why) = &run.error_message { p.bad { "Error: " (why) } }
        }
        h2 { "Conversation" }
        (conversation)
    }).into_response())
}

/// The conversation alone, for htmx to poll while the run goes on.
pub async fn run_conversation(
    State(state): State<AppState>,
    _admin: Admin,
    Path((id, run_id)): Path<(String, String)>,
) -> Page {
    let (project, run) = load_run(&state, &id, &run_id).await?;
    Ok(Html(conversation(&state, &project, &run).await?.into_string()).into_response())
}

/// A trait as the API spells it (`off_topic`).
fn trait_name(t: &callgrade_core::Trait) -> String {
    match serde_json::to_value(t) {
        Ok(Value::String(name)) => name,
        _ => format!("{t:?}"),
    }
}

/// The stored call's transcript once there is one, else what has been said so far. While the
/// run is not final it carries its own polling; the final answer comes without it, which is
/// what stops htmx asking.
async fn conversation(state: &AppState, project: &Project, run: &Run) -> Result<Markup, WebError> {
    let call = match &run.call_id {
        Some(id) => state.app.store.call(project.id, id).await?,
        None => None,
    };
    let going_on = !run.status.is_final();
    let base = format!("/projects/{}", project.id);
    let fragment = format!("{base}/runs/{}/conversation", run.id);
    Ok(html! {
        div #conversation hx-get=[going_on.then_some(&fragment)] hx-trigger=[going_on.then_some("every 2s")] hx-swap=[going_on.then_some("outerHTML")] {
            @if going_on {
                p.muted { "The run is " (run.status.as_str()) "; this refreshes every 2 s (without JavaScript, "
                    a href={ (base) "/runs/" (run.id) } { "reload" } ")." }
            }
            @if let Some(call) = &call {
                p { "Stored as call " a href={ (base) "/calls/" (call.summary.call_id) } { code { (call.summary.external_id) } } "." }
                (timeline(call))
            } @else if let Some(id) = &run.call_id {
                p.muted { "Its call " code { (id) } " is no longer stored." }
            } @else if !run.live_messages.is_empty() {
                (live_messages(&run.live_messages))
            } @else {
                p.muted { "Nothing said yet." }
            }
        }
    })
}

/// A simulated conversation as it happens: who said what, when; tool rows on one line.
fn live_messages(messages: &[Message]) -> Markup {
    html! {
        table #live {
            tr { th { "#" } th { "Speaker" } th { "At" } th { "Text" } }
            @for (i, m) in messages.iter().enumerate() {
                tr {
                    td { (i) }
                    td { (speaker(m.role)) }
                    td { (or_dash(m.start_offset.map(seconds))) }
                    td {
                        @if matches!(m.role, Role::FunctionCall | Role::FunctionCallResult) { (tool_line(m)) }
                        @else { (m.content) }
                    }
                }
            }
        }
    }
}

/// `lookup_order({"order":"A1"})` for a call, `lookup_order → {"status":"shipped"}` for its
/// result; long JSON is cut (the stored call has all of it).
fn tool_line(m: &Message) -> Markup {
    let field = |key: &str| m.data.as_ref().and_then(|d| d.get(key));
    let name = crate::web::timeline::tool_label(m);
    let compact = |v: Option<&Value>| {
        let text = v.map(Value::to_string).unwrap_or_default();
        match text.char_indices().nth(200) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text,
        }
    };
    html! {
        code {
            @if m.role == Role::FunctionCall { (name) "(" (compact(field("arguments"))) ")" }
            @else { (name) " → " (compact(field("result"))) }
        }
    }
}
