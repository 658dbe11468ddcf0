//! The storage seam of callgrade.
//!
//! Everything callgrade persists goes through [`Store`], the sum of one trait per capability
//! ([`Projects`], [`Ingest`], [`Calls`], [`TestRuns`], [`Metrics`], [`JobQueue`],
//! [`Simulations`]). Two backends
//! implement each, one file per capability: [`SqliteStore`] (embedded, the default; `sqlite/`)
//! and [`PgStore`] (several server instances on one database; `postgres/`). Both pass the same
//! behaviour tests.

mod alert_rows;
mod codec;
mod copy;
mod errors;
mod evaluation_document;
mod inputs;
mod key;
mod lifecycle;
mod lookups;
mod metric_document;
#[cfg(test)]
mod migration_tests;
mod model;
mod outbound_rows;
mod postgres;
mod queue;
mod receipts;
mod rows;
mod simulation_rows;
mod sqlite;

pub use copy::{copy_sqlite_to_postgres, TABLES};
pub use key::ApiKey;
pub use model::*;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use callgrade_core::{Batch, MetricSpec, RubricRule, Vendor};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tokio::sync::Notify;

/// Every capability trait, for callers that hold a concrete backend (`SqliteStore`, `PgStore`)
/// rather than an `Arc<dyn Store>`: `use callgrade_store::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Alerts, Calls, Ingest, JobQueue, Keys, Metrics, Projects, Recordings, Simulations, Store,
        TestRuns, Traces, Webhooks,
    };
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The request is valid but the thing is not in a state that allows it.
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// From the SQLite connections that run in place on rusqlite (the writer, the key lookup).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    InvalidInput(String),
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
    #[error("commit failed: {0}")]
    Commit(String),
    #[error("the store is shutting down")]
    Closed,
}

/// The persistence operations of callgrade, one trait per capability; a backend implements each
/// (`sqlite/` and `postgres/` have one file per capability). Callers hold an `Arc<dyn Store>`.
pub trait Store:
    Projects
    + Keys
    + Ingest
    + Calls
    + TestRuns
    + Metrics
    + JobQueue
    + Simulations
    + Recordings
    + Traces
    + Webhooks
    + Alerts
{
}

impl<
        T: Projects
            + Keys
            + Ingest
            + Calls
            + TestRuns
            + Metrics
            + JobQueue
            + Simulations
            + Recordings
            + Traces
            + Webhooks
            + Alerts
            + ?Sized,
    > Store for T
{
}

/// Projects, their keys and agents, server-wide settings, and whether the database answers.
#[async_trait]
pub trait Projects: Send + Sync + 'static {
    /// Creates a project and its first API key, `default` with every scope (returned once,
    /// stored hashed).
    async fn create_project(&self, name: &str) -> Result<(Project, ApiKey)>;
    async fn list_projects(&self) -> Result<Vec<Project>>;
    async fn project(&self, id: i64) -> Result<Option<Project>>;
    /// Finds a project by its integer id or its name.
    async fn find_project(&self, name_or_id: &str) -> Result<Option<Project>>;
    async fn update_project_settings(
        &self,
        project_id: i64,
        settings: &ProjectSettings,
    ) -> Result<Project>;
    /// The key of the project's hash tokens (made with its first redaction policy).
    async fn redaction_key(&self, project_id: i64) -> Result<Option<[u8; 32]>>;
    async fn create_agent(&self, project_id: i64, agent: &NewAgent) -> Result<Agent>;
    async fn list_agents(&self, project_id: i64) -> Result<Vec<Agent>>;
    /// An agent, and its connector with the secrets the served agent leaves out.
    async fn agent(
        &self,
        project_id: i64,
        agent_id: i64,
    ) -> Result<Option<(Agent, Option<Connector>)>>;
    /// Replaces an agent's name, phone number, description and connector (its id never
    /// changes).
    async fn update_agent(&self, project_id: i64, agent_id: i64, agent: &NewAgent)
        -> Result<Agent>;
    /// The agent that a vendor knows by `external_id` (one of its `external_ids`).
    async fn agent_by_external_id(&self, project_id: i64, external_id: &str)
        -> Result<Option<i64>>;
    /// The secret a vendor signs this project's webhooks with.
    async fn vendor_secret(&self, project_id: i64, vendor: Vendor) -> Result<Option<String>>;
    /// Which vendors' secrets are saved, never the secrets.
    async fn vendor_secrets(&self, project_id: i64) -> Result<Vec<VendorSecretView>>;
    /// Saves (`Some`) or removes (`None`) a vendor's secret; whether anything changed.
    async fn set_vendor_secret(
        &self,
        project_id: i64,
        vendor: Vendor,
        secret: Option<&str>,
    ) -> Result<bool>;
    /// A server-wide setting (e.g. the dashboard admin token's hash).
    async fn setting(&self, key: &str) -> Result<Option<String>>;
    async fn set_setting(&self, key: &str, value: &str) -> Result<()>;
    /// Succeeds when the database answers.
    async fn ping(&self) -> Result<()>;
}

/// Calls in: a validated batch stored all or nothing, and refusals recorded.
#[async_trait]
pub trait Ingest: Send + Sync + 'static {
    /// Stores a validated batch all-or-nothing, with its delivery record, and answers only after
    /// the commit is durable. Rejections (unknown agent or run, conflicting resend) store no call
    /// but are recorded in the delivery log.
    async fn ingest(&self, batch: Batch, delivery: NewDelivery) -> Result<IngestOutcome>;
    /// Records a webhook request rejected before it reached [`Ingest::ingest`].
    async fn record_delivery(&self, delivery: NewDelivery, rejection: Rejection) -> Result<i64>;
}

/// Stored calls and the delivery log, read back; metric values and summaries over calls.
#[async_trait]
pub trait Calls: Send + Sync + 'static {
    async fn list_calls(&self, project_id: i64, filter: &CallFilter) -> Result<Page<CallSummary>>;
    async fn call(&self, project_id: i64, call_id: &str) -> Result<Option<CallDetail>>;
    async fn list_deliveries(
        &self,
        project_id: i64,
        filter: &DeliveryFilter,
    ) -> Result<Page<DeliverySummary>>;
    async fn delivery(&self, project_id: i64, id: i64) -> Result<Option<Delivery>>;
    /// Changes a stored call's metadata and end reason (`patch`, merged with what is stored
    /// within `max_metadata_bytes`) and, when asked, queues its evaluation again, in one
    /// transaction. `None` when the project has no such call (our id); else whether it changed.
    /// `InvalidInput` (saying why) when the merged metadata is over the limit.
    async fn patch_call(
        &self,
        project_id: i64,
        call_id: &str,
        patch: &callgrade_core::CallPatch,
        max_metadata_bytes: usize,
        now: DateTime<Utc>,
    ) -> Result<Option<bool>>;
    /// Deletes log entries older than `older_than_ms` and beyond `keep_per_project` per project.
    async fn prune_deliveries(&self, older_than_ms: i64, keep_per_project: u32) -> Result<u64>;
    async fn metrics_summary(
        &self,
        project_id: i64,
        agent_id: Option<i64>,
        started_from_ms: Option<i64>,
        started_before_ms: Option<i64>,
    ) -> Result<Vec<MetricSummary>>;
    /// How the rubric judged the evaluated calls that started in the range (of one agent, or
    /// all).
    async fn verdict_counts(
        &self,
        project_id: i64,
        agent_id: Option<i64>,
        started_from_ms: Option<i64>,
        started_before_ms: Option<i64>,
    ) -> Result<VerdictCounts>;
    /// The values of the named metrics on the given calls, in one query: (call id, metric
    /// name, value). For list pages, so they never load each call.
    async fn metric_values(
        &self,
        project_id: i64,
        call_ids: &[String],
        metric_names: &[&str],
    ) -> Result<Vec<(String, String, serde_json::Value)>>;
}

/// Scenarios, results (batches of runs) and runs: created, reported on, attached, swept.
#[async_trait]
pub trait TestRuns: Send + Sync + 'static {
    async fn create_scenario(&self, project_id: i64, scenario: &NewScenario) -> Result<Scenario>;
    async fn list_scenarios(&self, project_id: i64, agent_id: Option<i64>)
        -> Result<Vec<Scenario>>;
    async fn scenario(&self, project_id: i64, id: i64) -> Result<Option<Scenario>>;
    /// Replaces a scenario's definition and tags (its runs keep what they ran).
    async fn update_scenario(
        &self,
        project_id: i64,
        id: i64,
        scenario: &NewScenario,
    ) -> Result<Scenario>;
    /// Creates a result with one pending run per scenario × frequency.
    async fn create_result(
        &self,
        project_id: i64,
        result: &NewTestResult,
        now: DateTime<Utc>,
    ) -> Result<TestResult>;
    async fn result(&self, project_id: i64, id: i64) -> Result<Option<TestResult>>;
    async fn run(&self, project_id: i64, id: i64) -> Result<Option<Run>>;
    async fn list_runs(&self, project_id: i64, filter: &RunFilter) -> Result<Page<Run>>;
    /// Records what the harness reports about a run's call.
    async fn run_event(
        &self,
        project_id: i64,
        run_id: i64,
        event: RunEvent,
        now: DateTime<Utc>,
    ) -> Result<Run>;
    /// Attaches a stored call to a run by hand (ambiguous and late cases).
    async fn attach_call(
        &self,
        project_id: i64,
        run_id: i64,
        call_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Run>;
    /// Times out the runs whose listening window or deadline has passed; returns their ids.
    /// Simulated runs are left to their simulation (see [`Simulations`]).
    async fn sweep_runs(&self, now: DateTime<Utc>) -> Result<Vec<i64>>;
    /// The newest result with this label whose runs are all final, other than `except` (the
    /// result being gated), for `--baseline-label`.
    async fn latest_finished_result(
        &self,
        project_id: i64,
        label: &str,
        except: i64,
    ) -> Result<Option<i64>>;
}

/// Calls' recordings: where each one's audio is, and what its analysis found.
#[async_trait]
pub trait Recordings: Send + Sync + 'static {
    async fn recording(&self, project_id: i64, call_id: &str) -> Result<Option<StoredRecording>>;
    /// The recording the call's sender said to fetch, while it is still to be fetched.
    async fn recording_request(
        &self,
        project_id: i64,
        call_id: &str,
    ) -> Result<Option<callgrade_core::RecordingRequest>>;
    /// Ends a call's recording request, in one write: the recording is stored, or the call
    /// keeps the warning. False (and nothing written) when no request was waiting.
    async fn settle_recording_request(
        &self,
        project_id: i64,
        call_id: &str,
        outcome: &FetchOutcome,
    ) -> Result<bool>;
}

/// Simulated runs: the simulator endpoint, and the queue of conversations that instances
/// claim under a lease, report on as they go, and finish or fail.
/// OpenTelemetry spans, and the calls they belong to by trace id.
#[async_trait]
pub trait Traces: Send + Sync + 'static {
    /// Stores an export's spans (a span sent again is kept once) with its delivery record, and
    /// queues again the evaluation of every call of the project whose `trace_id` is one of
    /// theirs, so a trace arriving after its call is measured; one transaction.
    async fn store_spans(
        &self,
        project_id: i64,
        spans: Vec<callgrade_core::TraceSpan>,
        delivery: NewDelivery,
    ) -> Result<SpanReceipt>;
    /// A trace's spans in start order, at most [`MAX_TRACE_SPANS`]; `trace_id` in any case.
    async fn trace(
        &self,
        project_id: i64,
        trace_id: &str,
    ) -> Result<Vec<callgrade_core::TraceSpan>>;
}

#[async_trait]
pub trait Simulations: Send + Sync + 'static {
    async fn simulator_settings(&self, project_id: i64) -> Result<SimulatorSettings>;
    async fn set_simulator_settings(
        &self,
        project_id: i64,
        patch: &SimulatorSettingsPatch,
    ) -> Result<()>;
    /// Claims pending simulated runs, oldest first: at most `limit` in all, and never more
    /// per project than its simulator concurrency counting the runs already in flight. Each
    /// moves to `in_progress` under a lease held by `worker`.
    async fn claim_simulations(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: chrono::TimeDelta,
        limit: u32,
    ) -> Result<Vec<ClaimedSimulation>>;
    /// Writes a conversation's progress and extends its lease; false when the run is no
    /// longer this worker's conversation (cancelled, or its lease lost): stop calling the agent.
    async fn renew_simulation(
        &self,
        run_id: i64,
        worker: &str,
        progress: &SimulationProgress,
        now: DateTime<Utc>,
        lease: chrono::TimeDelta,
    ) -> Result<bool>;
    /// Fails this worker's simulated run with why, keeping what was said so far.
    async fn fail_simulation(
        &self,
        run_id: i64,
        worker: &str,
        reason: &str,
        progress: &SimulationProgress,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Lets go of a run whose conversation's call is stored (the live transcript goes: the
    /// call has it).
    async fn release_simulation(&self, run_id: i64, worker: &str) -> Result<()>;
    /// Fails the in-progress simulated runs whose lease expired (the instance playing them
    /// stopped), but those in `playing` (the caller's own, which it knows are alive); their ids.
    async fn fail_abandoned_simulations(
        &self,
        now: DateTime<Utc>,
        playing: &[i64],
    ) -> Result<Vec<i64>>;
}

/// Metric definitions, the rubric, the judge endpoint and the judge's cache.
#[async_trait]
pub trait Metrics: Send + Sync + 'static {
    /// The project's live metrics (deleted ones are kept only for old results).
    async fn list_metrics(&self, project_id: i64) -> Result<Vec<Metric>>;
    async fn metric(&self, project_id: i64, id: i64) -> Result<Option<Metric>>;
    async fn create_metric(&self, project_id: i64, spec: &MetricSpec) -> Result<Metric>;
    /// Replaces a metric's definition and bumps its version; old results are not rewritten.
    async fn update_metric(&self, project_id: i64, id: i64, spec: &MetricSpec) -> Result<Metric>;
    async fn delete_metric(&self, project_id: i64, id: i64) -> Result<()>;
    /// Creates or updates metrics by name, all or nothing.
    async fn apply_metrics(&self, project_id: i64, specs: &[MetricSpec]) -> Result<ApplySummary>;
    async fn rubric(&self, project_id: i64) -> Result<Vec<RubricRule>>;
    async fn set_rubric(&self, project_id: i64, rules: &[RubricRule]) -> Result<()>;
    async fn judge_settings(&self, project_id: i64) -> Result<JudgeSettings>;
    async fn set_judge_settings(&self, project_id: i64, patch: &JudgeSettingsPatch) -> Result<()>;
    async fn judge_cache_get(&self, key: &str) -> Result<Option<String>>;
    async fn judge_cache_put(&self, key: &str, response: &str, now: DateTime<Utc>) -> Result<()>;
}

/// The evaluation job queue: enqueue, claim with inputs, renew, complete, fail, and the
/// signal that wakes workers.
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Queues evaluations of the matching calls (one call when `call_id` is given); returns how
    /// many were queued (a call already waiting is not queued twice).
    async fn enqueue_evaluations(
        &self,
        project_id: i64,
        filter: &ReevaluateFilter,
        call_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<usize>;
    /// Atomically claims up to `limit` ready jobs (oldest first), including jobs whose lease
    /// expired, each with everything its evaluation reads: the call, its agent and scenario,
    /// and its project's metrics, rubric and judge settings (read once per project). A worker
    /// claims a handful at once so a busy queue costs few round trips.
    async fn claim_evaluations(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: chrono::TimeDelta,
        limit: u32,
    ) -> Result<Vec<ClaimedEvaluation>>;
    /// Claims the next ready job.
    async fn claim_job(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: chrono::TimeDelta,
    ) -> Result<Option<Job>> {
        let mut claimed = self.claim_evaluations(worker, now, lease, 1).await?;
        Ok(claimed.pop().map(|c| c.job))
    }
    async fn renew_lease(&self, job: &Job, now: DateTime<Utc>) -> Result<bool>;
    /// Writes the results and marks the job done in one transaction; false if the lease was lost.
    async fn complete_job(
        &self,
        job: &Job,
        outcome: &CallEvaluation,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Requeues a failed job for `retry_at`, or marks it dead when `None`.
    async fn fail_job(
        &self,
        job: &Job,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()>;
    async fn job_counts(&self, project_id: Option<i64>) -> Result<JobCounts>;
    /// Calls of one project and everything their evaluation needs, read together: the
    /// project's metrics, rubric, judge settings and agents once for all. Calls that do not
    /// exist are left out; the order is not kept.
    async fn evaluation_inputs(
        &self,
        project_id: i64,
        call_ids: &[String],
    ) -> Result<Vec<EvaluationInput>>;
    /// One call and everything its evaluation needs.
    async fn evaluation_input(
        &self,
        project_id: i64,
        call_id: &str,
    ) -> Result<Option<EvaluationInput>> {
        let ids = [call_id.to_owned()];
        Ok(self.evaluation_inputs(project_id, &ids).await?.pop())
    }
    /// Signalled (with `notify_waiters`) after this store commits new jobs, whoever asked for
    /// them (ingest, a manual attach, a re-evaluation): workers wait on it between claims.
    /// After [`JobQueue::listen_for_jobs`], jobs committed by other processes signal it too.
    fn job_signal(&self) -> Arc<Notify>;
    /// Starts relaying other processes' job notifications to [`JobQueue::job_signal`], for
    /// backends that can push; returns once listening has started. The default does nothing:
    /// workers then rely on this process's signal and on polling.
    async fn listen_for_jobs(&self) -> Result<()> {
        Ok(())
    }
}

/// Outbound webhooks: a project's endpoints, the events written for them, their deliveries (a
/// queue of their own, leased like jobs) and each attempt; and announcing finished runs.
#[async_trait]
pub trait Webhooks: Send + Sync + 'static {
    async fn create_endpoint(
        &self,
        project_id: i64,
        draft: &callgrade_core::outbound::EndpointDraft,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<WebhookEndpoint>;
    async fn list_endpoints(&self, project_id: i64) -> Result<Vec<WebhookEndpoint>>;
    async fn endpoint(&self, project_id: i64, id: i64) -> Result<Option<WebhookEndpoint>>;
    /// Changes what the patch names; enabling an endpoint clears why it was disabled.
    async fn update_endpoint(
        &self,
        project_id: i64,
        id: i64,
        patch: &callgrade_core::outbound::EndpointPatch,
        now: DateTime<Utc>,
    ) -> Result<Option<WebhookEndpoint>>;
    /// Deletes the endpoint with its deliveries and their attempts; false when there is none.
    async fn delete_endpoint(&self, project_id: i64, id: i64) -> Result<bool>;
    /// A new signing secret; the current one keeps signing until `previous_until` (none: it
    /// stops at once).
    async fn rotate_endpoint_secret(
        &self,
        project_id: i64,
        id: i64,
        secret: &str,
        previous_until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Option<WebhookEndpoint>>;
    /// Writes `event` with a delivery for each enabled endpoint subscribed to it (only
    /// `endpoint`, whatever it subscribes to, when given); how many deliveries were queued.
    async fn emit_event(
        &self,
        project_id: i64,
        event: NewEvent,
        endpoint: Option<i64>,
    ) -> Result<usize>;
    /// Claims up to `limit` due deliveries of enabled endpoints (and those whose lease
    /// expired), oldest first, each leased to `worker` for `lease`.
    async fn claim_deliveries(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        lease: chrono::TimeDelta,
        limit: u32,
    ) -> Result<Vec<DueDelivery>>;
    /// Logs an attempt and moves its delivery on (when still leased to the worker), keeping
    /// the endpoint's `failing_since` and disabling it when asked, in one transaction.
    async fn record_attempt(&self, attempt: AttemptRecord) -> Result<()>;
    async fn list_outbound(
        &self,
        project_id: i64,
        filter: &OutboundFilter,
    ) -> Result<Page<OutboundDelivery>>;
    async fn outbound_delivery(
        &self,
        project_id: i64,
        id: i64,
    ) -> Result<Option<OutboundDeliveryDetail>>;
    /// Sends a finished delivery again from the start of the schedule (same `webhook-id`);
    /// `Conflict` while it is still pending.
    async fn replay_delivery(
        &self,
        project_id: i64,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<OutboundDelivery>>;
    /// Replays every failed delivery created since `since` (of one endpoint when given); how
    /// many.
    async fn replay_failed(
        &self,
        project_id: i64,
        endpoint_id: Option<i64>,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64>;
    /// Runs in a final status not announced yet, oldest first.
    async fn runs_to_notify(&self, limit: u32) -> Result<Vec<RunToNotify>>;
    /// Writes the notices' events and records their statuses as announced, in one transaction;
    /// a run whose status changed meanwhile is left for the next round.
    async fn record_notices(&self, notices: Vec<Notice>) -> Result<()>;
    /// Deliveries by status, of one project or all (for `/metrics`).
    async fn outbound_counts(&self) -> Result<Vec<(String, i64)>>;
    /// Deletes delivered and failed deliveries whose last attempt is older than `older_than`,
    /// with their attempts, and the events no delivery needs any more; how many deliveries.
    async fn prune_outbound(&self, older_than: DateTime<Utc>) -> Result<u64>;
}

/// A project's API keys: created with scopes, listed without secrets, rotated, revoked, and
/// the one a request presents.
#[async_trait]
pub trait Keys: Send + Sync + 'static {
    /// A new key (returned once, stored hashed).
    async fn create_key(
        &self,
        project_id: i64,
        draft: &callgrade_core::access::KeyDraft,
        now: DateTime<Utc>,
    ) -> Result<(ProjectKey, ApiKey)>;
    /// Every key of the project, revoked and expired ones too, newest first.
    async fn list_keys(&self, project_id: i64) -> Result<Vec<ProjectKey>>;
    async fn project_key(&self, project_id: i64, key_id: i64) -> Result<Option<ProjectKey>>;
    /// Revokes a key at `at` (a key revoked before keeps its time); `None` when the project has
    /// no such key.
    async fn revoke_key(
        &self,
        project_id: i64,
        key_id: i64,
        at: DateTime<Utc>,
    ) -> Result<Option<ProjectKey>>;
    /// A new key with the old one's name, scopes and expiry, in one transaction with the old
    /// one's expiry brought forward to `old_until` (`now` for an immediate rotation); `None`
    /// when the project has no such key that is still active at `now`.
    async fn rotate_key(
        &self,
        project_id: i64,
        key_id: i64,
        old_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<(ProjectKey, ApiKey)>>;
    /// The key this is and its project, compared in constant time; a revoked key is not found.
    /// Its expiry is the caller's to check, on the caller's clock.
    async fn authenticate(&self, key: &str) -> Result<Option<KeyGrant>>;
    /// Records that a key authenticated a request at `at`.
    async fn touch_key(&self, key_id: i64, at: DateTime<Utc>) -> Result<()>;
}

/// Alert rules, their state and the alerts they opened; what rules read of recent calls.
#[async_trait]
pub trait Alerts: Send + Sync + 'static {
    /// `AlreadyExists` when the project has a rule of that name.
    async fn create_rule(
        &self,
        project_id: i64,
        rule: &callgrade_core::alerts::AlertRule,
        now: DateTime<Utc>,
    ) -> Result<AlertRuleRow>;
    async fn list_rules(&self, project_id: i64) -> Result<Vec<AlertRuleRow>>;
    async fn rule(&self, project_id: i64, id: i64) -> Result<Option<AlertRuleRow>>;
    /// Replaces a rule's definition; its state and alerts stay.
    async fn replace_rule(
        &self,
        project_id: i64,
        id: i64,
        rule: &callgrade_core::alerts::AlertRule,
        now: DateTime<Utc>,
    ) -> Result<Option<AlertRuleRow>>;
    /// Deletes a rule with its alerts; false when there is none.
    async fn delete_rule(&self, project_id: i64, id: i64) -> Result<bool>;
    /// Every enabled rule of every project, for the checker.
    async fn enabled_rules(&self) -> Result<Vec<AlertRuleRow>>;
    /// The newest evaluated calls' values of `metric` (the rubric's verdict when none), of
    /// one agent or all, in the scope, newest first.
    async fn samples(
        &self,
        project_id: i64,
        metric: Option<&str>,
        agent_id: Option<i64>,
        scope: callgrade_core::alerts::CallScope,
        limit: usize,
    ) -> Result<Vec<callgrade_core::alerts::Sample>>;
    /// Calls received since `since`, of one agent or all, in the scope.
    async fn calls_since(
        &self,
        project_id: i64,
        agent_id: Option<i64>,
        scope: callgrade_core::alerts::CallScope,
        since: DateTime<Utc>,
    ) -> Result<usize>;
    /// Writes a check's outcome, its alert and events in one transaction; the alert's id when
    /// one opened or resolved. A change that no longer fits the rule's state (another instance
    /// checked first) writes nothing.
    async fn record_check(
        &self,
        rule_id: i64,
        change: AlertChange,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>>;
    /// Alerts of the project (of one rule when given; only those firing when asked), newest
    /// first.
    async fn alerts(
        &self,
        project_id: i64,
        rule_id: Option<i64>,
        firing_only: bool,
        limit: u32,
    ) -> Result<Vec<Alert>>;
    async fn set_slack_error(&self, alert_id: i64, error: &str) -> Result<()>;
}
