//! `callgrade bench`: measured speed, not timed tests.
//!
//! `bench metrics` runs every builtin metric over generated calls on one thread and reports calls
//! per second per core. Payloads come from a fixed seed, so two runs measure the same work.

use callgrade_core::{compute_all_builtins, BuiltinConfig, Conversation, Message, Role};
use clap::{Args, Subcommand};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::output::Output;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Builtin-metric throughput: calls evaluated per second on one core.
    Metrics(MetricsBench),
    /// Webhook ingest: start the server on a temporary database, drive it over keep-alive
    /// connections, and compare with a parse-only baseline measured in the same run.
    Ingest(crate::bench_ingest::IngestBench),
    /// Dashboard pages over a large database (100,000 calls by default).
    Pages(crate::bench_pages::PagesBench),
    /// The parse-only baseline server (started by `bench ingest`).
    #[command(hide = true)]
    BaselineServer,
}

#[derive(Args)]
pub struct MetricsBench {
    /// Messages per generated call.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(2..=1000))]
    messages: u32,
    /// Distinct generated calls (cycled through).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    calls: u32,
    /// Seconds to measure for.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=600))]
    seconds: u64,
    /// The generator's seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

pub async fn run(cmd: BenchCommand, out: &Output) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Metrics(args) => metrics(args, out),
        BenchCommand::Ingest(args) => crate::bench_ingest::run(args, out).await,
        BenchCommand::Pages(args) => crate::bench_pages::run(args, out).await,
        BenchCommand::BaselineServer => crate::bench_ingest::baseline_server().await,
    }
}

fn metrics(args: MetricsBench, out: &Output) -> anyhow::Result<ExitCode> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let calls: Vec<(f64, Vec<Message>)> = (0..args.calls)
        .map(|_| generated_messages(&mut rng, args.messages as usize))
        .collect();
    let config = BuiltinConfig::default();
    out.progress(&format!(
        "measuring builtin metrics on {} generated calls of {} messages for {} s (one thread)…",
        args.calls, args.messages, args.seconds
    ));
    let budget = Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut evaluated = 0u64;
    let mut checksum = 0usize;
    while started.elapsed() < budget {
        for (duration, messages) in &calls {
            let conv = Conversation {
                duration_seconds: *duration,
                messages,
                ended_reason: "customer-hungup",
            };
            checksum += compute_all_builtins(&conv, &config).len();
            evaluated += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let per_second = evaluated as f64 / elapsed;
    let report = json!({
        "benchmark": "builtin_metrics",
        "messages_per_call": args.messages,
        "calls_evaluated": evaluated,
        "seconds": elapsed,
        "calls_per_second_per_core": per_second.round(),
        "metrics_per_call": checksum as u64 / evaluated.max(1),
        "target_calls_per_second_per_core": 20_000,
    });
    out.print(&report, || {
        format!(
            "builtin metrics: {:.0} calls/s on one core ({} calls of {} messages in {:.1} s; target 20000)",
            per_second, evaluated, args.messages, elapsed
        )
    });
    Ok(ExitCode::SUCCESS)
}

/// A realistic call: alternating turns with response gaps, some interruptions and backchannels,
/// tool calls with results (some failing). Returns (duration, messages).
pub fn generated_messages(rng: &mut StdRng, count: usize) -> (f64, Vec<Message>) {
    const WORDS: &[&str] = &[
        "account", "billing", "charge", "refund", "please", "order", "delivery", "today", "thanks",
        "could", "you", "check", "my", "the", "number", "is", "and", "when", "will", "it",
        "arrive", "sure", "let", "me", "look", "that", "up", "for",
    ];
    let sentence = |rng: &mut StdRng| -> String {
        let n = rng.gen_range(3..25);
        (0..n)
            .map(|_| WORDS[rng.gen_range(0..WORDS.len())])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut t = rng.gen_range(0.2..1.5);
    let mut messages = Vec::with_capacity(count);
    let mut role = Role::Bot;
    while messages.len() < count {
        if role == Role::Bot && rng.gen_bool(0.1) && messages.len() + 2 <= count {
            let id = format!("call_{}", messages.len());
            let ok = rng.gen_bool(0.9);
            messages.push(tool(
                Role::FunctionCall,
                json!({"id": id, "name": "lookup", "arguments": {}}),
                t,
            ));
            let result = if ok {
                json!({"status": "ok"})
            } else {
                json!({"error": "timeout"})
            };
            messages.push(tool(
                Role::FunctionCallResult,
                json!({"id": id, "name": "lookup", "result": result}),
                t + 0.3,
            ));
            t += 0.4;
            continue;
        }
        let content = if role == Role::User && rng.gen_bool(0.05) {
            "uh-huh".to_owned()
        } else {
            sentence(rng)
        };
        let words = content.split(' ').count() as f64;
        let length = words / 2.6; // about 156 words per minute
                                  // Mostly a pause; sometimes the next speaker starts early (an interruption).
        let start = if rng.gen_bool(0.08) {
            (t - rng.gen_range(0.1..0.8)).max(0.0)
        } else {
            t + rng.gen_range(0.2..2.5)
        };
        messages.push(Message {
            role,
            content,
            start_offset: Some(start),
            end_offset: Some(start + length),
            start_at_ms: None,
            end_at_ms: None,
            data: None,
        });
        t = start + length;
        role = if role == Role::Bot {
            Role::User
        } else {
            Role::Bot
        };
    }
    (t + 1.0, messages)
}

fn tool(role: Role, data: Value, at: f64) -> Message {
    Message {
        role,
        content: String::new(),
        start_offset: Some(at),
        end_offset: Some(at),
        start_at_ms: None,
        end_at_ms: None,
        data: Some(data),
    }
}
