//! Simulated callers: one test conversation between an LLM playing the caller (a persona with
//! a goal) and the agent under test, reached through its [`Connector`]. Pure of storage: the
//! caller of [`play`] persists progress through [`Progress`] and stores the outcome.
//!
//! Message times are the real wall-clock times of the exchange (an [`Instant`] measures them),
//! so the agent's response time per turn is what the caller waited.

mod agent;
mod line;
mod llm;
mod speech;
mod voice;

pub use llm::{ChatClient, Completion, LlmEndpoint, ToolCall};
pub use speech::{SpeechEndpoint, VoiceEndpoints};
pub use voice::{Pacing, Recording};

use async_trait::async_trait;
use callgrade_core::{
    caller_system_prompt, Agent, Connector, Message, Role, Scenario, StopReason, Usage,
};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

use agent::AgentSession;

/// Everything one conversation needs.
pub struct Plan<'a> {
    pub run_id: i64,
    pub scenario: &'a Scenario,
    pub agent: &'a Agent,
    pub connector: &'a Connector,
    /// The LLM that plays the caller.
    pub caller: LlmEndpoint,
    /// Caller and agent LLM tokens the run may spend.
    pub token_budget: u64,
    /// Text to speech and speech to text, for a voice connector (`media_stream`).
    pub voice: Option<VoiceEndpoints>,
}

/// Told after every turn; answers whether to go on (false: the run was cancelled or lost).
#[async_trait]
pub trait Progress: Send {
    async fn update(&mut self, messages: &[Message], usage: &Usage) -> bool;
}

/// How a conversation ended.
#[derive(Debug)]
pub enum Ending {
    /// It ran to one of its stop rules.
    Finished(Outcome),
    /// [`Progress::update`] said stop.
    Stopped(Outcome),
    /// The agent or the caller's LLM failed after retries, with the exact reason.
    Failed { reason: String, outcome: Outcome },
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub messages: Vec<Message>,
    pub usage: Usage,
    pub stop_reason: Option<StopReason>,
    /// A voice call's stereo recording (caller left, agent right) and its pacing.
    pub recording: Option<Recording>,
}

/// The tool the caller hangs up with.
fn end_call_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "end_call",
        "description": "Hang up: the goal is reached, or the conversation cannot go on.",
        "parameters": {"type": "object", "properties": {
            "reason": {"type": "string", "description": "Why you are hanging up."}}}
    }})
}

/// A conversation in progress: its messages with times, and what it spent.
struct Transcript {
    clock: Instant,
    started_at: DateTime<Utc>,
    messages: Vec<Message>,
    usage: Usage,
    turns: u32,
}

impl Transcript {
    fn now(&self) -> f64 {
        self.clock.elapsed().as_secs_f64()
    }

    /// A message said at `start`, done at `end` (seconds from the call's start).
    fn push(&mut self, role: Role, content: String, data: Option<Value>, start: f64, end: f64) {
        let at = |s: f64| self.started_at.timestamp_millis() + (s * 1000.0).round() as i64;
        self.messages.push(Message {
            role,
            content,
            start_offset: Some(round_ms(start)),
            end_offset: Some(round_ms(end)),
            start_at_ms: Some(at(start)),
            end_at_ms: Some(at(end)),
            data,
        });
    }

    fn outcome(self, stop_reason: Option<StopReason>) -> Outcome {
        let elapsed = chrono::TimeDelta::milliseconds(self.clock.elapsed().as_millis() as i64);
        Outcome {
            started_at: self.started_at,
            ended_at: self.started_at + elapsed,
            messages: self.messages,
            usage: self.usage,
            stop_reason,
            recording: None,
        }
    }
}

fn round_ms(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

/// What a step of the loop decided.
enum Step {
    Go,
    Stop(StopReason),
    Fail(String),
}

/// Plays one conversation to its end. `started_at` is the call's start as the server's clock
/// tells it; offsets from it are measured.
pub async fn play(
    client: &ChatClient,
    plan: Plan<'_>,
    session_id: String,
    started_at: DateTime<Utc>,
    progress: &mut dyn Progress,
) -> Ending {
    if let Connector::MediaStream(line) = plan.connector {
        return voice::play(client, &plan, line, session_id, started_at, progress).await;
    }
    let mut t = Transcript {
        clock: Instant::now(),
        started_at,
        messages: Vec::new(),
        usage: Usage::default(),
        turns: 0,
    };
    let mut agent = AgentSession::new(client, &plan, session_id);
    let rules = plan.scenario.stop_rules;
    let deadline = Duration::from_secs(u64::from(rules.max_seconds));
    let within_limits = |t: &Transcript| -> Step {
        if t.usage.tokens() >= plan.token_budget {
            Step::Stop(StopReason::TokenBudget)
        } else if t.clock.elapsed() >= deadline {
            Step::Stop(StopReason::MaxSeconds)
        } else if t.turns >= rules.max_turns {
            Step::Stop(StopReason::MaxTurns)
        } else {
            Step::Go
        }
    };

    // The agent may open (a greeting); then turns alternate, the caller first.
    let mut step = agent.start(&mut t).await;
    let mut caller_turn = true;
    if let (Step::Go, Some(first)) = (&step, plan.scenario.first_message.as_ref()) {
        let at = t.now();
        t.push(Role::User, first.clone(), None, at, at);
        t.turns += 1;
        caller_turn = false;
    }
    loop {
        if let Step::Go = step {
            step = within_limits(&t);
        }
        if let Step::Go = step {
            if !progress.update(&t.messages, &t.usage).await {
                agent.end(&t).await;
                return Ending::Stopped(t.outcome(None));
            }
            step = if caller_turn {
                caller_says(client, &plan, &mut t).await
            } else {
                agent.reply(&mut t).await
            };
            t.turns += 1;
            caller_turn = !caller_turn;
            continue;
        }
        let _ = progress.update(&t.messages, &t.usage).await;
        return match step {
            Step::Stop(reason) => {
                agent.end(&t).await;
                Ending::Finished(t.outcome(Some(reason)))
            }
            Step::Fail(reason) => Ending::Failed {
                reason,
                outcome: t.outcome(None),
            },
            Step::Go => unreachable!("the loop only leaves on a stop or a failure"),
        };
    }
}

/// The caller's LLM says its next line, or hangs up.
async fn caller_says(client: &ChatClient, plan: &Plan<'_>, t: &mut Transcript) -> Step {
    let asked = t.now();
    let line = match next_caller_line(client, plan, &t.messages, &mut t.usage).await {
        Ok(line) => line,
        Err(e) => return Step::Fail(e),
    };
    let said = t.now();
    if let Some(content) = line.content {
        // The caller starts speaking when its line is ready: its LLM's time is not the agent's.
        t.push(Role::User, content, None, said, said);
    } else if !line.hangs_up {
        return Step::Fail(format!(
            "the simulator endpoint (the caller's LLM) answered with neither a line nor end_call after {:.1} s",
            said - asked
        ));
    }
    if line.hangs_up {
        Step::Stop(StopReason::CallerEnded)
    } else {
        Step::Go
    }
}

/// What the caller says next.
pub(crate) struct CallerLine {
    /// `None` when it hangs up without a word.
    pub content: Option<String>,
    pub hangs_up: bool,
}

/// Asks the caller's LLM for its next line, given the conversation so far.
pub(crate) async fn next_caller_line(
    client: &ChatClient,
    plan: &Plan<'_>,
    transcript: &[Message],
    usage: &mut Usage,
) -> Result<CallerLine, String> {
    let system = caller_system_prompt(plan.scenario.persona.as_ref(), &plan.scenario.instructions);
    let mut messages = vec![json!({"role": "system", "content": system})];
    // The caller hears the agent (its "user") and its own lines; tool rows are the agent's.
    for m in transcript {
        let role = match m.role {
            Role::Bot => "user",
            Role::User => "assistant",
            _ => continue,
        };
        if !m.content.is_empty() {
            messages.push(json!({"role": role, "content": m.content}));
        }
    }
    if messages.len() == 1 {
        messages.push(json!({"role": "user", "content": "(The call has connected; the agent has not spoken yet. Say why you are calling.)"}));
    }
    let completion = client
        .complete(&plan.caller, &messages, &[end_call_tool()])
        .await
        .map_err(|e| format!("the simulator endpoint (the caller's LLM) failed: {e}"))?;
    usage.caller_requests += 1;
    usage.caller_tokens += completion.tokens;
    let hangs_up = completion.tool_calls.iter().any(|c| c.name == "end_call");
    let content = completion
        .content
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    Ok(CallerLine { content, hangs_up })
}
