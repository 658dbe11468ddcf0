//! What `GET /metrics` shows: counters and histograms this process keeps as it works, and
//! gauges read from the database when scraped, in Prometheus' text exposition format (0.0.4).
//! Counters are per process, as Prometheus expects of each scraped instance; the gauges
//! (queue depth, outbound deliveries) are the database's, the same from every instance.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use crate::{App, Result};

/// Every series' name, type and help, in the order shown.
const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "callgrade_http_requests_total",
        "counter",
        "HTTP requests answered, by route template, method and status.",
    ),
    (
        "callgrade_http_request_duration_seconds",
        "histogram",
        "Time to answer an HTTP request, by route template.",
    ),
    (
        "callgrade_calls_ingested_total",
        "counter",
        "Calls stored (created or amended) by webhook, vendor and simulation routes, by project.",
    ),
    (
        "callgrade_deliveries_rejected_total",
        "counter",
        "Webhook requests refused, by project and error.",
    ),
    (
        "callgrade_evaluation_duration_seconds",
        "histogram",
        "Time from claiming an evaluation job to its end, by outcome (done, failed).",
    ),
    (
        "callgrade_jobs",
        "gauge",
        "Evaluation jobs in the database, by state.",
    ),
    (
        "callgrade_webhook_attempts_total",
        "counter",
        "Outbound webhook attempts, by outcome (delivered, retry, failed).",
    ),
    (
        "callgrade_webhook_deliveries",
        "gauge",
        "Outbound webhook deliveries in the database, by status.",
    ),
    (
        "callgrade_alert_rules",
        "gauge",
        "Enabled alert rules, by project and state (ok, firing).",
    ),
];

/// Histogram bucket bounds, in seconds.
const BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A series: its family's name and its labels in order.
type Series = (&'static str, Vec<(&'static str, String)>);

/// A value read when scraped: its family, labels and value.
pub type Gauge = (&'static str, Vec<(&'static str, String)>, f64);

#[derive(Default)]
struct Histogram {
    /// Observations at or under each bound (not cumulative; summed when rendered).
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The process's counters and histograms.
#[derive(Default)]
pub struct Telemetry {
    counters: Mutex<BTreeMap<Series, u64>>,
    histograms: Mutex<BTreeMap<Series, Histogram>>,
}

fn series(name: &'static str, labels: &[(&'static str, &str)]) -> Series {
    (
        name,
        labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
    )
}

impl Telemetry {
    /// Adds `by` to a counter.
    pub fn count(&self, name: &'static str, labels: &[(&'static str, &str)], by: u64) {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        *counters.entry(series(name, labels)).or_default() += by;
    }

    /// Records one observation, in seconds.
    pub fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], seconds: f64) {
        let mut histograms = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        let h = histograms.entry(series(name, labels)).or_default();
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            h.buckets[i] += 1;
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// The text exposition of everything kept, with `gauges` read at scrape time.
    pub fn render(&self, gauges: &[Gauge]) -> String {
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let histograms = self.histograms.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for (family, kind, help) in FAMILIES {
            let _ = writeln!(out, "# HELP {family} {help}");
            let _ = writeln!(out, "# TYPE {family} {kind}");
            for ((name, labels), value) in counters.iter().filter(|((n, _), _)| n == family) {
                let _ = writeln!(out, "{name}{} {value}", label_set(labels, None));
            }
            for ((name, labels), h) in histograms.iter().filter(|((n, _), _)| n == family) {
                let mut cumulative = 0;
                for (bound, n) in BUCKETS.iter().zip(h.buckets) {
                    cumulative += n;
                    let le = bound.to_string();
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {cumulative}",
                        label_set(labels, Some(&le))
                    );
                }
                let all = label_set(labels, Some("+Inf"));
                let _ = writeln!(out, "{name}_bucket{all} {}", h.count);
                let _ = writeln!(out, "{name}_sum{} {}", label_set(labels, None), h.sum);
                let _ = writeln!(out, "{name}_count{} {}", label_set(labels, None), h.count);
            }
            for (name, labels, value) in gauges.iter().filter(|(n, _, _)| n == family) {
                let _ = writeln!(out, "{name}{} {value}", label_set(labels, None));
            }
        }
        out
    }
}

/// `{a="1",b="x"}` (with `le` last for a bucket), values escaped as the format asks.
fn label_set(labels: &[(&'static str, String)], le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The whole exposition: this process's series and the database's gauges.
pub async fn exposition(app: &App) -> Result<String> {
    let jobs = app.store.job_counts(None).await?;
    let mut gauges: Vec<Gauge> = vec![
        (
            "callgrade_jobs",
            vec![("state", "queued".into())],
            jobs.queued as f64,
        ),
        (
            "callgrade_jobs",
            vec![("state", "running".into())],
            jobs.running as f64,
        ),
        (
            "callgrade_jobs",
            vec![("state", "done".into())],
            jobs.done as f64,
        ),
        (
            "callgrade_jobs",
            vec![("state", "dead".into())],
            jobs.dead as f64,
        ),
    ];
    for (status, n) in app.store.outbound_counts().await? {
        gauges.push((
            "callgrade_webhook_deliveries",
            vec![("status", status)],
            n as f64,
        ));
    }
    let mut rules: BTreeMap<(i64, &'static str), u64> = BTreeMap::new();
    for rule in app.store.enabled_rules().await? {
        let state = if rule.firing { "firing" } else { "ok" };
        *rules.entry((rule.project_id, state)).or_default() += 1;
    }
    for ((project, state), n) in rules {
        let labels = vec![
            ("project", project.to_string()),
            ("state", state.to_owned()),
        ];
        gauges.push(("callgrade_alert_rules", labels, n as f64));
    }
    Ok(app.telemetry.render(&gauges))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_render_in_the_text_format() {
        let t = Telemetry::default();
        t.count("callgrade_calls_ingested_total", &[("project", "1")], 2);
        t.count("callgrade_calls_ingested_total", &[("project", "1")], 1);
        t.observe(
            "callgrade_evaluation_duration_seconds",
            &[("outcome", "done")],
            0.2,
        );
        t.observe(
            "callgrade_evaluation_duration_seconds",
            &[("outcome", "done")],
            99.0,
        );
        t.count(
            "callgrade_deliveries_rejected_total",
            &[("project", "1"), ("error", "a \"b\"\n")],
            1,
        );
        let text = t.render(&[("callgrade_jobs", vec![("state", "queued".into())], 4.0)]);
        assert!(
            text.contains("callgrade_calls_ingested_total{project=\"1\"} 3\n"),
            "{text}"
        );
        assert!(text.contains(
            "callgrade_evaluation_duration_seconds_bucket{outcome=\"done\",le=\"0.25\"} 1\n"
        ));
        assert!(text.contains(
            "callgrade_evaluation_duration_seconds_bucket{outcome=\"done\",le=\"+Inf\"} 2\n"
        ));
        assert!(text.contains("callgrade_evaluation_duration_seconds_count{outcome=\"done\"} 2\n"));
        assert!(text.contains(r#"error="a \"b\"\n""#), "{text}");
        assert!(text.contains("callgrade_jobs{state=\"queued\"} 4\n"));
        assert!(text.contains("# TYPE callgrade_http_requests_total counter\n"));
    }
}
