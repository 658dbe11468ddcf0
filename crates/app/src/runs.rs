//! Test runs: create a batch of them, record what the harness reports, attach a call by hand.
//! The rules that decide a run's next state are in `callgrade_core::runs`; the store applies
//! them inside its transaction.

use callgrade_core::{
    tally, GateOptions, GateReport, ResultDraft, RunMode, RunOutcome, RunStatus, RunVerdict,
    Scenario, ScenarioDraft,
};
use callgrade_store::{ApplySummary, Run, RunEvent, TestResult};

use crate::{App, AppError, Result};

/// Creates a test scenario for an agent.
pub async fn create_scenario(app: &App, project_id: i64, draft: ScenarioDraft) -> Result<Scenario> {
    let new = draft.validate().map_err(AppError::Invalid)?;
    Ok(app.store.create_scenario(project_id, &new).await?)
}

/// An agent's connector as a scenarios file sets it; `None` removes it.
#[derive(Debug, Clone)]
pub struct AgentConnector {
    pub agent_id: i64,
    pub connector: Option<serde_json::Value>,
}

/// Applies a scenarios file: sets the agents' connectors, then creates or updates scenarios by
/// (agent, name). Every connector and every draft is validated before anything is written, so
/// a file with a problem changes nothing.
pub async fn apply_scenarios(
    app: &App,
    project_id: i64,
    agents: &[AgentConnector],
    drafts: Vec<ScenarioDraft>,
) -> Result<ApplySummary> {
    let mut errors = Vec::new();
    let mut connectors = Vec::new();
    for (i, a) in agents.iter().enumerate() {
        let (agent, current) = app
            .store
            .agent(project_id, a.agent_id)
            .await?
            .ok_or_else(|| {
                AppError::Invalid(vec![callgrade_core::FieldError::new(
                    format!("agents[{i}].id"),
                    format!("no agent with id {} in this project", a.agent_id),
                )])
            })?;
        let parsed = match &a.connector {
            None => Ok(None),
            Some(v) => callgrade_core::Connector::parse(
                v,
                current.as_ref(),
                &format!("agents[{i}].connector"),
            )
            .map(Some),
        };
        match parsed {
            Ok(connector) => connectors.push((agent, connector)),
            Err(e) => errors.extend(e),
        }
    }
    let mut valid = Vec::new();
    for (i, draft) in drafts.into_iter().enumerate() {
        match draft.validate() {
            Ok(new) => valid.push(new),
            Err(e) => errors.extend(e.into_iter().map(|e| {
                callgrade_core::FieldError::new(format!("scenarios[{i}].{}", e.path), e.message)
            })),
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, new) in valid.iter().enumerate() {
        if !seen.insert((new.agent_id, new.name.clone())) {
            errors.push(callgrade_core::FieldError::new(
                format!("scenarios[{i}].name"),
                format!("{:?} is named twice for agent {}", new.name, new.agent_id),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(AppError::Invalid(errors));
    }
    for (agent, connector) in connectors {
        let new = callgrade_store::NewAgent {
            name: agent.name,
            phone_number: agent
                .phone_number
                .as_deref()
                .and_then(|p| callgrade_core::PhoneNumber::parse(p).ok()),
            description: agent.description,
            connector,
            external_ids: agent.external_ids,
        };
        app.store.update_agent(project_id, agent.id, &new).await?;
    }
    let existing = app.store.list_scenarios(project_id, None).await?;
    let mut summary = ApplySummary::default();
    for new in valid {
        let current = existing
            .iter()
            .find(|s| s.agent_id == new.agent_id && s.name == new.name);
        match current {
            None => {
                app.store.create_scenario(project_id, &new).await?;
                summary.created.push(new.name);
            }
            Some(s) if same_scenario(s, &new) => summary.unchanged.push(new.name),
            Some(s) => {
                app.store.update_scenario(project_id, s.id, &new).await?;
                summary.updated.push(new.name);
            }
        }
    }
    Ok(summary)
}

fn same_scenario(s: &Scenario, new: &callgrade_core::NewScenario) -> bool {
    let mut tags = new.tags.clone();
    tags.sort();
    let mut stored = s.tags.clone();
    stored.sort();
    s.instructions == new.instructions
        && s.expected_outcome_prompt == new.expected_outcome_prompt
        && stored == tags
        && s.direction == new.direction
        && s.tester_phone_number.as_deref() == new.tester_phone_number.as_ref().map(|p| p.as_str())
        && s.persona == new.persona
        && s.first_message == new.first_message
        && s.tool_mocks == new.tool_mocks
        && s.unmatched_tool_result == new.unmatched_tool_result
        && s.stop_rules == new.stop_rules
        && s.quarantined == new.quarantined
}

/// Creates a result: one pending run per scenario × frequency. Simulated runs (the agent has
/// a connector, or `mode: simulate`) start as soon as a simulator has room.
pub async fn create_result(app: &App, project_id: i64, draft: ResultDraft) -> Result<TestResult> {
    let new = draft.validate().map_err(AppError::Invalid)?;
    let result = app.store.create_result(project_id, &new, app.now()).await?;
    if result.mode == RunMode::Simulate {
        app.simulator.wake();
    }
    Ok(result)
}

/// Records what the harness reports about a run's call (started, ended, cancelled). A
/// cancelled simulated run stops calling the agent at once.
pub async fn report(app: &App, project_id: i64, run_id: i64, event: RunEvent) -> Result<Run> {
    let run = app
        .store
        .run_event(project_id, run_id, event, app.now())
        .await?;
    if event == RunEvent::Cancel {
        app.simulator.stop(run_id);
    }
    Ok(run)
}

/// Starts the scenarios of a result's failed (or undecided) runs again, as a new result with
/// the same agent and mode (not its label: a rerun is not a baseline): "run failed scenarios
/// again".
pub async fn rerun_failed(app: &App, project_id: i64, result_id: i64) -> Result<TestResult> {
    let result = app
        .store
        .result(project_id, result_id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no result with id {result_id}")))?;
    let mut scenario_ids: Vec<i64> = result
        .runs
        .iter()
        .filter(|r| r.status.is_final() && r.success != Some(true))
        .map(|r| r.scenario_id)
        .collect();
    let mut seen = std::collections::HashSet::new();
    scenario_ids.retain(|id| seen.insert(*id));
    if scenario_ids.is_empty() {
        return Err(AppError::Conflict(format!(
            "result {result_id} has no finished run that failed"
        )));
    }
    // The same number of runs per scenario as the result had.
    let frequency = result
        .runs
        .iter()
        .filter(|r| r.scenario_id == scenario_ids[0])
        .count();
    let draft = ResultDraft {
        agent_id: result.agent_id,
        scenario_ids,
        tags: Vec::new(),
        frequency: Some(u32::try_from(frequency.max(1)).unwrap_or(1)),
        name: Some(format!("rerun of result {result_id}")),
        mode: Some(result.mode.as_str().into()),
        label: None,
    };
    create_result(app, project_id, draft).await
}

/// The gate over a finished (or unfinished) result: per scenario pass^k, the Wilson interval
/// and, against a baseline result, each scenario's change.
pub async fn gate(
    app: &App,
    project_id: i64,
    result_id: i64,
    baseline: Option<Baseline<'_>>,
    options: &GateOptions,
) -> Result<GateReport> {
    let current = outcomes(app, project_id, result_id).await?;
    let baseline_id = match baseline {
        None => None,
        Some(Baseline::Result(id)) => Some(id),
        Some(Baseline::Label(label)) => Some(
            // Never the result itself: a result labelled `main` gated against `main` compares
            // with the main before it.
            app.store
                .latest_finished_result(project_id, label, result_id)
                .await?
                .ok_or_else(|| {
                    AppError::not_found(format!(
                        "no finished result labelled {label:?} to compare with"
                    ))
                })?,
        ),
    };
    let baseline = match baseline_id {
        Some(id) => Some(tally(&outcomes(app, project_id, id).await?)),
        None => None,
    };
    let mut report = callgrade_core::gate(&tally(&current), baseline.as_ref(), options);
    report.baseline_result_id = baseline_id;
    Ok(report)
}

/// Which result a gate compares with.
#[derive(Debug, Clone, Copy)]
pub enum Baseline<'a> {
    Result(i64),
    /// The newest finished result with this label, other than the one gated.
    Label(&'a str),
}

async fn outcomes(app: &App, project_id: i64, result_id: i64) -> Result<Vec<RunOutcome>> {
    let result = app
        .store
        .result(project_id, result_id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no result with id {result_id}")))?;
    Ok(result.runs.iter().map(run_outcome).collect())
}

/// A run's verdict for the gate: passed or failed by the rubric once completed; anything else
/// (failed to run, timed out, cancelled, unfinished, undecided by the rubric) is undecided.
pub fn run_outcome(run: &Run) -> RunOutcome {
    let verdict = match (run.status, run.success) {
        (RunStatus::Completed, Some(true)) => RunVerdict::Passed,
        (RunStatus::Completed, Some(false)) => RunVerdict::Failed,
        _ => RunVerdict::Undecided,
    };
    RunOutcome {
        run_id: run.id,
        scenario_id: run.scenario_id,
        scenario_name: run.scenario_name.clone(),
        quarantined: run.quarantined,
        verdict,
    }
}

/// Attaches a stored call to a run by hand (ambiguous and late cases); the run's evaluation is
/// queued and a worker woken by the store.
pub async fn attach(app: &App, project_id: i64, run_id: i64, call_id: &str) -> Result<Run> {
    Ok(app
        .store
        .attach_call(project_id, run_id, call_id.trim(), app.now())
        .await?)
}
