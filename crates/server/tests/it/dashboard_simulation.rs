//! The dashboard over simulated results: the gate on the result page, a run's page with its
//! persona, usage and conversation (polled while it goes on), "run failed scenarios again",
//! and the agent form's connector editor.

use callgrade_core::{Connector, Message, Role, Usage};
use callgrade_store::SimulationProgress;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

use crate::common::*;
use crate::dashboard::{csrf_of, signed_in};
use crate::fakes::*;

/// A signed-in dashboard session: GET a page, POST a form with its CSRF token.
struct Browser {
    client: reqwest::Client,
    cookie: String,
    base: String,
    csrf: String,
}

impl Browser {
    async fn new(app: &TestApp) -> Self {
        let (client, cookie) = signed_in(app).await;
        let home = client
            .get(format!("{}/", app.base))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        Self {
            client,
            cookie,
            base: app.base.clone(),
            csrf: csrf_of(&home),
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Posts a form; its status, `Location` and body.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> (u16, Option<String>, String) {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("_csrf", &self.csrf));
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        let location = r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        (r.status().as_u16(), location, r.text().await.unwrap())
    }
}

#[tokio::test]
async fn the_result_page_gates_against_the_last_result_with_its_label() {
    let app = TestApp::spawn().await;
    let caller = start_caller(vec![("Dana", vec!["Refund, please."])], 10).await;
    let (agent, url) = start_turn_agent().await;
    let t = simulated_project(&app, "dash-gate", &url, &caller).await;
    let refund = scenario(&app, &t, "refund", json!({})).await;
    let flaky = scenario(&app, &t, "flaky", json!({"quarantined": true})).await;
    let main = finished(
        &app,
        &t,
        &start(&app, &t, &[refund, flaky], 10, "main").await,
    )
    .await;
    // The same label, 3 of 10 refunds approved (the quarantined scenario shares the counter).
    agent.approve.store(3, Ordering::SeqCst);
    agent.turns.store(0, Ordering::SeqCst);
    let broken = finished(&app, &t, &start(&app, &t, &[refund], 10, "main").await).await;
    let web = Browser::new(&app).await;
    let (p, main_id, broken_id) = (t.project_id, &main["id"], &broken["id"]);

    // By default: the newest finished result labelled like this one, never itself.
    let (status, page) = web.get(&format!("/projects/{p}/results/{broken_id}")).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Mode <strong>simulate</strong> · label main"));
    assert!(
        page.contains(&format!(
            "baseline <a href=\"/projects/{p}/results/{main_id}\">result {main_id}</a>"
        )),
        "{page}"
    );
    assert!(page.contains("the newest finished labelled main"));
    assert!(
        page.contains(r#"Verdict: <span class="bad">fail</span>"#),
        "{page}"
    );
    assert!(
        page.contains("regressed: 3/10 passed, baseline 10/10"),
        "the reason"
    );
    let row = gate_row(&page, "refund");
    assert!(
        row.contains("<td>3</td><td>7</td><td>0</td>"),
        "passed, failed, undecided: {row}"
    );
    assert!(row.contains("✗"), "not pass^k: {row}");
    assert!(
        row.contains("30 % <span class=\"muted\">[11–60 %]</span>"),
        "Wilson: {row}"
    );
    assert!(row.contains("10 / 0 / 0"), "the baseline's counts: {row}");
    assert!(
        row.contains(r#"<span class="bad">regressed</span>"#),
        "{row}"
    );
    assert!(row.contains("<td>0.0015</td>"), "one-sided Fisher p: {row}");
    // Each run links to its page.
    let run_id = broken["runs"][0]["id"].as_i64().unwrap();
    assert!(page.contains(&format!("href=\"/projects/{p}/runs/{run_id}\"")));

    // The older one, against a label that has no finished result: "no baseline", not an error.
    let (status, page) = web
        .get(&format!(
            "/projects/{p}/results/{main_id}?baseline_label=nightly"
        ))
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("no baseline"), "{page}");
    assert!(page.contains("no finished result labelled &quot;nightly&quot;"));
    let row = gate_row(&page, "refund");
    assert!(row.contains("✓"), "pass^k: {row}");
    assert!(
        row.contains("100 % <span class=\"muted\">[72–100 %]</span>"),
        "{row}"
    );
    let flaky_row = gate_row(&page, "flaky");
    assert!(flaky_row.contains("quarantined"), "{flaky_row}");
    // Picked by id: the newer result is an improvement over the older one.
    let (_, page) = web
        .get(&format!(
            "/projects/{p}/results/{main_id}?baseline={broken_id}"
        ))
        .await;
    assert!(gate_row(&page, "refund").contains("improved"), "{page}");
    assert!(
        gate_row(&page, "flaky").contains("no baseline"),
        "not in the baseline"
    );
    let (status, page) = web
        .get(&format!("/projects/{p}/results/{main_id}?baseline=999999"))
        .await;
    assert_eq!(status, 200);
    assert!(page.contains("no baseline"), "{page}");

    // The run's page: persona, stop reason, usage and the stored conversation, no polling.
    let (status, page) = web.get(&format!("/projects/{p}/runs/{run_id}")).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Persona <strong>Dana</strong> · language en · traits impatient"),
        "{page}"
    );
    assert!(page.contains("Stop reason caller_ended"), "{page}");
    assert!(
        page.contains("caller 2 requests, 20 tokens · agent 2 requests, 0 tokens"),
        "{page}"
    );
    assert!(page.contains("Refund, please.") && page.contains("Hello, this is Acme."));
    let call_id = broken["runs"][0]["call_id"].as_str().unwrap();
    assert!(page.contains(&format!("/projects/{p}/calls/{call_id}")));
    assert!(!page.contains("hx-trigger"), "a final run is not polled");

    // Run failed scenarios again: a new result, and the browser is sent to it.
    let (status, location, _) = web
        .post(
            &format!("/projects/{p}/results/{broken_id}/rerun-failed"),
            &[],
        )
        .await;
    assert_eq!(status, 303);
    let location = location.unwrap();
    let rerun_id: i64 = location
        .strip_prefix(&format!("/projects/{p}/results/"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(rerun_id > broken_id.as_i64().unwrap());
    let rerun = app.store.result(p, rerun_id).await.unwrap().unwrap();
    assert_eq!(
        rerun.runs.len(),
        10,
        "the failing scenario, as often as before"
    );
    assert_eq!(
        rerun.name.as_deref(),
        Some(&*format!("rerun of result {broken_id}"))
    );
    // A result whose runs all passed has nothing to rerun, which the page says kindly.
    agent.approve.store(10, Ordering::SeqCst);
    let all_pass = finished(&app, &t, &start(&app, &t, &[refund], 2, "main").await).await;
    let (status, _, page) = web
        .post(
            &format!("/projects/{p}/results/{}/rerun-failed", all_pass["id"]),
            &[],
        )
        .await;
    assert_eq!(status, 409, "{page}");
    assert!(
        page.contains("Nothing to run again: result")
            && page.contains("has no finished run that failed"),
        "{page}"
    );
    assert!(
        page.contains("id=\"gate\""),
        "the result page, not an error page"
    );
    // A result under way shows its progress and refreshes it (runs left to an outside harness
    // stay waiting).
    let r = app
        .client
        .post(format!("{}/api/v1/results", app.base))
        .bearer_auth(&t.key)
        .json(&json!({"agent_id": t.agent_id, "scenario_ids": [refund], "frequency": 2, "mode": "external"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let waiting: Value = r.json().await.unwrap();
    let (_, page) = web
        .get(&format!("/projects/{p}/results/{}", waiting["id"]))
        .await;
    assert!(
        page.contains("hx-trigger=\"every 2s\"") && page.contains("0 of 2 runs done"),
        "{page}"
    );
    // The rerun finishes before the servers go.
    finished(&app, &t, &json!({"id": rerun_id})).await;
}

/// The row of the gate table for a scenario.
fn gate_row<'a>(page: &'a str, scenario: &str) -> &'a str {
    let table = &page[page.find("id=\"gate\"").expect("a gate table")..];
    let at = table
        .find(&format!("<td>{scenario}"))
        .unwrap_or_else(|| panic!("no row for {scenario} in {table}"));
    let row = &table[at..];
    &row[..row.find("</tr>").unwrap()]
}

#[tokio::test]
async fn a_conversation_in_progress_refreshes_until_the_run_is_final() {
    let mut settings = callgrade_server::Settings::default();
    settings.app.simulation.slots = 0; // the test plays the simulator through the store
    let app = TestApp::spawn_with(settings).await;
    let caller = start_caller(vec![], 10).await;
    let (_, url) = start_turn_agent().await;
    let t = simulated_project(&app, "dash-live", &url, &caller).await;
    let refund = scenario(&app, &t, "refund", json!({})).await;
    let result = start(&app, &t, &[refund], 1, "x").await;
    let run_id = result["runs"][0]["id"].as_i64().unwrap();
    let now = callgrade_app::Clock::now(app.clock.as_ref());
    let lease = chrono::TimeDelta::seconds(30);
    let claimed = app
        .store
        .claim_simulations("w", now, lease, 1)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let said = |role, content: &str, at: f64, data: Option<Value>| Message {
        role,
        content: content.into(),
        start_offset: Some(at),
        end_offset: Some(at),
        start_at_ms: None,
        end_at_ms: None,
        data,
    };
    let progress = SimulationProgress {
        messages: vec![
            said(Role::Bot, "Hello, this is Acme.", 0.0, None),
            said(Role::User, "Where is my order A1?", 1.5, None),
            said(
                Role::FunctionCall,
                "",
                2.0,
                Some(json!({"id": "t1", "name": "lookup_order", "arguments": {"order": "A1"}})),
            ),
            said(
                Role::FunctionCallResult,
                "",
                2.1,
                Some(json!({"id": "t1", "name": "lookup_order", "result": {"status": "shipped"}})),
            ),
        ],
        usage: Usage {
            caller_requests: 1,
            caller_tokens: 42,
            agent_requests: 2,
            ..Usage::default()
        },
        stop_reason: None,
    };
    assert!(app
        .store
        .renew_simulation(run_id, "w", &progress, now, lease)
        .await
        .unwrap());

    let web = Browser::new(&app).await;
    let p = t.project_id;
    let (status, page) = web.get(&format!("/projects/{p}/runs/{run_id}")).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Status <strong>in_progress</strong>"),
        "{page}"
    );
    assert!(page.contains("caller 1 requests, 42 tokens"), "{page}");
    let polling =
        format!("hx-get=\"/projects/{p}/runs/{run_id}/conversation\" hx-trigger=\"every 2s\"");
    assert!(page.contains(&polling), "{page}");
    // Readable without JavaScript: the messages are in the page itself.
    assert!(page.contains("Where is my order A1?") && page.contains("1.50 s"));
    assert!(
        page.contains("lookup_order({&quot;order&quot;:&quot;A1&quot;})"),
        "a tool call on one line: {page}"
    );
    assert!(page.contains("lookup_order → {&quot;status&quot;:&quot;shipped&quot;}"));
    let (status, fragment) = web
        .get(&format!("/projects/{p}/runs/{run_id}/conversation"))
        .await;
    assert_eq!(status, 200);
    assert!(
        fragment.starts_with("<div id=\"conversation\""),
        "{fragment}"
    );
    assert!(fragment.contains(&polling) && !fragment.contains("<html"));

    // Final (here: failed mid-conversation): the fragment comes without its trigger.
    let failed = app
        .store
        .fail_simulation(run_id, "w", "the agent hung up on the line", &progress, now)
        .await
        .unwrap();
    assert!(failed);
    let (_, fragment) = web
        .get(&format!("/projects/{p}/runs/{run_id}/conversation"))
        .await;
    assert!(!fragment.contains("hx-trigger"), "{fragment}");
    assert!(
        fragment.contains("Where is my order A1?"),
        "what was said is kept"
    );
    let (_, page) = web.get(&format!("/projects/{p}/runs/{run_id}")).await;
    assert!(page.contains("Status <strong>failed</strong>"));
    assert!(
        page.contains("<p class=\"bad\">Error: ") && page.contains("the agent hung up on the line"),
        "{page}"
    );
    let (status, _) = web.get(&format!("/projects/{p}/runs/999999")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_agent_form_edits_connectors_and_keeps_secrets() {
    let app = TestApp::spawn().await;
    let t = app.tenant("dash-agents").await;
    let web = Browser::new(&app).await;
    let p = t.project_id;
    let agent_path = format!("/projects/{p}/agents/{}", t.agent_id);
    let (_, page) = web.get(&format!("/projects/{p}/setup")).await;
    assert!(
        page.contains("name=\"connector_kind\""),
        "the editor is there"
    );

    // The select gives the kind; the JSON may leave it out.
    let (status, _, body) = save(
        &web,
        &agent_path,
        "http_turn",
        r#"{"url": "https://agent.test/turn", "headers": {"Authorization": "Bearer s3cret"}}"#,
    )
    .await;
    assert_eq!(status, 303, "{body}");
    let (_, shown) = app
        .api(&t.key, &format!("/api/v1/agents/{}", t.agent_id))
        .await;
    assert_eq!(shown["connector"]["kind"], "http_turn");
    assert_eq!(shown["connector"]["headers"]["Authorization"], "***");
    let (_, page) = web.get(&format!("/projects/{p}/setup")).await;
    assert!(
        page.contains("<td><code>http_turn</code></td>"),
        "the agents table: {page}"
    );
    assert!(
        page.contains("&quot;Authorization&quot;: &quot;***&quot;"),
        "{page}"
    );
    assert!(
        !page.contains("s3cret"),
        "the secret never reaches the page"
    );

    // Sent back with "***" (the prefilled view, edited): the secret is kept.
    let (status, _, body) = save(&web, &agent_path,
        "http_turn",
        r#"{"kind": "http_turn", "url": "https://agent.test/v2", "headers": {"Authorization": "***"}}"#,
    )
    .await;
    assert_eq!(status, 303, "{body}");
    let Some(Connector::HttpTurn(c)) = stored(&app, p, t.agent_id).await else {
        panic!("an http_turn connector")
    };
    assert_eq!(c.url, "https://agent.test/v2");
    assert_eq!(c.headers["Authorization"], "Bearer s3cret");
    let (_, shown) = app
        .api(&t.key, &format!("/api/v1/agents/{}", t.agent_id))
        .await;
    assert_eq!(shown["connector"]["headers"]["Authorization"], "***");

    // Problems are the form's, with their paths, and what was typed stays in it.
    let (status, _, page) = save(&web, &agent_path, "http_turn", r#"{"url": "#).await;
    assert_eq!(status, 400);
    assert!(page.contains("connector: is not valid JSON"), "{page}");
    assert!(
        page.contains("{&quot;url&quot;: </textarea>"),
        "the text is kept: {page}"
    );
    let (status, _, page) = save(
        &web,
        &agent_path,
        "http_turn",
        r#"{"url": "ftp://agent.test", "retries": 3}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        page.contains("connector.url: must be an http:// or https:// URL"),
        "{page}"
    );
    assert!(page.contains("connector.retries: is not a field"), "{page}");
    let (status, _, page) = save(
        &web,
        &agent_path,
        "openai_chat",
        r#"{"kind": "http_turn", "url": "https://x.test"}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        page.contains("connector.kind: is &quot;http_turn&quot; but the kind chosen is &quot;openai_chat&quot;"),
        "{page}"
    );
    let Some(Connector::HttpTurn(c)) = stored(&app, p, t.agent_id).await else {
        panic!("unchanged")
    };
    assert_eq!(c.url, "https://agent.test/v2");

    // "none" removes it; a new agent can be created with one.
    let (status, _, _) = save(&web, &agent_path, "none", "").await;
    assert_eq!(status, 303);
    assert!(stored(&app, p, t.agent_id).await.is_none());
    let (_, shown) = app
        .api(&t.key, &format!("/api/v1/agents/{}", t.agent_id))
        .await;
    assert_eq!(shown["connector"], Value::Null);
    let (status, _, body) = web
        .post(
            &format!("/projects/{p}/agents"),
            &[
                ("name", "chat-bot"),
                ("connector_kind", "openai_chat"),
                (
                    "connector",
                    r#"{"base_url": "https://llm.test/v1", "model": "m", "api_key": "sk-1"}"#,
                ),
            ],
        )
        .await;
    assert_eq!(status, 303, "{body}");
    let created = app.store.list_agents(p).await.unwrap();
    let chat = created.iter().find(|a| a.name == "chat-bot").unwrap();
    assert_eq!(chat.connector.as_ref().unwrap().fields["api_key"], "***");
    let (_, page) = web.get(&format!("/projects/{p}/setup")).await;
    assert!(page.contains("<td><code>openai_chat</code></td>"));
    assert!(!page.contains("sk-1"));
    // A refused new agent keeps its form filled in.
    let (status, _, page) = web
        .post(
            &format!("/projects/{p}/agents"),
            &[
                ("name", "other"),
                ("connector_kind", "http_turn"),
                ("connector", ""),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        page.contains("connector: give the http_turn connector as JSON"),
        "{page}"
    );
    assert!(page.contains("value=\"other\""));
}

/// Saves the agent form with a connector kind and its JSON.
async fn save(
    web: &Browser,
    agent_path: &str,
    kind: &str,
    connector: &str,
) -> (u16, Option<String>, String) {
    let fields = [
        ("name", "support-bot"),
        ("phone_number", ""),
        ("description", "billing"),
        ("connector_kind", kind),
        ("connector", connector),
    ];
    web.post(agent_path, &fields).await
}

/// The agent's connector as stored, secrets included.
async fn stored(app: &TestApp, project_id: i64, agent_id: i64) -> Option<Connector> {
    app.store
        .agent(project_id, agent_id)
        .await
        .unwrap()
        .unwrap()
        .1
}
