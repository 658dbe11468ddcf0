//! The `callgrade` binary as users run it: admin commands in --json mode, check, send, the
//! server surviving SIGKILL without losing an acknowledged call, and `test start --wait`
//! against simulated callers (a fake caller LLM and a fake `http_turn` agent on port 0).

use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const SEED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../core/tests/fixtures/example-two-calls.json"
);

fn run(data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("CALLGRADE_DATABASE_URL")
        .output()
        .unwrap()
}

/// Runs a `--json` command and parses its one JSON object.
fn run_json(data: &Path, args: &[&str]) -> (bool, Value) {
    let out = run(data, &[args, &["--json"]].concat());
    let text = String::from_utf8(out.stdout).unwrap();
    let value = serde_json::from_str(text.trim())
        .unwrap_or_else(|_| panic!("not one JSON object: {text:?}"));
    (out.status.success(), value)
}

mod common;
use common::{Server, BIN};

fn start(data: &Path) -> Server {
    start_with(data, &[])
}

fn start_with(data: &Path, flags: &[&str]) -> Server {
    Server::spawn(
        Command::new(BIN)
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(flags),
    )
}

#[test]
fn admin_commands_in_json_mode() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();

    let (ok, project) = run_json(data, &["project", "create", "staging"]);
    assert!(ok, "{project}");
    assert_eq!(project["name"], "staging");
    assert_eq!(
        project["webhook_url"],
        format!("http://127.0.0.1:7300/webhooks/custom/{}", project["id"])
    );
    let key = project["api_key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("cg_"));

    let (ok, err) = run_json(data, &["project", "create", "staging"]);
    assert!(!ok);
    assert!(err["error"].as_str().unwrap().contains("already exists"));
    let (ok, _) = run_json(data, &["project", "create", "42"]);
    assert!(!ok, "a name that reads as an id is refused");

    let (ok, list) = run_json(data, &["project", "list"]);
    assert!(ok);
    let listed = &list["projects"][0];
    assert_eq!(listed["name"], "staging");
    assert!(listed.get("api_key").is_none(), "list never shows keys");
    assert!(!list.to_string().contains(&key));

    let (ok, rotated) = run_json(data, &["project", "rotate-key", "staging"]);
    assert!(ok);
    assert_ne!(rotated["api_key"], project["api_key"]);

    let (ok, agent) = run_json(
        data,
        &[
            "agent",
            "create",
            "--project",
            "staging",
            "--name",
            "support-bot",
            "--phone-number",
            "+14155551234",
            "--description",
            "Billing help",
        ],
    );
    assert!(ok, "{agent}");
    assert!(agent["id"].is_i64());
    assert_eq!(agent["phone_number"], "+14155551234");
    let (ok, err) = run_json(
        data,
        &[
            "agent",
            "create",
            "--project",
            "staging",
            "--name",
            "x",
            "--phone-number",
            "555",
        ],
    );
    assert!(!ok);
    assert!(err["error"].as_str().unwrap().contains("--phone-number"));
    let (ok, err) = run_json(data, &["agent", "list", "--project", "nope"]);
    assert!(!ok);
    assert!(err["error"].as_str().unwrap().contains("no project"));
    let (ok, agents) = run_json(data, &["agent", "list", "--project", "1"]);
    assert!(ok);
    assert_eq!(agents["agents"][0]["name"], "support-bot");
}

#[test]
fn check_validates_offline() {
    let (ok, report) = run_json(Path::new("unused"), &["check", SEED]);
    assert!(ok, "{report}");
    assert_eq!(
        report,
        json!({"valid": true, "calls": 2, "errors": [], "warnings": []})
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"agent_id": "2", "calls": [{"id": "x", "startedAt": "now"}]}"#,
    )
    .unwrap();
    let (ok, report) = run_json(dir.path(), &["check", bad.to_str().unwrap()]);
    assert!(!ok);
    let paths: Vec<&str> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["agent_id", "calls[0].startedAt", "calls[0].endedAt"]
    );

    // Text mode prints each problem with its path and exits 1.
    let out = run(dir.path(), &["check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("calls[0].startedAt: "), "{text}");

    // Standard input works too.
    let mut child = Command::new(BIN)
        .args(["check", "-", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"{oops").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("line 1"));
}

#[test]
fn send_posts_the_seed_and_prints_the_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (_, project) = run_json(data, &["project", "create", "staging"]);
    let (_, agent) = run_json(
        data,
        &["agent", "create", "--project", "staging", "--name", "bot"],
    );
    let server = start(data);

    let mut seed: Value = serde_json::from_str(&std::fs::read_to_string(SEED).unwrap()).unwrap();
    seed["agent_id"] = agent["id"].clone();
    let payload = data.join("payload.json");
    std::fs::write(&payload, seed.to_string()).unwrap();
    let url = format!("{}/webhooks/custom/{}", server.base, project["id"]);
    let key = project["api_key"].as_str().unwrap();

    let (ok, answer) = run_json(
        data,
        &[
            "send",
            "--url",
            &url,
            "--key",
            key,
            payload.to_str().unwrap(),
        ],
    );
    assert!(ok, "{answer}");
    assert_eq!(answer["status"], 202);
    assert_eq!(answer["body"]["created"], 2);

    let (ok, answer) = run_json(
        data,
        &[
            "send",
            "--url",
            &url,
            "--key",
            "cg_wrong",
            payload.to_str().unwrap(),
        ],
    );
    assert!(!ok);
    assert_eq!(answer["status"], 401);

    let (ok, answer) = run_json(
        data,
        &[
            "send",
            "--url",
            "http://127.0.0.1:1/x",
            "--key",
            key,
            payload.to_str().unwrap(),
        ],
    );
    assert!(!ok);
    assert!(answer["error"].as_str().unwrap().contains("cannot reach"));
}

/// SIGTERM while a request is half sent: the server finishes it (202), then exits 0.
#[test]
fn serve_finishes_in_flight_requests_on_sigterm() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let (_, project) = run_json(dir.path(), &["project", "create", "p"]);
    let (_, agent) = run_json(
        dir.path(),
        &["agent", "create", "--project", "p", "--name", "a"],
    );
    let mut server = start(dir.path());

    let body = json!({"agent_id": agent["id"], "calls": [{
        "id": "in-flight", "startedAt": "2025-10-15T09:22:21Z", "endedAt": "2025-10-15T09:23:21Z"
    }]})
    .to_string();
    let addr = server.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /test_framework/custom-provider-transcript-webhook HTTP/1.1\r\nHost: {addr}\r\n\
         X-CEKURA-API-KEY: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Expect: 100-continue\r\nConnection: close\r\n\r\n",
        project["api_key"].as_str().unwrap(),
        body.len()
    );
    let (first, rest) = body.split_at(body.len() / 2);
    stream.write_all(head.as_bytes()).unwrap();
    // The server asks for the body once its handler reads it: from then on the request is in
    // flight, however loaded the machine (a fixed sleep was not always enough).
    let mut interim = Vec::new();
    let mut byte = [0u8; 1];
    while !interim.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        interim.push(byte[0]);
    }
    let interim = String::from_utf8_lossy(&interim);
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    stream.write_all(first.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(100));

    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(200));
    stream.write_all(rest.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");

    let exit =
        wait_timeout(&mut server.child, Duration::from_secs(10)).expect("server did not stop");
    assert!(exit.success(), "{exit:?}");
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// SIGKILL the server while clients send, restart it, and find every call that got a 202,
/// intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_call_is_lost_to_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let (_, project) = run_json(&data, &["project", "create", "crash"]);
    let (_, agent) = run_json(
        &data,
        &["agent", "create", "--project", "crash", "--name", "bot"],
    );
    let key = project["api_key"].as_str().unwrap().to_owned();
    let agent_id = agent["id"].as_i64().unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    let mut acknowledged: Vec<(String, Value)> = Vec::new();
    for round in 0..3 {
        let mut server = start(&data);
        let url = format!(
            "{}/test_framework/custom-provider-transcript-webhook",
            server.base
        );
        let mut senders = tokio::task::JoinSet::new();
        for sender in 0..4 {
            let (client, url, key) = (client.clone(), url.clone(), key.clone());
            senders.spawn(async move {
                let mut acked = Vec::new();
                for i in 0.. {
                    let id = format!("r{round}-s{sender}-{i}");
                    let call = json!({
                        "id": id, "startedAt": "2025-10-15T09:22:21.787Z", "endedAt": "2025-10-15T09:24:30.229Z",
                        "messages": [{"role": "bot", "content": format!("turn {i}"), "start_time": 1.0, "end_time": 2.0}],
                        "metadata": {"i": i}
                    });
                    let body = json!({"agent_id": agent_id, "calls": [call.clone()]});
                    match client.post(&url).header("X-CEKURA-API-KEY", &key).json(&body).send().await {
                        Ok(r) if r.status() == 202 => acked.push((id, call)),
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) => break, // the server is gone: this call was never acknowledged
                    }
                }
                acked
            });
        }
        tokio::time::sleep(Duration::from_millis(300 + 150 * round)).await;
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        while let Some(acked) = senders.join_next().await {
            acknowledged.extend(acked.unwrap());
        }
    }
    assert!(
        acknowledged.len() > 20,
        "too few calls were sent: {}",
        acknowledged.len()
    );

    let server = start(&data);
    for (id, sent) in &acknowledged {
        let page: Value = client
            .get(format!("{}/api/v1/calls?external_id={id}", server.base))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let found = page["data"].as_array().unwrap();
        assert_eq!(found.len(), 1, "acknowledged call {id} was lost");
        let call_id = found[0]["call_id"].as_str().unwrap();
        let detail: Value = client
            .get(format!("{}/api/v1/calls/{call_id}", server.base))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(&detail["raw"], sent, "call {id} is not intact");
    }
}

/// The CI flow: a scenario, `test start --wait`, a transcript by run_id, exit 0; a failed
/// rubric exits 1; a run whose transcript never comes could not be decided: exit 2.
#[test]
fn test_start_waits_for_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (_, project) = run_json(data, &["project", "create", "ci"]);
    let key = project["api_key"].as_str().unwrap().to_owned();
    let (_, agent) = run_json(
        data,
        &["agent", "create", "--project", "ci", "--name", "bot"],
    );
    let agent_id = agent["id"].to_string();
    let (ok, scenario) = run_json(
        data,
        &[
            "scenario",
            "create",
            "--project",
            "ci",
            "--agent",
            &agent_id,
            "--name",
            "refund",
            "--direction",
            "inbound",
            "--tester-phone-number",
            "+14155550100",
            "--tag",
            "smoke",
        ],
    );
    assert!(ok, "{scenario}");
    let (ok, listed) = run_json(data, &["scenario", "list", "--project", "ci"]);
    assert!(ok);
    assert_eq!(listed["scenarios"][0]["tags"], json!(["smoke"]));
    let (ok, err) = run_json(
        data,
        &[
            "scenario",
            "create",
            "--project",
            "ci",
            "--agent",
            &agent_id,
            "--name",
            "x",
            "--direction",
            "inbound",
            "--tester-phone-number",
            "555",
        ],
    );
    assert!(!ok);
    assert!(err["error"]
        .as_str()
        .unwrap()
        .contains("--tester-phone-number"));

    let server = start(data);
    let mut tester = Command::new(BIN)
        .args([
            "test",
            "start",
            "--agent",
            &agent_id,
            "--tag",
            "smoke",
            "--wait",
            "--url",
            &server.base,
        ])
        .env("CALLGRADE_API_KEY", &key)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(tester.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("Result "), "{first}");
    let _header = lines.next().unwrap().unwrap();
    let row = lines.next().unwrap().unwrap();
    let run_id = row.split_whitespace().next().unwrap().to_owned();
    assert!(row.contains("+14155550100"), "{row}");

    let payload = data.join("run.json");
    std::fs::write(
        &payload,
        json!({"calls": [{"id": "ci-1", "run_id": run_id, "startedAt": chrono_now(-60), "endedAt": chrono_now(0)}]}).to_string(),
    )
    .unwrap();
    let url = format!(
        "{}/test_framework/custom-provider-transcript-webhook/",
        server.base
    );
    let (ok, answer) = run_json(
        data,
        &[
            "send",
            "--url",
            &url,
            "--key",
            &key,
            payload.to_str().unwrap(),
        ],
    );
    assert!(ok, "{answer}");
    assert_eq!(answer["body"]["calls"][0]["matched_by"], "run_id");

    let status =
        wait_timeout(&mut tester, Duration::from_secs(30)).expect("test start did not finish");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(status.success(), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("completed")), "{rest:?}");

    // A rubric the call fails makes the step fail, though the run completed.
    let rubric = data.join("rubric.toml");
    std::fs::write(
        &rubric,
        "[[rubric]]\nmetric = \"turns\"\nop = \"gte\"\nvalue = 100\n",
    )
    .unwrap();
    let (ok, _) = run_json(
        data,
        &[
            "metrics",
            "apply",
            "--project",
            "ci",
            rubric.to_str().unwrap(),
        ],
    );
    assert!(ok);
    // Starts the smoke runs, answers the one run with `messages`, and gives the exit code and
    // the JSON report.
    let verdict_for = |call_id: &str, messages: Value| {
        let mut waiting = Command::new(BIN)
            .args([
                "test",
                "start",
                "--agent",
                &agent_id,
                "--tag",
                "smoke",
                "--wait",
                "--json",
                "--url",
                &server.base,
                "--key",
                &key,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut progress = BufReader::new(waiting.stderr.take().unwrap()).lines();
        let row = progress.nth(2).unwrap().unwrap();
        let run = row.split_whitespace().next().unwrap().to_owned();
        std::fs::write(
            &payload,
            json!({"calls": [{"id": call_id, "run_id": run, "startedAt": chrono_now(-60), "endedAt": chrono_now(0),
                "messages": messages}]}).to_string(),
        )
        .unwrap();
        let (ok, _) = run_json(
            data,
            &[
                "send",
                "--url",
                &url,
                "--key",
                &key,
                payload.to_str().unwrap(),
            ],
        );
        assert!(ok);
        let out = waiting.wait_with_output().unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), report)
    };
    let (code, report) = verdict_for("ci-2", json!([{"role": "bot", "content": "Hello"}]));
    assert_eq!(code, Some(1));
    assert_eq!(report["passed"], false);
    assert_eq!(report["result"]["runs"][0]["status"], "completed");
    assert_eq!(report["result"]["runs"][0]["success"], false);

    // A rubric with no value to check (no message has times, so no latency) could not decide:
    // exit 2, not a pass.
    std::fs::write(
        &rubric,
        "[[rubric]]\nmetric = \"agent_latency\"\nop = \"lte\"\nvalue = 5\n",
    )
    .unwrap();
    let (ok, _) = run_json(
        data,
        &[
            "metrics",
            "apply",
            "--project",
            "ci",
            rubric.to_str().unwrap(),
        ],
    );
    assert!(ok);
    let (code, report) = verdict_for("ci-3", json!([{"role": "bot", "content": "Hello"}]));
    assert_eq!(code, Some(2), "{report}");
    assert_eq!(
        (report["passed"].as_bool(), report["undecided"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(report["result"]["runs"][0]["success"], Value::Null);

    // No transcript: gives up after its timeout and says it could not decide.
    let out = Command::new(BIN)
        .args([
            "test",
            "start",
            "--agent",
            &agent_id,
            "--scenario",
            &scenario["id"].to_string(),
            "--wait",
            "--timeout",
            "3s",
            "--url",
            &server.base,
            "--key",
            &key,
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["passed"].as_bool(), report["timed_out"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(report["verdict"], "undecided");
}

/// An ISO 8601 time `offset` seconds from now.
fn chrono_now(offset: i64) -> String {
    (chrono::Utc::now() + chrono::TimeDelta::seconds(offset)).to_rfc3339()
}

/// `metrics apply` from TOML, `metrics list`, and `metrics test` on a stored call.
#[test]
fn metrics_apply_list_and_test() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (_, project) = run_json(data, &["project", "create", "m"]);
    let (_, agent) = run_json(
        data,
        &["agent", "create", "--project", "m", "--name", "bot"],
    );
    let file = data.join("metrics.toml");
    std::fs::write(
        &file,
        r#"
[[metrics]]
name = "latency_p90"
kind = "builtin"
config = { builtin = "agent_latency", latency_statistic = "p90", pass = { op = "lte", value = 2.0 } }

[[metrics]]
name = "polite_close"
kind = "script"
output = "binary"
config = { script = 'result = data.transcript.contains("Thank"); explanation = "looked for thanks";' }

[[rubric]]
metric = "latency_p90"
op = "lte"
value = 2.0

[[alerts]]
name = "slow replies"
kind = "threshold"
metric = "latency_p90"
operator = "gt"
value = 2.0
window = 20
min_breaches = 5
"#,
    )
    .unwrap();
    let (ok, summary) = run_json(
        data,
        &["metrics", "apply", "--project", "m", file.to_str().unwrap()],
    );
    assert!(ok, "{summary}");
    assert_eq!(summary["created"], json!(["latency_p90", "polite_close"]));
    assert_eq!(summary["alerts"]["created"], json!(["slow replies"]));
    let (ok, again) = run_json(
        data,
        &["metrics", "apply", "--project", "m", file.to_str().unwrap()],
    );
    assert!(ok);
    assert_eq!(again["unchanged"], json!(["latency_p90", "polite_close"]));
    assert_eq!(again["alerts"]["unchanged"], json!(["slow replies"]));

    // A bad alert rule refuses the whole file, at its path, before anything is applied.
    let bad_alert = data.join("bad-alert.toml");
    std::fs::write(
        &bad_alert,
        "[[metrics]]\nname = \"fresh\"\nkind = \"builtin\"\nconfig = { builtin = \"call_duration\" }\n\n[[alerts]]\nname = \"x\"\nkind = \"threshold\"\nmetric = \"fresh\"\noperator = \"gt\"\n",
    )
    .unwrap();
    let (ok, err) = run_json(
        data,
        &[
            "metrics",
            "apply",
            "--project",
            "m",
            bad_alert.to_str().unwrap(),
        ],
    );
    assert!(!ok);
    assert!(err.to_string().contains("alerts[0].value"), "{err}");
    let (_, listed) = run_json(data, &["metrics", "list", "--project", "m"]);
    assert!(listed.to_string().contains("\"latency_p90\""), "{listed}");
    assert!(
        !listed.to_string().contains("\"fresh\""),
        "nothing applied: {listed}"
    );

    let bad = data.join("bad.toml");
    std::fs::write(
        &bad,
        "[[metrics]]\nname = \"x\"\nkind = \"builtin\"\nconfig = { builtin = \"nope\" }\n",
    )
    .unwrap();
    let (ok, err) = run_json(
        data,
        &["metrics", "apply", "--project", "m", bad.to_str().unwrap()],
    );
    assert!(!ok);
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("metrics[0].config.builtin"),
        "{err}"
    );
    std::fs::write(&bad, "[[metrics]\n").unwrap();
    let (ok, err) = run_json(
        data,
        &["metrics", "apply", "--project", "m", bad.to_str().unwrap()],
    );
    assert!(!ok);
    assert!(err["error"].as_str().unwrap().contains("line 1"), "{err}");

    let (ok, listed) = run_json(data, &["metrics", "list", "--project", "m"]);
    assert!(ok);
    assert_eq!(listed["rubric"][0]["metric"], "latency_p90");

    // A stored call to test a script on (workers off: nothing else touches it).
    let server = start_with(data, &["--no-workers"]);
    let mut seed: Value = serde_json::from_str(&std::fs::read_to_string(SEED).unwrap()).unwrap();
    seed["agent_id"] = agent["id"].clone();
    let payload = data.join("seed.json");
    std::fs::write(&payload, seed.to_string()).unwrap();
    let url = format!("{}/webhooks/custom/{}", server.base, project["id"]);
    let (_, sent) = run_json(
        data,
        &[
            "send",
            "--url",
            &url,
            "--key",
            project["api_key"].as_str().unwrap(),
            payload.to_str().unwrap(),
        ],
    );
    let call_id = sent["body"]["calls"][0]["call_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let script = data.join("count.rhai");
    std::fs::write(
        &script,
        "result = data.metrics.turns; explanation = `${data.messages.len()} rows`;",
    )
    .unwrap();
    let (ok, tried) = run_json(
        data,
        &[
            "metrics",
            "test",
            "--project",
            "m",
            "--call",
            &call_id,
            script.to_str().unwrap(),
        ],
    );
    assert!(ok, "{tried}");
    assert_eq!(
        (tried["value"].as_f64(), tried["explanation"].as_str()),
        (Some(4.0), Some("4 rows"))
    );
    std::fs::write(&script, "loop { }").unwrap();
    let (ok, tried) = run_json(
        data,
        &[
            "metrics",
            "test",
            "--project",
            "m",
            "--call",
            &call_id,
            script.to_str().unwrap(),
        ],
    );
    assert!(!ok);
    assert_eq!(tried["status"], "error");
}

/// Kill the server while it evaluates, restart it: every call is evaluated, each job done once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluation_survives_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let (_, project) = run_json(&data, &["project", "create", "crash"]);
    let (_, agent) = run_json(
        &data,
        &["agent", "create", "--project", "crash", "--name", "bot"],
    );
    let key = project["api_key"].as_str().unwrap().to_owned();
    // A deliberately slow metric keeps jobs in flight when the kill comes.
    let file = data.join("slow.toml");
    std::fs::write(&file, "[[metrics]]\nname = \"slow\"\nkind = \"script\"\noutput = \"numeric\"\nconfig = { script = 'let n = 0; for i in 0..200000 { n += i; } result = n;' }\n").unwrap();
    let (ok, _) = run_json(
        &data,
        &[
            "metrics",
            "apply",
            "--project",
            "crash",
            file.to_str().unwrap(),
        ],
    );
    assert!(ok);

    let client = reqwest::Client::new();
    let mut server = start_with(&data, &["--job-lease", "2"]);
    let total = 40;
    for i in 0..total {
        let body = json!({"agent_id": agent["id"], "calls": [{
            "id": format!("c{i}"), "startedAt": "2025-10-15T09:22:21Z", "endedAt": "2025-10-15T09:23:21Z",
            "messages": [{"role": "bot", "content": "hi", "start_time": 0.5, "end_time": 1.0}]
        }]});
        let r = client
            .post(format!(
                "{}/test_framework/custom-provider-transcript-webhook",
                server.base
            ))
            .header("X-CEKURA-API-KEY", &key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    server.child.kill().unwrap(); // SIGKILL, with evaluation under way
    server.child.wait().unwrap();

    // Look without workers first: the kill did interrupt evaluation.
    let observer = start_with(&data, &["--no-workers"]);
    let jobs: Value = client
        .get(format!("{}/api/v1/jobs", observer.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        jobs["done"].as_i64().unwrap() < total,
        "the kill came too late to test anything: {jobs}"
    );
    drop(observer);

    let server = start_with(&data, &["--job-lease", "2"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let jobs = loop {
        let jobs: Value = client
            .get(format!("{}/api/v1/jobs", server.base))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if jobs["queued"] == 0 && jobs["running"] == 0 {
            break jobs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "evaluation did not finish: {jobs}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        (jobs["done"].as_i64(), jobs["dead"].as_i64()),
        (Some(total), Some(0)),
        "one job per call, each done once"
    );
    let page: Value = client
        .get(format!("{}/api/v1/calls?limit=200", server.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let calls = page["data"].as_array().unwrap();
    assert_eq!(calls.len() as i64, total);
    assert!(
        calls.iter().all(|c| c["evaluated_at"].is_string()),
        "every call evaluated"
    );
}

/// Keys (project, rotated, wrong, judge) never appear in the server's logs, even at trace level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let (_, project) = run_json(&data, &["project", "create", "logs"]);
    let (_, agent) = run_json(
        &data,
        &["agent", "create", "--project", "logs", "--name", "bot"],
    );
    let key = project["api_key"].as_str().unwrap().to_owned();
    let log = std::fs::File::create(data.join("server.log")).unwrap();
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args(["serve", "--bind", "127.0.0.1:0", "--log-format", "json"])
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("callgrade listening on ")
        .unwrap()
        .to_owned();
    let client = reqwest::Client::new();
    let body = json!({"agent_id": agent["id"], "calls": [{"id": "a", "startedAt": "2025-10-15T09:22:21Z", "endedAt": "2025-10-15T09:23:21Z"}]});
    let hook = format!("{base}/test_framework/custom-provider-transcript-webhook/");
    client
        .post(&hook)
        .header("X-CEKURA-API-KEY", &key)
        .json(&body)
        .send()
        .await
        .unwrap();
    client
        .post(&hook)
        .header("X-CEKURA-API-KEY", "cg_wrong_key_123456")
        .json(&body)
        .send()
        .await
        .unwrap();
    client
        .get(format!("{base}/api/v1/calls"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    client.put(format!("{base}/api/v1/judge")).bearer_auth(&key)
        .json(&json!({"base_url": "http://127.0.0.1:1/v1", "model": "m", "api_key": "sk-judge-never-logged"}))
        .send().await.unwrap();
    let (_, rotated) = run_json(&data, &["project", "rotate-key", "logs"]);
    let new_key = rotated["api_key"].as_str().unwrap().to_owned();
    client
        .get(format!("{base}/api/v1/calls"))
        .bearer_auth(&new_key)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();

    let logs = std::fs::read_to_string(data.join("server.log")).unwrap();
    assert!(
        logs.contains("webhook accepted"),
        "the log is being written"
    );
    for secret in [
        key.as_str(),
        new_key.as_str(),
        "cg_wrong_key_123456",
        "sk-judge-never-logged",
    ] {
        assert!(!logs.contains(secret), "{secret} is in the logs");
    }
}

/// The server process's peak resident memory so far (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        / 1024
}

/// Eight ~10 MB worst-case bodies at once, of each kind, stay far below 512 MiB of resident
/// memory: a value bomb (the 1.7-million-tiny-arrays metadata that used to take ~900 MB), metadata
/// just under the value limit but over its size limit, and accepted calls of 1,000 long messages.
/// Ingest only (--no-workers): evaluation's own concurrency is bounded by the worker settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_worst_case_bodies_at_once_stay_bounded_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (_, project) = run_json(data, &["project", "create", "heavy"]);
    let key = project["api_key"].as_str().unwrap().to_owned();
    run_json(
        data,
        &["agent", "create", "--project", "heavy", "--name", "bot"],
    );
    let server = start_with(data, &["--no-workers"]);
    let url = format!(
        "{}/test_framework/custom-provider-transcript-webhook/",
        server.base
    );
    let limit = 10 * 1024 * 1024 - 8 * 1024;
    let head = r#"{"agent_id": 1, "calls": [{"id": "x", "startedAt": "2025-10-15T09:22:21Z", "endedAt": "2025-10-15T09:32:21Z", "metadata": "#;
    let tiny_arrays = format!(
        "{head}{{\"x\": [{}]}}}}]}}",
        vec!["[]"; limit / 3 - 100].join(",")
    );
    let long_keys = format!(
        "{head}{{{}}}}}]}}",
        (0..240_000)
            .map(|i| format!("\"{}{i:07}\":1", "k".repeat(limit / 240_000 - 14)))
            .collect::<Vec<_>>()
            .join(",")
    );
    let content = "hello there, this is a sentence about refunds and orders. ".repeat(16);
    let accepted = |k: usize| {
        let calls: Vec<Value> = (0..10).map(|i| json!({
            "id": format!("c{k}-{i}"), "startedAt": "2025-10-15T09:22:21Z", "endedAt": "2025-10-15T09:32:21Z",
            "messages": (0..1000).map(|j| json!({"role": if j % 2 == 0 { "user" } else { "bot" },
                "content": content, "start_time": j as f64 * 0.5, "end_time": j as f64 * 0.5 + 0.4})).collect::<Vec<_>>(),
        })).collect();
        json!({"agent_id": 1, "calls": calls}).to_string()
    };
    let client = reqwest::Client::new();
    for (kind, bodies, status) in [
        ("tiny arrays", vec![tiny_arrays; 8], 413),
        ("long metadata keys", vec![long_keys; 8], 400),
        ("accepted long calls", (0..8).map(accepted).collect(), 202),
    ] {
        assert!(
            bodies[0].len() <= 10 * 1024 * 1024,
            "{kind}: {}",
            bodies[0].len()
        );
        let sends = bodies.into_iter().map(|body| {
            client
                .post(&url)
                .header("X-CEKURA-API-KEY", &key)
                .header("content-type", "application/json")
                .body(body)
                .send()
        });
        for r in join_all(sends).await {
            assert_eq!(r.unwrap().status().as_u16(), status, "{kind}");
        }
        let peak = peak_rss_mib(server.child.id());
        assert!(peak < 512, "{kind}: the server peaked at {peak} MiB");
    }
}

/// Runs every future at once and gives their outputs in order (a few lines instead of a
/// dependency on `futures`).
async fn join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

// ---- Simulated callers ----

/// The caller says one line, then hangs up; asked to draft a scenario, it drafts one.
async fn caller(Json(body): Json<Value>) -> Json<Value> {
    let system = body["messages"][0]["content"].as_str().unwrap_or("");
    if system.contains("into test scenarios") {
        let draft = json!({"name": "lost-order", "persona": {"name": "Sam", "language": "en",
            "traits": ["confused", "made-up"], "description": "Waiting for a parcel."},
            "instructions": "You ask where order A1 is.", "expected_outcome": "The agent says it shipped.",
            "first_message": "Hi, where is my order?"});
        return Json(json!({"choices": [{"message": {"role": "assistant",
            "content": format!("Here it is:\n```json\n{draft}\n```")}}]}));
    }
    let said = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "assistant")
        .count();
    let message = if said == 0 {
        json!({"role": "assistant", "content": "I want a refund for order A1."})
    } else {
        json!({"role": "assistant", "content": "Bye.", "tool_calls": [
            {"id": "h", "type": "function", "function": {"name": "end_call", "arguments": "{}"}}]})
    };
    Json(json!({"choices": [{"message": message}], "usage": {"total_tokens": 12}}))
}

/// Approves refunds in the scenario "good", refuses them in any other.
async fn agent(Json(body): Json<Value>) -> Json<Value> {
    let text = match (body["event"].as_str(), body["scenario"]["name"].as_str()) {
        (Some("start"), _) => "Acme, how can I help?",
        (_, Some("good")) => "Your refund is approved.",
        _ => "Sorry, no refunds.",
    };
    Json(json!({"messages": [{"role": "bot", "content": text}]}))
}

/// Serves the fakes on a runtime of their own; (caller base URL, agent URL).
fn start_fakes() -> (String, String) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let router = Router::new()
                .route("/v1/chat/completions", post(caller))
                .route("/turn", post(agent));
            tx.send(base).unwrap();
            axum::serve(listener, router).await.unwrap();
        });
    });
    let base = rx.recv().unwrap();
    (format!("{base}/v1"), format!("{base}/turn"))
}

/// Posts JSON with the key, on a runtime of its own; the answer's body.
fn reqwest_post(url: &str, key: &str, body: &Value) -> Value {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        reqwest::Client::new()
            .post(url)
            .header("X-CEKURA-API-KEY", key)
            .json(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
}

#[test]
fn test_start_gates_simulated_runs_and_writes_junit_and_markdown() {
    let (caller_url, agent_url) = start_fakes();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (_, project) = run_json(data, &["project", "create", "ci"]);
    let key = project["api_key"].as_str().unwrap().to_owned();
    let connector = json!({"kind": "http_turn", "url": agent_url}).to_string();
    let (ok, agent) = run_json(
        data,
        &[
            "agent",
            "create",
            "--project",
            "ci",
            "--name",
            "bot",
            "--connector",
            &connector,
        ],
    );
    assert!(ok, "{agent}");
    assert_eq!(agent["connector"]["kind"], "http_turn");
    let agent_id = agent["id"].to_string();
    let rubric = data.join("metrics.toml");
    std::fs::write(
        &rubric,
        r#"
[[metrics]]
name = "refund_granted"
kind = "script"
output = "binary"
config = { script = 'result = data.transcript.contains("approved");' }

[[rubric]]
metric = "refund_granted"
op = "eq"
value = true
"#,
    )
    .unwrap();
    let (ok, applied) = run_json(
        data,
        &[
            "metrics",
            "apply",
            "--project",
            "ci",
            rubric.to_str().unwrap(),
        ],
    );
    assert!(ok, "{applied}");
    let mut scenario_ids = Vec::new();
    for name in ["good", "bad"] {
        let (ok, s) = run_json(
            data,
            &[
                "scenario",
                "create",
                "--project",
                "ci",
                "--agent",
                &agent_id,
                "--name",
                name,
                "--direction",
                "inbound",
                "--instructions",
                "Ask for a refund.",
                "--persona",
                "Dana",
                "--trait",
                "impatient",
            ],
        );
        assert!(ok, "{s}");
        assert_eq!(s["persona"]["traits"], json!(["impatient"]));
        scenario_ids.push(s["id"].to_string());
    }

    let server = start_with(
        data,
        &[
            "--simulator-base-url",
            &caller_url,
            "--simulator-model",
            "caller-1",
        ],
    );
    let base = server.base.clone();

    let junit = data.join("junit.xml");
    let summary = data.join("summary.md");
    let step_summary = data.join("step-summary.md");
    let test_start = |scenario: &str, extra: &[&str]| {
        let out = Command::new(BIN)
            .args([
                "test",
                "start",
                "--agent",
                &agent_id,
                "--scenario",
                scenario,
                "--frequency",
                "3",
                "--wait",
                "--json",
                "--url",
                &base,
                "--junit",
                junit.to_str().unwrap(),
                "--summary-md",
                summary.to_str().unwrap(),
            ])
            .args(extra)
            .env("CALLGRADE_API_KEY", &key)
            .env("GITHUB_STEP_SUMMARY", &step_summary)
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code(), report)
    };

    // Every run passes: exit 0; JUnit has one passing testcase per run.
    let (code, report) = test_start(&scenario_ids[0], &["--label", "main"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["verdict"], "pass");
    assert_eq!(report["gate"]["scenarios"][0]["current"]["pass_all"], true);
    assert_eq!(report["result"]["runs"][0]["matched_by"], "simulation");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), 3, "{xml}");
    assert!(
        xml.contains("tests=\"3\" failures=\"0\" errors=\"0\""),
        "{xml}"
    );
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains("| good | 3/3 | ✓ | 100 % (44–100 %) |"), "{md}");

    // Every run fails the rubric: exit 1; each failure names the rule and links the run.
    let (code, report) = test_start(&scenario_ids[1], &[]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["verdict"], "fail");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("failures=\"3\""), "{xml}");
    let run_id = &report["result"]["runs"][0]["id"];
    assert!(
        xml.contains(&format!(
            "refund_granted eq true: got false\n{base}/projects/{}/runs/{run_id}",
            project["id"]
        )),
        "{xml}"
    );
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.starts_with("### ❌ callgrade result"), "{md}");
    assert!(md.contains("\"bad\" failed 3 of 3 runs."), "{md}");

    // Against the labelled baseline: the same scenario again is unchanged and passes.
    let (code, report) = test_start(&scenario_ids[0], &["--baseline-label", "main"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["gate"]["scenarios"][0]["change"], "unchanged");
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains("| baseline | change |"), "{md}");
    // Each run appended its summary to the step summary.
    let steps = std::fs::read_to_string(&step_summary).unwrap();
    assert_eq!(steps.matches("### ").count(), 3, "{steps}");

    // A production call with a tool call drafts a scenario with that tool's mock, as TOML that
    // `scenario apply` takes; applying it twice changes nothing the second time.
    let production = json!({"agent_id": agent["id"], "calls": [{"id": "prod-1",
        "startedAt": "2025-10-15T09:22:21Z", "endedAt": "2025-10-15T09:23:21Z",
        "messages": [
            {"role": "user", "content": "Where is order A1?", "start_time": 1, "end_time": 2},
            {"role": "function_call", "content": "", "data": {"id": "c1", "name": "lookup_order", "arguments": {"order": "A1"}}},
            {"role": "function_call_result", "content": "", "data": {"id": "c1", "name": "lookup_order", "result": {"status": "shipped"}}},
            {"role": "bot", "content": "It shipped yesterday.", "start_time": 3, "end_time": 4}]}]});
    let sent = reqwest_post(
        &format!("{base}/test_framework/custom-provider-transcript-webhook/"),
        &key,
        &production,
    );
    let call_id = sent["calls"][0]["call_id"].as_str().unwrap().to_owned();
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args([
            "scenario",
            "from-call",
            "--project",
            "ci",
            &call_id,
            "--simulator-base-url",
            &caller_url,
            "--simulator-model",
            "m",
        ])
        .output()
        .unwrap();
    let toml_text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{toml_text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(toml_text.contains("name = \"lost-order\""), "{toml_text}");
    assert!(
        toml_text.contains("lookup_order") && toml_text.contains("shipped"),
        "{toml_text}"
    );
    assert!(
        !toml_text.contains("made-up"),
        "unknown traits are dropped: {toml_text}"
    );
    let file = data.join("scenarios.toml");
    std::fs::write(&file, &toml_text).unwrap();
    let (ok, applied) = run_json(
        data,
        &[
            "scenario",
            "apply",
            "--project",
            "ci",
            file.to_str().unwrap(),
        ],
    );
    assert!(ok, "{applied}");
    assert_eq!(applied["created"], json!(["lost-order"]));
    let (_, again) = run_json(
        data,
        &[
            "scenario",
            "apply",
            "--project",
            "ci",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(again["unchanged"], json!(["lost-order"]));
    std::fs::write(
        &file,
        toml_text.replace("You ask where order A1 is.", "You ask twice."),
    )
    .unwrap();
    let (_, changed) = run_json(
        data,
        &[
            "scenario",
            "apply",
            "--project",
            "ci",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(changed["updated"], json!(["lost-order"]));
    let (_, listed) = run_json(data, &["scenario", "list", "--project", "ci"]);
    let drafted = listed["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "lost-order")
        .unwrap()
        .clone();
    assert_eq!(drafted["tool_mocks"][0]["when"], json!({"order": "A1"}));
    assert_eq!(drafted["persona"]["traits"], json!(["confused"]));
    // A bad file changes nothing and names the problem.
    std::fs::write(&file, "[[scenarios]]\nagent_id = 1\nname = \" \"\n").unwrap();
    let (ok, err) = run_json(
        data,
        &[
            "scenario",
            "apply",
            "--project",
            "ci",
            file.to_str().unwrap(),
        ],
    );
    assert!(!ok);
    assert!(
        err["error"].as_str().unwrap().contains("scenarios[0].name"),
        "{err}"
    );

    // A scenarios file sets agents' connectors too; a bad one writes nothing at all.
    std::fs::write(&file, format!("[[agents]]\nid = {agent_id}\nconnector = {{ kind = \"http_turn\", url = \"http://127.0.0.1:1/turn\", headers = {{ X = \"***\" }} }}\n\n[[scenarios]]\nagent_id = {agent_id}\nname = \"from-file\"\n")).unwrap();
    let (ok, err) = run_json(
        data,
        &[
            "scenario",
            "apply",
            "--project",
            "ci",
            file.to_str().unwrap(),
        ],
    );
    assert!(!ok);
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("agents[0].connector.headers.X"),
        "{err}"
    );
    std::fs::write(&file, format!("[[agents]]\nid = {agent_id}\nconnector = {{ kind = \"http_turn\", url = \"{agent_url}\", timeout_seconds = 5 }}\n\n[[scenarios]]\nagent_id = {agent_id}\nname = \"from-file\"\n")).unwrap();
    let (ok, applied) = run_json(
        data,
        &[
            "scenario",
            "apply",
            "--project",
            "ci",
            file.to_str().unwrap(),
        ],
    );
    assert!(ok, "{applied}");
    assert_eq!(applied["created"], json!(["from-file"]));
    let (_, agents) = run_json(data, &["agent", "list", "--project", "ci"]);
    assert_eq!(agents["agents"][0]["connector"]["timeout_seconds"], 5);
    // The project's simulator endpoint from the CLI; its key never printed.
    std::env::set_var("CG_TEST_SIM_KEY", "sk-never-printed");
    let (ok, sim) = run_json(
        data,
        &[
            "project",
            "simulator",
            "ci",
            "--concurrency",
            "2",
            "--api-key-env",
            "CG_TEST_SIM_KEY",
        ],
    );
    assert!(ok, "{sim}");
    assert_eq!(
        (sim["concurrency"].clone(), sim["api_key_set"].clone()),
        (json!(2), json!(true))
    );
    assert!(!sim.to_string().contains("sk-never-printed"));

    // A label nobody carries: a clear error, not a verdict.
    let (code, report) = test_start(&scenario_ids[0], &["--baseline-label", "nope"]);
    assert_eq!(code, Some(1));
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("no finished result labelled \"nope\""),
        "{report}"
    );
}

/// A call whose `recording_url` is being fetched when the server is SIGKILLed: after the
/// restart its evaluation fetches the recording again and keeps it; killed once more, the
/// recording is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_survives_sigkill_once_its_call_was_acknowledged() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let (_, project) = run_json(&data, &["project", "create", "recorded"]);
    let (_, agent) = run_json(
        &data,
        &["agent", "create", "--project", "recorded", "--name", "bot"],
    );
    let key = project["api_key"].as_str().unwrap().to_owned();

    // The recording's server answers its first request slowly: the kill lands mid-fetch.
    let wav = callgrade_audio::wav_bytes(
        &callgrade_audio::Pcm {
            sample_rate: 8_000,
            channels: vec![vec![4_000; 8_000], vec![0; 8_000]],
        },
        callgrade_audio::WavEncoding::Pcm16,
    );
    let requests = Arc::new(AtomicUsize::new(0));
    let files = {
        let (wav, requests) = (wav.clone(), requests.clone());
        Router::new().route(
            "/call.wav",
            axum::routing::get(move || {
                let (wav, requests) = (wav.clone(), requests.clone());
                async move {
                    if requests.fetch_add(1, Ordering::SeqCst) == 0 {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                    wav
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let recording_url = format!("http://{}/call.wav", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, files).await.unwrap() });

    let flags = ["--allow-fetch-from", "127.0.0.1", "--job-lease", "2"];
    let mut server = start_with(&data, &flags);
    let client = reqwest::Client::new();
    let body = json!({"agent_id": agent["id"], "calls": [{
        "id": "recorded-1", "startedAt": "2025-10-15T09:22:21Z", "endedAt": "2025-10-15T09:23:21Z",
        "recording_url": recording_url,
    }]});
    let receipt: Value = {
        let r = client
            .post(format!(
                "{}/test_framework/custom-provider-transcript-webhook",
                server.base
            ))
            .header("X-CEKURA-API-KEY", &key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        r.json().await.unwrap()
    };
    let call_id = receipt["calls"][0]["call_id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while requests.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the recording was never fetched"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.kill().unwrap(); // SIGKILL, mid-fetch
    server.child.wait().unwrap();

    let recording = |base: &str| {
        let url = format!("{base}/api/v1/calls/{call_id}/recording");
        let (client, key) = (client.clone(), key.clone());
        async move { client.get(url).bearer_auth(key).send().await.unwrap() }
    };
    let server = start_with(&data, &flags);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = recording(&server.base).await;
        if r.status() == 200 {
            assert_eq!(r.bytes().await.unwrap(), wav);
            break;
        }
        assert_eq!(r.status(), 404);
        assert!(
            std::time::Instant::now() < deadline,
            "the recording was not fetched after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(requests.load(Ordering::SeqCst), 2, "fetched again, once");
    drop(server); // SIGKILL again

    let server = start(&data);
    let r = recording(&server.base).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), wav);
}

/// What the webhook receiver saw: (webhook-id, body) of each request answered 2xx, and whether
/// it answers 503 for now.
#[derive(Clone, Default)]
struct Hooked {
    delivered: std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>,
    refusing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

async fn hooked(
    axum::extract::State(h): axum::extract::State<Hooked>,
    headers: axum::http::HeaderMap,
    Json(body): Json<Value>,
) -> axum::http::StatusCode {
    if h.refusing.load(std::sync::atomic::Ordering::SeqCst) {
        h.refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
    }
    let id = headers["webhook-id"].to_str().unwrap().to_owned();
    h.delivered.lock().unwrap().push((id, body));
    axum::http::StatusCode::NO_CONTENT
}

/// Kill the server while events wait to be delivered (the receiver refusing), restart it: every
/// acknowledged call's event arrives, each with the one webhook-id it was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_outbound_event_is_lost_to_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let (_, project) = run_json(&data, &["project", "create", "hooks"]);
    let (_, agent) = run_json(
        &data,
        &["agent", "create", "--project", "hooks", "--name", "bot"],
    );
    let key = project["api_key"].as_str().unwrap().to_owned();
    let hooked_state = Hooked::default();
    hooked_state
        .refusing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = format!("http://{}/hook", listener.local_addr().unwrap());
    let router = Router::new()
        .route("/hook", post(hooked))
        .with_state(hooked_state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    // Deliveries in flight at the kill are taken again when their lease (7× the timeout) ends.
    let flags = [
        "--allow-webhooks-to",
        "127.0.0.1",
        "--webhook-timeout",
        "2",
        "--no-workers",
    ];
    let mut server = start_with(&data, &flags);
    let client = reqwest::Client::new();
    let created: Value = client
        .post(format!("{}/api/v1/webhook-endpoints", server.base))
        .bearer_auth(&key)
        .json(&json!({"url": receiver, "events": ["call.received"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(created["secret"].is_string(), "{created}");
    let total = 30;
    for i in 0..total {
        let body = json!({"agent_id": agent["id"], "calls": [{
            "id": format!("c{i}"), "startedAt": "2025-10-15T09:22:21Z", "endedAt": "2025-10-15T09:23:21Z",
            "messages": [{"role": "bot", "content": "hi", "start_time": 0.5, "end_time": 1.0}]
        }]});
        let r = client
            .post(format!(
                "{}/test_framework/custom-provider-transcript-webhook",
                server.base
            ))
            .header("X-CEKURA-API-KEY", &key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    // Some attempts were made and refused (they wait for a retry), the rest not yet.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while hooked_state
        .refused
        .load(std::sync::atomic::Ordering::SeqCst)
        == 0
    {
        assert!(std::time::Instant::now() < deadline, "no attempt was made");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.child.kill().unwrap(); // SIGKILL, with every event refused so far
    server.child.wait().unwrap();
    assert!(hooked_state.delivered.lock().unwrap().is_empty());

    hooked_state
        .refusing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let _server = start_with(&data, &flags);
    // Refused attempts are retried 5 s on; those in flight once their 14 s lease ends.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let calls: std::collections::HashSet<String> = hooked_state
            .delivered
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b["data"]["id"].as_str().unwrap().to_owned())
            .collect();
        if calls.len() == total {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {total} events arrived",
            calls.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // At least once, and a call's event keeps its webhook-id however often it is sent.
    let delivered = hooked_state.delivered.lock().unwrap().clone();
    let mut ids = std::collections::HashMap::new();
    for (id, body) in &delivered {
        let call = body["data"]["id"].as_str().unwrap().to_owned();
        assert_eq!(ids.entry(call).or_insert_with(|| id.clone()), id);
    }
    assert_eq!(ids.len(), total);
}
