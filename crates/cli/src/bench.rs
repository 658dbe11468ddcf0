//! `callgrade bench`: measured speed, not timed tests.
//!
//! `bench metrics` runs every builtin metric over generated calls on one thread and reports calls
//! per second per core. Payloads come from a fixed seed, so two runs measure the same work.

use crate::corpus::generated_messages;
use callgrade_core::{compute_all_builtins, BuiltinConfig, Conversation, Message};
use clap::{Args, Subcommand};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;
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
