//! The dashboard over HTTP: sign-in, sessions, CSRF, and the pages a user walks through.

use reqwest::redirect::Policy;
use serde_json::{json, Value};

use crate::common::*;

pub(crate) fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"_csrf\" value=\"").expect("a CSRF field") + 20;
    html[at..at + 64].to_owned()
}

#[tokio::test]
async fn sign_in_sessions_csrf_and_pages() {
    let app = TestApp::spawn().await;
    let client = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let url = |p: &str| format!("{}{p}", app.base);

    // Not signed in: every page sends you to the sign-in page, which says how to get a token.
    let r = client.get(url("/")).send().await.unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["location"].to_str().unwrap()
        ),
        (303, "/login")
    );
    let login = client
        .get(url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(login.contains("callgrade admin token"));

    let token = callgrade_app::admin::issue_admin_token(&app.state.app, false)
        .await
        .unwrap()
        .unwrap();
    assert!(
        callgrade_app::admin::issue_admin_token(&app.state.app, false)
            .await
            .unwrap()
            .is_none(),
        "shown once"
    );
    let r = client
        .post(url("/login"))
        .form(&[("token", "cga_wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .post(url("/login"))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let get = |p: &str| client.get(url(p)).header("cookie", &cookie).send();

    let home = get("/").await.unwrap().text().await.unwrap();
    assert!(home.contains("No projects yet"));
    let csrf = csrf_of(&home);

    // Forms need the session's CSRF token.
    let r = client
        .post(url("/projects"))
        .header("cookie", &cookie)
        .form(&[("name", "web"), ("_csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let created = client
        .post(url("/projects"))
        .header("cookie", &cookie)
        .form(&[("name", "web"), ("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let created = created.text().await.unwrap();
    assert!(created.contains("shown only now"));
    let key_at = created.find("cg_").unwrap();
    let key = created[key_at..key_at + 43].to_owned();
    let project = app
        .store
        .authenticate(&key)
        .await
        .unwrap()
        .expect("the shown key works")
        .project;

    // The project page teaches the first call; agents can be created.
    let overview = get(&format!("/projects/{}", project.id))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(overview.contains("Send your first call") && overview.contains("curl -X POST"));
    assert!(overview.contains(&format!("/webhooks/custom/{}", project.id)));
    let r = client
        .post(url(&format!("/projects/{}/agents", project.id)))
        .header("cookie", &cookie)
        .form(&[
            ("name", "support-bot"),
            ("phone_number", ""),
            ("description", "billing"),
            ("_csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let agent = app
        .store
        .list_agents(project.id)
        .await
        .unwrap()
        .pop()
        .unwrap();

    // A call and a rejected delivery, then the pages that show them.
    let (_, receipt) = status_and_json(app.send(&key, &seed_two_calls(agent.id)).await).await;
    let call_id = receipt["calls"][0]["call_id"].as_str().unwrap().to_owned();
    // The sender's id: what every list shows, and what the forms take as well as ours.
    let sender_id = receipt["calls"][0]["id"].as_str().unwrap().to_owned();
    app.send(&key, &json!({"agent_id": "1", "calls": [call("bad")]}))
        .await;
    app.settle().await;
    let calls = get(&format!("/projects/{}/calls", project.id))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(calls.contains("0199e72d-795e-7ffe-b9b9-d3b08a3a11ae"));
    assert!(calls.contains("1.43 s"), "latency p50 column");
    let detail = get(&format!("/projects/{}/calls/{call_id}", project.id))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        detail.contains("latency 1.43 s"),
        "the gap before the agent's turn"
    );
    assert!(
        detail.contains("interrupts (3.15 s overlap)"),
        "the user's barge-in is marked"
    );
    assert!(detail.contains("agent_latency") && detail.contains("Raw payload"));
    let failures = get(&format!(
        "/projects/{}/deliveries?outcome=rejected",
        project.id
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(failures.contains("invalid_payload") && failures.contains("agent_id"));
    assert!(!failures.contains("0199e72d-795e-7ffe"), "only failures");

    // A call of today, for the charts' newest day.
    let now = app.state.app.now();
    let today_call = json!({"agent_id": agent.id, "calls": [{
        "id": "today", "startedAt": (now - chrono::TimeDelta::seconds(60)).to_rfc3339(),
        "endedAt": now.to_rfc3339(),
        "messages": [{"role": "bot", "content": "Hello", "start_time": 1.0, "end_time": 2.0}]}]});
    assert_eq!(app.send(&key, &today_call).await.status(), 202);
    app.settle().await;

    // Metrics: the summary, and trying a definition on a stored call.
    let metrics = get(&format!("/projects/{}/metrics", project.id))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("agent_latency") && metrics.contains("Last 7 days"));
    assert_eq!(
        metrics.matches("<svg").count(),
        4,
        "latency, interruptions, calls per day, pass rate"
    );
    // The pass-rate chart leads with the calls' own pass rate (the rubric's verdict).
    let pass_chart = metrics.split("<strong>Pass rate</strong>").nth(1).unwrap();
    let pass_chart = pass_chart.split("</figure>").next().unwrap();
    assert!(pass_chart.contains("■ calls"), "{pass_chart}");
    assert!(
        pass_chart.contains("<circle"),
        "today's calls are plotted: {pass_chart}"
    );
    // Today's point is under a date label, not past the last one.
    let today = app.state.app.now().format("%m-%d").to_string();
    assert_eq!(
        metrics.matches(&format!(">{today}</text>")).count(),
        4,
        "today labelled on every chart"
    );
    let saved = client.post(url(&format!("/projects/{}/metrics/save", project.id))).header("cookie", &cookie)
        .form(&[("definition", r#"{"name": "p90", "kind": "builtin", "config": {"builtin": "agent_latency", "latency_statistic": "p90"}}"#), ("_csrf", csrf.as_str())])
        .send().await.unwrap();
    assert_eq!(saved.status(), 303);
    assert!(app
        .store
        .list_metrics(project.id)
        .await
        .unwrap()
        .iter()
        .any(|m| m.spec.name == "p90"));
    // The same name again replaces it only when asked.
    let p90_v2 = r#"{"name": "p90", "kind": "builtin", "config": {"builtin": "agent_latency", "latency_statistic": "p50"}}"#;
    let unasked = client
        .post(url(&format!("/projects/{}/metrics/save", project.id)))
        .header("cookie", &cookie)
        .form(&[("definition", p90_v2), ("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(unasked.status(), 409);
    let unasked = unasked.text().await.unwrap();
    assert!(
        unasked.contains("Not saved") && unasked.contains("already exists; tick"),
        "{unasked}"
    );
    let asked = client
        .post(url(&format!("/projects/{}/metrics/save", project.id)))
        .header("cookie", &cookie)
        .form(&[
            ("definition", p90_v2),
            ("replace", "on"),
            ("_csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 303);
    let version = |metrics: Vec<callgrade_core::Metric>| {
        metrics
            .into_iter()
            .find(|m| m.spec.name == "p90")
            .unwrap()
            .version
    };
    assert_eq!(
        version(app.store.list_metrics(project.id).await.unwrap()),
        2
    );
    let refused = client
        .post(url(&format!("/projects/{}/metrics/save", project.id)))
        .header("cookie", &cookie)
        .form(&[
            (
                "definition",
                r#"{"name": "x", "kind": "builtin", "config": {"builtin": "nope"}}"#,
            ),
            ("_csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    // The page again: why, and the definition as typed, not a bare error page.
    let refused = refused.text().await.unwrap();
    assert!(
        refused.contains("Not saved") && refused.contains("config.builtin"),
        "{refused}"
    );
    assert!(
        refused.contains("&quot;builtin&quot;: &quot;nope&quot;"),
        "what was typed is kept"
    );
    let typo = client
        .post(url(&format!("/projects/{}/metrics/save", project.id)))
        .header("cookie", &cookie)
        .form(&[
            ("definition", r#"{"name": "x", "kind": "builtin",,}"#),
            ("_csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(typo.status(), 400);
    let typo = typo.text().await.unwrap();
    assert!(
        typo.contains("not valid") && typo.contains("&quot;builtin&quot;,,}"),
        "{typo}"
    );
    let definition = r#"{"name": "t", "kind": "script", "output": "numeric", "config": {"script": "result = data.messages.len();"}}"#;
    let tried = client
        .post(url(&format!("/projects/{}/metrics/try", project.id)))
        .header("cookie", &cookie)
        .form(&[
            ("definition", definition),
            ("call_id", sender_id.as_str()),
            ("_csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        tried.contains("Status <strong>ok</strong> · value <code>4</code>"),
        "{tried}"
    );

    // Runs: a call attached by hand from the runs page.
    let (scenario, _) = {
        let r = app
            .post("/api/v1/scenarios")
            .bearer_auth(&key)
            .json(&json!({"agent_id": agent.id, "name": "s", "direction": "inbound"}))
            .send()
            .await
            .unwrap();
        (r.json::<serde_json::Value>().await.unwrap(), ())
    };
    let result: serde_json::Value = app
        .post("/api/v1/results")
        .bearer_auth(&key)
        .json(&json!({"agent_id": agent.id, "scenario_ids": [scenario["id"]]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run_id = result["runs"][0]["id"].as_i64().unwrap();
    let runs = get(&format!("/projects/{}/runs", project.id))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(runs.contains(&format!("/runs/{run_id}/attach")));
    let r = client
        .post(url(&format!(
            "/projects/{}/runs/{run_id}/attach",
            project.id
        )))
        .header("cookie", &cookie)
        .form(&[("call_id", sender_id.as_str()), ("_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    app.settle().await;
    let run = app.store.run(project.id, run_id).await.unwrap().unwrap();
    assert_eq!(run.call_id.as_deref(), Some(call_id.as_str()));

    // Rotating the admin token signs everyone out.
    callgrade_app::admin::issue_admin_token(&app.state.app, true)
        .await
        .unwrap()
        .unwrap();
    let r = get("/").await.unwrap();
    assert_eq!(r.status(), 303);
}

/// The calls page finds its latency column by what a metric computes, not by its name: a
/// renamed default metric still fills it.
#[tokio::test]
async fn calls_page_columns_follow_the_computation_not_the_name() {
    let app = TestApp::spawn().await;
    let t = app.tenant("renamed").await;
    let metrics = app.store.list_metrics(t.project_id).await.unwrap();
    let latency = metrics
        .iter()
        .find(|m| m.spec.name == "agent_latency")
        .unwrap();
    let r = app
        .client
        .put(format!("{}/api/v1/metrics/{}", app.base, latency.id))
        .bearer_auth(&t.key)
        .json(
            &json!({"name": "latency", "kind": "builtin", "config": {"builtin": "agent_latency"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.send(&t.key, &seed_two_calls(t.agent_id)).await;
    app.settle().await;

    let (client, cookie) = signed_in(&app).await;
    let calls = client
        .get(format!("{}/projects/{}/calls", app.base, t.project_id))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(calls.contains("1.43 s"), "the latency column is filled");
}

/// A client signed in to the dashboard, and its session cookie.
pub(crate) async fn signed_in(app: &TestApp) -> (reqwest::Client, String) {
    let client = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let token = callgrade_app::admin::issue_admin_token(&app.state.app, false)
        .await
        .unwrap()
        .unwrap();
    let r = client
        .post(format!("{}/login", app.base))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    (client, cookie)
}

/// A large payload (here 400 KB of transcript) is left out of the API's call detail and cut on
/// the dashboard's page, each with a way to the whole of it.
#[tokio::test]
async fn large_payloads_are_linked_not_inlined() {
    let app = TestApp::spawn().await;
    let t = app.tenant("large").await;
    let mut c = call("large");
    c["messages"] = json!((0..40)
        .map(|j| json!({"role": if j % 2 == 0 { "user" } else { "bot" }, "content": "word ".repeat(2000)}))
        .collect::<Vec<_>>());
    let (status, receipt) =
        status_and_json(app.send(&t.key, &batch(t.agent_id, vec![c.clone()])).await).await;
    assert_eq!(status, 202, "{receipt}");
    let call_id = receipt["calls"][0]["call_id"].as_str().unwrap().to_owned();

    let (_, detail) = app.api(&t.key, &format!("/api/v1/calls/{call_id}")).await;
    assert_eq!(
        (&detail["raw"], &detail["raw_truncated"]),
        (&Value::Null, &json!(true))
    );
    assert_eq!(detail["messages"].as_array().unwrap().len(), 40);
    let (status, raw) = app.api(&t.key, detail["raw_url"].as_str().unwrap()).await;
    assert_eq!((status, &raw), (200, &c));
    let (_, small) = app.api(&t.key, "/api/v1/calls?limit=1").await;
    assert!(small["data"].is_array());

    let (client, cookie) = signed_in(&app).await;
    let page = client
        .get(format!(
            "{}/projects/{}/calls/{call_id}",
            app.base, t.project_id
        ))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Download the whole payload"),
        "the page links the payload"
    );
    assert!(
        page.len() < 700_000,
        "the page holds the transcript once and a preview: {}",
        page.len()
    );
    let download = client
        .get(format!(
            "{}/projects/{}/calls/{call_id}/raw",
            app.base, t.project_id
        ))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert!(download.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    assert_eq!(download.json::<Value>().await.unwrap(), c);
}

/// The call page draws the conversation: the counted overlap, the latency before the agent's
/// turn, the failed tool call under its real name; without times it says why there is none.
#[tokio::test]
async fn the_call_page_draws_the_timeline() {
    let app = TestApp::spawn().await;
    let t = app.tenant("timeline").await;
    let mut text = timeline_call("written");
    text["channel"] = json!("text");
    let mut untimed = call("untimed");
    for m in untimed["messages"].as_array_mut().unwrap() {
        let m = m.as_object_mut().unwrap();
        m.remove("start_time");
        m.remove("end_time");
    }
    let body = batch(t.agent_id, vec![timeline_call("spoken"), text, untimed]);
    let (status, receipt) = status_and_json(app.send(&t.key, &body).await).await;
    assert_eq!(status, 202, "{receipt}");
    let (client, cookie) = signed_in(&app).await;
    let page = |n: usize| {
        let id = receipt["calls"][n]["call_id"].as_str().unwrap().to_owned();
        let url = format!("{}/projects/{}/calls/{id}", app.base, t.project_id);
        let request = client.get(url).header("cookie", &cookie);
        async move { request.send().await.unwrap().text().await.unwrap() }
    };

    let spoken = page(0).await;
    let svg = &spoken[spoken.find("<svg").expect("a timeline")..spoken.find("</svg>").unwrap()];
    // 40 s on 960 px from x = 80: 24 px a second. The caller's bar, and the overlap at 11.5 s.
    assert!(
        svg.contains(
            r##"<a href="#msg-5"><rect class="bar caller" x="356.00" y="60" width="36.00""##
        ),
        "{svg}"
    );
    assert!(
        svg.contains(r#"<rect class="overlap" x="356.00" y="22" width="12.00""#)
            && svg.contains("Caller interrupts the agent: 0.50 s overlap"),
        "{svg}"
    );
    assert_eq!(svg.matches("class=\"overlap\"").count(), 1);
    // The agent answers at 9.0 s, 2.5 s after the caller stopped: slow (above 2 s).
    assert!(
        svg.contains(r#"<g class="gap slow"><title>Latency 2.50 s, slow</title>"#)
            && svg.contains(">2.5 s</text>"),
        "{svg}"
    );
    // The untimed tool call sits at the agent's next start (9.0 s), named from data.function.
    assert!(
        svg.contains(r#"<path class="tool failed" d="M296.00,19"#)
            && svg.contains(
                "<title>lookup_order({&quot;order&quot;:&quot;A1&quot;}) → timeout · failed: error: timeout</title>"
            ),
        "{svg}"
    );
    assert!(
        svg.contains(r#"<rect class="silence" x="392.00""#),
        "13 to 30 s"
    );
    // Ticks every 5 s; each line closed, or the browser nests what follows inside it, unseen.
    assert!(
        svg.contains(r#"<text class="tick" x="1040.00" y="112" text-anchor="middle">40 s</text>"#)
    );
    assert_eq!(svg.matches("<line").count(), svg.matches("</line>").count());
    assert!(spoken.contains(r#"<tr id="msg-5" class="overlap" "#));
    assert!(
        spoken.contains("<summary>lookup_order</summary>"),
        "not \"tool\""
    );

    // A text conversation has the timeline too, without overlaps or silences.
    let written = page(1).await;
    assert!(written.contains("<svg") && written.contains(">2.5 s</text>"));
    assert!(!written.contains("class=\"overlap\"") && !written.contains("class=\"silence\""));
    assert!(written.contains("overlaps and silences are not measured"));

    let untimed = page(2).await;
    assert!(untimed.contains("No message times: the timeline needs them."));
    assert!(!untimed.contains("<svg") && untimed.contains(r#"<tr id="msg-1""#));
}

/// The landing page: the range's figures against the range before, the metric failing most
/// with a link to its calls, the failed call, and the refused delivery.
#[tokio::test]
async fn the_overview_shows_the_range_against_the_one_before() {
    let app = TestApp::spawn().await;
    let t = app.tenant("overview").await;
    let r = app
        .client
        .put(format!("{}/api/v1/rubric", app.base))
        .bearer_auth(&t.key)
        .json(&json!({"rules": [{"metric": "call_duration", "op": "lte", "value": 60}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Two calls an hour ago, one too long for the rubric; one eight days ago, in the week before.
    let at = |ago: chrono::TimeDelta, seconds: i64| {
        let start = app.state.app.now() - ago;
        (
            start.to_rfc3339(),
            (start + chrono::TimeDelta::seconds(seconds)).to_rfc3339(),
        )
    };
    let mut calls = Vec::new();
    for (id, ago, seconds) in [
        ("short-call", chrono::TimeDelta::hours(1), 30),
        ("long-call", chrono::TimeDelta::hours(1), 128),
        ("last-week", chrono::TimeDelta::days(8), 30),
    ] {
        let (start, end) = at(ago, seconds);
        let mut c = call(id);
        c["startedAt"] = json!(start);
        c["endedAt"] = json!(end);
        calls.push(c);
    }
    let (status, _) = status_and_json(app.send(&t.key, &batch(t.agent_id, calls)).await).await;
    assert_eq!(status, 202);
    app.send(&t.key, &json!({"agent_id": "oops", "calls": []}))
        .await;
    app.settle().await;

    let (client, cookie) = signed_in(&app).await;
    let html = client
        .get(format!("{}/projects/{}?range=7d", app.base, t.project_id))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let section = |id: &str| {
        let at = html
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no #{id}"));
        html[at..at + html[at..].find("</table>").unwrap_or(html.len() - at)].to_owned()
    };
    let cards = &html[html.find("id=\"overview-cards\"").unwrap()..];
    let cards = &cards[..cards.find("<h2>").unwrap()];
    // 2 calls now against 1 before (+100%); a pass rate of 50% against 100% (−50 points).
    assert!(cards.contains(">2<") && cards.contains("+100%"), "{cards}");
    assert!(
        cards.contains("50%") && cards.contains("-50 pts"),
        "{cards}"
    );
    assert!(cards.contains("<svg class=\"sparkline\""), "{cards}");
    let failing = section("failing");
    assert!(
        failing.contains("calls?failing_metric=call_duration"),
        "{failing}"
    );
    assert!(section("failed-calls").contains("long-call"));
    assert!(!section("failed-calls").contains("short-call"));
    assert!(html.contains("1 request refused in this range"), "{html}");
    // For one agent: the range links keep it.
    let html = client
        .get(format!(
            "{}/projects/{}?range=7d&agent_id={}",
            app.base, t.project_id, t.agent_id
        ))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(&format!("?range=30d&amp;agent_id={}", t.agent_id)),
        "{html}"
    );
}

/// A signed-in dashboard session for page tests: GETs that must answer 200, form POSTs.
pub(crate) struct Session {
    client: reqwest::Client,
    cookie: String,
    base: String,
}

impl Session {
    pub(crate) async fn start(app: &TestApp) -> Self {
        let (client, cookie) = signed_in(app).await;
        Self {
            client,
            cookie,
            base: app.base.clone(),
        }
    }

    /// The page at `path`, which must answer 200.
    pub(crate) async fn page(&self, path: &str) -> String {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.text().await.unwrap()
    }

    /// Posts `form` to `path`: the status and the body.
    pub(crate) async fn submit(&self, path: &str, form: &[(&str, String)]) -> (u16, String) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(form)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}
