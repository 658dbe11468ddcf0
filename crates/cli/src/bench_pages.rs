//! `callgrade bench pages`: dashboard pages rendered server-side over a large database.

use anyhow::Context;
use callgrade_core::{validate_batch, Limits};
use callgrade_store::prelude::*;
use callgrade_store::NewAgent;
use callgrade_store::{NewDelivery, SqliteStore};
use clap::Args;
use serde_json::{json, Value};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use crate::output::Output;

#[derive(Args)]
pub struct PagesBench {
    /// Calls in the database.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=5_000_000))]
    calls: u32,
    /// Requests per page measured.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=1000))]
    repeat: u32,
}

pub async fn run(args: PagesBench, out: &Output) -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let data = dir
        .path()
        .to_str()
        .context("temporary path is not UTF-8")?
        .to_owned();
    let store = SqliteStore::open(&format!("sqlite://{data}/callgrade.db")).await?;
    let (project, _) = store.create_project("pages").await?;
    let agents = [
        store
            .create_agent(project.id, &NewAgent::named("support"))
            .await?,
        store
            .create_agent(project.id, &NewAgent::named("sales"))
            .await?,
    ];
    out.progress(&format!("filling the database with {} calls…", args.calls));
    let started = Instant::now();
    let mut made = 0u32;
    let mut last_call = String::new();
    while made < args.calls {
        let n = (args.calls - made).min(1000);
        let calls: Vec<Value> = (made..made + n)
            .map(|i| {
                let start = 1_760_000_000 + i64::from(i) * 60;
                json!({
                    "id": format!("call-{i}"),
                    "startedAt": chrono::DateTime::from_timestamp(start, 0).expect("in range").to_rfc3339(),
                    "endedAt": chrono::DateTime::from_timestamp(start + 45, 0).expect("in range").to_rfc3339(),
                    "endedReason": if i % 7 == 0 { "assistant-ended-call" } else { "customer-hungup" },
                    "messages": [
                        {"role": "bot", "content": "Hello, how can I help?", "start_time": 0.5, "end_time": 2.0},
                        {"role": "user", "content": format!("Question number {i} about my bill"), "start_time": 2.8, "end_time": 5.0},
                        {"role": "bot", "content": "Let me check that for you.", "start_time": 5.9, "end_time": 7.5},
                        {"role": "user", "content": "Thanks.", "start_time": 8.0, "end_time": 8.6},
                    ],
                })
            })
            .collect();
        let agent = &agents[(made / 1000) as usize % 2];
        let body = json!({"agent_id": agent.id, "calls": calls});
        let batch =
            validate_batch(&body, &Limits::default()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let delivery = NewDelivery::new(project.id, chrono::Utc::now(), "/bench", b"", 0, |_| 202);
        match store.ingest(batch, delivery).await? {
            callgrade_store::IngestOutcome::Accepted(r) => last_call = r.calls[0].call_id.clone(),
            callgrade_store::IngestOutcome::Rejected(r) => anyhow::bail!("{}", r.detail),
        }
        made += n;
    }
    let app = callgrade_app::App::new(std::sync::Arc::new(store), Default::default());
    let token = callgrade_app::admin::issue_admin_token(&app, false)
        .await?
        .context("a fresh database has no token")?;
    drop(app);
    out.progress(&format!(
        "filled in {:.1} s; measuring pages…",
        started.elapsed().as_secs_f64()
    ));

    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args([
            "--data-dir",
            &data,
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--no-workers",
            "--rate-limit",
            "0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().context("no stdout")?),
        &mut line,
    )?;
    let base = line
        .trim()
        .trim_start_matches("callgrade listening on ")
        .to_owned();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let login = client
        .post(format!("{base}/login"))
        .form(&[("token", token.as_str())])
        .send()
        .await?;
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("no session cookie")?
        .to_owned();

    // A cursor deep in the list: follow "Older calls" a few pages.
    let mut deep = format!("/projects/{}/calls", project.id);
    for _ in 0..5 {
        let html = client
            .get(format!("{base}{deep}"))
            .header("cookie", &cookie)
            .send()
            .await?
            .text()
            .await?;
        if let Some(at) = html.find("calls?cursor=") {
            let end = html[at..].find('"').map_or(html.len(), |e| at + e);
            deep = format!(
                "/projects/{}/{}",
                project.id,
                html[at..end].replace("&amp;", "&")
            );
        }
    }
    let pages = [
        (
            "calls list, newest",
            format!("/projects/{}/calls", project.id),
        ),
        (
            "calls list, one agent",
            format!("/projects/{}/calls?agent_id={}", project.id, agents[1].id),
        ),
        (
            "calls list, end reason",
            format!(
                "/projects/{}/calls?ended_reason=assistant-ended-call",
                project.id
            ),
        ),
        ("calls list, 6 pages deep", deep),
        (
            "call detail",
            format!("/projects/{}/calls/{last_call}", project.id),
        ),
    ];
    let mut report = serde_json::Map::new();
    let mut text = format!(
        "{} calls in SQLite; server-side render + HTTP on this machine:",
        args.calls
    );
    for (name, path) in pages {
        let mut ms = Vec::new();
        for _ in 0..args.repeat {
            let sent = Instant::now();
            let r = client
                .get(format!("{base}{path}"))
                .header("cookie", &cookie)
                .send()
                .await?;
            let status = r.status();
            r.bytes().await?;
            ms.push(sent.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(status.is_success(), "{path}: HTTP {status}");
        }
        ms.sort_by(f64::total_cmp);
        let p50 = ms[ms.len() / 2];
        let p95 = ms[(ms.len() * 95 / 100).min(ms.len() - 1)];
        let max = ms[ms.len() - 1];
        text.push_str(&format!(
            "\n  {name:<26} p50 {p50:>7.1} ms  p95 {p95:>7.1} ms  max {max:>7.1} ms"
        ));
        report.insert(
            name.into(),
            json!({"p50_ms": p50, "p95_ms": p95, "max_ms": max}),
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    let value = json!({"calls": args.calls, "pages": report, "target_ms": 200});
    out.print(&value, || text.clone());
    Ok(ExitCode::SUCCESS)
}
