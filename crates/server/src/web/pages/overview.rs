//! The project's landing page: its overview over a range (`app::overview`), or, before its
//! first call, how to send one.

use callgrade_app::overview::{self, Figures, Overview, Range};

use super::*;

#[derive(Deserialize, Default)]
pub struct OverviewQuery {
    range: Option<String>,
    agent_id: Option<String>,
}

pub async fn project(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Query(q): Query<OverviewQuery>,
) -> Page {
    let project = load_project(&state, &id).await?;
    let range = q
        .range
        .as_deref()
        .and_then(Range::parse)
        .unwrap_or(Range::Week);
    let agent_id: Option<i64> = q.agent_id.as_deref().and_then(|a| a.parse().ok());
    let agents = state.app.store.list_agents(project.id).await?;
    let has_calls = callgrade_app::calls::any(&state.app, project.id).await?;
    let body = if has_calls {
        let o = overview::overview(&state.app, project.id, agent_id, range).await?;
        overview_body(&project, &agents, &o)
    } else {
        super::projects::first_call(&state, &project, &agents)
    };
    let firing = state.app.store.alerts(project.id, None, true, 10).await?;
    let disabled: Vec<_> = state
        .app
        .store
        .list_endpoints(project.id)
        .await?
        .into_iter()
        .filter(|e| e.disabled_reason.is_some())
        .collect();
    Ok(page(
        &project.name,
        Some(&admin),
        Some(&project),
        html! {
            h1 { (project.name) }
            @if !firing.is_empty() {
                div.card #firing {
                    h2 { "Firing alerts" }
                    ul { @for a in &firing {
                        li { span.bad { (a.rule_name) } " since " (when(a.opened_at)) ": " (a.summary) }
                    } }
                    p { a href={ "/projects/" (project.id) "/alerts" } { "All alerts →" } }
                }
            }
            @for e in &disabled {
                div.card.disabled-endpoint {
                    p.bad { "Webhook endpoint " code { (e.url) } " was disabled: " (e.disabled_reason.as_deref().unwrap_or("")) }
                    p { a href={ "/projects/" (project.id) "/webhooks" } { "Webhooks →" } }
                }
            }
            (body)
        },
    )
    .into_response())
}

/// A share as a percentage.
fn percent(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.0}%", v * 100.0))
}

fn secs(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.2} s"))
}

/// The change against the previous period, coloured by whether it is better: `up_is_good`
/// says which way that is.
fn change(now: Option<f64>, before: Option<f64>, up_is_good: bool, as_points: bool) -> Markup {
    let (Some(now), Some(before)) = (now, before) else {
        return html! { span.muted { "no previous figure" } };
    };
    let delta = now - before;
    let text = match as_points {
        true => format!("{:+.0} pts", delta * 100.0),
        false if before.abs() > f64::EPSILON => format!("{:+.0}%", delta / before * 100.0),
        false => format!("{delta:+.2}"),
    };
    let better = (delta > 0.0) == up_is_good;
    html! {
        @if delta.abs() < 1e-9 { span.muted { "unchanged" } }
        @else if better { span.ok { (text) } }
        @else { span.bad { (text) } }
    }
}

/// A small trend line; gaps where a part of the range has no figure.
fn sparkline(label: &str, values: &[Option<f64>]) -> Markup {
    const W: f64 = 140.0;
    const H: f64 = 30.0;
    let max = values.iter().flatten().fold(f64::MIN, |m, v| m.max(*v));
    let min = values.iter().flatten().fold(f64::MAX, |m, v| m.min(*v));
    let span = (max - min).max(1e-9);
    let x = |i: usize| 2.0 + i as f64 * (W - 4.0) / (values.len().max(2) - 1) as f64;
    let y = |v: f64| H - 3.0 - (v - min) / span * (H - 6.0);
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), y(v))))
        .collect();
    html! {
        svg.sparkline width=(W) height=(H) viewBox={ "0 0 " (W) " " (H) } role="img" aria-label={ (label) " over the range" } {
            @if points.len() > 1 { polyline points=(points.join(" ")) {} }
            @for p in &points { @let (px, py) = p.split_once(',').expect("x,y"); circle cx=(px) cy=(py) r="1.8" {} }
        }
    }
}

/// One figure's card: its label, how it is read and shown, and which way is better.
struct Card {
    label: &'static str,
    read: fn(&Figures) -> Option<f64>,
    show: fn(Option<f64>) -> String,
    up_is_good: bool,
    /// A share, whose change is in percentage points.
    share: bool,
}

const CARDS: [Card; 5] = [
    Card {
        label: "Evaluated calls",
        read: |f| Some(f.calls as f64),
        show: |v| v.map_or("0".into(), |v| format!("{v:.0}")),
        up_is_good: true,
        share: false,
    },
    Card {
        label: "Pass rate",
        read: |f| f.pass_rate,
        show: percent,
        up_is_good: true,
        share: true,
    },
    Card {
        label: "Agent latency p50",
        read: |f| f.latency_p50,
        show: secs,
        up_is_good: false,
        share: false,
    },
    Card {
        label: "Agent latency p90",
        read: |f| f.latency_p90,
        show: secs,
        up_is_good: false,
        share: false,
    },
    Card {
        label: "Interruptions per call",
        read: |f| f.interruptions,
        show: |v| v.map_or("–".into(), |v| format!("{v:.2}")),
        up_is_good: false,
        share: false,
    },
];

fn overview_body(project: &Project, agents: &[callgrade_core::Agent], o: &Overview) -> Markup {
    let base = format!("/projects/{}", project.id);
    let agent_q = o
        .agent_id
        .map_or(String::new(), |a| format!("&agent_id={a}"));
    html! {
        form.filters method="get" action=(base) {
            span { "Range: " }
            @for r in Range::ALL {
                @if r == o.range { strong { (r.as_str()) } } @else { a href={ (base) "?range=" (r.as_str()) (agent_q) } { (r.as_str()) } }
                " "
            }
            input type="hidden" name="range" value=(o.range.as_str());
            label { " Agent " select name="agent_id" onchange="this.form.submit()" {
                option value="" { "all" }
                @for a in agents { option value=(a.id) selected[o.agent_id == Some(a.id)] { (a.name) } }
            } }
            noscript { button.secondary type="submit" { "Show" } }
        }
        p.muted { (when(o.from)) " – " (when(o.to)) ", against the " (o.range.as_str()) " before" }
        div #overview-cards {
            @for c in &CARDS {
                div.card.figure {
                    div.muted { (c.label) }
                    div.value { ((c.show)((c.read)(&o.now))) }
                    div { (change((c.read)(&o.now), (c.read)(&o.before), c.up_is_good, c.share)) }
                    (sparkline(c.label, &o.trend.iter().map(|(_, f)| (c.read)(f)).collect::<Vec<_>>()))
                }
            }
        }
        @if !o.judges.is_empty() {
            h2 { "Judges" }
            table #judges {
                tr { th { "Metric" } th { "Pass rate" } th { "Change" } }
                @for j in &o.judges {
                    tr { td { (j.name) } td { (percent(j.now)) } td { (change(j.now, j.before, true, true)) } }
                }
            }
        }
        h2 { "Failing most" }
        @if o.failing.is_empty() {
            p.muted { "No metric failed in this range." }
        } @else {
            table #failing {
                tr { th { "Metric" } th { "Failed calls" } th { "Fails a call" } }
                @for m in &o.failing {
                    tr {
                        td { a href={ (base) "/calls?failing_metric=" (m.metric) } { (m.metric) } }
                        td { (m.calls) @if m.calls >= overview::COUNTED { "+" } " of " (o.now.calls) }
                        td { @if m.in_rubric { "yes: a rubric rule" } @else { span.muted { "no: not in the rubric" } } }
                    }
                }
            }
        }
        h2 { "Latest failed calls" }
        @if o.failed_calls.is_empty() { p.muted { "None in this range." } } @else {
            table #failed-calls {
                tr { th { "Call" } th { "Started" } th { "Ended" } }
                @for c in &o.failed_calls {
                    tr {
                        td { a href={ (base) "/calls/" (c.call_id) } { code { (c.external_id) } } }
                        td { (when(c.started_at)) }
                        td { (c.ended_reason) }
                    }
                }
            }
            p { a href={ (base) "/calls?success=fail" } { "All failed calls" } }
        }
        h2 { "Latest runs that did not pass" }
        @if o.failed_runs.is_empty() { p.muted { "None in this range." } } @else {
            table #failed-runs {
                tr { th { "Run" } th { "Scenario" } th { "Status" } th { "Why" } }
                @for r in &o.failed_runs {
                    tr {
                        td { a href={ (base) "/runs/" (r.id) } { (r.id) } }
                        td { (r.scenario_name) }
                        td { (r.status.as_str()) }
                        td { (or_dash(r.error_message.as_deref())) }
                    }
                }
            }
        }
        h2 { "Deliveries refused" }
        @if o.rejected == 0 {
            p.muted { "None in this range: every request was stored." }
        } @else {
            p.bad { (o.rejected) " request" @if o.rejected != 1 { "s" } " refused in this range: their calls are not stored." }
            table #rejections {
                tr { th { "Received" } th { "Route" } th { "Why" } }
                @for d in &o.rejections {
                    tr {
                        td { a href={ (base) "/deliveries/" (d.id) } { (when(d.received_at)) } }
                        td { code { (d.route) } }
                        td { (d.status) " " (or_dash(d.error.as_deref())) }
                    }
                }
            }
            p { a href={ (base) "/deliveries?outcome=rejected" } { "The delivery log" } }
        }
    }
}
