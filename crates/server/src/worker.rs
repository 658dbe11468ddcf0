//! Evaluation workers: claim a job, evaluate its call, write the results and mark the job done
//! in one transaction. A crash between claim and commit leaves the job's lease to expire, and
//! another worker runs it again; running a job again replaces its results, so each call's
//! results are written exactly once.

use callgrade_eval::{EvalError, JudgeCache};
use callgrade_store::{EvaluationInput, Job, Store};
use chrono::TimeDelta;
use rand::Rng;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::{AppState, Clock};

/// How workers run.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// Workers inside `serve`; 0 leaves evaluation to `callgrade worker`.
    pub count: usize,
    /// A job whose worker stops renewing for this long is taken over by another.
    pub lease: TimeDelta,
    /// How often an idle worker looks for jobs (it is also woken at once by new calls).
    pub poll: Duration,
    /// Attempts before a job is dead.
    pub max_attempts: i64,
    /// Jobs a worker claims at once and evaluates concurrently.
    pub batch: u32,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            count: 2,
            lease: TimeDelta::seconds(30),
            poll: Duration::from_millis(500),
            max_attempts: 5,
            batch: 64,
        }
    }
}

/// The judge cache, kept in the store.
pub struct StoreCache {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
}

#[async_trait::async_trait]
impl JudgeCache for StoreCache {
    async fn get(&self, key: &str) -> Option<String> {
        self.store.judge_cache_get(key).await.ok().flatten()
    }

    async fn put(&self, key: &str, value: &str) {
        if let Err(e) = self
            .store
            .judge_cache_put(key, value, self.clock.now())
            .await
        {
            tracing::warn!(error = %e, "could not cache a judge verdict");
        }
    }
}

/// Waits before retry `attempt` (1-based): 2 s, 4 s, 8 s… up to 10 min, with up to 25% jitter.
pub fn retry_delay(attempt: i64) -> Duration {
    let base = 2_000u64
        .saturating_mul(1 << attempt.clamp(1, 20).saturating_sub(1))
        .min(600_000);
    Duration::from_millis(base + rand::thread_rng().gen_range(0..=base / 4))
}

/// Runs one worker until the task is aborted.
pub async fn run_worker(state: AppState, name: String) {
    let settings = state.settings.workers;
    loop {
        match state
            .store
            .claim_jobs(&name, state.clock.now(), settings.lease, settings.batch)
            .await
        {
            Ok(jobs) if !jobs.is_empty() => {
                // Read together, evaluated side by side; their results commit together.
                let mut inputs = load_inputs(&state, &jobs).await;
                let mut running = tokio::task::JoinSet::new();
                for job in jobs {
                    let state = state.clone();
                    let input = inputs.remove(&job.id).unwrap_or_else(|| {
                        Err(EvalError(format!("call {} no longer exists", job.call_id)))
                    });
                    running.spawn(async move { process(&state, &job, input).await });
                }
                while running.join_next().await.is_some() {}
            }
            Ok(_) => {
                tokio::select! {
                    () = state.jobs_ready.notified() => {}
                    () = tokio::time::sleep(settings.poll) => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, worker = %name, "could not claim a job");
                tokio::time::sleep(settings.poll).await;
            }
        }
    }
}

type Input = Result<EvaluationInput, EvalError>;

/// The inputs of claimed jobs by job id, one read per project; a job whose call is gone has
/// none.
async fn load_inputs(state: &AppState, jobs: &[Job]) -> HashMap<i64, Input> {
    let mut by_project: HashMap<i64, Vec<&Job>> = HashMap::new();
    for job in jobs {
        by_project.entry(job.project_id).or_default().push(job);
    }
    let mut inputs = HashMap::with_capacity(jobs.len());
    for (project_id, jobs) in by_project {
        let ids: Vec<String> = jobs.iter().map(|j| j.call_id.clone()).collect();
        match state.store.evaluation_inputs(project_id, &ids).await {
            Ok(loaded) => inputs.extend(
                inputs_by_job(&jobs, loaded)
                    .into_iter()
                    .map(|(job, input)| (job, Ok(input))),
            ),
            Err(e) => {
                for job in jobs {
                    let error = EvalError(format!("could not load the call: {e}"));
                    inputs.insert(job.id, Err(error));
                }
            }
        }
    }
    inputs
}

/// Gives each job its call's input. A call can be claimed twice in a batch (a queued job beside
/// one whose lease expired): all but its last job get a copy.
fn inputs_by_job(jobs: &[&Job], loaded: Vec<EvaluationInput>) -> HashMap<i64, EvaluationInput> {
    let mut by_call: HashMap<String, EvaluationInput> = loaded
        .into_iter()
        .map(|input| (input.call.summary.call_id.clone(), input))
        .collect();
    let mut inputs = HashMap::with_capacity(jobs.len());
    for (n, job) in jobs.iter().enumerate() {
        let again_later = jobs[n + 1..].iter().any(|j| j.call_id == job.call_id);
        let input = match again_later {
            true => by_call.get(&job.call_id).cloned(),
            false => by_call.remove(&job.call_id),
        };
        if let Some(input) = input {
            inputs.insert(job.id, input);
        }
    }
    inputs
}

/// Evaluates one claimed job and records how it ended.
pub async fn process(state: &AppState, job: &Job, input: Input) {
    let lease = state.settings.workers.lease;
    let renew = {
        let (store, clock, job) = (state.store.clone(), state.clock.clone(), job.clone());
        tokio::spawn(async move {
            let every = (lease / 3).to_std().unwrap_or(Duration::from_secs(10));
            loop {
                tokio::time::sleep(every).await;
                if !matches!(store.renew_lease(&job, clock.now()).await, Ok(true)) {
                    break;
                }
            }
        })
    };
    let result = match input {
        Ok(input) => state.evaluator.evaluate(&input, state.clock.now()).await,
        Err(e) => Err(e),
    };
    renew.abort();
    let now = state.clock.now();
    match result {
        Ok(outcome) => match state.store.complete_job(job, &outcome, now).await {
            Ok(true) => tracing::debug!(job = job.id, call = %job.call_id, "evaluated"),
            Ok(false) => tracing::warn!(
                job = job.id,
                "another worker took this job over; its results were kept"
            ),
            Err(e) => tracing::error!(job = job.id, error = %e, "could not store an evaluation"),
        },
        Err(e) => {
            let retry_at = (job.attempts < state.settings.workers.max_attempts).then(|| {
                now + TimeDelta::from_std(retry_delay(job.attempts))
                    .unwrap_or(TimeDelta::minutes(1))
            });
            match retry_at {
                Some(at) => {
                    tracing::warn!(job = job.id, attempt = job.attempts, retry_at = %at, error = %e, "evaluation failed; will retry")
                }
                None => {
                    tracing::error!(job = job.id, attempts = job.attempts, error = %e, "evaluation failed for good; the job is dead")
                }
            }
            if let Err(e) = state.store.fail_job(job, &e.0, retry_at, now).await {
                tracing::error!(job = job.id, error = %e, "could not record a failed job");
            }
        }
    }
}
