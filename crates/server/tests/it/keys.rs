//! Keys with scopes: created, listed without secrets, rotated with an overlap, revoked; and
//! every route of the OpenAPI document allowing exactly the scopes of the table below.

use callgrade_app::Clock;
use chrono::TimeDelta;
use serde_json::{json, Value};
use std::collections::BTreeSet;

use crate::common::*;
use crate::outbound::call_api;

/// The scope each operation needs, written out route by route (not derived from the server's
/// rule), so a route whose protection changes, or a new route, fails here until it is
/// decided on purpose.
const SCOPES: &[(&str, &str, &str)] = &[
    (
        "post",
        "/test_framework/custom-provider-transcript-webhook/",
        "ingest",
    ),
    ("post", "/webhooks/custom/{project_id}", "ingest"),
    ("post", "/observability/v1/observe/", "ingest"),
    ("post", "/observability/v1/vapi/observe/", "ingest"),
    ("post", "/observability/v1/retell/observe/", "ingest"),
    ("post", "/observability/v1/elevenlabs/observe/", "ingest"),
    ("post", "/v1/traces", "ingest"),
    ("patch", "/observability/v1/call-logs/{id}/", "write"),
    ("get", "/api/v1/calls", "read"),
    ("get", "/api/v1/calls/{call_id}", "read"),
    ("patch", "/api/v1/calls/{call_id}", "write"),
    ("get", "/api/v1/calls/{call_id}/raw", "read"),
    ("get", "/api/v1/calls/{call_id}/recording", "read"),
    ("get", "/api/v1/calls/{call_id}/trace", "read"),
    ("post", "/api/v1/calls/{call_id}/evaluate", "write"),
    ("get", "/api/v1/deliveries", "read"),
    ("get", "/api/v1/deliveries/{id}", "read"),
    ("get", "/api/v1/project", "read"),
    ("patch", "/api/v1/project", "write"),
    ("get", "/api/v1/vendor-secrets", "read"),
    ("put", "/api/v1/vendor-secrets/{vendor}", "admin"),
    ("delete", "/api/v1/vendor-secrets/{vendor}", "admin"),
    ("post", "/api/v1/keys", "admin"),
    ("get", "/api/v1/keys", "admin"),
    ("get", "/api/v1/keys/{id}", "admin"),
    ("delete", "/api/v1/keys/{id}", "admin"),
    ("post", "/api/v1/keys/{id}/rotate", "admin"),
    ("post", "/api/v1/scenarios", "write"),
    ("get", "/api/v1/scenarios", "read"),
    ("get", "/api/v1/scenarios/{id}", "read"),
    ("post", "/api/v1/agents", "write"),
    ("get", "/api/v1/agents", "read"),
    ("get", "/api/v1/agents/{id}", "read"),
    ("patch", "/api/v1/agents/{id}", "write"),
    ("get", "/api/v1/simulator", "read"),
    ("put", "/api/v1/simulator", "write"),
    ("get", "/api/v1/results/{id}/gate", "read"),
    ("post", "/api/v1/results/{id}/rerun-failed", "write"),
    ("post", "/api/v1/results", "write"),
    ("get", "/api/v1/results/{id}", "read"),
    ("get", "/api/v1/runs", "read"),
    ("get", "/api/v1/runs/{id}", "read"),
    ("post", "/api/v1/runs/{id}/call-started", "write"),
    ("post", "/api/v1/runs/{id}/call-ended", "write"),
    ("post", "/api/v1/runs/{id}/cancel", "write"),
    ("post", "/api/v1/runs/{id}/attach", "write"),
    ("get", "/api/v1/metrics", "read"),
    ("post", "/api/v1/metrics", "write"),
    ("post", "/api/v1/metrics/apply", "write"),
    ("get", "/api/v1/metrics/summary", "read"),
    ("post", "/api/v1/metrics/try", "write"),
    ("get", "/api/v1/metrics/{id}", "read"),
    ("put", "/api/v1/metrics/{id}", "write"),
    ("delete", "/api/v1/metrics/{id}", "write"),
    ("get", "/api/v1/rubric", "read"),
    ("put", "/api/v1/rubric", "write"),
    ("get", "/api/v1/judge", "read"),
    ("put", "/api/v1/judge", "write"),
    ("post", "/api/v1/evaluations/rerun", "write"),
    ("get", "/api/v1/jobs", "read"),
    ("post", "/api/v1/webhook-endpoints", "write"),
    ("get", "/api/v1/webhook-endpoints", "read"),
    ("get", "/api/v1/webhook-endpoints/{id}", "read"),
    ("patch", "/api/v1/webhook-endpoints/{id}", "write"),
    ("delete", "/api/v1/webhook-endpoints/{id}", "write"),
    (
        "post",
        "/api/v1/webhook-endpoints/{id}/rotate-secret",
        "write",
    ),
    ("post", "/api/v1/webhook-endpoints/{id}/test", "write"),
    ("get", "/api/v1/webhook-deliveries", "read"),
    ("post", "/api/v1/webhook-deliveries/replay-failed", "write"),
    ("get", "/api/v1/webhook-deliveries/{id}", "read"),
    ("post", "/api/v1/webhook-deliveries/{id}/replay", "write"),
    ("post", "/api/v1/alert-rules", "write"),
    ("get", "/api/v1/alert-rules", "read"),
    ("get", "/api/v1/alert-rules/{id}", "read"),
    ("put", "/api/v1/alert-rules/{id}", "write"),
    ("delete", "/api/v1/alert-rules/{id}", "write"),
    ("get", "/api/v1/alerts", "read"),
];

/// Routes that take no key: health, and the vendors' per-project URLs (signed by the vendor).
const PUBLIC: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("post", "/webhooks/vapi/{project_id}"),
    ("post", "/webhooks/retell/{project_id}"),
    ("post", "/webhooks/elevenlabs/{project_id}"),
];

/// Whether a key holding only `held` may call a route that needs `needed`.
fn allowed(held: &str, needed: &str) -> bool {
    held == needed || held == "admin" || (held == "write" && needed == "read")
}

async fn create_key(app: &TestApp, admin_key: &str, body: Value) -> (u16, Value) {
    call_api(app, admin_key, "POST", "/api/v1/keys", Some(body)).await
}

#[tokio::test]
async fn every_route_allows_exactly_the_scopes_of_the_table() {
    let app = TestApp::spawn().await;
    let t = app.tenant("scoped").await;
    let mut keys = Vec::new();
    for scope in ["ingest", "read", "write", "admin"] {
        let (status, key) = create_key(
            &app,
            &t.key,
            json!({"name": format!("only {scope}"), "scopes": [scope]}),
        )
        .await;
        assert_eq!(status, 201, "{key}");
        keys.push((scope, key["key"].as_str().unwrap().to_owned()));
    }
    // A key for the key routes' `{id}` to revoke and rotate, not one the walk uses.
    let (_, spare) = create_key(&app, &t.key, json!({"name": "spare", "scopes": ["read"]})).await;

    let spec = serde_json::to_value(callgrade_server::openapi()).unwrap();
    let mut documented = BTreeSet::new();
    let (mut let_through, mut refused) = (0, 0);
    for (path, methods) in spec["paths"].as_object().unwrap() {
        for (method, operation) in methods.as_object().unwrap() {
            documented.insert((method.clone(), path.clone()));
            let public = PUBLIC.contains(&(method.as_str(), path.as_str()));
            let Some(&(_, _, needed)) = SCOPES.iter().find(|(m, p, _)| *m == method && *p == path)
            else {
                assert!(public, "{method} {path} is in neither table");
                assert!(operation.get("security").is_none(), "{method} {path}");
                continue;
            };
            assert_eq!(
                operation["x-required-scope"], needed,
                "{method} {path}: the document states another scope"
            );
            assert_eq!(
                operation["security"][0]
                    .as_object()
                    .unwrap()
                    .values()
                    .next()
                    .unwrap(),
                &json!([needed])
            );
            let concrete = path
                .replace("{project_id}", &t.project_id.to_string())
                .replace("{id}", &spare["id"].to_string())
                .replace("{call_id}", "no-such-call")
                .replace("{vendor}", "vapi");
            for (held, key) in &keys {
                let req = app
                    .client
                    .request(
                        method.to_uppercase().parse().unwrap(),
                        format!("{}{concrete}", app.base),
                    )
                    .header("X-CEKURA-API-KEY", key);
                let req = match method.as_str() {
                    "get" | "delete" => req,
                    _ => req.json(&json!({})),
                };
                let r = req.send().await.unwrap();
                let status = r.status().as_u16();
                let text = r.text().await.unwrap();
                if allowed(held, needed) {
                    let_through += 1;
                    assert!(
                        !matches!(status, 401 | 403),
                        "{method} {path} with a {held} key: {status} {text}"
                    );
                } else {
                    refused += 1;
                    assert_eq!(status, 403, "{method} {path} with a {held} key: {text}");
                    let body: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(body["error"], "missing_scope", "{text}");
                    let detail = body["detail"].as_str().unwrap();
                    assert!(
                        detail.contains(&format!("`{needed}`"))
                            && detail.contains(&format!("only {held}")),
                        "{method} {path}: {detail}"
                    );
                    assert!(!detail.contains(key.as_str()), "the key is never repeated");
                }
            }
        }
    }
    let tabled: BTreeSet<_> = SCOPES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .chain(PUBLIC.iter().map(|(m, p)| (m.to_string(), p.to_string())))
        .collect();
    assert_eq!(
        tabled, documented,
        "the tables list exactly the documented operations"
    );
    assert_eq!(let_through + refused, SCOPES.len() * 4);
    let expected_refusals = SCOPES
        .iter()
        .flat_map(|(_, _, needed)| keys.iter().filter(|(held, _)| !allowed(held, needed)))
        .count();
    assert_eq!(refused, expected_refusals, "{let_through} let through");
}

#[tokio::test]
async fn keys_are_created_rotated_with_an_overlap_and_revoked() {
    let app = TestApp::spawn().await;
    let t = app.tenant("keys").await;
    let call = |id: &str| {
        json!({"agent_id": t.agent_id, "calls": [{"id": id, "startedAt": "2025-10-15T09:22:21Z",
            "endedAt": "2025-10-15T09:23:30Z", "messages": [{"role": "bot", "content": "Hi"}]}]})
    };

    // An ingest key sends calls and reads nothing; its secret is shown once.
    let expires = (app.clock.now() + TimeDelta::days(30)).to_rfc3339();
    let (status, sender) = create_key(
        &app,
        &t.key,
        json!({"name": "production sender", "scopes": ["ingest"], "expires_at": expires}),
    )
    .await;
    assert_eq!(status, 201, "{sender}");
    let sender_key = sender["key"].as_str().unwrap().to_owned();
    assert!(sender_key.starts_with(sender["key_prefix"].as_str().unwrap()));
    assert_eq!(sender["scopes"], json!(["ingest"]));
    assert_eq!(app.send(&sender_key, &call("c1")).await.status(), 202);
    let (status, err) = app.api(&sender_key, "/api/v1/calls").await;
    assert_eq!(
        (status, err["error"].as_str()),
        (403, Some("missing_scope")),
        "{err}"
    );

    // The list never holds a secret; use is recorded.
    let mut used = Value::Null;
    for _ in 0..100 {
        let (status, list) = app.api(&t.key, "/api/v1/keys").await;
        assert_eq!(status, 200);
        assert!(!list.to_string().contains(&sender_key) && !list.to_string().contains("\"key\""));
        used = list["data"][0]["last_used_at"].clone();
        if !used.is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(used.is_string(), "the sender's use is recorded");

    // Problems are named; nothing is created.
    let (status, err) = create_key(
        &app,
        &t.key,
        json!({"name": "", "scopes": ["owner"], "expires_at": "2020-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    let paths: Vec<_> = err["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["expires_at", "name", "scopes[0]"], "{err}");
    let (_, list) = app.api(&t.key, "/api/v1/keys").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);

    // Rotation with a 60-minute overlap: both keys work, then only the new one.
    let id = sender["id"].as_i64().unwrap();
    let rotate = |query: &'static str| {
        let path = format!("/api/v1/keys/{id}/rotate{query}");
        let key = t.key.clone();
        let app = &app;
        async move { call_api(app, &key, "POST", &path, None).await }
    };
    let (status, rotated) = rotate("?overlap_minutes=60").await;
    assert_eq!(status, 201, "{rotated}");
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    assert_eq!(
        (rotated["name"].as_str(), &rotated["scopes"]),
        (Some("production sender"), &json!(["ingest"]))
    );
    assert_eq!(
        rotated["expires_at"], sender["expires_at"],
        "the successor keeps the expiry"
    );
    assert_eq!(app.send(&sender_key, &call("c2")).await.status(), 202);
    assert_eq!(app.send(&new_key, &call("c3")).await.status(), 202);
    app.clock.advance(TimeDelta::minutes(61));
    let r = app.send(&sender_key, &call("c4")).await;
    assert_eq!(r.status(), 401);
    assert_eq!(app.send(&new_key, &call("c4")).await.status(), 202);
    let (status, _) = rotate("").await;
    assert_eq!(status, 409, "an expired key is not rotated");
    let (status, _) = rotate("?overlap_minutes=10081").await;
    assert_eq!(status, 400);

    // Revocation is immediate; the key stays listed as revoked.
    let new_id = rotated["id"].as_i64().unwrap();
    let (status, revoked) = call_api(
        &app,
        &t.key,
        "DELETE",
        &format!("/api/v1/keys/{new_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["revoked_at"].is_string());
    assert_eq!(app.send(&new_key, &call("c5")).await.status(), 401);

    // An expiry passes on the server's clock; keys of another project are not found.
    app.clock.advance(TimeDelta::days(30));
    let other = app.tenant("other").await;
    let (status, _) = app.api(&other.key, &format!("/api/v1/keys/{id}")).await;
    assert_eq!(status, 404);
    let (status, _) = app.api(&t.key, "/api/v1/project").await;
    assert_eq!(status, 200, "the project's first key does not expire");
}

#[tokio::test]
async fn the_dashboard_creates_rotates_and_revokes_keys() {
    use crate::dashboard::{csrf_of, Session};
    let app = TestApp::spawn().await;
    let t = app.tenant("dash").await;
    let s = Session::start(&app).await;
    let setup = format!("/projects/{}/setup", t.project_id);
    let page = s.page(&setup).await;
    assert!(
        page.contains("API keys") && page.contains("default"),
        "{page}"
    );
    let csrf = csrf_of(&page);

    // A sender key from the form: two scopes ticked, an expiry in days; shown once.
    let form = [
        ("_csrf", csrf.clone()),
        ("name", "edge sender".into()),
        ("scope", "ingest".into()),
        ("scope", "read".into()),
        ("expires_in_days", "7".into()),
    ];
    let (status, shown) = s
        .submit(&format!("/projects/{}/keys", t.project_id), &form)
        .await;
    assert_eq!(status, 200, "{shown}");
    let at = shown.find("id=\"api-key\">cg_").expect("the key is shown") + 13;
    let key = shown[at..at + 43].to_owned();
    let grant = app.store.authenticate(&key).await.unwrap().unwrap();
    assert_eq!(grant.key.scopes.names(), ["ingest", "read"]);
    let expires = grant.key.expires_at.unwrap() - app.clock.now();
    assert!(
        (expires - TimeDelta::days(7)).num_milliseconds().abs() <= 1,
        "{expires}"
    );
    let page = s.page(&setup).await;
    assert!(page.contains("edge sender") && page.contains("ingest, read"));
    assert!(!page.contains(&key), "the list never shows a key");

    // No scope ticked: the problem is named and nothing is created.
    let form = [("_csrf", csrf.clone()), ("name", "nothing".into())];
    let (status, refused) = s
        .submit(&format!("/projects/{}/keys", t.project_id), &form)
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused.contains("at least one scope"), "{refused}");
    assert_eq!(app.store.list_keys(t.project_id).await.unwrap().len(), 2);

    // Rotate with an hour's overlap, then revoke the new key.
    let id = grant.key.id;
    let form = [("_csrf", csrf.clone()), ("overlap_minutes", "60".into())];
    let (status, rotated) = s
        .submit(
            &format!("/projects/{}/keys/{id}/rotate", t.project_id),
            &form,
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let at = rotated.find("id=\"api-key\">cg_").unwrap() + 13;
    let new_key = rotated[at..at + 43].to_owned();
    let old = app.store.authenticate(&key).await.unwrap().unwrap();
    let until = app.clock.now() + TimeDelta::minutes(60);
    assert_eq!(
        old.key.expires_at.map(|at| at.timestamp_millis()),
        Some(until.timestamp_millis())
    );
    let new_id = app
        .store
        .authenticate(&new_key)
        .await
        .unwrap()
        .unwrap()
        .key
        .id;
    let (status, _) = s
        .submit(
            &format!("/projects/{}/keys/{new_id}/revoke", t.project_id),
            &[("_csrf", csrf)],
        )
        .await;
    assert_eq!(status, 303);
    assert!(app.store.authenticate(&new_key).await.unwrap().is_none());
}
