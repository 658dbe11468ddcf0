//! What evaluation reads, assembled the same way on both backends: each call with its agent,
//! its run's scenario and its project's evaluation settings, and claimed jobs paired with them.

use callgrade_core::{CallForEvaluation, JudgeSettings, Metric, RubricRule};
use std::collections::{HashMap, HashSet};
use std::future::Future;

use crate::model::*;
use crate::{Result, Store};

/// A project's metrics, rubric and judge settings: what every evaluation in it reads.
pub(crate) type ProjectEvaluation = (Vec<Metric>, Vec<RubricRule>, JudgeSettings);

/// Evaluation inputs from calls and their project's evaluation settings: each call gets its
/// agent and, for a test call, its run's scenario, read through the trait so both backends
/// assemble [`EvaluationInput`] the same way.
pub(crate) async fn evaluation_inputs(
    store: &(impl Store + ?Sized),
    project_id: i64,
    calls: Vec<CallForEvaluation>,
    (metrics, rubric, judge): ProjectEvaluation,
) -> Result<Vec<EvaluationInput>> {
    let agents = match calls.iter().any(|c| c.agent_id.is_some()) {
        true => store.list_agents(project_id).await?,
        false => Vec::new(),
    };
    let mut inputs = Vec::with_capacity(calls.len());
    for mut call in calls {
        // A recording's speech timeline feeds the audio metrics.
        call.audio = store
            .recording(project_id, &call.call_id)
            .await?
            .map(|r| r.audio.timeline);
        // Spans with its trace id feed the trace metrics.
        if let Some(trace_id) = &call.trace_id {
            call.trace = callgrade_core::breakdown(&store.trace(project_id, trace_id).await?);
        }
        let agent = call
            .agent_id
            .and_then(|id| agents.iter().find(|a| a.id == id).cloned());
        let scenario = match call.run_id {
            Some(run_id) => match store.run(project_id, run_id).await? {
                Some(run) => store.scenario(project_id, run.scenario_id).await?,
                None => None,
            },
            None => None,
        };
        inputs.push(EvaluationInput {
            call,
            agent,
            scenario,
            metrics: metrics.clone(),
            rubric: rubric.clone(),
            judge: judge.clone(),
        });
    }
    Ok(inputs)
}

/// Pairs claimed jobs with their inputs. Each job comes with its call as the claim read it
/// (`None` when it no longer exists); `settings` reads a project's evaluation settings, once
/// per project in the batch.
pub(crate) async fn claimed_evaluations<S, F, Fut>(
    store: &S,
    claimed: Vec<(Job, std::result::Result<Option<CallForEvaluation>, String>)>,
    settings: F,
) -> Vec<ClaimedEvaluation>
where
    S: Store + ?Sized,
    F: Fn(i64) -> Fut,
    Fut: Future<Output = Result<ProjectEvaluation>>,
{
    let mut projects: Vec<i64> = Vec::new();
    let mut by_project: HashMap<i64, Vec<_>> = HashMap::new();
    for (job, call) in claimed {
        if !by_project.contains_key(&job.project_id) {
            projects.push(job.project_id);
        }
        by_project
            .entry(job.project_id)
            .or_default()
            .push((job, call));
    }
    let mut out = Vec::new();
    for project_id in projects {
        let group = by_project.remove(&project_id).unwrap_or_default();
        let mut seen = HashSet::new();
        let mut calls = Vec::new();
        let mut jobs = Vec::with_capacity(group.len());
        for (job, call) in group {
            match call {
                Ok(Some(call)) => {
                    if seen.insert(call.call_id.clone()) {
                        calls.push(call);
                    }
                    jobs.push((job, None));
                }
                Ok(None) => {
                    let reason = format!("call {} no longer exists", job.call_id);
                    jobs.push((job, Some(reason)));
                }
                Err(e) => jobs.push((job, Some(format!("could not load the call: {e}")))),
            }
        }
        let inputs = match calls.is_empty() {
            true => Ok(Vec::new()),
            false => match settings(project_id).await {
                Ok(s) => evaluation_inputs(store, project_id, calls, s).await,
                Err(e) => Err(e),
            },
        };
        match inputs {
            Ok(inputs) => out.extend(pair(jobs, inputs)),
            Err(e) => out.extend(jobs.into_iter().map(|(job, _)| ClaimedEvaluation {
                job,
                input: Err(format!("could not load the call: {e}")),
            })),
        }
    }
    out
}

/// Gives each job its call's input. A call can be claimed twice in a batch (a queued job beside
/// one whose lease expired): all but its last job get a copy.
fn pair(jobs: Vec<(Job, Option<String>)>, inputs: Vec<EvaluationInput>) -> Vec<ClaimedEvaluation> {
    let mut by_call: HashMap<String, EvaluationInput> = inputs
        .into_iter()
        .map(|input| (input.call.call_id.clone(), input))
        .collect();
    let mut remaining: HashMap<String, usize> = HashMap::new();
    for (job, _) in &jobs {
        *remaining.entry(job.call_id.clone()).or_default() += 1;
    }
    jobs.into_iter()
        .map(|(job, problem)| {
            let left = remaining.get_mut(&job.call_id).map(|n| {
                *n -= 1;
                *n
            });
            let input = match problem {
                Some(reason) => Err(reason),
                None => match left {
                    Some(0) => by_call.remove(&job.call_id),
                    _ => by_call.get(&job.call_id).cloned(),
                }
                .ok_or_else(|| format!("call {} no longer exists", job.call_id)),
            };
            ClaimedEvaluation { job, input }
        })
        .collect()
}
