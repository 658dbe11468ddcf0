//! Migrations that reshape stored data keep it: each test builds a database as an earlier
//! release left it, writes old rows, opens the store (which applies the rest) and reads back.

use std::str::FromStr;

use chrono::DateTime;
use serde_json::json;
use sqlx::migrate::{Migrate, Migrator};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Connection, Database, Executor, PgConnection, Pool};

use callgrade_core::{MetricKind, OutputType};

use crate::model::EvaluationStatus;
use crate::rows::evaluations_from;
use crate::{PgStore, SqliteStore};

/// The last migration with one `evaluations` row per metric.
const BEFORE_CALL_EVALUATIONS: i64 = 5;

/// Plain SQL both backends accept.
const OLD_EVALUATIONS: &str = r#"INSERT INTO evaluations (project_id, call_id, metric_id,
    metric_name, metric_version, kind, output, status, value, passed, explanation, details,
    evaluated_at) VALUES
    (1, 'c1', 7, 'latency', 2, 'builtin', 'numeric', 'ok', '0.5', NULL, '', '{"p50":0.5}',
        1760520002844),
    (1, 'c1', 3, 'polite', 1, 'llm_judge', 'binary', 'ok', 'true', TRUE,
        'said "thanks"
and left', '{"model":"m","usage":{"total_tokens":12}}', 1760520002005),
    (1, 'c2', 7, 'latency', 2, 'builtin', 'numeric', 'not_computable', NULL, NULL, 'no handoff',
        '{}', 1760520003000)"#;

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

fn check_documents(documents: Vec<(String, String)>) {
    let [(c1, first), (c2, second)] = <[_; 2]>::try_from(documents).expect("one row per call");
    assert_eq!((c1.as_str(), c2.as_str()), ("c1", "c2"));

    let first = evaluations_from(&first).unwrap();
    assert_eq!(first.len(), 2);
    let (polite, latency) = (&first[0], &first[1]);
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
    assert_eq!(
        polite.evaluated_at,
        DateTime::from_timestamp_millis(1_760_520_002_005).unwrap()
    );
    assert_eq!((latency.metric_id, latency.metric_version), (7, 2));
    assert_eq!(latency.value, Some(json!(0.5)));
    assert_eq!(latency.passed, None);
    assert_eq!(
        latency.evaluated_at,
        DateTime::from_timestamp_millis(1_760_520_002_844).unwrap()
    );

    let second = evaluations_from(&second).unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].status, EvaluationStatus::NotComputable);
    assert_eq!(second[0].value, None);
    assert_eq!(second[0].explanation, "no handoff");
}

const DOCUMENTS: &str = "SELECT call_id, evaluations FROM call_evaluations ORDER BY call_id";

#[tokio::test]
async fn sqlite_keeps_per_metric_evaluations() {
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
    apply_until(
        &pool,
        sqlx::migrate!("./migrations/sqlite"),
        BEFORE_CALL_EVALUATIONS,
    )
    .await;
    pool.execute(OLD_EVALUATIONS).await.unwrap();

    drop(SqliteStore::open(&url).await.unwrap());

    let documents = sqlx::query_as(DOCUMENTS).fetch_all(&pool).await.unwrap();
    check_documents(documents);
}

#[tokio::test]
async fn postgres_keeps_per_metric_evaluations() {
    let Ok(admin_url) = std::env::var("CALLGRADE_TEST_POSTGRES_URL") else {
        eprintln!("skipped: CALLGRADE_TEST_POSTGRES_URL is not set");
        return;
    };
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
    apply_until(
        &pool,
        sqlx::migrate!("./migrations/postgres"),
        BEFORE_CALL_EVALUATIONS,
    )
    .await;
    pool.execute(OLD_EVALUATIONS).await.unwrap();
    drop(PgStore::open(&url).await.unwrap());
    let documents = sqlx::query_as(DOCUMENTS).fetch_all(&pool).await;
    pool.close().await;
    admin
        .execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str())
        .await
        .unwrap();

    check_documents(documents.unwrap());
}
