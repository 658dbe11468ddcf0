//! Alert rules driven by a stream of evaluated calls on the server's clock (moved by hand, the
//! checker run by hand): each kind opens once, the cool-down holds a flapping rule, a rule
//! resolves; Slack (a fake on port 0) gets a readable message, the project's webhook endpoint
//! gets `alert.opened` and `alert.resolved`.

use chrono::TimeDelta;
use serde_json::{json, Value};
use std::time::Duration;

use crate::common::*;
use crate::outbound::{call_api, endpoint, receiver, settings, wait_for};

/// A call of `seconds` (start fixed, end after it), sent and evaluated; our id.
async fn evaluated(app: &TestApp, t: &Tenant, id: &str, seconds: i64) -> String {
    let mut c = call(id);
    let start = chrono::DateTime::parse_from_rfc3339("2025-10-15T09:22:21Z").unwrap();
    c["endedAt"] = json!((start + TimeDelta::seconds(seconds)).to_rfc3339());
    let (status, receipt) =
        status_and_json(app.send(&t.key, &batch(t.agent_id, vec![c])).await).await;
    assert_eq!(status, 202, "{receipt}");
    app.settle().await;
    app.clock.advance(TimeDelta::seconds(1));
    receipt["calls"][0]["call_id"].as_str().unwrap().to_owned()
}

async fn round(app: &TestApp) -> callgrade_app::alerts::Round {
    callgrade_app::alerts::check_all(&app.state.app)
        .await
        .unwrap()
}

async fn rule(app: &TestApp, t: &Tenant, body: Value) -> i64 {
    let (status, created) = call_api(app, &t.key, "POST", "/api/v1/alert-rules", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_i64().unwrap()
}

async fn firing(app: &TestApp, t: &Tenant) -> Vec<String> {
    let (_, list) = call_api(app, &t.key, "GET", "/api/v1/alert-rules", None).await;
    let mut names: Vec<String> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["firing"] == true)
        .map(|r| r["rule"]["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn each_rule_kind_fires_once_holds_its_cool_down_and_resolves() {
    let mut s = settings();
    s.app.alert_interval = Duration::from_secs(24 * 3600); // checked by hand below
    let app = TestApp::spawn_with(s).await;
    let t = app.tenant("alerting").await;
    let (base, received) = receiver().await;
    endpoint(
        &app,
        &t,
        &format!("{base}/hook"),
        &["alert.opened", "alert.resolved"],
    )
    .await;
    // A call over 200 s fails the rubric.
    let (status, _) = call_api(
        &app,
        &t.key,
        "PUT",
        "/api/v1/rubric",
        Some(json!({"rules": [{"metric": "call_duration", "op": "lte", "value": 200}]})),
    )
    .await;
    assert!(status == 200 || status == 204, "{status}");
    let failure = rule(
        &app,
        &t,
        json!({"name": "failing calls", "kind": "failure",
        "cooldown_minutes": 30, "slack_webhook_url": format!("{base}/hook")}),
    )
    .await;
    rule(
        &app,
        &t,
        json!({"name": "long calls", "kind": "threshold", "metric": "call_duration",
        "operator": "gt", "value": 300, "window": 3, "min_breaches": 2}),
    )
    .await;
    rule(
        &app,
        &t,
        json!({"name": "calls drift longer", "kind": "trend", "metric": "call_duration",
        "preset": "aggressive", "window": 4, "direction": "increase"}),
    )
    .await;
    rule(
        &app,
        &t,
        json!({"name": "sender broke", "kind": "no_calls", "min_calls": 1, "minutes": 10}),
    )
    .await;

    // Mistakes are named.
    let (status, err) = call_api(
        &app,
        &t.key,
        "POST",
        "/api/v1/alert-rules",
        Some(json!({"name": "x", "kind": "threshold", "operator": "gt"})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(error_paths(&err).contains(&"metric".to_owned()), "{err}");
    let (status, _) = call_api(
        &app,
        &t.key,
        "POST",
        "/api/v1/alert-rules",
        Some(json!({"name": "failing calls", "kind": "failure"})),
    )
    .await;
    assert_eq!(status, 409, "a name is taken once");

    // Ordinary calls: nothing fires.
    for (i, secs) in [100, 110, 120, 100, 110, 120, 100, 110, 120, 100]
        .iter()
        .enumerate()
    {
        evaluated(&app, &t, &format!("ok-{i}"), *secs).await;
    }
    let r = round(&app).await;
    assert_eq!((r.checked, r.opened), (4, 0), "{r:?}");
    assert!(firing(&app, &t).await.is_empty());

    // A call fails the rubric, and is far longer than the others: failure and trend open.
    let bad = evaluated(&app, &t, "bad-1", 250).await;
    assert_eq!(round(&app).await.opened, 2);
    assert_eq!(
        firing(&app, &t).await,
        ["calls drift longer", "failing calls"]
    );
    // Checked again, nothing new: one page per incident.
    assert_eq!(round(&app).await.opened, 0);

    // Two calls over 300 s: the threshold (2 of the last 3) opens too.
    evaluated(&app, &t, "long-1", 400).await;
    evaluated(&app, &t, "long-2", 400).await;
    assert_eq!(round(&app).await.opened, 1);
    assert_eq!(
        firing(&app, &t).await,
        ["calls drift longer", "failing calls", "long calls"]
    );

    // A passing call resolves the failure alert; the next failure inside the cool-down is held,
    // and it leaves one long call in the last three: the threshold resolves.
    evaluated(&app, &t, "ok-again", 100).await;
    let r = round(&app).await;
    assert_eq!((r.opened, r.resolved), (0, 1), "{r:?}");
    evaluated(&app, &t, "bad-2", 250).await;
    let r = round(&app).await;
    assert_eq!((r.opened, r.suppressed, r.resolved), (0, 1, 1), "{r:?}");

    // Past the cool-down it opens again; with no call for 31 minutes, so does "sender broke".
    app.clock.advance(TimeDelta::minutes(31));
    assert_eq!(round(&app).await.opened, 2);
    assert_eq!(
        firing(&app, &t).await,
        ["calls drift longer", "failing calls", "sender broke"]
    );

    // The failure rule's history: two alerts, the first resolved, caused by the failing call.
    let (_, history) = call_api(
        &app,
        &t.key,
        "GET",
        &format!("/api/v1/alerts?rule_id={failure}"),
        None,
    )
    .await;
    let alerts = history["data"].as_array().unwrap();
    assert_eq!(alerts.len(), 2, "{history}");
    assert!(alerts[0]["resolved_at"].is_null());
    assert!(alerts[1]["resolved_at"].is_string());
    assert_eq!(alerts[1]["call_ids"], json!([bad]));
    assert_eq!(alerts[1]["value"], 0.0, "the rubric's verdict: failed");
    let (_, open) = call_api(&app, &t.key, "GET", "/api/v1/alerts?state=firing", None).await;
    assert_eq!(open["data"].as_array().unwrap().len(), 3);

    // Slack heard of the failure rule only (the others name no Slack webhook): fired, resolved,
    // fired, each readable, with a link.
    let slack: Vec<String> = received
        .got()
        .into_iter()
        .filter_map(|(_, b)| b["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(slack.len(), 3, "{slack:?}");
    assert!(
        slack[0].contains("*failing calls* is firing") && slack[0].contains("failed the rubric"),
        "{}",
        slack[0]
    );
    assert!(
        slack[1].contains("*failing calls* resolved"),
        "{}",
        slack[1]
    );
    assert!(slack[0].contains(&format!("/projects/{}/alerts|", t.project_id)));

    // The webhook endpoint got every opening and the resolution, signed like every event.
    wait_for("the alert events", || async {
        received.of_type("alert.opened").len() == 5 && received.of_type("alert.resolved").len() == 2
    })
    .await;
    let (_, opened) = received.of_type("alert.opened").remove(0);
    assert_eq!(opened["data"]["rule_id"], failure);
    assert_eq!(opened["data"]["state"], "firing");
    assert_eq!(opened["data"]["kind"], "failure");

    // Deleting a rule takes its alerts with it; another project sees none of this.
    let other = app.tenant("quiet").await;
    let (status, _) = call_api(
        &app,
        &other.key,
        "GET",
        &format!("/api/v1/alert-rules/{failure}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call_api(
        &app,
        &t.key,
        "DELETE",
        &format!("/api/v1/alert-rules/{failure}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call_api(
        &app,
        &t.key,
        "GET",
        &format!("/api/v1/alerts?rule_id={failure}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

/// The dashboard's Alerts page: a rule added from the form (what was typed kept on an error),
/// its state and history; a firing alert on the project's overview.
#[tokio::test]
async fn the_dashboard_adds_rules_and_shows_what_fires() {
    let mut s = settings();
    s.app.alert_interval = Duration::from_secs(24 * 3600);
    let app = TestApp::spawn_with(s).await;
    let t = app.tenant("dashboard-alerts").await;
    let session = crate::dashboard::Session::start(&app).await;
    let page = format!("/projects/{}/alerts", t.project_id);
    let html = session.page(&page).await;
    assert!(html.contains("No rule yet"));
    let csrf = crate::dashboard::csrf_of(&html);
    let post = |form: Vec<(&'static str, &'static str)>| {
        let mut form: Vec<(&str, String)> =
            form.into_iter().map(|(k, v)| (k, v.to_owned())).collect();
        form.push(("_csrf", csrf.clone()));
        let (session, page) = (&session, &page);
        async move { session.submit(page, &form).await }
    };
    // A threshold without its bound: refused, with the reason, the name kept.
    let (status, html) = post(vec![
        ("name", "slow agent"),
        ("kind", "threshold"),
        ("metric", "call_duration"),
        ("operator", "gt"),
        ("calls", "both"),
        ("preset", "balanced"),
    ])
    .await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Not saved") && html.contains("value"),
        "{html}"
    );
    assert!(html.contains(r#"value="slow agent""#));
    let (status, _) = post(vec![
        ("name", "slow agent"),
        ("kind", "threshold"),
        ("metric", "call_duration"),
        ("operator", "gt"),
        ("value", "60"),
        ("window", "1"),
        ("calls", "both"),
        ("preset", "balanced"),
        ("direction", "either"),
    ])
    .await;
    assert_eq!(status, 303);
    let rules = app.store.list_rules(t.project_id).await.unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(
        rules[0].rule.kind,
        callgrade_core::alerts::RuleKind::Threshold {
            bound: callgrade_core::alerts::Bound::Gt { value: 60.0 },
            window: 1,
            min_breaches: 1
        },
        "the trend's fields were left out"
    );

    evaluated(&app, &t, "long", 129).await;
    assert_eq!(round(&app).await.opened, 1);
    let html = session.page(&page).await;
    assert!(
        html.contains("firing")
            && html.contains("1 of the last 1 values of call_duration above 60"),
        "{html}"
    );
    let overview = session.page(&format!("/projects/{}", t.project_id)).await;
    assert!(
        overview.contains("Firing alerts") && overview.contains("slow agent"),
        "{overview}"
    );
    let metrics = app
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let firing = format!(
        "callgrade_alert_rules{{project=\"{}\",state=\"firing\"}} 1\n",
        t.project_id
    );
    assert!(metrics.contains(&firing), "{metrics}");
}
