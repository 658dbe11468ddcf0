//! `callgrade bench ingest`: an ingest route under load, next to a parse-only baseline.
//!
//! Both servers are child processes of this command, each measured with the same generated
//! calls (a fixed seed), the same concurrency and the same duration, so the ratio between
//! them holds across machines even when the absolute numbers do not. `--format` sends the
//! calls in another route's shape (the observe endpoint, Vapi, Retell, ElevenLabs); the
//! baseline always parses the custom webhook's, so each route's ratio is to the same baseline.

use anyhow::{bail, Context};
use callgrade_store::prelude::*;
use callgrade_store::NewAgent;
use callgrade_store::SqliteStore;
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::corpus::generated_messages;
use crate::output::Output;
use callgrade_core::{Message, Role};

#[derive(Args)]
pub struct IngestBench {
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,
    /// Seconds of load for each server.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    seconds: u64,
    /// Fewest messages per generated call.
    #[arg(long, default_value_t = 6)]
    min_messages: u32,
    /// Most messages per generated call.
    #[arg(long, default_value_t = 60)]
    max_messages: u32,
    /// The generator's seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Evaluation workers in the measured server.
    #[arg(long, default_value_t = 2)]
    workers: u32,
    /// Skip the parse-only baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Also measure PostgreSQL, on this database URL (a project is created in it).
    #[arg(long)]
    postgres: Option<String>,
    /// Seconds to wait, after the load, for evaluation to catch up.
    #[arg(long, default_value_t = 120)]
    drain_timeout: u64,
    /// The route and shape the calls are sent in.
    #[arg(long, value_enum, default_value_t = BenchFormat::Custom)]
    format: BenchFormat,
}

/// The ingest route measured, with the body shape it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum BenchFormat {
    /// Cekura's custom webhook.
    Custom,
    /// Cekura's observe endpoint (`transcript_type` cekura).
    Observe,
    /// Vapi's end-of-call-report on Cekura's Vapi path.
    Vapi,
    /// Retell's call_ended on Cekura's Retell path.
    Retell,
    /// ElevenLabs' post_call_transcription on Cekura's ElevenLabs path.
    Elevenlabs,
}

impl BenchFormat {
    /// The route's path (for the agent `agent_id`) and the status a stored call gets.
    fn route(self, agent_id: i64) -> (String, u16) {
        match self {
            Self::Custom => (
                "/test_framework/custom-provider-transcript-webhook/".into(),
                202,
            ),
            Self::Observe => ("/observability/v1/observe/".into(), 201),
            Self::Vapi => (
                format!("/observability/v1/vapi/observe/?agent_id={agent_id}"),
                200,
            ),
            Self::Retell => (
                format!("/observability/v1/retell/observe/?agent_id={agent_id}"),
                200,
            ),
            Self::Elevenlabs => (
                format!("/observability/v1/elevenlabs/observe/?agent_id={agent_id}"),
                200,
            ),
        }
    }

    /// One generated call in this route's shape, its id `__ID__`. It starts at
    /// 2025-10-15T09:20:00Z and lasts `duration` seconds.
    fn body(self, agent_id: i64, duration: f64, messages: &[Message]) -> Value {
        const START_MS: i64 = 1_760_520_000_000;
        let end_ms = START_MS + (duration.ceil() as i64) * 1000;
        let at = |s: Option<f64>| s.unwrap_or(0.0);
        let ms = |s: Option<f64>| START_MS as f64 + at(s) * 1000.0;
        let end = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(end_ms).expect("in range");
        let items = |f: &dyn Fn(&Message) -> Value| messages.iter().map(f).collect::<Vec<Value>>();
        let tool = |m: &Message, key: &str| m.data.as_ref().and_then(|d| d.get(key)).cloned();
        match self {
            Self::Custom => json!({"agent_id": agent_id, "calls": [{
                "id": "__ID__", "startedAt": "2025-10-15T09:20:00Z", "endedAt": end.to_rfc3339(),
                "from_phone_number": "+14155550100", "to_phone_number": "+18646190758",
                "messages": items(&|m| json!({"role": m.role.as_str(), "content": m.content,
                    "start_time": m.start_offset, "end_time": m.end_offset, "data": m.data})),
                "metadata": {"bench": true}, "endedReason": "customer-hungup"
            }]}),
            Self::Observe => json!({
                "call_id": "__ID__", "agent": agent_id, "timestamp": "2025-10-15T09:20:00Z",
                "customer_number": "+14155550100", "call_ended_reason": "customer-hungup",
                "metadata": {"bench": true},
                "transcript_json": items(&|m| json!({"role": match m.role {
                        Role::Bot => "Main Agent", Role::User => "Testing Agent", Role::System => "System",
                        Role::FunctionCall => "Function Call", Role::FunctionCallResult => "Function Call Result",
                    }, "content": m.content, "start_time": m.start_offset, "end_time": m.end_offset,
                    "data": m.data})),
            }),
            Self::Vapi => json!({"message": {
                "type": "end-of-call-report", "endedReason": "customer-ended-call",
                "startedAt": "2025-10-15T09:20:00Z", "endedAt": end.to_rfc3339(),
                "call": {"id": "__ID__", "type": "inboundPhoneCall", "customer": {"number": "+14155550100"}},
                "phoneNumber": {"number": "+18646190758"},
                "artifact": {"messages": items(&|m| match m.role {
                    Role::FunctionCall => json!({"role": "tool_calls", "time": ms(m.start_offset),
                        "secondsFromStart": at(m.start_offset), "toolCalls": [{"id": tool(m, "id"),
                        "type": "function", "function": {"name": tool(m, "name"), "arguments": "{}"}}]}),
                    Role::FunctionCallResult => json!({"role": "tool_call_result", "time": ms(m.start_offset),
                        "secondsFromStart": at(m.start_offset), "toolCallId": tool(m, "id"),
                        "name": tool(m, "name"), "result": tool(m, "result")}),
                    role => json!({"role": if role == Role::User { "user" } else { "bot" },
                        "message": m.content, "time": ms(m.start_offset), "endTime": ms(m.end_offset),
                        "secondsFromStart": at(m.start_offset)}),
                })},
            }}),
            Self::Retell => json!({"event": "call_ended", "call": {
                "call_id": "__ID__", "call_type": "phone_call", "from_number": "+14155550100",
                "to_number": "+18646190758", "start_timestamp": START_MS, "end_timestamp": end_ms,
                "disconnection_reason": "user_hangup", "metadata": {"bench": true},
                "transcript_with_tool_calls": items(&|m| match m.role {
                    Role::FunctionCall => json!({"role": "tool_call_invocation", "tool_call_id": tool(m, "id"),
                        "name": tool(m, "name"), "arguments": "{}"}),
                    Role::FunctionCallResult => json!({"role": "tool_call_result", "tool_call_id": tool(m, "id"),
                        "content": tool(m, "result").map(|r| r.to_string())}),
                    role => json!({"role": if role == Role::User { "user" } else { "agent" },
                        "content": m.content,
                        "words": [{"word": m.content, "start": at(m.start_offset), "end": at(m.end_offset)}]}),
                }),
            }}),
            Self::Elevenlabs => {
                json!({"type": "post_call_transcription", "event_timestamp": end_ms / 1000,
                "data": {"conversation_id": "__ID__", "status": "done",
                    "metadata": {"start_time_unix_secs": START_MS / 1000, "call_duration_secs": duration.ceil()},
                    "transcript": items(&|m| match m.role {
                        Role::FunctionCall => json!({"role": "agent", "message": null,
                            "time_in_call_secs": at(m.start_offset).floor(),
                            "tool_calls": [{"request_id": tool(m, "id"), "tool_name": tool(m, "name"), "params_as_json": "{}"}]}),
                        Role::FunctionCallResult => json!({"role": "agent", "message": null,
                            "time_in_call_secs": at(m.start_offset).floor(),
                            "tool_results": [{"request_id": tool(m, "id"), "tool_name": tool(m, "name"),
                                "result_value": tool(m, "result").map(|r| r.to_string()), "is_error": false}]}),
                        role => json!({"role": if role == Role::User { "user" } else { "agent" },
                            "message": m.content, "time_in_call_secs": at(m.start_offset).floor()}),
                    }),
                }})
            }
        }
    }
}

struct Load {
    requests: u64,
    errors: u64,
    seconds: f64,
    latencies_us: Vec<u64>,
}

impl Load {
    fn summary(&mut self) -> Value {
        self.latencies_us.sort_unstable();
        let pct = |p: f64| -> f64 {
            if self.latencies_us.is_empty() {
                return 0.0;
            }
            let i = ((p / 100.0) * (self.latencies_us.len() - 1) as f64).round() as usize;
            self.latencies_us[i] as f64 / 1000.0
        };
        json!({
            "requests": self.requests,
            "errors": self.errors,
            "seconds": (self.seconds * 1000.0).round() / 1000.0,
            "requests_per_second": (self.requests as f64 / self.seconds).round(),
            "calls_per_second": (self.requests as f64 / self.seconds).round(),
            "latency_ms": {"p50": pct(50.0), "p90": pct(90.0), "p99": pct(99.0), "max": pct(100.0)},
        })
    }
}

/// A server child process and the URL it announced.
struct ServerChild {
    child: Child,
    base: String,
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[&str]) -> anyhow::Result<ServerChild> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut child = Command::new(exe)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start a server")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
    let base = line
        .trim()
        .strip_prefix("callgrade listening on ")
        .with_context(|| format!("unexpected server output {line:?}"))?
        .to_owned();
    Ok(ServerChild { child, base })
}

/// Peak resident memory of a process, in MiB (Linux).
fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kb / 1024.0 * 10.0).round() / 10.0)
}

/// Request bodies with an `__ID__` placeholder; one call of 6–60 messages each, in `format`.
fn bodies(args: &IngestBench, agent_id: i64, format: BenchFormat) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    (0..500)
        .map(|_| {
            let count = rng.gen_range(args.min_messages..=args.max_messages.max(args.min_messages));
            let (duration, messages) = generated_messages(&mut rng, count as usize);
            format.body(agent_id, duration, &messages).to_string()
        })
        .collect()
}

async fn drive(
    url: &str,
    key: &str,
    bodies: &[String],
    args: &IngestBench,
    tag: &str,
    stored: u16,
) -> Load {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency as usize)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a plain client builds");
    let bodies = Arc::new(bodies.to_vec());
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..args.concurrency {
        let (client, url, key, bodies, tag) = (
            client.clone(),
            url.to_owned(),
            key.to_owned(),
            bodies.clone(),
            tag.to_owned(),
        );
        tasks.spawn(async move {
            let mut load = Load {
                requests: 0,
                errors: 0,
                seconds: 0.0,
                latencies_us: Vec::new(),
            };
            let mut i = 0usize;
            while Instant::now() < deadline {
                let body =
                    bodies[i % bodies.len()].replace("__ID__", &format!("{tag}-{worker}-{i}"));
                i += 1;
                let sent = Instant::now();
                let ok = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-cekura-api-key", &key)
                    .body(body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().as_u16() == stored);
                load.latencies_us.push(sent.elapsed().as_micros() as u64);
                load.requests += 1;
                load.errors += u64::from(!ok);
            }
            load
        });
    }
    let mut total = Load {
        requests: 0,
        errors: 0,
        seconds: 0.0,
        latencies_us: Vec::new(),
    };
    while let Some(Ok(load)) = tasks.join_next().await {
        total.requests += load.requests;
        total.errors += load.errors;
        total.latencies_us.extend(load.latencies_us);
    }
    total.seconds = started.elapsed().as_secs_f64();
    total
}

pub async fn run(args: IngestBench, out: &Output) -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let data = dir
        .path()
        .to_str()
        .context("temporary path is not UTF-8")?
        .to_owned();
    let store = SqliteStore::open(&format!("sqlite://{data}/callgrade.db")).await?;
    let (project, key) = store.create_project("bench").await?;
    let agent = store
        .create_agent(project.id, &NewAgent::named("bench-agent"))
        .await?;
    drop(store);
    let key = key.expose().to_owned();
    let payloads = bodies(&args, agent.id, args.format);
    let baseline_payloads = match args.format {
        BenchFormat::Custom => payloads.clone(),
        _ => bodies(&args, agent.id, BenchFormat::Custom),
    };

    let mut report = json!({
        "machine": {"cores": std::thread::available_parallelism().map_or(0, |n| n.get())},
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "messages_per_call": [args.min_messages, args.max_messages],
        "format": format!("{:?}", args.format).to_lowercase(),
    });

    let mut baseline_rps = None;
    if !args.no_baseline {
        out.progress(&format!(
            "baseline (parse and validate only): {} s at concurrency {}…",
            args.seconds, args.concurrency
        ));
        let server = spawn(&["bench", "baseline-server"])?;
        let mut load = drive(
            &format!("{}/hook", server.base),
            &key,
            &baseline_payloads,
            &args,
            "b",
            202,
        )
        .await;
        let mut summary = load.summary();
        summary["peak_rss_mb"] = json!(peak_rss_mb(server.child.id()));
        baseline_rps = summary["requests_per_second"].as_f64();
        report["baseline"] = summary;
    }
    let ratio = |summary: &Value| {
        baseline_rps.filter(|b| *b > 0.0).map(|base| {
            (summary["requests_per_second"].as_f64().unwrap_or(0.0) / base * 1000.0).round()
                / 1000.0
        })
    };

    let (summary, mut failed) = measure(
        &args,
        out,
        "SQLite (durable commits)",
        &["--data-dir", &data],
        &key,
        (&payloads, agent.id),
        "s",
    )
    .await?;
    report["ratio_to_baseline"] = json!(ratio(&summary));
    report["sqlite"] = summary;

    if let Some(url) = &args.postgres {
        let store = crate::database::open_url(url).await?;
        let name = format!("bench-{}", uuid_suffix());
        let (project, pg_key) = store.create_project(&name).await?;
        let agent = store
            .create_agent(project.id, &NewAgent::named("bench-agent"))
            .await?;
        drop(store);
        let pg_payloads = bodies(&args, agent.id, args.format);
        let (summary, errors) = measure(
            &args,
            out,
            "PostgreSQL",
            &["--database-url", url],
            pg_key.expose(),
            (&pg_payloads, agent.id),
            "p",
        )
        .await?;
        failed += errors;
        report["postgres_ratio_to_baseline"] = json!(ratio(&summary));
        report["postgres"] = summary;
    }
    if failed > 0 {
        out.progress(&format!("{failed} requests failed"));
    }

    out.print(&report, || {
        let line = |name: &str, s: &Value| {
            format!(
                "callgrade ({name}): {} calls/s, p50 {} ms, p90 {} ms, p99 {} ms, {} errors, peak RSS {} MiB\n\
                 evaluation: {} jobs done, caught up {} s after the load ({} jobs/s)",
                s["calls_per_second"], s["latency_ms"]["p50"], s["latency_ms"]["p90"], s["latency_ms"]["p99"],
                s["errors"], s["peak_rss_mb"], s["evaluation"]["jobs_done"],
                s["evaluation"]["seconds_to_catch_up_after_load"], s["evaluation"]["jobs_per_second"]
            )
        };
        let mut text = line("SQLite", &report["sqlite"]);
        if let Some(pg) = report.get("postgres") {
            text.push('\n');
            text.push_str(&line("PostgreSQL", pg));
        }
        if let Some(b) = report.get("baseline") {
            text.push_str(&format!(
                "\nbaseline (parse only): {} calls/s, p99 {} ms\nratio to baseline: SQLite {}, PostgreSQL {}",
                b["calls_per_second"], b["latency_ms"]["p99"], report["ratio_to_baseline"],
                report.get("postgres_ratio_to_baseline").unwrap_or(&Value::Null)
            ));
        }
        text
    });
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn uuid_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    )
}

/// Loads one server configuration, then waits for its evaluation to catch up.
async fn measure(
    args: &IngestBench,
    out: &Output,
    label: &str,
    db: &[&str],
    key: &str,
    (bodies, agent_id): (&[String], i64),
    tag: &str,
) -> anyhow::Result<(Value, u64)> {
    out.progress(&format!(
        "callgrade on {label}: {} s at concurrency {}…",
        args.seconds, args.concurrency
    ));
    let workers = args.workers.to_string();
    let mut flags: Vec<&str> = db.to_vec();
    flags.extend([
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--rate-limit",
        "0",
        "--workers",
        &workers,
    ]);
    let server = spawn(&flags)?;
    let (path, stored) = args.format.route(agent_id);
    let hook = format!("{}{path}", server.base);
    let mut load = drive(&hook, key, bodies, args, tag, stored).await;
    let load_seconds = load.seconds;
    let mut summary = load.summary();

    // Evaluation keeping up: how long after the load until every queued job is done.
    out.progress("waiting for evaluation to catch up…");
    let client = reqwest::Client::new();
    let drain_started = Instant::now();
    let jobs = loop {
        let jobs: Value = client
            .get(format!("{}/api/v1/jobs", server.base))
            .bearer_auth(key)
            .send()
            .await?
            .json()
            .await?;
        let pending = jobs["queued"].as_i64().unwrap_or(0) + jobs["running"].as_i64().unwrap_or(0);
        if pending == 0 || drain_started.elapsed() > Duration::from_secs(args.drain_timeout) {
            break jobs;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let drain = drain_started.elapsed().as_secs_f64();
    let done = jobs["done"].as_f64().unwrap_or(0.0);
    summary["peak_rss_mb"] = json!(peak_rss_mb(server.child.id()));
    summary["evaluation"] = json!({
        "jobs_done": done,
        "jobs_left": jobs["queued"].as_i64().unwrap_or(0) + jobs["running"].as_i64().unwrap_or(0),
        "seconds_to_catch_up_after_load": (drain * 100.0).round() / 100.0,
        "jobs_per_second": (done / (load_seconds + drain)).round(),
        "kept_up": drain < 1.0,
    });
    Ok((summary, load.errors))
}

/// The baseline: the same parsing and validation, answered with 202, nothing stored.
pub async fn baseline_server() -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("callgrade listening on http://{}", listener.local_addr()?);
    callgrade_server::serve_parse_only_baseline(listener).await?;
    bail!("the baseline server stopped")
}
