//! What `test start --wait` leaves for CI: a JUnit XML file (one testcase per run) and a
//! Markdown summary (a table per scenario), both from the result and its gate.

use callgrade_core::{Change, GateReport, GateVerdict, Interval, Tally};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Write;

/// Why each failed run failed, by run id: its failing rubric rules, read from its call.
pub type FailingRules = HashMap<i64, Vec<String>>;

/// A rubric rule's outcome as one line: `agent_latency lte 1: got 2.5`.
pub fn rule_line(rule: &Value) -> String {
    format!(
        "{} {} {}: got {}",
        rule["metric"].as_str().unwrap_or("?"),
        rule["op"].as_str().unwrap_or("?"),
        rule["expected"],
        rule.get("actual")
            .filter(|v| !v.is_null())
            .map_or("no value".into(), Value::to_string)
    )
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or("–".into(), |r| format!("{:.0} %", r * 100.0))
}

fn interval(i: Option<&Interval>) -> String {
    i.map_or("–".into(), |i| {
        format!("{:.0}–{:.0} %", i.low * 100.0, i.high * 100.0)
    })
}

fn counts(t: &Tally) -> String {
    let mut s = format!("{}/{}", t.passed, t.passed + t.failed);
    if t.undecided > 0 {
        let _ = write!(s, " (+{} undecided)", t.undecided);
    }
    s
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 has no place for other control characters.
            c if c.is_control() && !matches!(c, '\n' | '\t' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The verdict in words.
pub fn verdict_word(v: GateVerdict) -> &'static str {
    match v {
        GateVerdict::Pass => "pass",
        GateVerdict::Fail => "fail",
        GateVerdict::Undecided => "undecided",
    }
}

/// JUnit XML: one testsuite for the result, one testcase per run. A failed run is a
/// `<failure>` whose text is its failing rubric rules and its dashboard link; a run that could
/// not be decided (failed to run, timed out, cancelled) is an `<error>`; a quarantined run is
/// `<skipped>` with what happened, so it is reported without failing the build.
pub fn junit(result: &Value, failing: &FailingRules, dashboard: &str) -> String {
    let runs: Vec<&Value> = result["runs"].as_array().into_iter().flatten().collect();
    let mut cases = String::new();
    let (mut failures, mut errors, mut skipped) = (0, 0, 0);
    for run in &runs {
        let id = run["id"].as_i64().unwrap_or(0);
        let scenario = run["scenario_name"].as_str().unwrap_or("");
        let link = format!("{dashboard}/runs/{id}");
        let seconds = match (run["created_at"].as_str(), run["finished_at"].as_str()) {
            (Some(a), Some(b)) => match (
                chrono::DateTime::parse_from_rfc3339(a),
                chrono::DateTime::parse_from_rfc3339(b),
            ) {
                (Ok(a), Ok(b)) => (b - a).num_milliseconds() as f64 / 1000.0,
                _ => 0.0,
            },
            _ => 0.0,
        };
        let _ = write!(
            cases,
            "    <testcase classname=\"{}\" name=\"{} (run {id})\" time=\"{seconds:.3}\">",
            xml_escape(scenario),
            xml_escape(scenario)
        );
        let status = run["status"].as_str().unwrap_or("");
        let outcome = match (status, &run["success"]) {
            ("completed", Value::Bool(true)) => None,
            ("completed", Value::Bool(false)) => {
                let rules = failing.get(&id).cloned().unwrap_or_default();
                Some((
                    "failure",
                    "the rubric failed".to_owned(),
                    format!("{}\n{link}", rules.join("\n")),
                ))
            }
            _ => {
                let why = run["error_message"]
                    .as_str()
                    .map_or_else(|| format!("the run is {status}"), str::to_owned);
                let why = match status {
                    "completed" => "the rubric could not decide".to_owned(),
                    _ => why,
                };
                Some(("error", why.clone(), format!("{why}\n{link}")))
            }
        };
        match outcome {
            None => {}
            Some((_, message, text)) if run["quarantined"] == true => {
                skipped += 1;
                let _ = write!(
                    cases,
                    "\n      <skipped message=\"quarantined: {}\">{}</skipped>\n    ",
                    xml_escape(&message),
                    xml_escape(&text)
                );
            }
            Some((tag, message, text)) => {
                if tag == "failure" {
                    failures += 1;
                } else {
                    errors += 1;
                }
                let _ = write!(
                    cases,
                    "\n      <{tag} message=\"{}\">{}</{tag}>\n    ",
                    xml_escape(&message),
                    xml_escape(&text)
                );
            }
        }
        cases.push_str("</testcase>\n");
    }
    let name = result["name"]
        .as_str()
        .map_or_else(|| format!("result {}", result["id"]), str::to_owned);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"callgrade: {}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\">\n{cases}  </testsuite>\n</testsuites>\n",
        xml_escape(&name),
        runs.len()
    )
}

/// The Markdown summary: the verdict and why, then one row per scenario.
pub fn markdown(result: &Value, gate: &GateReport, dashboard: &str) -> String {
    let icon = match gate.verdict {
        GateVerdict::Pass => "✅",
        GateVerdict::Fail => "❌",
        GateVerdict::Undecided => "⚠️",
    };
    let mut md = format!(
        "### {icon} callgrade result {}: {}\n\n",
        result["id"],
        verdict_word(gate.verdict)
    );
    for reason in &gate.reasons {
        let _ = writeln!(md, "- {reason}");
    }
    if !gate.reasons.is_empty() {
        md.push('\n');
    }
    let with_baseline = gate.baseline_result_id.is_some();
    md.push_str("| scenario | passed | pass^k | pass rate (95 % CI) |");
    if with_baseline {
        md.push_str(" baseline | change |");
    }
    md.push('\n');
    md.push_str(if with_baseline {
        "|---|---|---|---|---|---|\n"
    } else {
        "|---|---|---|---|\n"
    });
    for s in &gate.scenarios {
        let name = if s.quarantined {
            format!("{} (quarantined)", s.scenario_name)
        } else {
            s.scenario_name.clone()
        };
        let t = &s.current;
        let _ = write!(
            md,
            "| {} | {} | {} | {} ({}) |",
            name.replace('|', "\\|"),
            counts(t),
            if t.pass_all { "✓" } else { "✗" },
            percent(t.pass_rate),
            interval(t.interval.as_ref())
        );
        if with_baseline {
            let change = match s.change {
                Change::Regressed => "**regressed**",
                Change::Improved => "improved",
                Change::Unchanged => "unchanged",
                Change::NoBaseline => "no baseline",
            };
            let p = s
                .p_value
                .map_or(String::new(), |p| format!(" (p = {p:.3})"));
            let _ = write!(
                md,
                " {} | {change}{p} |",
                s.baseline.as_ref().map_or("–".into(), counts)
            );
        }
        md.push('\n');
    }
    let o = &gate.overall;
    let _ = write!(
        md,
        "\nOverall: {} passed, {} ({}). ",
        counts(o),
        percent(o.pass_rate),
        interval(o.interval.as_ref())
    );
    if let Some(id) = gate.baseline_result_id {
        let _ = write!(md, "Baseline: result {id}. ");
    }
    let _ = writeln!(
        md,
        "[Open in callgrade]({dashboard}/results/{})",
        result["id"]
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use callgrade_core::{gate, tally, GateOptions, RunOutcome, RunVerdict};
    use serde_json::json;

    #[test]
    fn junit_has_one_testcase_per_run_with_its_reason() {
        let result = json!({"id": 7, "name": "nightly <ci>", "runs": [
            {"id": 1, "scenario_name": "refund", "status": "completed", "success": true},
            {"id": 2, "scenario_name": "refund", "status": "completed", "success": false},
            {"id": 3, "scenario_name": "greeting", "status": "failed", "success": null,
             "error_message": "simulation failed: the agent answered HTTP 500"},
            {"id": 4, "scenario_name": "flaky", "status": "completed", "success": false, "quarantined": true},
        ]});
        let failing = FailingRules::from([(2, vec!["refund_granted eq true: got false".into()])]);
        let xml = junit(&result, &failing, "http://cg/projects/1");
        assert!(
            xml.contains("tests=\"4\" failures=\"1\" errors=\"1\" skipped=\"1\""),
            "{xml}"
        );
        assert!(xml.contains("callgrade: nightly &lt;ci&gt;"));
        assert!(xml.contains("refund_granted eq true: got false\nhttp://cg/projects/1/runs/2"));
        assert!(xml.contains("<error message=\"simulation failed: the agent answered HTTP 500\">"));
        assert_eq!(xml.matches("<testcase ").count(), 4);
    }

    #[test]
    fn markdown_has_a_row_per_scenario_and_the_baseline() {
        let outcome = |run_id, verdict| RunOutcome {
            run_id,
            scenario_id: 1,
            scenario_name: "refund".into(),
            quarantined: false,
            verdict,
        };
        let current: Vec<_> = (0..10)
            .map(|i| {
                outcome(
                    i,
                    if i < 3 {
                        RunVerdict::Passed
                    } else {
                        RunVerdict::Failed
                    },
                )
            })
            .collect();
        let baseline: Vec<_> = (0..10).map(|i| outcome(i, RunVerdict::Passed)).collect();
        let mut report = gate(
            &tally(&current),
            Some(&tally(&baseline)),
            &GateOptions::default(),
        );
        report.baseline_result_id = Some(41);
        let md = markdown(&json!({"id": 42}), &report, "http://cg/projects/1");
        assert!(md.starts_with("### ❌ callgrade result 42: fail"), "{md}");
        assert!(
            md.contains(
                "| refund | 3/10 | ✗ | 30 % (11–60 %) | 10/10 | **regressed** (p = 0.002) |"
            ),
            "{md}"
        );
        assert!(md.contains("Baseline: result 41."));
    }
}
