//! `callgrade test start`: run scenarios against an agent from CI and wait for the verdict.

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::ci_report::{self, FailingRules};
use crate::output::Output;
use crate::DbArgs;
use callgrade_core::{GateReport, GateVerdict};

#[derive(Args)]
pub struct TestStartArgs {
    /// The agent under test.
    #[arg(long)]
    agent: i64,
    /// A scenario to run (repeat for several).
    #[arg(long = "scenario")]
    scenarios: Vec<i64>,
    /// Run every scenario of the agent with this tag (repeat for several).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Runs per scenario.
    #[arg(long, default_value_t = 1)]
    frequency: u32,
    /// A name for this result.
    #[arg(long)]
    name: Option<String>,
    /// `simulate`: callgrade plays the callers through the agent's connector; `external`:
    /// something else places the calls. Default: simulate when the agent has a connector.
    #[arg(long, value_parser = ["simulate", "external"])]
    mode: Option<String>,
    /// A label for this result, e.g. the branch (`main`), to compare later results with.
    #[arg(long)]
    label: Option<String>,
    /// Wait until every run is final, print the gate, and exit 0 when it passes, 1 when it
    /// fails, 2 when it could not decide (runs that errored, timed out or were cancelled).
    #[arg(long)]
    wait: bool,
    /// Compare with this result: a scenario whose pass count fell significantly (one-sided
    /// Fisher exact test, p < 0.05) fails the gate.
    #[arg(long, requires = "wait", conflicts_with = "baseline_label")]
    baseline: Option<i64>,
    /// Compare with the newest finished result carrying this label.
    #[arg(long, requires = "wait")]
    baseline_label: Option<String>,
    /// Fail when the overall pass rate is below this (0 to 1).
    #[arg(long, requires = "wait", value_parser = parse_rate)]
    min_pass_rate: Option<f64>,
    /// Write JUnit XML here: one testcase per run.
    #[arg(long, requires = "wait")]
    junit: Option<std::path::PathBuf>,
    /// Write a Markdown summary here (it is also appended to $GITHUB_STEP_SUMMARY when set).
    #[arg(long, requires = "wait")]
    summary_md: Option<std::path::PathBuf>,
    /// Give up waiting after this long (e.g. 90s, 30m, 2h).
    #[arg(long, default_value = "45m", value_parser = parse_duration)]
    timeout: Duration,
    /// The server's base URL (default: --public-url).
    #[arg(long)]
    url: Option<String>,
    /// The project's API key.
    #[arg(long, env = "CALLGRADE_API_KEY", hide_env_values = true)]
    key: String,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{s:?} is not a rate between 0 and 1, such as 0.9")),
    }
}

/// Reads `90`, `90s`, `30m` or `2h`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 90s, 30m or 2h"))?;
    let seconds = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?}: the unit must be s, m or h")),
    };
    Ok(Duration::from_secs(seconds))
}

pub async fn start(db: &DbArgs, args: TestStartArgs, out: &Output) -> anyhow::Result<ExitCode> {
    if args.scenarios.is_empty() && args.tags.is_empty() {
        bail!("name at least one --scenario ID or --tag TAG");
    }
    let base = args.url.clone().unwrap_or_else(|| db.public_url.clone());
    let base = base.trim_end_matches('/');
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let api = Api {
        client: &client,
        base,
        key: &args.key,
    };

    let body = json!({
        "agent_id": args.agent, "scenario_ids": args.scenarios, "tags": args.tags,
        "frequency": args.frequency, "name": args.name, "mode": args.mode, "label": args.label,
    });
    let mut result = api
        .call(
            api.client
                .post(format!("{base}/api/v1/results"))
                .json(&body),
        )
        .await?;
    let id = result["id"]
        .as_i64()
        .context("the server answered without a result id")?;
    let mut intro = format!(
        "Result {id}: {} runs\n",
        result["runs"].as_array().map_or(0, Vec::len)
    );
    intro.push_str(&format!(
        "{:<8} {:<10} {:<16} SCENARIO",
        "RUN_ID", "DIRECTION", "TESTER"
    ));
    for run in result["runs"].as_array().into_iter().flatten() {
        intro.push_str(&format!(
            "\n{:<8} {:<10} {:<16} {}",
            run["id"].to_string(),
            run["direction"].as_str().unwrap_or(""),
            run["tester_phone_number"].as_str().unwrap_or("-"),
            run["scenario_name"].as_str().unwrap_or("")
        ));
    }
    // Progress goes to stderr in --json mode, so stdout stays one JSON object.
    out.progress(&intro);

    if !args.wait {
        out.print(&result, String::new);
        return Ok(ExitCode::SUCCESS);
    }

    let started = Instant::now();
    let mut last = String::new();
    let mut timed_out = false;
    while !result["finished"].as_bool().unwrap_or(false) {
        if started.elapsed() > args.timeout {
            out.progress(&format!("gave up waiting after {:?}", args.timeout));
            timed_out = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        result = api
            .call(api.client.get(format!("{base}/api/v1/results/{id}")))
            .await?;
        let counts = counts_line(&result["counts"]);
        if counts != last {
            out.progress(&counts);
            last = counts;
        }
    }

    let mut query = Vec::new();
    if let Some(b) = args.baseline {
        query.push(("baseline_id", b.to_string()));
    }
    if let Some(l) = &args.baseline_label {
        query.push(("baseline_label", l.clone()));
    }
    if let Some(r) = args.min_pass_rate {
        query.push(("min_pass_rate", r.to_string()));
    }
    let gate_value = api
        .call(
            api.client
                .get(format!("{base}/api/v1/results/{id}/gate"))
                .query(&query),
        )
        .await?;
    let mut gate: GateReport = serde_json::from_value(gate_value.clone())
        .context("the server's gate report is not what this version of the CLI reads")?;
    if timed_out && gate.verdict != GateVerdict::Fail {
        gate.verdict = GateVerdict::Undecided;
        gate.reasons.push(format!(
            "Gave up waiting after {:?} with runs still going.",
            args.timeout
        ));
    }
    let project = api
        .call(api.client.get(format!("{base}/api/v1/project")))
        .await?;
    let dashboard = format!("{base}/projects/{}", project["id"]);

    let mut failing = FailingRules::new();
    for run in result["runs"].as_array().into_iter().flatten() {
        if let (Some(run_id), Some(call_id), Value::Bool(false)) =
            (run["id"].as_i64(), run["call_id"].as_str(), &run["success"])
        {
            let call = api
                .call(api.client.get(format!("{base}/api/v1/calls/{call_id}")))
                .await?;
            let rules = call["rubric"]["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["passed"] == false)
                .map(ci_report::rule_line)
                .collect();
            failing.insert(run_id, rules);
        }
    }
    if let Some(path) = &args.junit {
        std::fs::write(path, ci_report::junit(&result, &failing, &dashboard))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let md = ci_report::markdown(&result, &gate, &dashboard);
    if let Some(path) = &args.summary_md {
        std::fs::write(path, &md).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| {
                format!("opening $GITHUB_STEP_SUMMARY ({})", path.to_string_lossy())
            })?;
        writeln!(file, "{md}")?;
    }

    let verdict = gate.verdict;
    let passed = verdict == GateVerdict::Pass;
    out.print(
        &json!({"result": result, "gate": gate, "verdict": ci_report::verdict_word(verdict),
                "passed": passed, "undecided": verdict == GateVerdict::Undecided,
                "timed_out": timed_out}),
        || format!("{}\n\n{md}", summary(&result)),
    );
    out.progress(&match verdict {
        GateVerdict::Pass => "gate: pass".to_owned(),
        GateVerdict::Fail => format!("gate: FAIL — {}", gate.reasons.join(" ")),
        GateVerdict::Undecided => format!("gate: could not decide — {}", gate.reasons.join(" ")),
    });
    Ok(ExitCode::from(verdict.exit_code()))
}

struct Api<'a> {
    client: &'a reqwest::Client,
    base: &'a str,
    key: &'a str,
}

impl Api<'_> {
    async fn call(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .bearer_auth(self.key)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let detail = body["detail"].as_str().unwrap_or("no detail");
            let problems: Vec<String> = body["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e["path"].as_str().unwrap_or(""),
                        e["message"].as_str().unwrap_or("")
                    )
                })
                .collect();
            bail!(
                "the server answered {status}: {detail} {}",
                problems.join("; ")
            );
        }
        Ok(body)
    }
}

fn counts_line(counts: &Value) -> String {
    let parts: Vec<String> = counts
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| *k != "total" && v.as_u64().unwrap_or(0) > 0)
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    parts.join(", ")
}

fn summary(result: &Value) -> String {
    let mut text = format!("{:<8} {:<20} {:<24} DETAIL", "RUN_ID", "STATUS", "SCENARIO");
    for run in result["runs"].as_array().into_iter().flatten() {
        let late = if run["late"].as_bool().unwrap_or(false) {
            " (late)"
        } else {
            ""
        };
        text.push_str(&format!(
            "\n{:<8} {:<20} {:<24} {}",
            run["id"].to_string(),
            format!(
                "{}{late}{}",
                run["status"].as_str().unwrap_or(""),
                match (&run["status"], &run["success"]) {
                    (_, Value::Bool(false)) => ", failed rubric",
                    (status, Value::Null) if status == "completed" => ", rubric could not decide",
                    _ => "",
                }
            ),
            run["scenario_name"].as_str().unwrap_or(""),
            run["error_message"]
                .as_str()
                .or(run["call_id"].as_str())
                .unwrap_or("")
        ));
    }
    text.push_str(&format!("\n{}", counts_line(&result["counts"])));
    text
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("2d").is_err());
        assert!(parse_duration("m").is_err());
    }
}
