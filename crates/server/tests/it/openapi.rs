//! The OpenAPI document is true: it names what it references, states the rules the server
//! enforces, and the server reads every request it admits.

use callgrade_core::{validate_batch, Limits, CALL_ID_MAX_CHARS, TRACE_ID_MAX_CHARS};
use serde_json::{json, Value};

use crate::common::*;

fn document() -> Value {
    serde_json::to_value(callgrade_server::openapi()).unwrap()
}

/// The served document is the one generated from the handlers, and it describes every route.
#[tokio::test]
async fn openapi_document_describes_every_route() {
    let app = TestApp::spawn().await;
    let (status, spec) =
        status_and_json(app.get("/api/v1/openapi.json").send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(spec, document());
    let paths = spec["paths"].as_object().unwrap();
    for (path, method) in [
        (
            "/test_framework/custom-provider-transcript-webhook/",
            "post",
        ),
        ("/webhooks/custom/{project_id}", "post"),
        ("/api/v1/calls", "get"),
        ("/api/v1/calls/{call_id}", "get"),
        ("/api/v1/deliveries", "get"),
        ("/api/v1/deliveries/{id}", "get"),
        ("/api/v1/project", "get"),
        ("/api/v1/project", "patch"),
        ("/api/v1/scenarios", "post"),
        ("/api/v1/scenarios", "get"),
        ("/api/v1/scenarios/{id}", "get"),
        ("/api/v1/results", "post"),
        ("/api/v1/results/{id}", "get"),
        ("/api/v1/runs", "get"),
        ("/api/v1/runs/{id}", "get"),
        ("/api/v1/runs/{id}/call-started", "post"),
        ("/api/v1/runs/{id}/call-ended", "post"),
        ("/api/v1/runs/{id}/cancel", "post"),
        ("/api/v1/runs/{id}/attach", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} is not documented"
        );
    }
    let schemes = &spec["components"]["securitySchemes"];
    assert_eq!(schemes["api_key"]["name"], "X-CEKURA-API-KEY");
    for schema in [
        "Receipt",
        "CallDetail",
        "ErrorBody",
        "DeliverySummary",
        "Run",
        "TestResult",
        "Scenario",
    ] {
        assert!(
            spec["components"]["schemas"][schema].is_object(),
            "{schema}"
        );
    }
}

/// The OpenAPI document is a contract: any change to it shows in review as a diff of
/// `tests/openapi.json`. After an intended change, regenerate the file with
/// `CALLGRADE_UPDATE_OPENAPI=1 cargo test -p callgrade-server --test it openapi`.
#[test]
fn openapi_snapshot() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openapi.json");
    let current = document();
    // serde_json's maps are ordered by key, so the text is stable.
    let text = serde_json::to_string_pretty(&current).unwrap() + "\n";
    if std::env::var_os("CALLGRADE_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let snapshot = std::fs::read_to_string(&path).unwrap();
    if snapshot != text {
        let first = snapshot
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(snapshot.lines().count().min(text.lines().count()));
        panic!(
            "the OpenAPI document changed (first difference at line {}: {:?} is now {:?}); if \
             intended, regenerate tests/openapi.json with CALLGRADE_UPDATE_OPENAPI=1",
            first + 1,
            snapshot.lines().nth(first).unwrap_or(""),
            text.lines().nth(first).unwrap_or("")
        );
    }
}

/// Every `$ref` names a schema of the document.
#[test]
fn every_reference_resolves() {
    fn references(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("$ref", Value::String(target)) => found.push(target.clone()),
                        _ => references(v, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| references(v, found)),
            _ => {}
        }
    }
    let spec = document();
    let schemas = spec["components"]["schemas"].as_object().unwrap();
    let mut found = Vec::new();
    references(&spec, &mut found);
    assert!(found.len() > 50, "{found:?}");
    let dangling: Vec<&String> = found
        .iter()
        .filter(|target| {
            target
                .strip_prefix("#/components/schemas/")
                .is_none_or(|name| !schemas.contains_key(name))
        })
        .collect();
    assert!(dangling.is_empty(), "dangling references: {dangling:?}");
}

/// A query or path parameter that does not parse gets the one error body, naming the parameter
/// and what it takes, in the words of its documented schema.
#[tokio::test]
async fn parameter_errors_name_the_parameter_and_what_it_takes() {
    let app = TestApp::spawn().await;
    let t = app.tenant("parameters").await;
    for (path, detail) in [
        (
            "/api/v1/calls?agent_id=99999999999999999999",
            r#"query parameter agent_id must be an integer that fits in 64 bits (got "99999999999999999999")"#,
        ),
        (
            "/api/v1/scenarios?agent_id=seven",
            r#"query parameter agent_id must be an integer that fits in 64 bits (got "seven")"#,
        ),
        (
            "/api/v1/calls?limit=many",
            r#"query parameter limit must be an integer from 1 to 200 (got "many")"#,
        ),
        (
            "/api/v1/runs?limit=0",
            r#"query parameter limit must be an integer from 1 to 200 (got "0")"#,
        ),
        (
            "/api/v1/deliveries?outcome=lost",
            r#"query parameter outcome must be one of accepted, rejected (got "lost")"#,
        ),
        (
            "/api/v1/runs?status=done",
            r#"query parameter status must be one of pending, in_progress, awaiting_transcript, evaluating, completed, failed, timeout, cancelled (got "done")"#,
        ),
        (
            "/api/v1/calls?success=yes",
            r#"query parameter success must be true or false (got "yes")"#,
        ),
        (
            "/api/v1/metrics/summary?started_from=yesterday",
            r#"query parameter started_from must be an RFC 3339 date-time with its zone, such as 2025-10-15T09:22:21Z (got "yesterday")"#,
        ),
        (
            "/api/v1/calls?limit=1&limit=2",
            "query parameter limit is given 2 times; give it once",
        ),
        (
            "/api/v1/calls/%FF",
            "path parameter call_id is not UTF-8 once percent-decoded",
        ),
    ] {
        let (status, body) = app.api(&t.key, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"], "bad_request", "{path}: {body}");
        assert_eq!(body["detail"], detail, "{path}");
        assert_eq!(body["errors"], json!([]), "{path}");
    }
    // JSON Schema's integers include 2.0, in a query too.
    let (status, page) = app.api(&t.key, "/api/v1/calls?limit=2.0").await;
    assert_eq!(status, 200, "{page}");
}

/// Bodies are read as the document describes them: JSON Schema's integers include `2.0`, a
/// struct is an object and never an array, and an optional body may be null.
#[tokio::test]
async fn bodies_are_read_as_the_document_describes_them() {
    let app = TestApp::spawn().await;
    let t = app.tenant("bodies").await;
    let patch = |body: &str| {
        app.client
            .patch(format!("{}/api/v1/project", app.base))
            .bearer_auth(&t.key)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };
    let (status, project) = status_and_json(
        patch(r#"{"listening_window_seconds": 600.0}"#)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{project}");
    assert_eq!(project["listening_window_seconds"], 600);
    let (status, err) = status_and_json(patch("[600, null]").await.unwrap()).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["detail"], "the body must be a JSON object");

    let (status, queued) = status_and_json(
        app.post("/api/v1/evaluations/rerun")
            .bearer_auth(&t.key)
            .header("content-type", "application/json")
            .body("null")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{queued}");

    let (status, err) = status_and_json(
        app.post("/api/v1/scenarios")
            .bearer_auth(&t.key)
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (415, Some("unsupported_media_type"))
    );
}

/// The webhook's schema and its validator state one contract: the schema's limits are the
/// validator's, every field it requires the validator requires, and every other it leaves out.
#[test]
fn webhook_schema_states_the_validators_rules() {
    let spec = document();
    let schemas = &spec["components"]["schemas"];
    let limits = Limits::default();
    assert_eq!(
        schemas["WebhookBody"]["properties"]["calls"]["maxItems"],
        limits.max_calls_per_request
    );
    let call_fields = &schemas["WebhookCall"]["properties"];
    assert_eq!(
        call_fields["id"]["oneOf"][0]["maxLength"],
        CALL_ID_MAX_CHARS
    );
    assert_eq!(call_fields["trace_id"]["maxLength"], TRACE_ID_MAX_CHARS);

    let valid = batch(1, vec![call("c1")]);
    assert!(validate_batch(&valid, &limits).is_ok());
    for (schema, pointer, path) in [
        ("WebhookBody", "", ""),
        ("WebhookCall", "/calls/0", "calls[0]."),
        (
            "WebhookMessage",
            "/calls/0/messages/0",
            "calls[0].messages[0].",
        ),
    ] {
        let required: Vec<&str> = schemas[schema]["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        for field in schemas[schema]["properties"].as_object().unwrap().keys() {
            let mut without = valid.clone();
            without
                .pointer_mut(pointer)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .remove(field);
            let refused = validate_batch(&without, &limits).err().unwrap_or_default();
            let named = refused.iter().any(|e| e.path == format!("{path}{field}"));
            assert_eq!(
                named,
                required.contains(&field.as_str()),
                "{schema}.{field}: {refused:?}"
            );
        }
    }
}

/// The served document states this deployment's webhook limit.
#[tokio::test]
async fn served_document_states_the_deployments_webhook_limit() {
    let mut settings = callgrade_server::Settings::default();
    settings.app.limits.max_calls_per_request = 5;
    let app = TestApp::spawn_with(settings).await;
    let (_, spec) = status_and_json(app.get("/api/v1/openapi.json").send().await.unwrap()).await;
    assert_eq!(
        spec["components"]["schemas"]["WebhookBody"]["properties"]["calls"]["maxItems"],
        5
    );
}
