//! Simulated runs: this process plays the conversations of pending simulated runs, a bounded
//! number at once, each under a lease the store keeps; the transcript goes in through the same
//! ingest use case as a webhook call (route `simulation`), is matched to its run and evaluated
//! like any other call.
//!
//! A run is never left hanging: the agent failing fails it with the reason; a cancel stops the
//! conversation at once (the request in flight is dropped); a run whose instance stopped
//! mid-conversation is failed when its lease expires, by whichever instance looks first.

use callgrade_core::{Answer, RejectionKind, SimulatorSettings, VoiceSettings};
use callgrade_sim::{
    play, ChatClient, Ending, LlmEndpoint, Outcome, Plan, Progress, SpeechEndpoint, VoiceEndpoints,
};
use callgrade_store::{ClaimedSimulation, SimulationProgress, SimulatorSettingsPatch};
use chrono::TimeDelta;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

use crate::{ingest, App, AppError, Result};

/// The route simulated transcripts are recorded under in the delivery log.
pub const ROUTE: &str = "simulation";

/// How this process plays simulated callers.
#[derive(Clone)]
pub struct SimulationSettings {
    /// Conversations this process plays at once (each project also has its own limit); 0
    /// leaves simulation to other instances.
    pub slots: usize,
    /// A conversation whose instance stops renewing for this long is failed.
    pub lease: TimeDelta,
    /// How often an idle simulator looks for pending runs (it is also woken by new ones).
    pub poll: Duration,
    /// The server-wide caller LLM, for projects that set none.
    pub default_base_url: Option<String>,
    pub default_model: Option<String>,
    pub default_api_key: Option<String>,
    /// How long one request to the caller's LLM may take.
    pub caller_timeout: Duration,
}

impl Default for SimulationSettings {
    fn default() -> Self {
        Self {
            slots: 16,
            lease: TimeDelta::seconds(30),
            poll: Duration::from_secs(1),
            default_base_url: None,
            default_model: None,
            default_api_key: None,
            caller_timeout: Duration::from_secs(60),
        }
    }
}

impl std::fmt::Debug for SimulationSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulationSettings")
            .field("slots", &self.slots)
            .field("lease", &self.lease)
            .field("default_base_url", &self.default_base_url)
            .field("default_model", &self.default_model)
            .field(
                "default_api_key",
                &self.default_api_key.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

/// What the simulator of this process shares: the wake-up signal, the conversations it plays
/// (so a cancel reaches them at once), and the HTTP client.
#[derive(Default)]
pub struct Simulator {
    wake: Notify,
    playing: Mutex<HashMap<i64, Arc<Notify>>>,
    client: ChatClient,
}

impl Simulator {
    /// New pending runs, or a slot freed: look again now.
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }

    /// Stops this process's conversation of `run_id`, if it plays it.
    pub fn stop(&self, run_id: i64) {
        let playing = self.playing.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(stop) = playing.get(&run_id) {
            stop.notify_one();
        }
    }

    /// How many conversations this process is playing.
    pub fn playing(&self) -> usize {
        self.playing_runs().len()
    }

    /// The runs whose conversations this process is playing.
    pub fn playing_runs(&self) -> Vec<i64> {
        let playing = self.playing.lock().unwrap_or_else(PoisonError::into_inner);
        playing.keys().copied().collect()
    }

    fn register(&self, run_id: i64) -> Arc<Notify> {
        let stop = Arc::new(Notify::new());
        self.playing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(run_id, stop.clone());
        stop
    }

    fn unregister(&self, run_id: i64) {
        self.playing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&run_id);
    }
}

/// The project's simulator endpoint (its key never shown).
pub async fn simulator_settings(app: &App, project_id: i64) -> Result<SimulatorSettings> {
    Ok(app.store.simulator_settings(project_id).await?)
}

/// Changes the project's simulator endpoint; `None` keeps a field, `Some("")` clears it.
pub async fn configure_simulator(
    app: &App,
    project_id: i64,
    patch: &SimulatorSettingsPatch,
) -> Result<SimulatorSettings> {
    let mut errors = Vec::new();
    if let Some(url) = patch.base_url.as_deref().filter(|u| !u.is_empty()) {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            errors.push(callgrade_core::FieldError::new(
                "base_url",
                format!("must be an http:// or https:// URL (got {url:?})"),
            ));
        }
    }
    if let Some(voice) = &patch.voice {
        for (field, url) in [
            ("tts_base_url", &voice.tts_base_url),
            ("stt_base_url", &voice.stt_base_url),
        ] {
            if let Some(url) = url.as_deref().filter(|u| !u.is_empty()) {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    errors.push(callgrade_core::FieldError::new(
                        format!("voice.{field}"),
                        format!("must be an http:// or https:// URL (got {url:?})"),
                    ));
                }
            }
        }
        for (field, value) in [
            ("tts_model", &voice.tts_model),
            ("voice", &voice.voice),
            ("stt_model", &voice.stt_model),
        ] {
            if value
                .as_deref()
                .is_some_and(|v| !v.is_empty() && v.trim().is_empty())
            {
                errors.push(callgrade_core::FieldError::new(
                    format!("voice.{field}"),
                    "must not be blank (send \"\" to clear it)",
                ));
            }
        }
    }
    if let Some(c) = patch.concurrency.filter(|c| !(1..=64).contains(c)) {
        errors.push(callgrade_core::FieldError::new(
            "concurrency",
            format!("must be between 1 and 64 (got {c})"),
        ));
    }
    if let Some(b) = patch
        .token_budget
        .filter(|b| !(1_000..=10_000_000).contains(b))
    {
        errors.push(callgrade_core::FieldError::new(
            "token_budget",
            format!("must be between 1000 and 10000000 (got {b})"),
        ));
    }
    if !errors.is_empty() {
        return Err(AppError::Invalid(errors));
    }
    app.store.set_simulator_settings(project_id, patch).await?;
    simulator_settings(app, project_id).await
}

/// The caller's LLM for a project: its own settings, else the server's.
fn caller_endpoint(
    app: &App,
    project: &SimulatorSettings,
) -> std::result::Result<LlmEndpoint, String> {
    let defaults = &app.settings.simulation;
    let base_url = project
        .base_url
        .clone()
        .or_else(|| defaults.default_base_url.clone());
    let model = project
        .model
        .clone()
        .or_else(|| defaults.default_model.clone());
    match (base_url, model) {
        (Some(base_url), Some(model)) => Ok(LlmEndpoint {
            base_url,
            model,
            api_key: project
                .api_key
                .clone()
                .or_else(|| defaults.default_api_key.clone()),
            timeout: defaults.caller_timeout,
        }),
        _ => Err("no simulator endpoint is configured: set the project's (PUT /api/v1/simulator, or `callgrade project simulator`) or the server's (--simulator-base-url and --simulator-model)".into()),
    }
}

/// Text to speech and speech to text for a voice run: the project's voice settings, each
/// defaulting to the caller's endpoint (OpenAI serves all three) with OpenAI's model names.
fn voice_endpoints(caller: &LlmEndpoint, project: &SimulatorSettings) -> VoiceEndpoints {
    let voice = &project.voice;
    let endpoint = |base_url: &Option<String>,
                    model: &Option<String>,
                    key: &Option<String>,
                    default_model: &str| {
        let own_url = base_url.is_some();
        SpeechEndpoint {
            base_url: base_url.clone().unwrap_or_else(|| caller.base_url.clone()),
            model: model.clone().unwrap_or_else(|| default_model.to_owned()),
            // The caller's key goes only to the caller's own host.
            api_key: key
                .clone()
                .or_else(|| (!own_url).then(|| caller.api_key.clone()).flatten()),
            timeout: caller.timeout,
        }
    };
    VoiceEndpoints {
        tts: endpoint(
            &voice.tts_base_url,
            &voice.tts_model,
            &voice.tts_api_key,
            VoiceSettings::DEFAULT_TTS_MODEL,
        ),
        voice: voice
            .voice
            .clone()
            .unwrap_or_else(|| VoiceSettings::DEFAULT_VOICE.to_owned()),
        stt: endpoint(
            &voice.stt_base_url,
            &voice.stt_model,
            &voice.stt_api_key,
            VoiceSettings::DEFAULT_STT_MODEL,
        ),
    }
}

/// Starts this process's simulator when it has slots; abort the handle to stop it.
pub fn spawn(app: &App) -> Option<tokio::task::JoinHandle<()>> {
    (app.settings.simulation.slots > 0).then(|| {
        let name = format!(
            "{}-{:06x}-sim",
            std::process::id(),
            rand::random::<u32>() & 0xFF_FFFF
        );
        tokio::spawn(run(app.clone(), name))
    })
}

/// Plays pending simulated runs until the task is aborted.
pub async fn run(app: App, name: String) {
    let settings = app.settings.simulation.clone();
    let slots = Arc::new(Semaphore::new(settings.slots));
    loop {
        let woken = app.simulator.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if let Err(e) = fail_abandoned(&app).await {
            tracing::warn!(error = %e, "could not look for abandoned simulations");
        }
        let free = slots.available_permits() as u32;
        if free > 0 {
            match app
                .store
                .claim_simulations(&name, app.now(), settings.lease, free)
                .await
            {
                Ok(claimed) => {
                    for claim in claimed {
                        let Ok(permit) = slots.clone().try_acquire_owned() else {
                            break;
                        };
                        let (app, name) = (app.clone(), name.clone());
                        tokio::spawn(async move {
                            conduct(&app, &name, claim).await;
                            drop(permit);
                            app.simulator.wake();
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not claim simulated runs"),
            }
        }
        tokio::select! {
            () = woken => {}
            () = tokio::time::sleep(settings.poll) => {}
        }
    }
}

/// Fails the simulated runs whose instance stopped mid-conversation (this process's own are
/// alive, whatever their lease says: one long turn may outlast it).
pub async fn fail_abandoned(app: &App) -> Result<Vec<i64>> {
    let playing = app.simulator.playing_runs();
    let failed = app
        .store
        .fail_abandoned_simulations(app.now(), &playing)
        .await?;
    if !failed.is_empty() {
        tracing::warn!(runs = ?failed, "simulated runs abandoned mid-conversation were failed");
    }
    Ok(failed)
}

/// Renews a conversation's lease every third of it, with its latest progress; stops the
/// conversation once the run is no longer ours.
async fn renew_lease(
    app: App,
    run_id: i64,
    worker: String,
    last: Arc<Mutex<SimulationProgress>>,
    stop: Arc<Notify>,
) {
    let lease = app.settings.simulation.lease;
    let every = (lease / 3)
        .to_std()
        .unwrap_or(Duration::from_secs(10))
        .max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let progress = last.lock().unwrap_or_else(PoisonError::into_inner).clone();
        match (app.store)
            .renew_simulation(run_id, &worker, &progress, app.now(), lease)
            .await
        {
            Ok(true) => {}
            Ok(false) => return stop.notify_one(),
            Err(e) => tracing::warn!(run_id, error = %e, "could not renew a simulation's lease"),
        }
    }
}

/// Writes progress as the conversation goes; says stop once the run is no longer ours.
struct StoreProgress<'a> {
    app: &'a App,
    run_id: i64,
    worker: &'a str,
    /// The latest progress, for the lease renewer.
    last: Arc<Mutex<SimulationProgress>>,
}

#[async_trait::async_trait]
impl Progress for StoreProgress<'_> {
    async fn update(
        &mut self,
        messages: &[callgrade_core::Message],
        usage: &callgrade_core::Usage,
    ) -> bool {
        let progress = SimulationProgress {
            messages: messages.to_vec(),
            usage: *usage,
            stop_reason: None,
        };
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone_from(&progress);
        let lease = self.app.settings.simulation.lease;
        match (self.app.store)
            .renew_simulation(self.run_id, self.worker, &progress, self.app.now(), lease)
            .await
        {
            Ok(ours) => ours,
            Err(e) => {
                // A store hiccup does not stop the call; the next turn tries again.
                tracing::warn!(run_id = self.run_id, error = %e, "could not record a simulation's progress");
                true
            }
        }
    }
}

/// Plays one claimed run to its end and records how it ended.
async fn conduct(app: &App, worker: &str, claim: ClaimedSimulation) {
    let run_id = claim.run.id;
    let fail = |reason: String, progress: SimulationProgress| async move {
        tracing::info!(run_id, %reason, "simulated run failed");
        if let Err(e) = app
            .store
            .fail_simulation(run_id, worker, &reason, &progress, app.now())
            .await
        {
            tracing::warn!(run_id, error = %e, "could not fail a simulated run");
        }
    };
    let Some(connector) = claim.connector.as_ref() else {
        let reason = format!(
            "agent {} has no connector any more, so callgrade cannot call it",
            claim.agent.id
        );
        return fail(reason, SimulationProgress::default()).await;
    };
    let caller = match caller_endpoint(app, &claim.simulator) {
        Ok(endpoint) => endpoint,
        Err(reason) => return fail(reason, SimulationProgress::default()).await,
    };
    let plan = Plan {
        run_id,
        scenario: &claim.scenario,
        agent: &claim.agent,
        connector,
        voice: connector
            .is_voice()
            .then(|| voice_endpoints(&caller, &claim.simulator)),
        caller,
        token_budget: claim.simulator.token_budget,
    };
    let stop = app.simulator.register(run_id);
    let last = Arc::new(Mutex::new(SimulationProgress::default()));
    // Turns renew the lease; so does this, in between, so that a turn longer than the lease
    // does not look abandoned to other instances, and a cancel elsewhere stops us mid-turn.
    let renewer = tokio::spawn(renew_lease(
        app.clone(),
        run_id,
        worker.to_owned(),
        last.clone(),
        stop.clone(),
    ));
    let mut progress = StoreProgress {
        app,
        run_id,
        worker,
        last,
    };
    let session_id = format!("callgrade-run-{run_id}");
    let ending = tokio::select! {
        ending = play(&app.simulator.client, plan, session_id, app.now(), &mut progress) => Some(ending),
        () = stop.notified() => None,
    };
    renewer.abort();
    app.simulator.unregister(run_id);
    let progress_of = |o: &Outcome| SimulationProgress {
        messages: o.messages.clone(),
        usage: o.usage,
        stop_reason: o.stop_reason,
    };
    match ending {
        // Cancelled: the run's state already says so.
        None | Some(Ending::Stopped(_)) => {
            tracing::info!(run_id, "simulated run stopped");
        }
        Some(Ending::Failed { reason, outcome }) => fail(reason, progress_of(&outcome)).await,
        Some(Ending::Finished(outcome)) => {
            let record = progress_of(&outcome);
            let lease = app.settings.simulation.lease;
            match app
                .store
                .renew_simulation(run_id, worker, &record, app.now(), lease)
                .await
            {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => tracing::warn!(run_id, error = %e, "could not record a simulation's end"),
            }
            match store_call(app, &claim, &outcome).await {
                Err(e) => {
                    let reason = format!(
                        "its transcript could not be stored: {}",
                        e.problems().join("; ")
                    );
                    return fail(reason, record).await;
                }
                // Stored, but not as this run's call: the run must not wait for it forever.
                Ok(receipt) if receipt.calls.first().and_then(|c| c.run_id) != Some(run_id) => {
                    let call = receipt.calls.first();
                    let reason = format!(
                        "its transcript was stored as call {} but not attached to the run: {}",
                        call.map_or("?", |c| c.call_id.as_str()),
                        call.and_then(|c| c.reason.as_deref())
                            .unwrap_or("no reason given")
                    );
                    return fail(reason, record).await;
                }
                Ok(_) => {}
            }
        }
    }
    if let Err(e) = app.store.release_simulation(run_id, worker).await {
        tracing::warn!(run_id, error = %e, "could not release a simulated run");
    }
}

/// A voice call's recording (μ-law, as the line carried it; the caller left, the agent
/// right), written to the recording store to be stored with the call. Without it the call is
/// still kept, and says why in the log.
async fn prepare_recording(
    app: &App,
    project_id: i64,
    recording: &callgrade_sim::Recording,
) -> Option<callgrade_core::AnalysedRecording> {
    let bytes = callgrade_audio::wav_bytes(&recording.pcm, callgrade_audio::WavEncoding::Mulaw);
    let origin = crate::recordings::Origin::Simulation;
    match crate::recordings::prepare(app, project_id, bytes, origin, 1).await {
        Ok(prepared) => Some(prepared),
        Err(e) => {
            tracing::warn!(project_id, error = %e, "could not keep a simulated call's recording");
            None
        }
    }
}

/// How the delivery log records a simulated transcript: accepted as stored, refused as invalid.
fn simulation_answer(kind: Option<RejectionKind>) -> u16 {
    match kind {
        None => 202,
        Some(RejectionKind::Conflict) => 409,
        Some(_) => 422,
    }
}

/// The conversation as a webhook body, through the ingest use case: it is logged, stored,
/// matched to its run (`matched_by: simulation`) and queued for evaluation like any call.
async fn store_call(
    app: &App,
    claim: &ClaimedSimulation,
    outcome: &Outcome,
) -> Result<callgrade_store::Receipt> {
    let project = app
        .store
        .project(claim.project_id)
        .await?
        .ok_or_else(|| AppError::not_found("the run's project is gone"))?;
    let start = outcome.started_at.timestamp_millis();
    let messages: Vec<_> = outcome
        .messages
        .iter()
        .map(|m| {
            let mut v = json!({"role": m.role.as_str(), "content": m.content,
                "start_time": m.start_at_ms.unwrap_or(start), "end_time": m.end_at_ms.unwrap_or(start)});
            if let Some(data) = &m.data {
                v["data"] = data.clone();
            }
            v
        })
        .collect();
    let stop = outcome.stop_reason;
    let scenario = &claim.scenario;
    let body = json!({
        "agent_id": claim.agent.id,
        "calls": [{
            "id": format!("sim-run-{}", claim.run.id),
            "run_id": claim.run.id,
            "startedAt": outcome.started_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "endedAt": outcome.ended_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "endedReason": stop.map_or("unknown", |s| s.ended_reason()),
            "channel": if claim.connector.as_ref().is_some_and(|c| c.is_voice()) { "voice" } else { "text" },
            "messages": messages,
            "metadata": {"simulation": {
                "result_id": claim.run.result_id,
                "scenario_id": scenario.id,
                "persona": scenario.persona.as_ref().map(|p| &p.name),
                "stop_reason": stop,
                "usage": outcome.usage,
                "pacing": outcome.recording.as_ref().map(|r| json!({
                    "frames": r.pacing.frames,
                    "late_p50_ms": r.pacing.late_p50_ms,
                    "late_p99_ms": r.pacing.late_p99_ms,
                    "late_max_ms": r.pacing.late_max_ms,
                })),
            }},
        }],
    });
    let delivery = ingest::Delivery {
        project: &project,
        route: ROUTE,
        received_at: app.now(),
        answer: simulation_answer as Answer,
        format: callgrade_core::Format::Custom,
    };
    let bytes = serde_json::to_vec(&body).expect("a transcript serialises");
    // The recording goes in with the call, so its first evaluation has the audio.
    let recording = match &outcome.recording {
        Some(r) => prepare_recording(app, claim.project_id, r).await,
        None => None,
    };
    match recording {
        Some(recording) => ingest::receive_with_recording(app, &delivery, bytes, recording).await,
        None => ingest::receive(app, &delivery, bytes, true).await,
    }
}

/// What the simulator endpoint is asked for when a scenario is drafted from a call.
const DRAFT_PROMPT: &str = "You turn real phone calls with a company's voice agent into test scenarios. \
Read the call and answer with one JSON object, nothing else: \
{\"name\": a short kebab-case name for the scenario, \
\"persona\": {\"name\": a first name for the caller, \"language\": the language they spoke, \
\"traits\": any of [\"impatient\", \"confused\", \"interrupts\", \"off_topic\", \"angry\", \"terse\", \"verbose\", \"elderly\"] that fit, \
\"description\": one sentence about the caller}, \
\"instructions\": what the caller wants and how they go about it, written to the caller as \"you\", \
\"expected_outcome\": what the agent must achieve for the call to count as a success, \
\"first_message\": the caller's first sentence}. \
Leave out names, numbers and details that identify the real caller.";

/// Drafts a scenario from a stored call, for review: persona, instructions, expected outcome
/// and first message through the simulator endpoint; tool mocks from the call's own tool rows
/// (each call's arguments and the result it got).
pub async fn draft_from_call(
    app: &App,
    project_id: i64,
    call_id: &str,
) -> Result<callgrade_core::ScenarioDraft> {
    let call = app
        .store
        .call(project_id, call_id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no call {call_id:?} in this project")))?;
    let agent_id = call.summary.agent_id.ok_or_else(|| {
        AppError::bad_request("the call names no agent, so a scenario cannot be written for it")
    })?;
    let settings = app.store.simulator_settings(project_id).await?;
    let endpoint = caller_endpoint(app, &settings).map_err(AppError::BadRequest)?;
    let transcript: Vec<String> = call
        .messages
        .iter()
        .filter(|m| !m.content.trim().is_empty())
        .map(|m| format!("{}: {}", m.role.as_str(), m.content.trim()))
        .collect();
    let messages = [
        json!({"role": "system", "content": DRAFT_PROMPT}),
        json!({"role": "user", "content": transcript.join("\n")}),
    ];
    let completion = app
        .simulator
        .client
        .complete(&endpoint, &messages, &[])
        .await
        .map_err(|e| AppError::Upstream(format!("the simulator endpoint failed: {e}")))?;
    let text = completion.content.unwrap_or_default();
    let object = text
        .find('{')
        .zip(text.rfind('}'))
        .and_then(|(a, b)| serde_json::from_str::<serde_json::Value>(&text[a..=b]).ok())
        .ok_or_else(|| {
            AppError::Upstream(format!(
                "the simulator endpoint did not answer with a JSON object: {}",
                text.chars().take(200).collect::<String>()
            ))
        })?;
    let field = |k: &str| {
        object
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    let persona = object.get("persona").map(|p| {
        let text = |k: &str| {
            p.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .trim()
                .to_owned()
        };
        callgrade_core::Persona {
            name: Some(text("name"))
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "Caller".into()),
            language: Some(text("language"))
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| "en".into()),
            // Traits the model made up are left out.
            traits: p
                .get("traits")
                .and_then(|t| t.as_array())
                .into_iter()
                .flatten()
                .filter_map(|t| serde_json::from_value(t.clone()).ok())
                .collect(),
            description: text("description"),
            voice: None,
        }
    });
    let name = Some(field("name"))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("from-call-{}", call.summary.external_id));
    Ok(callgrade_core::ScenarioDraft {
        agent_id,
        name: name.chars().take(callgrade_core::NAME_MAX_CHARS).collect(),
        instructions: field("instructions"),
        expected_outcome_prompt: field("expected_outcome"),
        tags: vec!["from-call".into()],
        direction: "inbound".into(),
        tester_phone_number: None,
        persona,
        first_message: Some(field("first_message")).filter(|m| !m.is_empty()),
        tool_mocks: tool_mocks_of(&call.messages),
        unmatched_tool_result: None,
        max_turns: None,
        max_seconds: None,
        quarantined: false,
    })
}

/// A mock per distinct tool call of a transcript: its name, its arguments as `when`, and the
/// result the call got (the next result row with its id, else the next result row).
pub fn tool_mocks_of(messages: &[callgrade_core::Message]) -> Vec<callgrade_core::ToolMock> {
    use callgrade_core::Role;
    let data =
        |m: &callgrade_core::Message, k: &str| m.data.as_ref().and_then(|d| d.get(k)).cloned();
    let mut mocks: Vec<callgrade_core::ToolMock> = Vec::new();
    for (i, call) in messages.iter().enumerate() {
        if call.role != Role::FunctionCall {
            continue;
        }
        let Some(name) = data(call, "name")
            .and_then(|n| n.as_str().map(str::to_owned))
            .or_else(|| Some(call.content.trim().to_owned()).filter(|c| !c.is_empty()))
        else {
            continue;
        };
        let id = data(call, "id");
        let result = messages[i + 1..]
            .iter()
            .filter(|m| m.role == Role::FunctionCallResult)
            .find(|m| id.is_none() || data(m, "id") == id)
            .map(|m| {
                data(m, "result")
                    .or_else(|| m.data.clone())
                    .unwrap_or_else(|| json!(m.content))
            });
        let Some(result) = result else { continue };
        let when = match data(call, "arguments") {
            Some(serde_json::Value::Object(args)) if !args.is_empty() => Some(args),
            Some(serde_json::Value::String(s)) => serde_json::from_str(&s).ok(),
            _ => None,
        };
        let mock = callgrade_core::ToolMock { name, when, result };
        if !mocks.contains(&mock) {
            mocks.push(mock);
        }
    }
    mocks
}
