//! Evaluation workers: claim jobs with their inputs, evaluate each call, write the results and
//! mark the job done in one transaction. A crash between claim and commit leaves the job's
//! lease to expire, and another worker runs it again; running a job again replaces its results,
//! so each call's results are written exactly once.

use callgrade_eval::{EvalError, JudgeCache};
use callgrade_store::{ClaimedEvaluation, EvaluationInput, Job, Store};
use chrono::TimeDelta;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;

use crate::recordings::Fetch;
use crate::{App, Clock};

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

/// Starts `count` workers, named after this process so a log shows who ran what, and relays
/// other processes' job notifications where the store can.
pub async fn spawn(app: &App, count: usize) -> Vec<tokio::task::JoinHandle<()>> {
    if count > 0 {
        if let Err(e) = app.store.listen_for_jobs().await {
            tracing::warn!(error = %e, "cannot listen for job notifications; polling only");
        }
    }
    let instance = format!(
        "{}-{:06x}",
        std::process::id(),
        rand::thread_rng().gen_range(0..0xFF_FFFF)
    );
    (0..count)
        .map(|i| tokio::spawn(run(app.clone(), format!("{instance}-{i}"))))
        .collect()
}

/// Runs one worker until the task is aborted.
pub async fn run(app: App, name: String) {
    let settings = app.settings.workers;
    let signal = app.store.job_signal();
    loop {
        // Listen before claiming: a job committed after an empty claim still wakes this worker
        // (`notify_waiters` only reaches futures already listening).
        let woken = signal.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        match run_once(&app, &name).await {
            Ok(0) => {
                tokio::select! {
                    () = woken => {}
                    () = tokio::time::sleep(settings.poll) => {}
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, worker = %name, "could not claim a job");
                tokio::time::sleep(settings.poll).await;
            }
        }
    }
}

/// Claims one batch and evaluates it, side by side; returns how many jobs it held.
pub async fn run_once(app: &App, worker: &str) -> Result<usize, callgrade_store::StoreError> {
    let settings = app.settings.workers;
    let claimed = app
        .store
        .claim_evaluations(worker, app.now(), settings.lease, settings.batch)
        .await?;
    let count = claimed.len();
    let mut running = tokio::task::JoinSet::new();
    for ClaimedEvaluation { job, input } in claimed {
        let app = app.clone();
        running.spawn(async move { process(&app, &job, input.map_err(EvalError)).await });
    }
    while running.join_next().await.is_some() {}
    Ok(count)
}

/// Evaluates one claimed job and records how it ended.
pub async fn process(app: &App, job: &Job, input: Result<EvaluationInput, EvalError>) {
    let started = std::time::Instant::now();
    let done = evaluate_and_record(app, job, input).await;
    let outcome = [("outcome", if done { "done" } else { "failed" })];
    app.telemetry.observe(
        "callgrade_evaluation_duration_seconds",
        &outcome,
        started.elapsed().as_secs_f64(),
    );
}

/// Whether the job's results were stored (by this worker or, having lost its lease, another).
async fn evaluate_and_record(
    app: &App,
    job: &Job,
    input: Result<EvaluationInput, EvalError>,
) -> bool {
    let lease = app.settings.workers.lease;
    let renew = {
        let (store, clock, job) = (app.store.clone(), app.clock.clone(), job.clone());
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
        Ok(mut input) => match fetch_requested_recording(app, job, &mut input).await {
            Ok(()) => evaluate_guarded(app, input).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    renew.abort();
    let now = app.now();
    let failure = match result {
        Ok(outcome) => match app.store.complete_job(job, &outcome, now).await {
            Ok(true) => {
                tracing::debug!(job = job.id, call = %job.call_id, "evaluated");
                return true;
            }
            Ok(false) => {
                tracing::warn!(
                    job = job.id,
                    "another worker took this job over; its results were kept"
                );
                return true;
            }
            // Failed with the reason, not left running until its lease runs out.
            Err(e) => EvalError(format!("the evaluation could not be stored: {e}")),
        },
        Err(e) => e,
    };
    let e = failure;
    let retry_at = (job.attempts < app.settings.workers.max_attempts).then(|| {
        now + TimeDelta::from_std(retry_delay(job.attempts)).unwrap_or(TimeDelta::minutes(1))
    });
    match retry_at {
        Some(at) => {
            tracing::warn!(job = job.id, attempt = job.attempts, retry_at = %at, error = %e, "evaluation failed; will retry")
        }
        None => {
            tracing::error!(job = job.id, attempts = job.attempts, error = %e, "evaluation failed for good; the job is dead")
        }
    }
    if let Err(e) = app.store.fail_job(job, &e.0, retry_at, now).await {
        tracing::error!(job = job.id, error = %e, "could not record a failed job");
    }
    false
}

/// A recording the call's sender pointed to is fetched before the call is evaluated, so the
/// evaluation sees its audio; a source that may answer later retries the job, until its last
/// attempt, which goes on without the recording (the call says why).
async fn fetch_requested_recording(
    app: &App,
    job: &Job,
    input: &mut EvaluationInput,
) -> Result<(), EvalError> {
    let stored = |e: callgrade_store::StoreError| EvalError(format!("the store failed: {e}"));
    let call_id = &input.call.call_id;
    let Some(request) = app
        .store
        .recording_request(job.project_id, call_id)
        .await
        .map_err(stored)?
    else {
        return Ok(());
    };
    let last_try = job.attempts >= app.settings.workers.max_attempts;
    match crate::recordings::fetch_requested(app, job.project_id, call_id, &request, last_try).await
    {
        Ok(Fetch::Settled(Some(timeline))) => {
            input.call.audio = Some(timeline);
            Ok(())
        }
        Ok(Fetch::Settled(None)) => Ok(()),
        Ok(Fetch::Retry(why)) => Err(EvalError(format!(
            "the call's recording could not be fetched yet: {why}"
        ))),
        Err(e) => Err(EvalError(format!("the call's recording: {e}"))),
    }
}

/// Evaluates on a task of its own, so a panic (in a script engine, a judge client, a metric)
/// fails this job with a reason instead of leaving it to wait out its lease.
async fn evaluate_guarded(
    app: &App,
    input: EvaluationInput,
) -> Result<callgrade_store::CallEvaluation, EvalError> {
    let (evaluator, now) = (app.evaluator.clone(), app.now());
    let limit = app.settings.workers.evaluation_timeout;
    let evaluation = tokio::spawn(async move { evaluator.evaluate(&input, now).await });
    let abort = evaluation.abort_handle();
    let Ok(joined) = tokio::time::timeout(limit, evaluation).await else {
        // Scripts run on blocking threads with their own wall-time limit; the rest stops here.
        abort.abort();
        return Err(EvalError(format!(
            "the evaluation took longer than the evaluation timeout ({} s); \
             the call may be too long, or a judge too slow",
            limit.as_secs()
        )));
    };
    match joined {
        Ok(result) => result,
        Err(e) if e.is_panic() => {
            let panic = e.into_panic();
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(EvalError(format!("the evaluation panicked: {message}")))
        }
        Err(_) => Err(EvalError("the evaluation was cancelled".into())),
    }
}
