//! `callgrade bench voice`: how many voice simulations this machine plays at once while each
//! keeps its 20 ms frame pacing. Fakes on a thread and runtime of their own stand in for the
//! agent (a media-stream WebSocket server that answers each caller utterance after 300 ms
//! with 600 ms of tone) and for the caller's LLM, text to speech and speech to text; the
//! conversations run through `callgrade_sim::play` as the simulator runs them.

use anyhow::Context;
use base64::Engine;
use callgrade_core::{
    Agent, Connector, Direction, MediaStream, Message, Persona, Scenario, StopRules, Usage,
};
use callgrade_sim::{
    play, ChatClient, Ending, LlmEndpoint, Plan, Progress, SpeechEndpoint, VoiceEndpoints,
};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::BufReader;

use crate::bench_http::{read_request, respond};
use crate::output::Output;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// The pacing a conversation must keep: p99 of how late its frames went out.
const TARGET_P99_MS: f64 = 10.0;

#[derive(Args)]
pub struct VoiceBench {
    /// Voice conversations played at once.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=2000))]
    calls: u32,
    /// Lines the caller says before hanging up (each answered by the agent).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=50))]
    lines: u32,
}

struct NoProgress;

#[async_trait::async_trait]
impl Progress for NoProgress {
    async fn update(&mut self, _: &[Message], _: &Usage) -> bool {
        true
    }
}

fn tone(ms: u64) -> Vec<i16> {
    (0..(8 * ms) as usize)
        .map(|i| (8000.0 * (i as f64 * 0.345).sin()) as i16)
        .collect()
}

/// One HTTP/1.1 keep-alive connection of the speech fakes.
async fn http_fake(stream: tokio::net::TcpStream, lines: u32) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let speech = callgrade_audio::wav_bytes(
        &callgrade_audio::Pcm {
            sample_rate: 8000,
            channels: vec![tone(400)],
        },
        callgrade_audio::WavEncoding::Pcm16,
    );
    while let Some((path, body)) = read_request(&mut reader).await? {
        let (kind, answer) = if path.ends_with("/audio/speech") {
            ("audio/wav", speech.clone())
        } else if path.ends_with("/audio/transcriptions") {
            ("application/json", br#"{"text":"Certainly."}"#.to_vec())
        } else {
            let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let said = request["messages"]
                .as_array()
                .map_or(0, |m| m.iter().filter(|m| m["role"] == "assistant").count());
            let message = if said < lines as usize {
                json!({"role": "assistant", "content": format!("Line {said}.")})
            } else {
                json!({"role": "assistant", "content": "Bye.", "tool_calls": [{"id": "h",
                    "type": "function", "function": {"name": "end_call", "arguments": "{}"}}]})
            };
            let answer = json!({"choices": [{"message": message}], "usage": {"total_tokens": 50}});
            ("application/json", answer.to_string().into_bytes())
        };
        respond(&mut reader, kind, &answer).await?;
    }
    Ok(())
}

/// One media stream of the fake agent: a reply 300 ms after each caller utterance ends.
async fn ws_fake(stream: tokio::net::TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let reply = B64.encode(callgrade_audio::mulaw::encode_all(&tone(600)));
    let mut sid = String::new();
    let mut speaking = false;
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        let wait = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = wait => {
                due = None;
                let media = json!({"event": "media", "streamSid": sid, "media": {"payload": reply}});
                if sink.send(tokio_tungstenite::tungstenite::Message::text(media.to_string())).await.is_err() {
                    return;
                }
            }
            message = source.next() => {
                let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) = message else { return };
                let v: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                match v["event"].as_str() {
                    Some("start") => sid = v["streamSid"].as_str().unwrap_or("").to_owned(),
                    Some("media") => {
                        let bytes = B64.decode(v["media"]["payload"].as_str().unwrap_or("")).unwrap_or_default();
                        let voiced = bytes.iter().any(|&b| callgrade_audio::mulaw::decode(b).abs() > 1000);
                        if voiced {
                            speaking = true;
                        } else if speaking {
                            speaking = false;
                            due = Some(tokio::time::Instant::now() + Duration::from_millis(300));
                        }
                    }
                    Some("stop") => return,
                    _ => {}
                }
            }
        }
    }
}

/// The fakes, on a thread of their own: the speech base URL and the agent's ws:// URL.
fn start_fakes(lines: u32) -> anyhow::Result<(String, String)> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the fakes");
        rt.block_on(async move {
            let (Ok(http), Ok(ws)) = (
                tokio::net::TcpListener::bind("127.0.0.1:0").await,
                tokio::net::TcpListener::bind("127.0.0.1:0").await,
            ) else {
                let _ = ready_tx.send(None);
                return;
            };
            let urls = (http.local_addr().ok(), ws.local_addr().ok());
            let _ = ready_tx.send(Some(urls));
            loop {
                tokio::select! {
                    Ok((s, _)) = http.accept() => drop(tokio::spawn(http_fake(s, lines))),
                    Ok((s, _)) = ws.accept() => drop(tokio::spawn(ws_fake(s))),
                }
            }
        });
    });
    match ready_rx.recv().context("the fakes did not start")? {
        Some((Some(http), Some(ws))) => {
            Ok((format!("http://{http}/v1"), format!("ws://{ws}/media")))
        }
        _ => anyhow::bail!("the fakes could not listen on 127.0.0.1"),
    }
}

pub async fn run(args: VoiceBench, out: &Output) -> anyhow::Result<ExitCode> {
    let (base, agent_url) = start_fakes(args.lines)?;
    let now = chrono::Utc::now();
    let connector = Connector::MediaStream(MediaStream {
        url: agent_url,
        headers: Default::default(),
        custom_parameters: Default::default(),
        timeout_seconds: Some(10),
        end_of_turn_ms: Some(400),
    });
    let agent = Agent {
        id: 1,
        project_id: 1,
        name: "bench".into(),
        phone_number: None,
        description: None,
        connector: Some(connector.view()),
        external_ids: Vec::new(),
        created_at: now,
    };
    let scenario = Scenario {
        id: 1,
        project_id: 1,
        agent_id: 1,
        name: "bench-voice".into(),
        instructions: "Ask a few questions.".into(),
        expected_outcome_prompt: String::new(),
        tags: Vec::new(),
        direction: Direction::Inbound,
        tester_phone_number: None,
        persona: Some(Persona {
            name: "Dana".into(),
            language: "en".into(),
            traits: Vec::new(),
            description: String::new(),
            voice: None,
        }),
        first_message: Some("Hello.".into()),
        tool_mocks: Vec::new(),
        unmatched_tool_result: None,
        stop_rules: StopRules {
            max_turns: 200,
            max_seconds: 600,
        },
        quarantined: false,
        created_at: now,
    };
    let speech = |model: &str| SpeechEndpoint {
        base_url: base.clone(),
        model: model.into(),
        api_key: None,
        timeout: Duration::from_secs(30),
    };
    let voice = VoiceEndpoints {
        tts: speech("tts"),
        voice: "alloy".into(),
        stt: speech("stt"),
    };
    let caller = LlmEndpoint {
        base_url: base.clone(),
        model: "caller".into(),
        api_key: None,
        timeout: Duration::from_secs(30),
    };
    out.progress(&format!(
        "playing {} voice conversations at once ({} caller lines each, real time)…",
        args.calls, args.lines
    ));
    let client = ChatClient::new();
    let started = std::time::Instant::now();
    let conversations = (0..args.calls).map(|i| {
        let plan = Plan {
            run_id: i64::from(i),
            scenario: &scenario,
            agent: &agent,
            connector: &connector,
            caller: caller.clone(),
            token_budget: u64::MAX,
            voice: Some(voice.clone()),
        };
        let client = &client;
        async move {
            let mut progress = NoProgress;
            play(
                client,
                plan,
                format!("bench-{i}"),
                chrono::Utc::now(),
                &mut progress,
            )
            .await
        }
    });
    let endings = futures_util::future::join_all(conversations).await;
    let seconds = started.elapsed().as_secs_f64();
    let mut p99s = Vec::new();
    let mut frames = 0usize;
    let mut failures = Vec::new();
    for ending in endings {
        match ending {
            Ending::Finished(o) | Ending::Stopped(o) => {
                if let Some(r) = o.recording {
                    frames += r.pacing.frames;
                    p99s.push(r.pacing.late_p99_ms);
                }
            }
            Ending::Failed { reason, .. } => failures.push(reason),
        }
    }
    p99s.sort_by(f64::total_cmp);
    let worst = p99s.last().copied().unwrap_or(f64::NAN);
    let median = p99s.get(p99s.len() / 2).copied().unwrap_or(f64::NAN);
    let kept = failures.is_empty() && worst < TARGET_P99_MS;
    let report = json!({
        "benchmark": "voice_simulation",
        "concurrent_calls": args.calls,
        "completed": p99s.len(),
        "failed": failures.len(),
        "first_failure": failures.first(),
        "frames_sent": frames,
        "seconds": seconds,
        "send_lateness_p99_ms_median_call": median,
        "send_lateness_p99_ms_worst_call": worst,
        "target_p99_ms": TARGET_P99_MS,
        "pacing_kept": kept,
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
    });
    out.print(&report, || {
        format!(
            "voice simulation: {} at once, {} completed, {} failed; frame send lateness p99 {:.2} ms (median call), {:.2} ms (worst call); target under {TARGET_P99_MS} ms: {}",
            args.calls,
            p99s.len(),
            failures.len(),
            median,
            worst,
            if kept { "kept" } else { "NOT kept" }
        )
    });
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
