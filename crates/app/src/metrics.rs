//! Metrics, the rubric and the judge endpoint: define, apply a file, try on a call.

use callgrade_core::{
    validate_rubric, Evaluation, FieldError, JudgeSettings, Metric, MetricDraft, MetricSpec,
    MetricsFile, RubricRule,
};
use callgrade_eval::validate_metric;
use callgrade_store::{ApplySummary, JudgeSettingsPatch};

use crate::{App, AppError, Result};

fn validated(draft: MetricDraft) -> Result<MetricSpec> {
    validate_metric(draft).map_err(AppError::Invalid)
}

pub async fn create(app: &App, project_id: i64, draft: MetricDraft) -> Result<Metric> {
    let spec = validated(draft)?;
    Ok(app.store.create_metric(project_id, &spec).await?)
}

/// Replaces a metric's definition; old results keep the version they were computed with.
pub async fn update(app: &App, project_id: i64, id: i64, draft: MetricDraft) -> Result<Metric> {
    let spec = validated(draft)?;
    Ok(app.store.update_metric(project_id, id, &spec).await?)
}

/// Creates a metric, or replaces the one with the same name.
pub async fn save(app: &App, project_id: i64, draft: MetricDraft) -> Result<ApplySummary> {
    let spec = validated(draft)?;
    Ok(app.store.apply_metrics(project_id, &[spec]).await?)
}

/// Validates every metric and rule, then creates or updates metrics by name (and replaces the
/// rubric when given), all or nothing. Problems carry their path in the file
/// (`metrics[2].output`, `rubric[0].metric`).
pub async fn apply_file(app: &App, project_id: i64, file: MetricsFile) -> Result<ApplySummary> {
    let mut specs: Vec<MetricSpec> = Vec::new();
    let mut errors = Vec::new();
    for (i, draft) in file.metrics.into_iter().enumerate() {
        match validate_metric(draft) {
            Ok(spec) if specs.iter().any(|s| s.name == spec.name) => errors.push(FieldError::new(
                format!("metrics[{i}].name"),
                format!("{:?} appears twice", spec.name),
            )),
            Ok(spec) => specs.push(spec),
            Err(e) => errors.extend(
                e.into_iter()
                    .map(|e| FieldError::new(format!("metrics[{i}].{}", e.path), e.message)),
            ),
        }
    }
    if let Some(rules) = &file.rubric {
        let existing = app.store.list_metrics(project_id).await?;
        let output_of = |name: &str| {
            specs
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.output)
                .or_else(|| {
                    existing
                        .iter()
                        .find(|m| m.spec.name == name)
                        .map(|m| m.spec.output)
                })
        };
        if let Err(e) = validate_rubric(rules, output_of) {
            errors.extend(
                e.into_iter()
                    .map(|e| FieldError::new(format!("rubric.{}", e.path), e.message)),
            );
        }
    }
    if !errors.is_empty() {
        return Err(AppError::Invalid(errors));
    }
    let summary = app.store.apply_metrics(project_id, &specs).await?;
    if let Some(rules) = &file.rubric {
        app.store.set_rubric(project_id, rules).await?;
    }
    Ok(summary)
}

/// Replaces the rubric; every rule must name a metric of the project whose output fits it.
pub async fn set_rubric(app: &App, project_id: i64, rules: &[RubricRule]) -> Result<()> {
    let metrics = app.store.list_metrics(project_id).await?;
    validate_rubric(rules, |name| {
        metrics
            .iter()
            .find(|m| m.spec.name == name)
            .map(|m| m.spec.output)
    })
    .map_err(AppError::Invalid)?;
    Ok(app.store.set_rubric(project_id, rules).await?)
}

/// Changes where the project's judge metrics send their prompts; omitted fields are kept and
/// `""` clears one. Returns the settings as they now are (the key is never shown).
pub async fn set_judge(
    app: &App,
    project_id: i64,
    patch: &JudgeSettingsPatch,
) -> Result<JudgeSettings> {
    let mut errors = Vec::new();
    if let Some(url) = patch.base_url.as_deref().filter(|u| !u.is_empty()) {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            errors.push(FieldError::new(
                "base_url",
                "must be an http:// or https:// URL, e.g. https://api.openai.com/v1",
            ));
        }
    }
    if patch.concurrency.is_some_and(|c| !(1..=256).contains(&c)) {
        errors.push(FieldError::new("concurrency", "must be between 1 and 256"));
    }
    if !errors.is_empty() {
        return Err(AppError::Invalid(errors));
    }
    app.store.set_judge_settings(project_id, patch).await?;
    Ok(app.store.judge_settings(project_id).await?)
}

/// Runs an unsaved metric definition on a stored call and returns its result, storing nothing.
/// Problems with the definition have paths inside it (`output`, `config.script`).
pub async fn try_metric(
    app: &App,
    project_id: i64,
    draft: MetricDraft,
    call_id: &str,
) -> Result<Evaluation> {
    let spec = validated(draft)?;
    try_spec(app, project_id, spec, call_id).await
}

/// [`try_metric`] for a definition already validated (`callgrade metrics test` builds one).
pub async fn try_spec(
    app: &App,
    project_id: i64,
    spec: MetricSpec,
    call_id: &str,
) -> Result<Evaluation> {
    let input = app
        .store
        .evaluation_input(project_id, call_id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no call {call_id:?} in this project")))?;
    app.evaluator
        .try_metric(&input, project_id, spec, app.now())
        .await
        .map_err(|e| AppError::Upstream(e.0))
}

/// How one numeric metric's values spread over a project's recent calls.
#[derive(Debug, Clone)]
pub struct Distribution {
    /// The calls read (the most recent first, at most [`DISTRIBUTION_CALLS`]).
    pub calls: usize,
    /// Of those, the calls with a number for the metric.
    pub values: usize,
    /// `(low, high, calls)`, equal widths.
    pub bins: Vec<(f64, f64, usize)>,
}

/// The most calls a distribution reads.
pub const DISTRIBUTION_CALLS: usize = 1000;

/// The distribution of `metric`'s values on the calls (of one agent, or all) that started
/// after `since`, in up to 20 bins.
pub async fn distribution(
    app: &App,
    project_id: i64,
    agent_id: Option<i64>,
    metric: &str,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<Distribution> {
    let mut ids = Vec::new();
    let mut cursor = None;
    while ids.len() < DISTRIBUTION_CALLS {
        let page = app
            .store
            .list_calls(
                project_id,
                &callgrade_store::CallFilter {
                    agent_id,
                    started_from_ms: Some(since.timestamp_millis()),
                    cursor: cursor.take(),
                    limit: 200,
                    ..Default::default()
                },
            )
            .await?;
        ids.extend(page.data.into_iter().map(|c| c.call_id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    ids.truncate(DISTRIBUTION_CALLS);
    let values: Vec<f64> = app
        .store
        .metric_values(project_id, &ids, &[metric])
        .await?
        .into_iter()
        .filter_map(|(_, _, v)| v.as_f64())
        .collect();
    // About one bin per five values, from 5 to 20.
    let bins = (values.len() / 5).clamp(5, 20);
    Ok(Distribution {
        calls: ids.len(),
        values: values.len(),
        bins: callgrade_core::histogram(&values, bins),
    })
}
