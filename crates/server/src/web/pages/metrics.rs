//! Metrics: the summary and charts, trying and saving a definition.

use super::*;

pub(super) const TRY_EXAMPLE: &str = r#"{"name": "mentions_refund", "kind": "script", "output": "binary",
 "config": {"script": "result = data.transcript.contains(\"refund\");"}}"#;

#[derive(Deserialize, Default)]
pub struct MetricsQuery {
    agent_id: Option<String>,
    /// A numeric metric whose distribution the page draws.
    distribution: Option<String>,
}

pub async fn metrics(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    Query(q): Query<MetricsQuery>,
) -> Page {
    let project = load_project(&state, &id).await?;
    let agent_id: Option<i64> = q.agent_id.as_deref().and_then(|a| a.parse().ok());
    let distribution = given(&q.distribution);
    let forms = Forms::default();
    metrics_page(
        &state,
        &admin,
        &project,
        agent_id,
        distribution.as_deref(),
        forms,
    )
    .await
}

/// One day's aggregates, for the charts.
pub(super) struct Day {
    label: String,
    summary: Vec<callgrade_store::MetricSummary>,
    /// How the rubric judged the day's calls: the call pass rate.
    verdicts: callgrade_store::VerdictCounts,
}

/// The name of the project's metric that computes a builtin, preferring one on the catalogue's
/// settings: columns and charts follow the computation, whatever the metric is called. The
/// builtin's own key when the project has no such metric (it then shows no values).
pub(super) fn builtin_metric_name(metrics: &[callgrade_store::Metric], key: BuiltinKey) -> &str {
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
pub(super) type DayValue<'a> = dyn Fn(&Day) -> Option<f64> + 'a;

/// A chart's series: its name and how to read a day's value.
pub(super) type Series<'a> = (&'a str, &'a DayValue<'a>);

// The frame both charts draw in (viewBox units): the plot's width and height, and the room
// left for the y axis's labels, the x axis's labels and above the plot.
const W: f64 = 1000.0;
const H: f64 = 200.0;
const LEFT: f64 = 52.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 10.0;

/// A chart's y axis: from 0 to `top` by `step`, round values.
struct YAxis {
    top: f64,
    step: f64,
}

impl YAxis {
    /// Over values up to `highest`; `whole` for counts, which step by one at least.
    fn over(highest: f64, whole: bool) -> Self {
        let (top, step) = match axis(highest) {
            (top, step) if whole && step < 1.0 => (top.ceil().max(1.0), 1.0),
            round => round,
        };
        Self { top, step }
    }

    /// Where a value is drawn.
    fn y(&self, v: f64) -> f64 {
        H - BOTTOM - v / self.top * (H - BOTTOM - TOP)
    }

    /// The gridlines and their labels.
    fn draw(&self) -> Markup {
        let ticks = (0..=((self.top / self.step).round() as usize)).map(|k| k as f64 * self.step);
        html! {
            @for t in ticks {
                line.grid x1=(LEFT) y1=(format!("{:.1}", self.y(t))) x2=(W - 6.0) y2=(format!("{:.1}", self.y(t))) {}
                text.tick x=(LEFT - 6.0) y=(format!("{:.1}", self.y(t) + 3.5)) text-anchor="end" { (tick_label(t, self.step)) }
            }
        }
    }
}

/// A line chart as inline SVG, as wide as the page: one polyline per series, days along the
/// x axis, a y axis with gridlines at round values, and each point's value as its title (the
/// browser shows it under the pointer).
pub(super) fn chart(title: &str, days: &[Day], series: &[Series<'_>]) -> Markup {
    const COLORS: [&str; 3] = ["#3552d6", "#b54708", "#137a3f"];
    let values: Vec<Vec<Option<f64>>> = series
        .iter()
        .map(|(_, f)| days.iter().map(f).collect())
        .collect();
    let highest = values
        .iter()
        .flatten()
        .flatten()
        .fold(0.0_f64, |m, v| m.max(*v));
    let axis = YAxis::over(highest, false);
    // Room on the right for the last day's label, centred on its point.
    let x = |i: usize| LEFT + 8.0 + i as f64 * (W - LEFT - 40.0) / (days.len().max(2) - 1) as f64;
    let y = |v: f64| axis.y(v);
    html! {
        figure.card.chart {
            figcaption {
                strong { (title) }
                @if values.iter().flatten().all(Option::is_none) { " " span.muted { "no data in these days" } }
            }
            svg width="100%" viewBox={ "0 0 " (W) " " (H) } role="img" aria-label=(title) {
                (axis.draw())
                @for (s, points) in values.iter().enumerate() {
                    polyline fill="none" stroke=(COLORS[s % 3]) stroke-width="2"
                        points=(points.iter().enumerate().filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), y(v)))).collect::<Vec<_>>().join(" ")) {}
                    // Dots, so a lone day still shows; each names its value.
                    @for (i, v) in points.iter().enumerate() {
                        @if let Some(v) = v {
                            circle.point cx=(format!("{:.1}", x(i))) cy=(format!("{:.1}", y(*v))) r="4" fill=(COLORS[s % 3]) tabindex="0" data-value=(format!("{v:.3}")) {
                                title { (series[s].0) ", " (days[i].label) ": " (format!("{v:.3}")) }
                            }
                        }
                    }
                }
                // Every other day labelled, counted from the last: today always has its label.
                @for (i, d) in days.iter().enumerate() {
                    @if (days.len() - 1 - i).is_multiple_of(2) { text.tick x=(format!("{:.1}", x(i))) y=(H - 6.0) text-anchor="middle" { (d.label) } }
                }
            }
            p.muted {
                @for (s, (name, _)) in series.iter().enumerate() { span style={ "color:" (COLORS[s % 3]) } { "■ " (name) } " " }
                " " span.readout aria-live="polite" {}
            }
        }
    }
}

/// A metric's values over the last 14 days' calls as bars, one per bin, each titled with its
/// range and count.
fn histogram_chart(name: &str, d: &callgrade_app::metrics::Distribution) -> Markup {
    let most = d.bins.iter().map(|b| b.2).max().unwrap_or(0) as f64;
    let axis = YAxis::over(most, true);
    let y = |v: f64| axis.y(v);
    let width = (W - LEFT - 16.0) / d.bins.len().max(1) as f64;
    let label = |v: f64| {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    };
    html! {
        figure.card.chart #distribution {
            figcaption {
                strong { (name) } " "
                span.muted { (d.values) " of the " (d.calls) " most recent calls of the last 14 days have a value"
                    @if d.calls >= callgrade_app::metrics::DISTRIBUTION_CALLS { " (read at most " (callgrade_app::metrics::DISTRIBUTION_CALLS) ")" } }
            }
            @if d.bins.is_empty() { p.muted { "No values to draw." } } @else {
                svg width="100%" viewBox={ "0 0 " (W) " " (H) } role="img" aria-label={ "Distribution of " (name) } {
                    (axis.draw())
                    @for (k, (lo, hi, n)) in d.bins.iter().enumerate() {
                        @let x = LEFT + 8.0 + k as f64 * width;
                        rect.point x=(format!("{x:.1}")) y=(format!("{:.1}", y(*n as f64))) width=(format!("{:.1}", (width - 2.0).max(1.0)))
                            height=(format!("{:.1}", H - BOTTOM - y(*n as f64))) fill="#3552d6" tabindex="0" {
                            title { (label(*lo)) "–" (label(*hi)) ": " (n) " call" @if *n != 1 { "s" } }
                        }
                    }
                    text.tick x=(LEFT + 8.0) y=(H - 6.0) { (label(d.bins[0].0)) }
                    text.tick x=(W - 8.0) y=(H - 6.0) text-anchor="end" { (label(d.bins[d.bins.len() - 1].1)) }
                }
                p.muted { "Calls per range of values. " span.readout aria-live="polite" {} }
            }
        }
    }
}

/// The axis's top and its step: round values (1, 2 or 5 times a power of ten) over `highest`.
fn axis(highest: f64) -> (f64, f64) {
    if !(highest.is_finite() && highest > 0.0) {
        return (1.0, 0.2);
    }
    let raw = highest / 4.0;
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * power);
    ((highest / step).ceil() * step, step)
}

/// A tick's value with as many decimals as its step needs.
fn tick_label(v: f64, step: f64) -> String {
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    format!("{v:.decimals$}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn axes_end_on_round_values() {
        assert_eq!(super::axis(3.7), (4.0, 1.0));
        assert_eq!(super::axis(0.83), (1.0, 0.5));
        assert_eq!(super::axis(120.0), (150.0, 50.0));
        assert_eq!(super::axis(0.0), (1.0, 0.2));
        assert_eq!(super::tick_label(0.5, 0.5), "0.5");
        assert_eq!(super::tick_label(150.0, 50.0), "150");
        let counts = super::YAxis::over(1.0, true);
        assert_eq!((counts.top, counts.step), (1.0, 1.0), "counts step by one");
    }
}

/// What the page's two forms show after a submission: the text as it was typed (an error
/// never loses it) and the outcome.
#[derive(Default)]
pub(super) struct Forms {
    tried: Option<Markup>,
    try_text: Option<String>,
    /// The definition that was refused, and why.
    refused: Option<(String, String)>,
}

pub(super) async fn metrics_page(
    state: &AppState,
    admin: &Admin,
    project: &Project,
    agent_id: Option<i64>,
    distribution: Option<&str>,
    forms: Forms,
) -> Page {
    let metrics = state.app.store.list_metrics(project.id).await?;
    let numeric: Vec<&str> = metrics
        .iter()
        .filter(|m| {
            matches!(
                m.spec.output,
                callgrade_core::OutputType::Numeric | callgrade_core::OutputType::Score
            )
        })
        .map(|m| m.spec.name.as_str())
        .collect();
    let spread = match distribution.filter(|d| numeric.contains(d)) {
        Some(name) => {
            let since = state.app.now() - chrono::TimeDelta::days(14);
            let d =
                callgrade_app::metrics::distribution(&state.app, project.id, agent_id, name, since)
                    .await?;
            Some((name, d))
        }
        None => None,
    };
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
        let verdicts = state
            .app
            .store
            .verdict_counts(
                project.id,
                agent_id,
                Some(from.timestamp_millis()),
                Some((from + chrono::TimeDelta::days(1)).timestamp_millis()),
            )
            .await?;
        days.push(Day {
            label: day.format("%m-%d").to_string(),
            summary,
            verdicts,
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
        // The calls' pass rate (the rubric's verdict), then the pass rate of the (up to two)
        // metrics that have a pass condition.
        let judged: Vec<String> = metrics
            .iter()
            .filter(|m| {
                m.spec.pass.is_some() || m.spec.output == callgrade_core::OutputType::Binary
            })
            .map(|m| m.spec.name.clone())
            .take(2)
            .collect();
        let readers: Vec<Box<DayValue<'_>>> = judged
            .iter()
            .map(|name| {
                let name = name.clone();
                Box::new(move |d: &Day| d.get(&name).and_then(|m| m.pass_rate)) as Box<DayValue<'_>>
            })
            .collect();
        let calls_pass_rate = |d: &Day| d.verdicts.pass_rate();
        let pass_series: Vec<Series<'_>> =
            std::iter::once(("calls", &calls_pass_rate as &DayValue<'_>))
                .chain(
                    judged
                        .iter()
                        .zip(&readers)
                        .map(|(n, r)| (n.as_str(), r.as_ref())),
                )
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
        h2 { "Distribution" }
        form.filters method="get" {
            @if let Some(a) = agent_id { input type="hidden" name="agent_id" value=(a); }
            label { "Metric " select name="distribution" {
                option value="" { "choose a numeric metric" }
                @for n in &numeric { option value=(n) selected[distribution == Some(*n)] { (n) } }
            } }
            button.secondary type="submit" { "Draw" }
        }
        @if let Some((name, d)) = &spread { (histogram_chart(name, d)) }
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
            p { "A metric definition (JSON, as for " code { "POST /api/v1/metrics" } ") and a call, by your id or ours; nothing is stored." }
            textarea name="definition" rows="4" cols="100" aria-label="Metric definition to try" { (forms.try_text.as_deref().unwrap_or(TRY_EXAMPLE)) }
            br;
            input type="text" name="call_id" placeholder="call id (yours or ours)" aria-label="Call id (the sender's or ours)" required;
            " " button type="submit" { "Try" }
        }
        @if let Some(tried) = &forms.tried { (tried) }
        h2 { "Create or change a metric" }
        form.card method="post" action={ "/projects/" (project.id) "/metrics/save" } {
            (csrf(admin))
            p { "A definition as JSON. Replacing a metric of the same name (tick the box) raises its version; old results are kept." }
            @if let Some((_, why)) = &forms.refused { p.bad #refused { "Not saved: " (why) } }
            textarea name="definition" rows="4" cols="100" aria-label="Metric definition to save" { (forms.refused.as_ref().map_or(TRY_EXAMPLE, |(text, _)| text.as_str())) }
            br;
            label { input type="checkbox" name="replace" value="on"; " Replace it if a metric has this name" }
            " "
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
        Ok(draft) => {
            let app = &state.app;
            let tried = match callgrade_app::calls::resolve(app, project.id, &form.call_id).await {
                Ok(call_id) => {
                    callgrade_app::metrics::try_metric(app, project.id, draft, &call_id).await
                }
                Err(e) => Err(e),
            };
            tried.map_err(|e| explain(&e).1)
        }
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
    let forms = Forms {
        tried: Some(tried),
        try_text: Some(form.definition),
        ..Forms::default()
    };
    metrics_page(&state, &admin, &project, None, None, forms).await
}

#[derive(Deserialize)]
pub struct SaveForm {
    #[serde(rename = "_csrf")]
    csrf: String,
    definition: String,
    /// Ticked to replace a metric of the same name: saving never replaces one unasked.
    #[serde(default)]
    replace: Option<String>,
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
    let (status, why) = match serde_json::from_str::<callgrade_core::MetricDraft>(&form.definition)
    {
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!("the definition is not valid: {e}."),
        ),
        Ok(draft) => {
            // Replacing a metric of the same name only when asked: otherwise it is a creation.
            let saved = match form.replace {
                Some(_) => callgrade_app::metrics::save(&state.app, project.id, draft)
                    .await
                    .map(drop),
                None => callgrade_app::metrics::create(&state.app, project.id, draft)
                    .await
                    .map(drop),
            };
            match saved {
                Ok(()) => return Ok(see_other(&format!("/projects/{}/metrics", project.id))),
                Err(e @ AppError::AlreadyExists(_)) => (
                    StatusCode::CONFLICT,
                    format!("{e}; tick \"Replace it\" to save this as its new version"),
                ),
                Err(e) => match explain(&e) {
                    (status, why) if status.is_client_error() => (status, why),
                    _ => return Err(e.into()),
                },
            }
        }
    };
    // The page again, with what was typed and why it was refused.
    let forms = Forms {
        refused: Some((form.definition, why)),
        ..Forms::default()
    };
    let mut page = metrics_page(&state, &admin, &project, None, None, forms).await?;
    *page.status_mut() = status;
    Ok(page)
}
