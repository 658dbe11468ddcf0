//! A voice conversation over a media stream: the caller's side. The [`line`](crate::line)
//! task keeps the 20 ms clock and the recording; this side listens to its events, hears the
//! agent through speech to text, has the caller's LLM answer, speaks through text to speech,
//! and barges in as the persona says. Message times are the recording's, so they are what a
//! caller heard, not what either side's software believed.

use callgrade_audio::{Pcm, TELEPHONY_RATE};
use callgrade_core::{MediaStream, Message, Role, StopReason, Usage, VoiceTraits};
use chrono::{DateTime, Utc};
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::line::{self, Command, Event, LineProblem, LineSetup};
use crate::{
    next_caller_line, CallerLine, ChatClient, Ending, Outcome, Plan, Progress, VoiceEndpoints,
};

/// How long the caller waits for a greeting before it speaks first.
const GREETING_WAIT: Duration = Duration::from_secs(3);
/// Silence recorded after the caller's goodbye before it hangs up.
const GOODBYE_TAIL_MS: u64 = 300;

/// A voice call's recording: stereo at 8 kHz, the caller in channel 0, the agent in 1.
#[derive(Debug, Clone)]
pub struct Recording {
    pub pcm: Pcm,
    pub pacing: Pacing,
}

/// How closely frames kept their 20 ms times: how late they were sent, in ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    pub frames: usize,
    pub late_p50_ms: f64,
    pub late_p99_ms: f64,
    pub late_max_ms: f64,
}

impl Pacing {
    pub fn of(lateness_us: &[u32]) -> Self {
        let mut sorted = lateness_us.to_vec();
        sorted.sort_unstable();
        let at = |q: f64| {
            sorted
                .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
                .map_or(0.0, |&us| f64::from(us) / 1000.0)
        };
        Self {
            frames: sorted.len(),
            late_p50_ms: at(0.5),
            late_p99_ms: at(0.99),
            late_max_ms: at(1.0),
        }
    }
}

/// What the caller's thinking came back with.
enum Thought {
    /// What the agent said in the transcript's message `message`.
    Heard {
        message: usize,
        text: String,
    },
    /// The caller's next line, spoken (`samples` empty when it hangs up without a word).
    Line {
        line: CallerLine,
        samples: Vec<i16>,
        not_before_ms: u64,
        usage: Usage,
    },
    Failed(String),
}

type Thinking<'a> = Pin<Box<dyn Future<Output = Vec<Thought>> + Send + 'a>>;

/// How the caller speaks and hears: copied into each piece of thinking.
#[derive(Clone, Copy)]
struct Voice<'a> {
    client: &'a ChatClient,
    plan: &'a Plan<'a>,
    endpoints: &'a VoiceEndpoints,
    voice: &'a str,
    rate: f32,
}

impl<'a> Voice<'a> {
    async fn speak(self, text: &str) -> Result<Vec<i16>, String> {
        self.client
            .speak(&self.endpoints.tts, text, self.voice, self.rate)
            .await
            .map_err(|e| format!("text to speech failed: {e}"))
    }

    /// Hears the agent's turn (when given) and, with `reply`, answers it: the scripted first
    /// message when nothing was said yet, else the caller's LLM.
    fn think(
        self,
        mut transcript: Vec<Message>,
        heard: Option<(usize, Vec<i16>)>,
        reply: bool,
        not_before_ms: u64,
    ) -> Thinking<'a> {
        Box::pin(async move {
            let mut out = Vec::new();
            if let Some((message, samples)) = heard {
                match self.client.transcribe(&self.endpoints.stt, &samples).await {
                    Ok(text) => {
                        transcript[message].content.clone_from(&text);
                        out.push(Thought::Heard { message, text });
                    }
                    Err(e) => {
                        out.push(Thought::Failed(format!("speech to text failed: {e}")));
                        return out;
                    }
                }
            }
            if !reply {
                return out;
            }
            let mut usage = Usage::default();
            let first = !transcript.iter().any(|m| m.role == Role::User);
            let line = match (&self.plan.scenario.first_message, first) {
                (Some(text), true) => CallerLine {
                    content: Some(text.clone()),
                    hangs_up: false,
                },
                _ => {
                    sort_by_time(&mut transcript);
                    match next_caller_line(self.client, self.plan, &transcript, &mut usage).await {
                        Ok(line) => line,
                        Err(e) => {
                            out.push(Thought::Failed(e));
                            return out;
                        }
                    }
                }
            };
            let samples = match &line.content {
                Some(text) => match self.speak(text).await {
                    Ok(samples) => samples,
                    Err(e) => {
                        out.push(Thought::Failed(e));
                        return out;
                    }
                },
                None if line.hangs_up => Vec::new(),
                None => {
                    out.push(Thought::Failed(
                        "the simulator endpoint (the caller's LLM) answered with neither a line nor end_call".into(),
                    ));
                    return out;
                }
            };
            out.push(Thought::Line {
                line,
                samples,
                not_before_ms,
                usage,
            });
            out
        })
    }
}

fn sort_by_time(messages: &mut [Message]) {
    messages.sort_by(|a, b| {
        a.start_offset
            .partial_cmp(&b.start_offset)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
}

/// One line the caller has said or is saying.
struct Said {
    text: String,
    hangs_up: bool,
    barge_in: bool,
    started_ms: Option<u64>,
}

/// Why the caller's side stopped listening.
enum End {
    Stop(StopReason),
    /// [`Progress::update`] said stop.
    Cancelled,
    /// The line ended on its own: the agent hung up, or the stream broke.
    LineClosed,
    Fail(String),
}

pub(crate) async fn play(
    client: &ChatClient,
    plan: &Plan<'_>,
    connector: &MediaStream,
    session_id: String,
    started_at: DateTime<Utc>,
    progress: &mut dyn Progress,
) -> Ending {
    let outcome =
        |messages: Vec<Message>, usage: Usage, recording: Option<Recording>, stop_reason| {
            let ms = recording
                .as_ref()
                .map_or(0, |r: &Recording| r.pcm.duration_ms() as i64);
            Outcome {
                started_at,
                ended_at: started_at + chrono::TimeDelta::milliseconds(ms),
                messages,
                usage,
                stop_reason,
                recording,
            }
        };
    let Some(endpoints) = plan.voice.as_ref() else {
        return Ending::Failed {
            reason: "a media_stream agent needs text to speech and speech to text: set the project's voice settings (PUT /api/v1/simulator) or the simulator endpoint they default to".into(),
            outcome: outcome(Vec::new(), Usage::default(), None, None),
        };
    };
    let traits: VoiceTraits = plan
        .scenario
        .persona
        .as_ref()
        .and_then(|p| p.voice.clone())
        .unwrap_or_default();
    let voice = Voice {
        client,
        plan,
        endpoints,
        voice: traits.voice.as_deref().unwrap_or(&endpoints.voice),
        rate: traits.speaking_rate,
    };
    // The barge-in line is spoken once, ahead, so that it comes on time.
    let barge_in = match &traits.barge_in {
        Some(b) => match voice.speak(&b.line).await {
            Ok(samples) => Some((b.clone(), samples)),
            Err(reason) => {
                return Ending::Failed {
                    reason,
                    outcome: outcome(Vec::new(), Usage::default(), None, None),
                }
            }
        },
        None => None,
    };

    let mut custom_parameters = serde_json::Map::new();
    for (k, v) in &connector.custom_parameters {
        custom_parameters.insert(k.clone(), Value::String(v.clone()));
    }
    custom_parameters.insert("run_id".into(), json!(plan.run_id.to_string()));
    custom_parameters.insert("scenario_id".into(), json!(plan.scenario.id.to_string()));
    custom_parameters.insert("session_id".into(), json!(session_id));
    let timeout = Duration::from_secs(u64::from(plan.connector.timeout_seconds()));
    let setup = LineSetup {
        url: connector.url.clone(),
        headers: connector
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        stream_sid: format!("MZ{}", hex32(&session_id)),
        call_sid: format!("CA{}", hex32(&format!("call-{session_id}"))),
        custom_parameters,
        detector: callgrade_core::Detector::default(),
        end_of_turn_ms: u64::from(connector.end_of_turn_ms()),
        connect_timeout: timeout,
    };
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (event_tx, mut events) = mpsc::unbounded_channel();
    let line = tokio::spawn(line::run(setup, command_rx, event_tx));

    let clock = Instant::now();
    let rules = plan.scenario.stop_rules;
    let max_call = Duration::from_secs(u64::from(rules.max_seconds));
    let mut messages: Vec<Message> = Vec::new();
    let mut usage = Usage::default();
    let mut said: Vec<Said> = Vec::new();
    // A line of the caller's is waiting or playing.
    let mut caller_busy = false;
    let mut barge_ins_left = barge_in.as_ref().map_or(0, |(b, _)| b.times);
    let mut thinking: FuturesUnordered<Thinking<'_>> = FuturesUnordered::new();
    // The first line, prepared ahead when it is scripted or goes over the greeting.
    let mut opener: Option<(CallerLine, Vec<i16>)> = None;
    let mut opener_wanted = false;
    if plan.scenario.first_message.is_some() || traits.over_greeting {
        thinking.push(voice.think(Vec::new(), None, true, 0));
    }
    // Until the agent speaks: first the greeting wait, then each answer's.
    let mut waiting = Some(clock + GREETING_WAIT);
    let mut greeted = false;

    let say = |said: &mut Vec<Said>, line: CallerLine, samples, at_ms, barge: bool| {
        let id = said.len() as u32;
        said.push(Said {
            text: line.content.unwrap_or_default(),
            hangs_up: line.hangs_up,
            barge_in: barge,
            started_ms: None,
        });
        let _ = commands.send(Command::Say {
            id,
            samples,
            at_ms,
            over_agent: barge,
        });
    };
    let within_limits = |usage: &Usage, turns: usize| {
        if usage.tokens() >= plan.token_budget {
            Some(StopReason::TokenBudget)
        } else if clock.elapsed() >= max_call {
            Some(StopReason::MaxSeconds)
        } else if turns >= rules.max_turns as usize {
            Some(StopReason::MaxTurns)
        } else {
            None
        }
    };
    let push = |messages: &mut Vec<Message>, role, content, start_ms: u64, end_ms: u64| {
        let at = |ms: u64| started_at.timestamp_millis() + ms as i64;
        messages.push(Message {
            role,
            content,
            start_offset: Some(ms_to_s(start_ms)),
            end_offset: Some(ms_to_s(end_ms)),
            start_at_ms: Some(at(start_ms)),
            end_at_ms: Some(at(end_ms)),
            data: None,
        });
        messages.len() - 1
    };

    let end = loop {
        let mut next: Option<End> = None;
        tokio::select! {
            event = events.recv() => match event {
                None => next = Some(End::LineClosed),
                Some(Event::AgentStarted { at_ms }) => {
                    waiting = None;
                    let first_turn = !greeted && said.is_empty();
                    greeted = true;
                    if first_turn && traits.over_greeting {
                        let after = traits.barge_in.as_ref().map_or(0, |b| u64::from(b.after_ms));
                        match opener.take() {
                            Some((line, samples)) => {
                                caller_busy = true;
                                say(&mut said, line, samples, at_ms + after, false);
                            }
                            None => opener_wanted = true,
                        }
                    } else if let Some((b, samples)) = &barge_in {
                        if barge_ins_left > 0 && !caller_busy {
                            caller_busy = true;
                            let line = CallerLine { content: Some(b.line.clone()), hangs_up: false };
                            say(&mut said, line, samples.clone(), at_ms + u64::from(b.after_ms), true);
                        }
                    }
                }
                Some(Event::AgentTurn { start_ms, end_ms, samples, interrupted }) => {
                    let index = push(&mut messages, Role::Bot, String::new(), start_ms, end_ms);
                    // An interrupted turn is heard, not answered: the agent answers the barge-in.
                    let reply = !interrupted && !caller_busy;
                    let pause = u64::from(traits.pause_ms);
                    thinking.push(voice.think(messages.clone(), Some((index, samples)), reply, end_ms + pause));
                    next = within_limits(&usage, messages.len()).map(End::Stop);
                    if next.is_none() && !report(progress, &messages, &usage).await {
                        next = Some(End::Cancelled);
                    }
                }
                Some(Event::CallerStarted { id, at_ms }) => {
                    let s = &mut said[id as usize];
                    s.started_ms = Some(at_ms);
                    if s.barge_in {
                        barge_ins_left = barge_ins_left.saturating_sub(1);
                    }
                }
                Some(Event::CallerEnded { id, at_ms }) => {
                    caller_busy = false;
                    let s = &said[id as usize];
                    let (text, hangs_up) = (s.text.clone(), s.hangs_up);
                    push(&mut messages, Role::User, text, s.started_ms.unwrap_or(at_ms), at_ms);
                    if hangs_up {
                        tokio::time::sleep(Duration::from_millis(GOODBYE_TAIL_MS)).await;
                        next = Some(End::Stop(StopReason::CallerEnded));
                    } else {
                        next = within_limits(&usage, messages.len()).map(End::Stop);
                        if next.is_none() && !report(progress, &messages, &usage).await {
                            next = Some(End::Cancelled);
                        }
                        waiting = Some(Instant::now() + timeout);
                    }
                }
                Some(Event::Dropped) => caller_busy = false,
            },
            thoughts = thinking.next(), if !thinking.is_empty() => {
                for thought in thoughts.unwrap_or_default() {
                    match thought {
                        Thought::Heard { message, text } => messages[message].content = text,
                        Thought::Line { line, samples, not_before_ms, usage: spent } => {
                            usage.caller_requests += spent.caller_requests;
                            usage.caller_tokens += spent.caller_tokens;
                            if samples.is_empty() {
                                next = Some(End::Stop(StopReason::CallerEnded));
                            } else if said.is_empty() && !greeted && !opener_wanted {
                                // Prepared ahead: it waits for the greeting, or for its wait to end.
                                opener = Some((line, samples));
                            } else {
                                caller_busy = true;
                                say(&mut said, line, samples, not_before_ms, false);
                            }
                        }
                        Thought::Failed(reason) => next = Some(End::Fail(reason)),
                    }
                }
            }
            _ = sleep_until(waiting), if waiting.is_some() => {
                waiting = None;
                if !greeted && said.is_empty() {
                    // No greeting: the caller speaks first.
                    greeted = true;
                    match opener.take() {
                        Some((line, samples)) => {
                            caller_busy = true;
                            say(&mut said, line, samples, 0, false);
                        }
                        None if plan.scenario.first_message.is_some() || traits.over_greeting => opener_wanted = true,
                        None => thinking.push(voice.think(messages.clone(), None, true, 0)),
                    }
                } else {
                    next = Some(End::Fail(format!(
                        "the agent did not speak within {} s of the caller's line",
                        timeout.as_secs()
                    )));
                }
            }
        }
        if let Some(end) = next {
            break end;
        }
    };

    let _ = commands.send(Command::HangUp);
    let recorded = match line.await {
        Ok(recorded) => recorded,
        Err(e) => {
            return Ending::Failed {
                reason: format!("the media-stream line stopped unexpectedly: {e}"),
                outcome: outcome(messages, usage, None, None),
            }
        }
    };
    // Turns the line closed as it hung up are still on their way.
    while let Ok(event) = events.try_recv() {
        if let Event::AgentTurn {
            start_ms, end_ms, ..
        } = event
        {
            push(&mut messages, Role::Bot, String::new(), start_ms, end_ms);
        }
    }
    sort_by_time(&mut messages);
    let recording = Recording {
        pacing: Pacing::of(&recorded.lateness_us),
        pcm: Pcm {
            sample_rate: TELEPHONY_RATE,
            channels: vec![recorded.caller, recorded.agent],
        },
    };
    let failed = |reason, messages, usage, recording| Ending::Failed {
        reason,
        outcome: outcome(messages, usage, Some(recording), None),
    };
    match (end, recorded.problem) {
        (End::Fail(reason), _) | (_, Some(LineProblem::Failed(reason))) => {
            failed(reason, messages, usage, recording)
        }
        (End::Cancelled, _) => Ending::Stopped(outcome(messages, usage, Some(recording), None)),
        (End::Stop(reason), _) => {
            Ending::Finished(outcome(messages, usage, Some(recording), Some(reason)))
        }
        (End::LineClosed, _) => Ending::Finished(outcome(
            messages,
            usage,
            Some(recording),
            Some(StopReason::AgentEnded),
        )),
    }
}

async fn report(progress: &mut dyn Progress, messages: &[Message], usage: &Usage) -> bool {
    let mut ordered = messages.to_vec();
    sort_by_time(&mut ordered);
    progress.update(&ordered, usage).await
}

fn ms_to_s(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A stable 32-hex-digit id from a string (Twilio's sids are two letters and 32 digits).
fn hex32(s: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut out = String::with_capacity(32);
    for salt in 0..2u8 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (salt, s).hash(&mut h);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}
