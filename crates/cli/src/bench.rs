//! `callgrade bench`: measured speed, not timed tests.
//!
//! `bench metrics` runs every builtin metric over generated calls on one thread and reports calls
//! per second per core; `bench evaluate` times one call of growing length, to show how evaluation
//! scales with the message count. Payloads come from a fixed seed, so two runs measure the same
//! work.

use crate::corpus::generated_messages;
use callgrade_core::{compute_all_builtins, percentile, BuiltinConfig, Conversation, Message};
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
    /// Evaluation time against call length: every builtin metric on one generated call per
    /// size; with linear growth the time per 1,000 messages stays flat.
    Evaluate(EvaluateBench),
    /// Webhook ingest: start the server on a temporary database, drive it over keep-alive
    /// connections, and compare with a parse-only baseline measured in the same run.
    Ingest(crate::bench_ingest::IngestBench),
    /// Dashboard pages over a large database (100,000 calls by default).
    Pages(crate::bench_pages::PagesBench),
    /// Simulated callers against zero-latency fakes: runs per minute and the harness's own
    /// CPU per turn.
    Simulate(crate::bench_simulate::SimulateBench),
    /// Voice simulations at once against in-process fakes, and whether each kept its 20 ms
    /// frame pacing (p99 send lateness under 10 ms).
    Voice(crate::bench_voice::VoiceBench),
    /// Audio analysis of a generated stereo recording: multiples of real time on one core.
    Audio(crate::bench_audio::AudioBench),
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

#[derive(Args)]
pub struct EvaluateBench {
    /// Call sizes, in messages, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_values_t = [1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000],
        value_parser = clap::value_parser!(u32).range(2..=1_000_000),
    )]
    messages: Vec<u32>,
    /// Evaluations of each call; the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    repetitions: u32,
    /// The generator's seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

pub async fn run(cmd: BenchCommand, out: &Output) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Metrics(args) => metrics(args, out),
        BenchCommand::Evaluate(args) => evaluate(args, out),
        BenchCommand::Ingest(args) => crate::bench_ingest::run(args, out).await,
        BenchCommand::Pages(args) => crate::bench_pages::run(args, out).await,
        BenchCommand::Simulate(args) => crate::bench_simulate::run(args, out).await,
        BenchCommand::Audio(args) => crate::bench_audio::run(args, out),
        BenchCommand::Voice(args) => crate::bench_voice::run(args, out).await,
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
                audio: None,
                trace: None,
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

fn evaluate(args: EvaluateBench, out: &Output) -> anyhow::Result<ExitCode> {
    let mut sizes = args.messages;
    sizes.sort_unstable();
    sizes.dedup();
    let config = BuiltinConfig::default();
    out.progress(&format!(
        "evaluating every builtin metric on one generated call per size, median of {} (one thread)…",
        args.repetitions
    ));
    // (messages, median seconds, milliseconds per 1,000 messages)
    let mut timings: Vec<(u32, f64, f64)> = Vec::with_capacity(sizes.len());
    for &n in &sizes {
        // The same seed for every size: each call begins like the others.
        let (duration, messages) =
            generated_messages(&mut StdRng::seed_from_u64(args.seed), n as usize);
        let conv = Conversation {
            duration_seconds: duration,
            messages: &messages,
            ended_reason: "customer-hungup",
            audio: None,
            trace: None,
        };
        let mut seconds: Vec<f64> = (0..args.repetitions)
            .map(|_| {
                let started = Instant::now();
                std::hint::black_box(compute_all_builtins(&conv, &config));
                started.elapsed().as_secs_f64()
            })
            .collect();
        seconds.sort_unstable_by(f64::total_cmp);
        let median = percentile(&seconds, 50.0).expect("at least one repetition");
        timings.push((n, median, median * 1e6 / f64::from(n)));
    }
    let (smallest, largest) = (timings[0], timings[timings.len() - 1]);
    let growth = largest.2 / smallest.2;
    let report = json!({
        "benchmark": "evaluate_by_call_length",
        "repetitions": args.repetitions,
        "sizes": timings.iter().map(|&(n, median, per_thousand)| json!({
            "messages": n,
            "median_seconds": median,
            "ms_per_1000_messages": per_thousand,
        })).collect::<Vec<_>>(),
        "per_1000_ratio_largest_to_smallest": growth,
    });
    out.print(&report, || {
        let mut text = format!(
            "{:>9}  {:>11}  {:>18}",
            "messages", "median", "per 1,000 messages"
        );
        for &(n, median, per_thousand) in &timings {
            text.push_str(&format!(
                "\n{n:>9}  {:>8.2} ms  {per_thousand:>15.3} ms",
                median * 1000.0
            ));
        }
        text.push_str(&format!(
            "\nper-1,000 time at {} messages / at {}: {growth:.2} (1 means linear growth)",
            largest.0, smallest.0
        ));
        text
    });
    Ok(ExitCode::SUCCESS)
}
