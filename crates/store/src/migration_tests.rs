//! Migrations that reshape stored data keep it: each test builds a database as an earlier
//! release left it, writes old rows, opens the store (which applies the rest) and reads back.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::migrate::{Migrate, Migrator};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Connection, Database, Executor, PgConnection, Pool};

use callgrade_core::{MetricKind, OutputType};

use crate::model::EvaluationStatus;
use crate::prelude::*;
use crate::{PgStore, SqliteStore};

/// The last migration with one `evaluations` row per metric.
const BEFORE_CALL_EVALUATIONS: i64 = 5;

/// Plain SQL both backends accept: three calls, two of them evaluated (`c2` by no metric).
const OLD_ROWS: &str = r#"
INSERT INTO projects (id, name, key_hash, key_prefix, created_at) VALUES (1, 'p', 'h', 'cg_', 0);
INSERT INTO calls (id, project_id, external_id, content_hash, started_at, ended_at, ended_reason,
    message_times, message_count, messages, metadata, warnings, raw, delivery_id, received_at,
    success, rubric, evaluated_at) VALUES
    ('c1', 1, 'e1', 'h1', 0, 1000, 'done', 'seconds_from_start', 0, '[]', '{}', '[]', '{}', 1, 0,
        TRUE, '{"success":true,"rules":[]}', 1760520002900),
    ('c2', 1, 'e2', 'h2', 0, 1000, 'done', 'seconds_from_start', 0, '[]', '{}', '[]', '{}', 1, 0,
        FALSE, '{"success":false,"rules":[]}', 1760520003100),
    ('c3', 1, 'e3', 'h3', 0, 1000, 'done', 'seconds_from_start', 0, '[]', '{}', '[]', '{}', 1, 0,
        NULL, NULL, NULL);
INSERT INTO evaluations (project_id, call_id, metric_id, metric_name, metric_version, kind,
    output, status, value, passed, explanation, details, evaluated_at) VALUES
    (1, 'c1', 7, 'latency', 2, 'builtin', 'numeric', 'ok', '0.5', NULL, '', '{"p50":0.5}',
        1760520002844),
    (1, 'c1', 3, 'polite', 1, 'llm_judge', 'binary', 'ok', 'true', TRUE,
        'said "thanks"
and left', '{"model":"m","usage":{"total_tokens":12}}', 1760520002005),
    (1, 'c1', 8, 'reached', 1, 'builtin', 'numeric', 'not_computable', NULL, NULL, 'no handoff',
        '{}', 1760520002844);
"#;

async fn apply_until<DB>(pool: &Pool<DB>, migrator: Migrator, last: i64)
where
    DB: Database,
    DB::Connection: Migrate,
{
    let mut conn = pool.acquire().await.unwrap();
    conn.ensure_migrations_table().await.unwrap();
    for migration in migrator.iter().filter(|m| m.version <= last) {
        conn.apply(migration).await.unwrap();
    }
}

async fn check(store: &dyn Store) {
    let first = store.call(1, "c1").await.unwrap().unwrap();
    assert_eq!(first.summary.success, Some(true));
    assert_eq!(first.summary.evaluated_at, Some(ms(1_760_520_002_900)));
    assert_eq!(first.rubric.as_ref().unwrap().success, Some(true));
    let [polite, latency, reached] = <[_; 3]>::try_from(first.evaluations).unwrap();
    assert_eq!(
        (polite.metric_id, polite.metric_name.as_str()),
        (3, "polite")
    );
    assert_eq!(polite.kind, MetricKind::LlmJudge);
    assert_eq!(polite.output, OutputType::Binary);
    assert_eq!(polite.value, Some(json!(true)));
    assert_eq!(polite.passed, Some(true));
    assert_eq!(polite.explanation, "said \"thanks\"\nand left");
    assert_eq!(
        polite.details,
        json!({"model": "m", "usage": {"total_tokens": 12}})
    );
    assert_eq!(polite.evaluated_at, ms(1_760_520_002_005));
    assert_eq!((latency.metric_id, latency.metric_version), (7, 2));
    assert_eq!(latency.value, Some(json!(0.5)));
    assert_eq!(latency.passed, None);
    assert_eq!(latency.details, json!({"p50": 0.5}));
    assert_eq!(latency.evaluated_at, ms(1_760_520_002_844));
    assert_eq!(reached.status, EvaluationStatus::NotComputable);
    assert_eq!(
        (reached.value, reached.explanation.as_str()),
        (None, "no handoff")
    );

    let second = store.call(1, "c2").await.unwrap().unwrap();
    assert_eq!(second.summary.success, Some(false));
    assert!(second.evaluations.is_empty());

    let unevaluated = store.call(1, "c3").await.unwrap().unwrap();
    assert_eq!(unevaluated.summary.success, None);
    assert_eq!(unevaluated.summary.evaluated_at, None);
    assert!(unevaluated.rubric.is_none());
}

fn ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

/// A SQLite database as migration `last` left it, holding `rows`; its URL (valid while the
/// directory lives).
async fn sqlite_at(last: i64, rows: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let options = SqliteConnectOptions::from_str(&url)
        .unwrap()
        .create_if_missing(true);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    apply_until(&pool, sqlx::migrate!("./migrations/sqlite"), last).await;
    pool.execute(rows).await.unwrap();
    pool.close().await;
    (dir, url)
}

/// Runs `check` on a store opened over a PostgreSQL database as migration `last` left it,
/// holding `rows`; the database is dropped afterwards, even when `check` fails.
async fn on_postgres_at<F, Fut>(last: i64, rows: &str, check: F)
where
    F: FnOnce(PgStore) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let admin_url = std::env::var("CALLGRADE_TEST_POSTGRES_URL")
        .expect("this test needs PostgreSQL: set CALLGRADE_TEST_POSTGRES_URL");
    let name = format!("cg_migration_{}", uuid::Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let (base, _) = admin_url.rsplit_once('/').expect("a database URL");
    let url = format!("{base}/{name}");
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    apply_until(&pool, sqlx::migrate!("./migrations/postgres"), last).await;
    pool.execute(rows).await.unwrap();
    pool.close().await;
    let store = PgStore::open(&url).await.unwrap();
    // Checked in a task of its own, so that a failed assertion still lets the database be dropped.
    let checked = tokio::spawn(check(store)).await;
    admin
        .execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str())
        .await
        .unwrap();
    if let Err(failure) = checked {
        std::panic::resume_unwind(failure.into_panic());
    }
}

#[tokio::test]
async fn sqlite_keeps_evaluations_and_verdicts() {
    let (_dir, url) = sqlite_at(BEFORE_CALL_EVALUATIONS, OLD_ROWS).await;
    check(&SqliteStore::open(&url).await.unwrap()).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set CALLGRADE_TEST_POSTGRES_URL, run with --include-ignored"]
async fn postgres_keeps_evaluations_and_verdicts() {
    on_postgres_at(BEFORE_CALL_EVALUATIONS, OLD_ROWS, |store| async move {
        check(&store).await
    })
    .await;
}

/// `copy` moves the tables it lists: every table the migrations make must be among them, or a
/// copy to PostgreSQL silently leaves its rows behind.
#[tokio::test]
async fn copy_lists_every_table() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tables.db").display());
    drop(SqliteStore::open(&url).await.unwrap());
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let mut tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table'
         AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    tables.sort();
    let mut listed: Vec<String> = crate::TABLES.iter().map(|t| (*t).to_owned()).collect();
    listed.sort();
    assert_eq!(tables, listed, "crate::copy::TABLES must list every table");
}

/// The two backends' migrations are written twice (two dialects); they must end in the same
/// tables with the same columns, or `copy` and the shared row decoders break.
#[tokio::test]
#[ignore = "needs PostgreSQL: set CALLGRADE_TEST_POSTGRES_URL, run with --include-ignored"]
async fn both_backends_have_the_same_tables_and_columns() {
    let admin_url = std::env::var("CALLGRADE_TEST_POSTGRES_URL")
        .expect("this test needs PostgreSQL: set CALLGRADE_TEST_POSTGRES_URL");
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", dir.path().join("parity.db").display());
    drop(SqliteStore::open(&sqlite_url).await.unwrap());
    let sqlite = SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&sqlite_url)
        .await
        .unwrap();
    let mut on_sqlite: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name NOT LIKE '_sqlx%'",
    )
    .fetch_all(&sqlite)
    .await
    .unwrap();

    let name = format!("cg_parity_{}", uuid::Uuid::now_v7().simple());
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let (base, _) = admin_url.rsplit_once('/').expect("a database URL");
    let url = format!("{base}/{name}");
    let read = async {
        drop(PgStore::open(&url).await?);
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await?;
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name NOT LIKE '\\_sqlx%'",
        )
        .fetch_all(&pool)
        .await?;
        pool.close().await;
        Ok::<_, crate::StoreError>(columns)
    }
    .await;
    admin
        .execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str())
        .await
        .unwrap();
    let mut on_postgres = read.unwrap();
    on_sqlite.sort();
    on_postgres.sort();
    assert!(!on_sqlite.is_empty());
    assert_eq!(on_sqlite, on_postgres, "SQLite's schema, then PostgreSQL's");
}

/// The last migration with a metric's definition as the draft's untyped `config` bag.
const BEFORE_TAGGED_DEFINITIONS: i64 = 6;

/// One metric of each kind as migration 6 left them, with settings, pass conditions, a key a
/// judge never read, and a non-string model.
const OLD_METRICS: &str = r#"
INSERT INTO projects (id, name, key_hash, key_prefix, created_at) VALUES (1, 'p', 'h', 'cg_', 0);
INSERT INTO metrics (id, project_id, name, kind, output, description, config, created_at,
    updated_at) VALUES
    (1, 1, 'latency', 'builtin', 'numeric', '',
        '{"builtin":"agent_latency","latency_statistic":"p90","pass":{"op":"lte","value":2.5}}', 0, 0),
    (2, 1, 'silence', 'builtin', 'binary', '',
        '{"builtin":"silence_detected","pass":{"op":"eq","value":false}}', 0, 0),
    (3, 1, 'turns', 'builtin', 'numeric', '', '{"builtin":"turns"}', 0, 0),
    (4, 1, 'refund', 'script', 'binary', '',
        '{"script":"result = data.transcript.contains(\"refund\");"}', 0, 0),
    (5, 1, 'mood', 'llm_judge', 'enum', '',
        '{"template":"sentiment","base_url":"http://127.0.0.1:1/v1","temperature":0.2,"model":7}',
        0, 0),
    (6, 1, 'polite', 'llm_judge', 'binary', 'Was the agent polite?',
        '{"pass":{"op":"eq","value":true}}', 0, 0);
"#;

async fn check_metrics(store: &dyn Store) {
    use callgrade_core::{BuiltinKey, MetricDefinition};
    let metrics = store.list_metrics(1).await.unwrap();
    let stored = |name: &str| {
        let m = metrics.iter().find(|m| m.spec.name == name).unwrap();
        (m.spec.config(), m.spec.definition.clone())
    };
    let (latency, definition) = stored("latency");
    assert_eq!(
        latency,
        json!({"builtin": "agent_latency", "latency_statistic": "p90",
               "pass": {"op": "lte", "value": 2.5}})
    );
    let MetricDefinition::Builtin { key, config, .. } = definition else {
        panic!("{definition:?}")
    };
    assert_eq!(key, BuiltinKey::AgentLatency);
    assert_eq!(config.unwrap().latency_statistic, "p90");
    assert_eq!(
        config_of(&metrics, "silence"),
        json!({"builtin": "silence_detected", "pass": {"op": "eq", "value": false}})
    );
    let (turns, definition) = stored("turns");
    assert_eq!(turns, json!({"builtin": "turns"}));
    assert!(matches!(
        definition,
        MetricDefinition::Builtin { config: None, .. }
    ));
    assert_eq!(
        config_of(&metrics, "refund"),
        json!({"script": "result = data.transcript.contains(\"refund\");"})
    );
    assert_eq!(
        config_of(&metrics, "mood"),
        json!({"template": "sentiment", "base_url": "http://127.0.0.1:1/v1"})
    );
    assert_eq!(
        config_of(&metrics, "polite"),
        json!({"pass": {"op": "eq", "value": true}})
    );
}

fn config_of(metrics: &[crate::Metric], name: &str) -> serde_json::Value {
    metrics
        .iter()
        .find(|m| m.spec.name == name)
        .unwrap()
        .spec
        .config()
}

#[tokio::test]
async fn sqlite_keeps_metric_definitions() {
    let (_dir, url) = sqlite_at(BEFORE_TAGGED_DEFINITIONS, OLD_METRICS).await;
    check_metrics(&SqliteStore::open(&url).await.unwrap()).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set CALLGRADE_TEST_POSTGRES_URL, run with --include-ignored"]
async fn postgres_keeps_metric_definitions() {
    on_postgres_at(BEFORE_TAGGED_DEFINITIONS, OLD_METRICS, |store| async move {
        check_metrics(&store).await
    })
    .await;
}

/// The last migration with one key per project, in `projects`.
const BEFORE_API_KEYS: i64 = 16;

/// A project with its one key (`cg_old-key`, as its SHA-256), rotated once, and an agent.
const OLD_KEY: &str = r#"
INSERT INTO projects (id, name, key_hash, key_prefix, created_at, key_rotated_at, judge_model)
    VALUES (1, 'p', 'b486dc302fd7e95a7c0b485fd62f90c844ac93b1272525cd6a082b74945dddce', 'cg_old-key',
        1760520000000, 1760520005000, 'judge-1');
INSERT INTO agents (id, project_id, name, created_at) VALUES (4, 1, 'front desk', 1760520000000);
"#;

async fn check_keys(store: &dyn Store) {
    let grant = store.authenticate("cg_old-key").await.unwrap().unwrap();
    assert_eq!((grant.project.id, grant.project.name.as_str()), (1, "p"));
    assert_eq!(grant.key.name, "default");
    assert_eq!(grant.key.scopes, callgrade_core::access::Scopes::ALL);
    assert_eq!(grant.key.key_prefix, "cg_old-key");
    assert_eq!(
        grant.key.created_at,
        ms(1_760_520_005_000),
        "from its last rotation"
    );
    assert_eq!(
        store.judge_settings(1).await.unwrap().model.as_deref(),
        Some("judge-1")
    );
    let agents = store.list_agents(1).await.unwrap();
    assert_eq!(agents.iter().map(|a| a.id).collect::<Vec<_>>(), [4]);
    // The rebuilt table is still the one its rows reference.
    assert!(store
        .create_agent(404, &crate::NewAgent::named("nobody's"))
        .await
        .is_err());
}

#[tokio::test]
async fn sqlite_moves_each_project_key_to_api_keys() {
    let (_dir, url) = sqlite_at(BEFORE_API_KEYS, OLD_KEY).await;
    check_keys(&SqliteStore::open(&url).await.unwrap()).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set CALLGRADE_TEST_POSTGRES_URL, run with --include-ignored"]
async fn postgres_moves_each_project_key_to_api_keys() {
    on_postgres_at(BEFORE_API_KEYS, OLD_KEY, |store| async move {
        check_keys(&store).await
    })
    .await;
}
