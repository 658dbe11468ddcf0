//! A project's overview, the dashboard's landing page: how its calls did over a range next to
//! the range before it (calls, pass rate, agent latency, interruptions, judges), a trend per
//! figure, the metrics that fail most, and the latest failures: calls, runs and deliveries.

use callgrade_core::{BuiltinKey, MetricDefinition, MetricKind, RunStatus};
use callgrade_store::{
    CallFilter, CallSummary, DeliveryFilter, DeliveryOutcome, DeliverySummary, Metric,
    MetricSummary, Run, RunFilter, VerdictCounts,
};
use chrono::{DateTime, TimeDelta, Utc};

use crate::{App, Result};

/// The ranges the overview offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    Day,
    Week,
    Month,
    Quarter,
}

impl Range {
    pub const ALL: [Range; 4] = [Range::Day, Range::Week, Range::Month, Range::Quarter];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "24h",
            Self::Week => "7d",
            Self::Month => "30d",
            Self::Quarter => "90d",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn span(self) -> TimeDelta {
        match self {
            Self::Day => TimeDelta::hours(24),
            Self::Week => TimeDelta::days(7),
            Self::Month => TimeDelta::days(30),
            Self::Quarter => TimeDelta::days(90),
        }
    }

    /// How many points a trend line has over the range.
    fn buckets(self) -> i32 {
        match self {
            Self::Day => 12,
            Self::Week => 7,
            Self::Month | Self::Quarter => 15,
        }
    }
}

/// The figures of one period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// Evaluated calls that started in the period.
    pub calls: u64,
    /// The rubric's pass rate over the decided calls.
    pub pass_rate: Option<f64>,
    /// Of the calls' agent latencies (each call's own median): the median and the 90th
    /// percentile, seconds.
    pub latency_p50: Option<f64>,
    pub latency_p90: Option<f64>,
    /// The caller talking over the agent, per call.
    pub interruptions: Option<f64>,
}

/// A judge metric's pass rate now and before.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeRate {
    pub name: String,
    pub now: Option<f64>,
    pub before: Option<f64>,
}

/// Everything the overview shows.
#[derive(Debug, Clone)]
pub struct Overview {
    pub range: Range,
    pub agent_id: Option<i64>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub now: Figures,
    pub before: Figures,
    /// The period cut into equal parts, oldest first: each part's start and figures.
    pub trend: Vec<(DateTime<Utc>, Figures)>,
    pub judges: Vec<JudgeRate>,
    /// Metrics that failed on some call in the range (their own pass condition, or their rule
    /// in the rubric), most failures first.
    pub failing: Vec<Failing>,
    pub failed_calls: Vec<CallSummary>,
    pub failed_runs: Vec<Run>,
    /// Deliveries refused in the range, newest first (at most `LATEST`), and how many there were
    /// among the latest 200.
    pub rejections: Vec<DeliverySummary>,
    pub rejected: usize,
}

/// A metric that failed on calls of the range.
#[derive(Debug, Clone, PartialEq)]
pub struct Failing {
    pub metric: String,
    /// Calls of the range it failed on (its own condition or its rubric rule), at most
    /// [`COUNTED`].
    pub calls: usize,
    /// Whether a rubric rule reads it: only then does it fail a call.
    pub in_rubric: bool,
}

/// Failing calls counted per metric at most; more show as "200+".
pub const COUNTED: usize = 200;

/// How many of each list the overview shows.
const LATEST: usize = 5;

/// The overview of a project (of one agent, or all) over `range`, ending now.
pub async fn overview(
    app: &App,
    project_id: i64,
    agent_id: Option<i64>,
    range: Range,
) -> Result<Overview> {
    let to = app.now();
    let from = to - range.span();
    let metrics = app.store.list_metrics(project_id).await?;
    let names = Names::of(&metrics);
    let (now, summary) = figures(app, project_id, agent_id, from, to, &names).await?;
    let (before, previous) =
        figures(app, project_id, agent_id, from - range.span(), from, &names).await?;
    let step = range.span() / range.buckets();
    let mut trend = Vec::with_capacity(range.buckets() as usize);
    for i in 0..range.buckets() {
        let start = from + step * i;
        let (f, _) = figures(app, project_id, agent_id, start, start + step, &names).await?;
        trend.push((start, f));
    }
    let judges = names
        .judges
        .iter()
        .map(|name| JudgeRate {
            name: name.clone(),
            now: rate(&summary, name),
            before: rate(&previous, name),
        })
        .collect();
    // The candidates: metrics whose own condition failed, and the rubric's; each counted with
    // the calls list's filter, which knows both kinds of failure.
    let rubric = app.store.rubric(project_id).await?;
    let mut candidates: Vec<String> = summary
        .iter()
        .filter(|m| m.pass_rate.is_some_and(|r| r < 1.0))
        .map(|m| m.metric_name.clone())
        .collect();
    for rule in &rubric {
        if !candidates.contains(&rule.metric) {
            candidates.push(rule.metric.clone());
        }
    }
    let mut failing = Vec::new();
    for metric in candidates {
        let calls = app
            .store
            .list_calls(
                project_id,
                &CallFilter {
                    agent_id,
                    failing_metric: Some(metric.clone()),
                    started_from_ms: Some(from.timestamp_millis()),
                    started_before_ms: Some(to.timestamp_millis()),
                    limit: COUNTED as u32,
                    ..Default::default()
                },
            )
            .await?
            .data
            .len();
        if calls > 0 {
            let in_rubric = rubric.iter().any(|r| r.metric == metric);
            failing.push(Failing {
                metric,
                calls,
                in_rubric,
            });
        }
    }
    // The rubric's failures first (they fail calls), then by how many calls.
    failing.sort_by_key(|f| std::cmp::Reverse((f.in_rubric, f.calls)));
    failing.truncate(LATEST);
    let failed_calls = app
        .store
        .list_calls(
            project_id,
            &CallFilter {
                agent_id,
                success: Some(false),
                started_from_ms: Some(from.timestamp_millis()),
                limit: LATEST as u32,
                ..Default::default()
            },
        )
        .await?
        .data;
    let failed_runs = app
        .store
        .list_runs(
            project_id,
            &RunFilter {
                agent_id,
                limit: 200,
                ..Default::default()
            },
        )
        .await?
        .data
        .into_iter()
        .filter(|r| r.created_at >= from && did_not_pass(r))
        .take(LATEST)
        .collect();
    let refused: Vec<DeliverySummary> = app
        .store
        .list_deliveries(
            project_id,
            &DeliveryFilter {
                outcome: Some(DeliveryOutcome::Rejected),
                limit: 200,
                ..Default::default()
            },
        )
        .await?
        .data
        .into_iter()
        .filter(|d| d.received_at >= from)
        .collect();
    Ok(Overview {
        range,
        agent_id,
        from,
        to,
        now,
        before,
        trend,
        judges,
        failing,
        failed_calls,
        failed_runs,
        rejected: refused.len(),
        rejections: refused.into_iter().take(LATEST).collect(),
    })
}

fn did_not_pass(r: &Run) -> bool {
    matches!(r.status, RunStatus::Failed | RunStatus::Timeout) || r.success == Some(false)
}

/// The project's metrics the figures read: whatever they are called, the metric that computes
/// each builtin, and the judges.
struct Names {
    latency: Option<String>,
    interruptions: Option<String>,
    judges: Vec<String>,
}

impl Names {
    fn of(metrics: &[Metric]) -> Self {
        let builtin = |key: BuiltinKey| {
            metrics
                .iter()
                .find(|m| matches!(&m.spec.definition, MetricDefinition::Builtin { key: k, .. } if *k == key))
                .map(|m| m.spec.name.clone())
        };
        Self {
            latency: builtin(BuiltinKey::AgentLatency),
            interruptions: builtin(BuiltinKey::UserInterruptingAgent),
            judges: metrics
                .iter()
                .filter(|m| m.spec.definition.kind() == MetricKind::LlmJudge && m.spec.enabled)
                .map(|m| m.spec.name.clone())
                .collect(),
        }
    }
}

async fn figures(
    app: &App,
    project_id: i64,
    agent_id: Option<i64>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    names: &Names,
) -> Result<(Figures, Vec<MetricSummary>)> {
    let (from, to) = (Some(from.timestamp_millis()), Some(to.timestamp_millis()));
    let summary = app
        .store
        .metrics_summary(project_id, agent_id, from, to)
        .await?;
    let verdicts: VerdictCounts = app
        .store
        .verdict_counts(project_id, agent_id, from, to)
        .await?;
    let of = |name: &Option<String>| {
        name.as_deref()
            .and_then(|n| summary.iter().find(|m| m.metric_name == n))
    };
    let figures = Figures {
        calls: verdicts.passed + verdicts.failed + verdicts.undecided,
        pass_rate: verdicts.pass_rate(),
        latency_p50: of(&names.latency).and_then(|m| m.p50),
        latency_p90: of(&names.latency).and_then(|m| m.p90),
        interruptions: of(&names.interruptions).and_then(|m| m.avg),
    };
    Ok((figures, summary))
}

fn rate(summary: &[MetricSummary], name: &str) -> Option<f64> {
    summary
        .iter()
        .find(|m| m.metric_name == name)
        .and_then(|m| m.pass_rate)
}
