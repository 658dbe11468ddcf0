//! `callgrade test start --wait` against simulated callers: the real binary serving, a fake
//! caller LLM and a fake `http_turn` agent on port 0; exit codes, JUnit, Markdown, baselines.

use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_callgrade");

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

fn run_json(data: &Path, args: &[&str]) -> (bool, Value) {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), value)
}

struct Server(Child);

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

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--simulator-base-url",
            &caller_url,
            "--simulator-model",
            "caller-1",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
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
    let _server = Server(child);

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
