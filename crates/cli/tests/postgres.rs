//! PostgreSQL end to end: several server instances on one database, and moving a SQLite
//! installation to PostgreSQL. Needs CALLGRADE_TEST_POSTGRES_URL, so each test is ignored unless
//! asked for with `--include-ignored` (CI does); then a missing URL fails it.

use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use callgrade_testkit::TestDb;

fn cli(db: &[&str], args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .args(db)
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(text.trim()).unwrap()
}

mod common;
use common::{Server, BIN};

fn start(db: &[&str], flags: &[&str]) -> Server {
    Server::spawn(
        Command::new(BIN)
            .args(db)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(flags),
    )
}

async fn get(client: &reqwest::Client, base: &str, key: &str, path: &str) -> Value {
    client
        .get(format!("{base}{path}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn settle(client: &reqwest::Client, base: &str, key: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let jobs = get(client, base, key, "/api/v1/jobs").await;
        if jobs["queued"] == 0 && jobs["running"] == 0 {
            return jobs;
        }
        assert!(
            Instant::now() < deadline,
            "evaluation did not settle: {jobs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn now(offset: i64) -> String {
    (chrono::Utc::now() + chrono::TimeDelta::seconds(offset)).to_rfc3339()
}

/// Two instances on one database, a client alternating between them with duplicate resends and
/// calls racing to match one run: every accepted call exists once, the run has one call, every
/// job ran once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set CALLGRADE_TEST_POSTGRES_URL, run with --include-ignored"]
async fn two_instances_share_one_database() {
    let db = TestDb::create("cli postgres").await;
    let dbargs = ["--database-url", db.url.as_str()];
    let project = cli(&dbargs, &["project", "create", "shared"]);
    let agent = cli(
        &dbargs,
        &["agent", "create", "--project", "shared", "--name", "bot"],
    );
    let agent_id = agent["id"].to_string();
    let scenario = cli(
        &dbargs,
        &[
            "scenario",
            "create",
            "--project",
            "shared",
            "--agent",
            &agent_id,
            "--name",
            "race",
            "--direction",
            "inbound",
            "--tester-phone-number",
            "+14155550100",
        ],
    );
    let key = project["api_key"].as_str().unwrap().to_owned();
    let a = start(&dbargs, &["--job-lease", "5"]);
    let b = start(&dbargs, &["--job-lease", "5"]);
    let client = reqwest::Client::new();
    let result: Value = client
        .post(format!("{}/api/v1/results", a.base))
        .bearer_auth(&key)
        .json(&json!({"agent_id": agent["id"], "scenario_ids": [scenario["id"]]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run_id = result["runs"][0]["id"].as_i64().unwrap();

    let (started, ended) = (now(-30), now(0));
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..40 {
        // 17 calls, each sent to both instances; 6 more from the tester's number race for the run.
        let (id, from) = if i < 34 {
            (format!("c{}", i % 17), "+19998887777")
        } else {
            (format!("race{i}"), "+14155550100")
        };
        let base = if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        let (client, key) = (client.clone(), key.clone());
        let body = json!({"agent_id": agent["id"], "calls": [{
            "id": id, "startedAt": started, "endedAt": ended, "from_phone_number": from, "to_phone_number": "+18646190758",
            "messages": [{"role": "bot", "content": "hello", "start_time": 0.5, "end_time": 1.5}]
        }]});
        sends.spawn(async move {
            let r = client
                .post(format!(
                    "{base}/test_framework/custom-provider-transcript-webhook"
                ))
                .header("X-CEKURA-API-KEY", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            r.json::<Value>().await.unwrap()
        });
    }
    let mut created = 0;
    let mut matched = 0;
    while let Some(receipt) = sends.join_next().await {
        let receipt = receipt.unwrap();
        created += receipt["created"].as_u64().unwrap();
        matched += u64::from(receipt["calls"][0]["match"] == "matched");
    }
    assert_eq!(
        created,
        17 + 6,
        "every call is created exactly once across instances"
    );
    assert_eq!(matched, 1, "exactly one call matched the run");

    let jobs = settle(&client, &b.base, &key).await;
    assert_eq!(
        (jobs["done"].as_u64(), jobs["dead"].as_u64()),
        (Some(23), Some(0)),
        "one job per call, each done once: {jobs}"
    );
    let calls = get(&client, &a.base, &key, "/api/v1/calls?limit=200").await;
    let mut ids: Vec<&str> = calls["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 23);
    let run = get(&client, &b.base, &key, &format!("/api/v1/runs/{run_id}")).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert!(run["call_id"].is_string());
}

/// A SQLite installation copied to PostgreSQL serves the same answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set CALLGRADE_TEST_POSTGRES_URL, run with --include-ignored"]
async fn copy_moves_a_sqlite_installation_to_postgres() {
    let db = TestDb::create("cli postgres").await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let lite = ["--data-dir", data.as_str()];
    let project = cli(&lite, &["project", "create", "moving"]);
    let agent = cli(
        &lite,
        &["agent", "create", "--project", "moving", "--name", "bot"],
    );
    let agent_id = agent["id"].to_string();
    let scenario = cli(
        &lite,
        &[
            "scenario",
            "create",
            "--project",
            "moving",
            "--agent",
            &agent_id,
            "--name",
            "s",
            "--direction",
            "outbound",
            "--tester-phone-number",
            "+14155550123",
            "--tag",
            "smoke",
        ],
    );
    let key = project["api_key"].as_str().unwrap().to_owned();
    let client = reqwest::Client::new();
    {
        let server = start(&lite, &[]);
        let mut seed: Value = serde_json::from_str(include_str!(
            "../../core/tests/fixtures/example-two-calls.json"
        ))
        .unwrap();
        seed["agent_id"] = agent["id"].clone();
        client
            .post(format!("{}/webhooks/custom/{}", server.base, project["id"]))
            .header("X-CEKURA-API-KEY", &key)
            .json(&seed)
            .send()
            .await
            .unwrap();
        client
            .post(format!("{}/api/v1/results", server.base))
            .bearer_auth(&key)
            .json(&json!({"agent_id": agent["id"], "scenario_ids": [scenario["id"]]}))
            .send()
            .await
            .unwrap();
        client.post(format!("{}/test_framework/custom-provider-transcript-webhook/", server.base)).header("X-CEKURA-API-KEY", &key)
            .json(&json!({"agent_id": agent["id"], "calls": [{"id": "tested", "startedAt": now(-20), "endedAt": now(0),
                "to_phone_number": "+14155550123", "from_phone_number": "+18646190758",
                "messages": [{"role": "user", "content": "hi\u{0}there", "start_time": 0.2, "end_time": 1.0}]}]}))
            .send().await.unwrap();
        client
            .post(format!(
                "{}/test_framework/custom-provider-transcript-webhook/",
                server.base
            ))
            .header("X-CEKURA-API-KEY", &key)
            .json(&json!({"agent_id": "wrong", "calls": []}))
            .send()
            .await
            .unwrap();
        settle(&client, &server.base, &key).await;
    }

    let copied = cli(&lite, &["copy", "--to", &db.url]);
    assert!(copied["rows"].as_u64().unwrap() > 20, "{copied}");
    assert!(!copied.to_string().contains("password"));

    let pg = ["--database-url", db.url.as_str()];
    let before = start(&lite, &["--no-workers"]);
    let after = start(&pg, &["--no-workers"]);
    for path in [
        "/api/v1/calls?limit=200",
        "/api/v1/runs",
        "/api/v1/metrics",
        "/api/v1/deliveries",
        "/api/v1/scenarios",
        "/api/v1/rubric",
        "/api/v1/jobs",
        "/api/v1/project",
    ] {
        let x = get(&client, &before.base, &key, path).await;
        let y = get(&client, &after.base, &key, path).await;
        assert_eq!(x, y, "{path} differs after the copy");
    }
    let calls = get(&client, &before.base, &key, "/api/v1/calls?limit=200").await;
    for c in calls["data"].as_array().unwrap() {
        let path = format!("/api/v1/calls/{}", c["call_id"].as_str().unwrap());
        assert_eq!(
            get(&client, &before.base, &key, &path).await,
            get(&client, &after.base, &key, &path).await,
            "{path}"
        );
    }
    // New ids continue after the copied ones.
    let more = cli(
        &pg,
        &["agent", "create", "--project", "moving", "--name", "second"],
    );
    assert!(more["id"].as_i64().unwrap() > agent["id"].as_i64().unwrap());
    let _ = Path::new(&data);
}
