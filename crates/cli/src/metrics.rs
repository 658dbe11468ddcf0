//! `callgrade metrics`: list, apply a TOML file of definitions, test a script on a stored call.

use anyhow::{anyhow, Context};
use callgrade_app::{App, AppError, AppSettings};
use callgrade_core::MetricsFile;
use callgrade_core::{MetricDefinition, OutputType};
use callgrade_store::{JudgeSettingsPatch, Metric};
use clap::Subcommand;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::admin::find_project;
use crate::check::read_input;
use crate::output::Output;
use crate::DbArgs;

#[derive(Subcommand)]
pub enum MetricsCommand {
    /// List a project's metrics.
    List {
        #[arg(long)]
        project: String,
    },
    /// Create or update metrics (and the rubric, and the judge endpoint) from a TOML file, all
    /// or nothing. See docs/metrics.md for the format.
    Apply {
        #[arg(long)]
        project: String,
        /// The TOML file, or - for standard input.
        file: PathBuf,
    },
    /// Run a Rhai script metric on a stored call and print what it returns (nothing is stored).
    Test {
        #[arg(long)]
        project: String,
        /// Our call id.
        #[arg(long)]
        call: String,
        /// The script file (.rhai), or - for standard input.
        file: PathBuf,
        /// The output type of the metric: binary, numeric, score, enum or text.
        #[arg(long, default_value = "numeric")]
        output: String,
    },
}

/// The TOML file: `[[metrics]]`, optional `[[rubric]]`, optional `[judge]`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    // Typed here, not read as JSON values first, so an error names its line and column.
    #[serde(default)]
    metrics: Vec<callgrade_core::MetricDraft>,
    rubric: Option<Vec<callgrade_core::RubricRule>>,
    judge: Option<TomlJudge>,
    /// Alert rules (docs/alerts.md), read as tables and checked by the rule parser.
    #[serde(default)]
    alerts: Vec<toml::Table>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlJudge {
    base_url: Option<String>,
    model: Option<String>,
    /// The name of an environment variable holding the key (keys stay out of files).
    api_key_env: Option<String>,
    concurrency: Option<u32>,
}

fn describe(m: &Metric) -> String {
    format!(
        "{:<6} {:<32} {:<10} {:<8} {:<10} {}",
        m.id,
        m.spec.name,
        m.spec.kind().as_str(),
        m.spec.output.as_str(),
        m.spec.applies_to.as_str(),
        if m.spec.enabled { "" } else { "(disabled)" }
    )
}

pub async fn run(db: &DbArgs, cmd: MetricsCommand, out: &Output) -> anyhow::Result<ExitCode> {
    let store = db.open().await?;
    match cmd {
        MetricsCommand::List { project } => {
            let project = find_project(store.as_ref(), &project).await?;
            let metrics = store.list_metrics(project.id).await?;
            let rubric = store.rubric(project.id).await?;
            out.print(&json!({"metrics": metrics, "rubric": rubric}), || {
                let mut text = format!(
                    "{:<6} {:<32} {:<10} {:<8} {:<10}",
                    "ID", "NAME", "KIND", "OUTPUT", "APPLIES TO"
                );
                for m in &metrics {
                    text.push('\n');
                    text.push_str(&describe(m));
                }
                text.push_str(&format!("\nrubric: {} rule(s)", rubric.len()));
                for r in &rubric {
                    text.push_str(&format!("\n  {} {:?} {}", r.metric, r.op, r.value));
                }
                text
            });
        }
        MetricsCommand::Apply { project, file } => {
            let project = find_project(store.as_ref(), &project).await?;
            let text = String::from_utf8(read_input(&file)?).context("the file is not UTF-8")?;
            let parsed: TomlFile =
                toml::from_str(&text).map_err(|e| anyhow!("{}: {e}", file.display()))?;
            let metrics_file = MetricsFile {
                metrics: parsed.metrics,
                rubric: parsed.rubric,
            };
            let app = App::new(store.clone(), AppSettings::default());
            // Every alert rule is checked before anything is applied.
            let alert_bodies: Vec<serde_json::Value> = parsed
                .alerts
                .into_iter()
                .map(|t| serde_json::to_value(t).unwrap_or_default())
                .collect();
            let alert_rules = callgrade_app::alerts::parse_rules(&alert_bodies)
                .map_err(|e| nothing_changed(&e))?;
            let summary = callgrade_app::metrics::apply_file(&app, project.id, metrics_file)
                .await
                .map_err(|e| nothing_changed(&e))?;
            if let Some(judge) = parsed.judge {
                let api_key = match judge.api_key_env {
                    Some(var) => Some(std::env::var(&var).with_context(|| {
                        format!("[judge] api_key_env names {var}, which is not set")
                    })?),
                    None => None,
                };
                let patch = JudgeSettingsPatch {
                    base_url: judge.base_url,
                    model: judge.model,
                    api_key,
                    concurrency: judge.concurrency,
                };
                callgrade_app::metrics::set_judge(&app, project.id, &patch)
                    .await
                    .map_err(|e| anyhow!("[judge] {e}"))?;
            }
            let alerts = callgrade_app::alerts::apply_rules(&app, project.id, &alert_rules)
                .await
                .map_err(|e| anyhow!("the metrics were applied, the alert rules not: {e}"))?;
            let applied = serde_json::json!({
                "created": summary.created, "updated": summary.updated,
                "unchanged": summary.unchanged, "alerts": alerts,
            });
            out.print(&applied, || {
                let mut text = format!(
                    "Applied to {:?}: {} created, {} updated, {} unchanged",
                    project.name,
                    summary.created.len(),
                    summary.updated.len(),
                    summary.unchanged.len()
                );
                if !alert_rules.is_empty() {
                    text.push_str(&format!(
                        "\nAlert rules: {} created, {} updated, {} unchanged",
                        alerts.created.len(),
                        alerts.updated.len(),
                        alerts.unchanged.len()
                    ));
                }
                text
            });
        }
        MetricsCommand::Test {
            project,
            call,
            file,
            output,
        } => {
            let project = find_project(store.as_ref(), &project).await?;
            let source =
                String::from_utf8(read_input(&file)?).context("the script is not UTF-8")?;
            let output = OutputType::parse(&output)
                .ok_or_else(|| anyhow!("--output must be binary, numeric, score, enum or text"))?;
            let spec = callgrade_core::MetricSpec {
                name: file.display().to_string(),
                output,
                enum_values: Vec::new(),
                applies_to: Default::default(),
                agent_ids: Vec::new(),
                description: String::new(),
                definition: MetricDefinition::Script { source },
                pass: None,
                enabled: true,
            };
            let app = App::new(store.clone(), AppSettings::default());
            let result = callgrade_app::metrics::try_spec(&app, project.id, spec, &call)
                .await
                .map_err(|e| match e {
                    AppError::NotFound(_) => {
                        anyhow!("no call {call:?} in project {:?}", project.name)
                    }
                    other => anyhow!(other),
                })?;
            let ok = result.status == callgrade_store::EvaluationStatus::Ok;
            out.print(&result, || {
                format!(
                    "status:      {}\nresult:      {}\nexplanation: {}",
                    result.status.as_str(),
                    result
                        .value
                        .as_ref()
                        .map_or("(unset)".into(), Value::to_string),
                    result.explanation
                )
            });
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A refused metrics file, each problem on a line of its own with its path in the file.
fn nothing_changed(e: &AppError) -> anyhow::Error {
    match e {
        AppError::Invalid(errors) => {
            let n = errors.len();
            let lines: Vec<String> = e.problems().iter().map(|p| format!("  {p}")).collect();
            anyhow!(
                "the file has {n} problem{} — nothing was changed:\n{}",
                if n == 1 { "" } else { "s" },
                lines.join("\n")
            )
        }
        other => anyhow!("{other} — nothing was changed"),
    }
}
