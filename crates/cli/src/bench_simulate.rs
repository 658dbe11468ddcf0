//! `callgrade bench simulate`: the simulated-caller harness against zero-latency fakes (a
//! caller LLM and an `http_turn` agent that answer at once), on a temporary SQLite database.
//! It reports simulated runs per minute at the project's concurrency and the harness's own CPU
//! per turn: the process's CPU time less the fakes' (they run on a thread of their own, whose
//! CPU time is read apart), over the caller and agent requests made.

use anyhow::Context;
use callgrade_app::admin::{self, AgentDraft, ConnectorChange};
use callgrade_app::{App, AppSettings};
use callgrade_core::{ResultDraft, RunStatus, ScenarioDraft};
use callgrade_store::SimulatorSettingsPatch;
use clap::Args;
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::io::BufReader;

use crate::bench_http::{read_request, respond};

use crate::output::Output;

#[derive(Args)]
pub struct SimulateBench {
    /// Simulated runs in all.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    runs: u32,
    /// Lines the caller says before hanging up (each answered by the agent).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=90))]
    lines: u32,
    /// The project's simulated runs in flight at once (the default a project has).
    #[arg(long, default_value_t = callgrade_core::SimulatorSettings::DEFAULT_CONCURRENCY,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    concurrency: u32,
}

/// CPU time in nanoseconds, from `/proc/.../schedstat` (Linux; `None` elsewhere).
fn cpu_ns(path: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The whole process's CPU time: every thread's.
fn process_cpu_ns() -> Option<u64> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    Some(
        tasks
            .filter_map(|t| t.ok())
            .filter_map(|t| cpu_ns(&format!("{}/schedstat", t.path().display())))
            .sum(),
    )
}

/// What the fakes answer: a caller that says `lines` lines then hangs up, an agent that
/// answers each turn with one line.
fn fake_answer(path: &str, body: &[u8], lines: u32) -> Value {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if path.ends_with("/chat/completions") {
        let said = request["messages"]
            .as_array()
            .map_or(0, |m| m.iter().filter(|m| m["role"] == "assistant").count());
        let message = if said < lines as usize {
            json!({"role": "assistant", "content": format!("This is line {said} of my question.")})
        } else {
            json!({"role": "assistant", "content": "Bye.", "tool_calls": [{"id": "h", "type": "function",
                "function": {"name": "end_call", "arguments": "{}"}}]})
        };
        json!({"choices": [{"message": message}], "usage": {"total_tokens": 50}})
    } else {
        json!({"messages": [{"role": "bot", "content": "Certainly, I can help with that."}]})
    }
}

/// One keep-alive HTTP/1.1 connection of the fakes.
async fn fake_connection(stream: tokio::net::TcpStream, lines: u32) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    while let Some((path, body)) = read_request(&mut reader).await? {
        let answer = fake_answer(&path, &body, lines).to_string();
        respond(&mut reader, "application/json", answer.as_bytes()).await?;
    }
    Ok(())
}

/// Starts the fakes on a thread and runtime of their own; their base URL, and a way to read
/// that thread's CPU time.
fn start_fakes(
    lines: u32,
) -> anyhow::Result<(
    String,
    std::sync::mpsc::Sender<std::sync::mpsc::Sender<Option<u64>>>,
)> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (cpu_tx, cpu_rx) = std::sync::mpsc::channel::<std::sync::mpsc::Sender<Option<u64>>>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the fakes");
        rt.block_on(async move {
            let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                Ok(l) => l,
                Err(e) => return drop(ready_tx.send(Err(e.to_string()))),
            };
            let _ = ready_tx.send(
                listener
                    .local_addr()
                    .map(|a| format!("http://{a}"))
                    .map_err(|e| e.to_string()),
            );
            loop {
                // Answer CPU questions between accepts: this thread's own time.
                while let Ok(reply) = cpu_rx.try_recv() {
                    let _ = reply.send(cpu_ns("/proc/thread-self/schedstat"));
                }
                let accepted =
                    tokio::time::timeout(Duration::from_millis(20), listener.accept()).await;
                if let Ok(Ok((stream, _))) = accepted {
                    tokio::spawn(fake_connection(stream, lines));
                }
            }
        });
    });
    let base = ready_rx
        .recv()
        .context("the fakes did not start")?
        .map_err(|e| anyhow::anyhow!("the fakes could not listen: {e}"))?;
    Ok((base, cpu_tx))
}

fn fakes_cpu(ask: &std::sync::mpsc::Sender<std::sync::mpsc::Sender<Option<u64>>>) -> Option<u64> {
    let (tx, rx) = std::sync::mpsc::channel();
    ask.send(tx).ok()?;
    rx.recv_timeout(Duration::from_secs(5)).ok()?
}

pub async fn run(args: SimulateBench, out: &Output) -> anyhow::Result<ExitCode> {
    let (fakes, ask_cpu) = start_fakes(args.lines)?;
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let url = format!("sqlite://{}/callgrade.db", dir.path().display());
    let store = std::sync::Arc::new(callgrade_store::SqliteStore::open(&url).await?);
    let mut settings = AppSettings::default();
    // Only the harness: the conversations' calls are queued for evaluation, not evaluated.
    settings.workers.count = 0;
    settings.simulation.default_base_url = Some(format!("{fakes}/v1"));
    settings.simulation.default_model = Some("fake-caller".into());
    let app = App::new(store.clone(), settings);
    let (project, _) = admin::create_project(&app, "bench-simulate").await?;
    let connector = json!({"kind": "http_turn", "url": format!("{fakes}/turn")});
    let agent = admin::create_agent(
        &app,
        project.id,
        AgentDraft {
            name: "bench-agent",
            phone_number: None,
            description: None,
            connector: ConnectorChange::Set(&connector),
            external_ids: None,
        },
    )
    .await?;
    callgrade_app::simulation::configure_simulator(
        &app,
        project.id,
        &SimulatorSettingsPatch {
            concurrency: Some(args.concurrency),
            ..Default::default()
        },
    )
    .await?;
    // Results hold at most 100 runs per scenario: spread the runs over enough scenarios.
    let per_scenario = ResultDraft::MAX_FREQUENCY;
    let scenarios = args.runs.div_ceil(per_scenario);
    let mut scenario_ids = Vec::new();
    for i in 0..scenarios {
        let draft = ScenarioDraft {
            agent_id: agent.id,
            name: format!("bench-{i}"),
            instructions: "Ask about your bill.".into(),
            expected_outcome_prompt: String::new(),
            tags: Vec::new(),
            direction: "inbound".into(),
            tester_phone_number: None,
            persona: None,
            first_message: None,
            tool_mocks: Vec::new(),
            unmatched_tool_result: None,
            max_turns: Some(args.lines * 2 + 2),
            max_seconds: None,
            quarantined: false,
        };
        let s = callgrade_app::runs::create_scenario(&app, project.id, draft).await?;
        scenario_ids.push(s.id);
    }
    let simulator = callgrade_app::simulation::spawn(&app).context("no simulation slots")?;
    out.progress(&format!(
        "{} simulated runs of {} caller lines each, {} at once…",
        args.runs, args.lines, args.concurrency
    ));

    let (cpu0, fakes0, started) = (process_cpu_ns(), fakes_cpu(&ask_cpu), Instant::now());
    let mut results = Vec::new();
    let mut left = args.runs;
    for id in &scenario_ids {
        let n = left.min(per_scenario);
        left -= n;
        let draft = ResultDraft {
            agent_id: agent.id,
            scenario_ids: vec![*id],
            tags: Vec::new(),
            frequency: Some(n),
            name: None,
            mode: None,
            label: None,
        };
        results.push(
            callgrade_app::runs::create_result(&app, project.id, draft)
                .await?
                .id,
        );
    }
    let (turns, failed) = loop {
        let mut done = true;
        let (mut turns, mut failed) = (0u64, 0usize);
        for id in &results {
            let result = app
                .store
                .result(project.id, *id)
                .await?
                .context("a result vanished")?;
            for run in &result.runs {
                match run.status {
                    RunStatus::Pending | RunStatus::InProgress => done = false,
                    RunStatus::Failed => failed += 1,
                    _ => {}
                }
                turns += run.usage.caller_requests + run.usage.agent_requests;
            }
        }
        if done {
            break (turns, failed);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let elapsed = started.elapsed();
    let (cpu1, fakes1) = (process_cpu_ns(), fakes_cpu(&ask_cpu));
    simulator.abort();

    let harness_ns = match (cpu0, cpu1, fakes0, fakes1) {
        (Some(a), Some(b), Some(fa), Some(fb)) => Some(b.saturating_sub(a).saturating_sub(fb - fa)),
        _ => None,
    };
    let per_turn_ms = harness_ns.map(|ns| ns as f64 / 1e6 / turns.max(1) as f64);
    let runs_per_minute = f64::from(args.runs) / elapsed.as_secs_f64() * 60.0;
    let report = json!({
        "runs": args.runs, "failed": failed, "lines_per_run": args.lines,
        "concurrency": args.concurrency, "turns": turns,
        "seconds": elapsed.as_secs_f64(), "runs_per_minute": runs_per_minute,
        "turns_per_second": turns as f64 / elapsed.as_secs_f64(),
        "harness_cpu_ms_per_turn": per_turn_ms,
    });
    out.print(&report, || {
        format!(
            "{} runs ({failed} failed), {turns} turns in {:.2} s: {runs_per_minute:.0} runs/min, {:.0} turns/s\nharness CPU per turn: {}",
            args.runs,
            elapsed.as_secs_f64(),
            turns as f64 / elapsed.as_secs_f64(),
            per_turn_ms.map_or("unknown (needs Linux /proc)".into(), |ms| format!("{ms:.3} ms"))
        )
    });
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
