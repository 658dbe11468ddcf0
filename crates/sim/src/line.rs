//! The phone line of a voice simulation: callgrade as the telephony side of Twilio's Media
//! Streams protocol. One task owns the WebSocket and a 20 ms clock: each tick it sends one
//! frame of the caller (its line, or silence), plays one frame of the agent's queued audio
//! (as the caller's ear hears it), echoes the marks that playing passed, and records both.
//! Every time here is a frame position, so the recording is the measurement.

use base64::Engine;
use callgrade_audio::{mulaw, Edge, SpeechTracker, FRAME_MS, FRAME_SAMPLES, TELEPHONY_RATE};
use callgrade_core::Detector;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http::HeaderValue, Message};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// The most agent audio queued unplayed (10 minutes); more is a misbehaving agent.
const MAX_QUEUED_SAMPLES: usize = 10 * 60 * TELEPHONY_RATE as usize;
/// The longest WebSocket message the agent may send.
const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// How the line is set up.
pub(crate) struct LineSetup {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub stream_sid: String,
    pub call_sid: String,
    pub custom_parameters: serde_json::Map<String, Value>,
    pub detector: Detector,
    pub end_of_turn_ms: u64,
    pub connect_timeout: Duration,
}

/// What the caller's side asks of the line.
pub(crate) enum Command {
    /// Play `samples` from the first frame at or after `at_ms`; with `over_agent`, only if
    /// the agent is speaking then (a barge-in), else it is dropped.
    Say {
        id: u32,
        samples: Vec<i16>,
        at_ms: u64,
        over_agent: bool,
    },
    /// Send `stop` and close.
    HangUp,
}

/// What the line tells the caller's side.
#[derive(Debug)]
pub(crate) enum Event {
    AgentStarted {
        at_ms: u64,
    },
    /// A turn of the agent's speech: from its first speech to its last, with its audio.
    /// `interrupted` when the caller spoke during it.
    AgentTurn {
        start_ms: u64,
        end_ms: u64,
        samples: Vec<i16>,
        interrupted: bool,
    },
    CallerStarted {
        id: u32,
        at_ms: u64,
    },
    CallerEnded {
        id: u32,
        at_ms: u64,
    },
    /// A barge-in that found the agent silent (or the caller speaking) and was not said.
    Dropped,
}

/// How the line ended, and what it recorded.
pub(crate) struct LineEnd {
    /// `None`: hung up by the caller's side; `Some(reason)` otherwise.
    pub problem: Option<LineProblem>,
    pub caller: Vec<i16>,
    pub agent: Vec<i16>,
    /// How late each frame was sent after its time, in µs.
    pub lateness_us: Vec<u32>,
}

#[derive(Debug)]
pub(crate) enum LineProblem {
    /// The agent closed the WebSocket.
    AgentHungUp,
    Failed(String),
}

struct Saying {
    id: u32,
    samples: VecDeque<i16>,
    at_ms: u64,
    over_agent: bool,
    started: bool,
}

struct AgentTurn {
    start_ms: u64,
    last_end_ms: Option<u64>,
    interrupted: bool,
}

struct Line {
    stream_sid: String,
    events: mpsc::UnboundedSender<Event>,
    sequence: u64,
    /// The caller's lines waiting or playing, in order.
    says: VecDeque<Saying>,
    /// The agent's audio not yet played, and the marks after it (at their sample counts).
    queued: VecDeque<i16>,
    marks: VecDeque<(u64, String)>,
    played_total: u64,
    tracker: SpeechTracker,
    agent_speaking: bool,
    turn: Option<AgentTurn>,
    end_of_turn_ms: u64,
    caller: Vec<i16>,
    agent: Vec<i16>,
}

/// Connects and plays the line until the caller's side hangs up or the agent does.
pub(crate) async fn run(
    setup: LineSetup,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
) -> LineEnd {
    let mut lateness_us = Vec::new();
    let mut line = Line {
        stream_sid: setup.stream_sid.clone(),
        events,
        sequence: 0,
        says: VecDeque::new(),
        queued: VecDeque::new(),
        marks: VecDeque::new(),
        played_total: 0,
        tracker: SpeechTracker::new(setup.detector, TELEPHONY_RATE),
        agent_speaking: false,
        turn: None,
        end_of_turn_ms: setup.end_of_turn_ms,
        caller: Vec::new(),
        agent: Vec::new(),
    };
    let problem = line
        .play(&setup, &mut commands, &mut lateness_us)
        .await
        .err();
    LineEnd {
        problem,
        caller: line.caller,
        agent: line.agent,
        lateness_us,
    }
}

impl Line {
    fn now_ms(&self) -> u64 {
        self.caller.len() as u64 * 1000 / u64::from(TELEPHONY_RATE)
    }

    fn next_sequence(&mut self) -> String {
        self.sequence += 1;
        self.sequence.to_string()
    }

    async fn play(
        &mut self,
        setup: &LineSetup,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        lateness_us: &mut Vec<u32>,
    ) -> Result<(), LineProblem> {
        let failed = |e: String| LineProblem::Failed(e);
        let mut request = setup
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| failed(format!("the connector's url {:?}: {e}", setup.url)))?;
        for (name, value) in &setup.headers {
            let value = HeaderValue::from_str(value)
                .map_err(|_| failed(format!("the header {name} is not a valid header value")))?;
            let name: tokio_tungstenite::tungstenite::http::HeaderName = name
                .parse()
                .map_err(|_| failed(format!("{name:?} is not a valid header name")))?;
            request.headers_mut().insert(name, value);
        }
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES));
        let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), false);
        let (ws, _) = match tokio::time::timeout(setup.connect_timeout, connect).await {
            Err(_) => {
                return Err(failed(format!(
                    "the agent's media stream at {} did not accept the connection within {} s",
                    setup.url,
                    setup.connect_timeout.as_secs()
                )))
            }
            Ok(Err(e)) => {
                return Err(failed(format!(
                    "could not open the agent's media stream at {}: {e}",
                    setup.url
                )))
            }
            Ok(Ok(ws)) => ws,
        };
        let (mut sink, mut stream) = ws.split();
        let send_failed = |e: tokio_tungstenite::tungstenite::Error| {
            LineProblem::Failed(format!("the media stream broke while sending: {e}"))
        };
        let connected = json!({"event": "connected", "protocol": "Call", "version": "1.0.0"});
        sink.send(Message::text(connected.to_string()))
            .await
            .map_err(send_failed)?;
        let start = json!({
            "event": "start",
            "sequenceNumber": self.next_sequence(),
            "streamSid": self.stream_sid,
            "start": {
                "accountSid": "ACcallgrade",
                "streamSid": self.stream_sid,
                "callSid": setup.call_sid,
                "tracks": ["inbound"],
                "customParameters": setup.custom_parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": TELEPHONY_RATE, "channels": 1},
            },
        });
        sink.send(Message::text(start.to_string()))
            .await
            .map_err(send_failed)?;

        let epoch = Instant::now();
        let frame = Duration::from_millis(u64::from(FRAME_MS));
        let mut tick: u32 = 0;
        let mut hanging_up = false;
        loop {
            let due = epoch + frame * tick;
            tokio::select! {
                biased;
                _ = tokio::time::sleep_until(due) => {
                    let late = Instant::now().saturating_duration_since(due);
                    lateness_us.push(late.as_micros().min(u128::from(u32::MAX)) as u32);
                    // What the agent has sent by now counts for this frame (a `clear` stops
                    // it), even while the line catches up after a stall.
                    while let Some(message) = stream.next().now_or_never() {
                        self.on_message(message, &mut sink).await?;
                    }
                    let outgoing = self.tick();
                    for m in outgoing {
                        sink.send(m).await.map_err(send_failed)?;
                    }
                    tick += 1;
                    if hanging_up {
                        let stop = json!({"event": "stop", "sequenceNumber": self.next_sequence(),
                            "streamSid": self.stream_sid,
                            "stop": {"accountSid": "ACcallgrade", "callSid": setup.call_sid}});
                        let _ = sink.send(Message::text(stop.to_string())).await;
                        let _ = sink.close().await;
                        self.finish_agent();
                        return Ok(());
                    }
                }
                command = commands.recv() => match command {
                    Some(Command::Say { id, samples, at_ms, over_agent }) => {
                        let saying = Saying { id, samples: samples.into(), at_ms, over_agent, started: false };
                        if !over_agent {
                            self.says.push_back(saying);
                        } else if self.says.front().is_some_and(|s| s.started) {
                            // The caller is speaking already: no barge-in over its own line.
                            let _ = self.events.send(Event::Dropped);
                        } else {
                            self.says.push_front(saying);
                        }
                    }
                    // Hang up after the current frame, so the recording ends on a frame.
                    Some(Command::HangUp) | None => hanging_up = true,
                },
                message = stream.next() => self.on_message(message, &mut sink).await?,
            }
        }
    }
}

impl Line {
    /// One message from the agent: acted on, answered when it asks for an answer (a `mark`).
    async fn on_message<S>(
        &mut self,
        message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
        sink: &mut S,
    ) -> Result<(), LineProblem>
    where
        S: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
    {
        let failed = |e: String| LineProblem::Failed(e);
        match message {
            None | Some(Ok(Message::Close(_))) => {
                self.finish_agent();
                Err(LineProblem::AgentHungUp)
            }
            Some(Err(e)) => Err(failed(format!("the agent's media stream broke: {e}"))),
            Some(Ok(Message::Text(text))) => {
                if let Some(reply) = self.receive(text.as_str()).map_err(failed)? {
                    sink.send(reply).await.map_err(|e| {
                        failed(format!("the media stream broke while sending: {e}"))
                    })?;
                }
                Ok(())
            }
            Some(Ok(Message::Binary(_))) => Err(failed(
                "the agent sent a binary WebSocket message; the media-stream protocol is JSON text"
                    .into(),
            )),
            Some(Ok(_)) => Ok(()),
        }
    }

    /// One frame: the caller's frame out, the agent's frame played, the edges they make.
    fn tick(&mut self) -> Vec<Message> {
        let now = self.now_ms();
        let mut out = Vec::with_capacity(2);
        // The caller.
        if let Some(front) = self.says.front_mut() {
            if !front.started && now >= front.at_ms {
                if front.over_agent && !self.agent_speaking {
                    self.says.pop_front();
                    let _ = self.events.send(Event::Dropped);
                } else {
                    front.started = true;
                    let id = front.id;
                    let _ = self.events.send(Event::CallerStarted { id, at_ms: now });
                    if let Some(turn) = &mut self.turn {
                        turn.interrupted = true;
                    }
                }
            }
        }
        let mut frame = [0i16; FRAME_SAMPLES];
        let mut ended = None;
        if let Some(front) = self.says.front_mut().filter(|s| s.started) {
            let n = front.samples.len().min(FRAME_SAMPLES);
            for (slot, sample) in frame.iter_mut().zip(front.samples.drain(..n)) {
                *slot = sample;
            }
            if front.samples.is_empty() {
                // The line ends on its last sample, not on the frame's end.
                ended = Some((front.id, now + n as u64 * 1000 / u64::from(TELEPHONY_RATE)));
                self.says.pop_front();
            }
        }
        self.caller.extend_from_slice(&frame);
        let payload = B64.encode(mulaw::encode_all(&frame));
        let timestamp = now.to_string();
        let chunk = (self.caller.len() / FRAME_SAMPLES).to_string();
        let media = json!({"event": "media", "sequenceNumber": self.next_sequence(),
            "streamSid": self.stream_sid,
            "media": {"track": "inbound", "chunk": chunk, "timestamp": timestamp, "payload": payload}});
        out.push(Message::text(media.to_string()));
        if let Some((id, at_ms)) = ended {
            let _ = self.events.send(Event::CallerEnded { id, at_ms });
        }

        // The agent, as the caller hears it.
        let mut heard = [0i16; FRAME_SAMPLES];
        let n = self.queued.len().min(FRAME_SAMPLES);
        for (slot, sample) in heard.iter_mut().zip(self.queued.drain(..n)) {
            *slot = sample;
        }
        self.played_total += n as u64;
        self.agent.extend_from_slice(&heard);
        while self
            .marks
            .front()
            .is_some_and(|(at, _)| *at <= self.played_total)
        {
            let (_, name) = self.marks.pop_front().expect("checked");
            out.push(self.mark(&name));
        }
        let edge = self.tracker.push(&heard);
        self.on_edge(edge);
        self.close_turn_if_done(false);
        out
    }

    fn on_edge(&mut self, edge: Option<Edge>) {
        match edge {
            Some(Edge::Start { at_ms }) => {
                self.agent_speaking = true;
                match &mut self.turn {
                    Some(turn) => turn.last_end_ms = None,
                    None => {
                        self.turn = Some(AgentTurn {
                            start_ms: at_ms,
                            last_end_ms: None,
                            interrupted: false,
                        });
                        let _ = self.events.send(Event::AgentStarted { at_ms });
                    }
                }
            }
            Some(Edge::End { at_ms }) => {
                self.agent_speaking = false;
                if let Some(turn) = &mut self.turn {
                    turn.last_end_ms = Some(at_ms);
                }
            }
            None => {}
        }
    }

    /// A turn ends after `end_of_turn_ms` of the agent's silence with nothing queued, or at
    /// once when the caller interrupted it and the agent has stopped.
    fn close_turn_if_done(&mut self, hanging_up: bool) {
        let Some(turn) = &self.turn else { return };
        let Some(end_ms) = turn.last_end_ms else {
            return;
        };
        let silent_for = self.now_ms().saturating_sub(end_ms);
        let done = hanging_up
            || (self.queued.is_empty() && (turn.interrupted || silent_for >= self.end_of_turn_ms));
        if !done {
            return;
        }
        let per_ms = u64::from(TELEPHONY_RATE) / 1000;
        let from = (turn.start_ms * per_ms) as usize;
        let to = ((end_ms * per_ms) as usize).min(self.agent.len());
        let event = Event::AgentTurn {
            start_ms: turn.start_ms,
            end_ms,
            samples: self.agent[from.min(to)..to].to_vec(),
            interrupted: turn.interrupted,
        };
        self.turn = None;
        let _ = self.events.send(event);
    }

    /// The agent's speech still open when the line closes ends with it.
    fn finish_agent(&mut self) {
        let edge = self.tracker.finish();
        self.on_edge(edge);
        self.close_turn_if_done(true);
    }

    fn mark(&mut self, name: &str) -> Message {
        let echo = json!({"event": "mark", "sequenceNumber": self.next_sequence(),
            "streamSid": self.stream_sid, "mark": {"name": name}});
        Message::text(echo.to_string())
    }

    /// One message from the agent: audio to queue, a mark to echo when played, or a clear.
    fn receive(&mut self, text: &str) -> Result<Option<Message>, String> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| format!("the agent sent a WebSocket message that is not JSON ({e})"))?;
        match value.get("event").and_then(Value::as_str) {
            Some("media") => {
                let payload = value
                    .pointer("/media/payload")
                    .and_then(Value::as_str)
                    .ok_or("the agent sent a media event without media.payload")?;
                let bytes = B64.decode(payload).map_err(|e| {
                    format!("the agent sent a media event whose payload is not base64: {e}")
                })?;
                if self.queued.len() + bytes.len() > MAX_QUEUED_SAMPLES {
                    return Err("the agent queued more than 10 minutes of audio".into());
                }
                self.queued.extend(bytes.into_iter().map(mulaw::decode));
                Ok(None)
            }
            Some("mark") => {
                let name = value
                    .pointer("/mark/name")
                    .and_then(Value::as_str)
                    .ok_or("the agent sent a mark event without mark.name")?
                    .to_owned();
                if self.queued.is_empty() {
                    Ok(Some(self.mark(&name)))
                } else {
                    // Echoed once the audio queued so far has played.
                    let at = self.played_total + self.queued.len() as u64;
                    self.marks.push_back((at, name));
                    Ok(None)
                }
            }
            Some("clear") => {
                // Barge-in: drop what the agent queued; its marks come back at once.
                self.queued.clear();
                if let Some((_, name)) = self.marks.pop_front() {
                    let first = self.mark(&name);
                    // Echo the rest too, in order (they are rare after a clear).
                    let rest: Vec<String> = self.marks.drain(..).map(|(_, n)| n).collect();
                    for name in rest {
                        self.marks.push_back((self.played_total, name));
                    }
                    return Ok(Some(first));
                }
                Ok(None)
            }
            // Other events (none are defined from the agent) are ignored, as Twilio does.
            _ => Ok(None),
        }
    }
}
