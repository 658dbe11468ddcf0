//! Voice simulation over a media stream, end to end: a fake voice agent on port 0 speaking
//! Twilio's Media Streams protocol answers each caller utterance after a programmed delay
//! with a programmed length of audio, and stops a programmed time after the caller barges in
//! (sending `clear`); fake text-to-speech, speech-to-text and caller LLM endpoints. What
//! callgrade measured from the audio must equal what was programmed, within two frames.

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as Ws;

use crate::common::*;
use crate::fakes::{scenario, send, serve, start};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// The agent's answer delays, in turn, and how long it takes to stop after a barge-in.
const DELAYS_MS: [u64; 3] = [300, 700, 1100];
const STOP_AFTER_BARGE_IN_MS: u64 = 240;
const GREETING_MS: u64 = 600;
const REPLY_MS: u64 = 700;
/// Caller lines the LLM says before its goodbye.
const LINES: usize = 17;
/// Two frames.
const TOLERANCE_MS: f64 = 40.0;

/// A tone: loud enough to be speech, `ms` long, at `rate`.
fn tone(ms: u64, rate: u32) -> Vec<i16> {
    let n = (u64::from(rate) * ms / 1000) as usize;
    (0..n)
        .map(|i| {
            (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / f64::from(rate)).sin())
                as i16
        })
        .collect()
}

fn wav(samples: &[i16], rate: u32) -> Vec<u8> {
    callgrade_audio::wav_bytes(
        &callgrade_audio::Pcm {
            sample_rate: rate,
            channels: vec![samples.to_vec()],
        },
        callgrade_audio::WavEncoding::Pcm16,
    )
}

#[derive(Clone, Default)]
struct Speech {
    spoken: Arc<Mutex<Vec<Value>>>,
    transcribed: Arc<Mutex<usize>>,
}

/// The caller's LLM: "Line k." for each of its turns, then goodbye and end_call.
async fn caller_llm(Json(body): Json<Value>) -> Json<Value> {
    let said = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            m["role"] == "assistant" && m["content"].as_str().is_some_and(|c| c.starts_with("Line"))
        })
        .count();
    let message = if said < LINES {
        json!({"role": "assistant", "content": format!("Line {}.", said + 1)})
    } else {
        json!({"role": "assistant", "content": "Bye.", "tool_calls": [
            {"id": "h", "type": "function", "function": {"name": "end_call", "arguments": "{}"}}]})
    };
    Json(json!({"choices": [{"message": message}], "usage": {"total_tokens": 10}}))
}

/// Text to speech at 24 kHz: 400 ms a line.
async fn tts(State(s): State<Speech>, Json(body): Json<Value>) -> Vec<u8> {
    assert_eq!(body["response_format"], "wav");
    s.spoken.lock().unwrap().push(body);
    wav(&tone(400, 24_000), 24_000)
}

/// Speech to text: the agent's k-th turn.
async fn stt(State(s): State<Speech>, body: Bytes) -> Json<Value> {
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("name=\"model\"") && text.contains("RIFF"),
        "a multipart WAV upload"
    );
    let mut n = s.transcribed.lock().unwrap();
    *n += 1;
    Json(json!({"text": format!("Agent turn {n}.")}))
}

/// What the fake agent did, for the assertions.
#[derive(Default)]
struct Script {
    custom_parameters: Value,
    /// The programmed delay of each reply, in order.
    delays: Vec<u64>,
    barge_ins: usize,
    clears: usize,
    marks_back: Vec<String>,
}

enum Out {
    Audio { ms: u64, mark: String },
    Clear,
}

/// The voice agent: greets, answers every caller utterance after the next programmed delay,
/// and stops `STOP_AFTER_BARGE_IN_MS` after the caller starts talking over it. It keeps time
/// by the stream, as a real agent's voice-activity detection does: one caller frame is 20 ms.
/// So a stall of the machine delays both sides of the line alike and the programme holds.
async fn voice_agent(script: Arc<Mutex<Script>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/media", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let script = script.clone();
            tokio::spawn(async move {
                let ws = tokio_tungstenite::accept_async(socket).await.unwrap();
                let (mut sink, mut stream) = ws.split();
                let mut stream_sid = String::new();
                // The stream's clock: caller frames received, times 20 ms.
                let mut now_ms = 0u64;
                // What to send, and when by that clock.
                let mut due: Vec<(u64, Out)> = Vec::new();
                // When the audio sent so far will have played out.
                let mut speaking_until = 0u64;
                let mut caller_speaking = false;
                let mut replies = 0usize;
                while let Some(Ok(Ws::Text(text))) = stream.next().await {
                    let v: Value = serde_json::from_str(text.as_str()).unwrap();
                    match v["event"].as_str().unwrap() {
                        "start" => {
                            stream_sid = v["start"]["streamSid"].as_str().unwrap().to_owned();
                            assert_eq!(v["start"]["mediaFormat"]["encoding"], "audio/x-mulaw");
                            script.lock().unwrap().custom_parameters =
                                v["start"]["customParameters"].clone();
                            due.push((
                                500,
                                Out::Audio {
                                    ms: GREETING_MS,
                                    mark: "greeting".into(),
                                },
                            ));
                        }
                        "media" => {
                            let bytes =
                                B64.decode(v["media"]["payload"].as_str().unwrap()).unwrap();
                            assert_eq!(bytes.len(), 160, "one 20 ms frame");
                            let voiced = bytes
                                .iter()
                                .any(|&b| callgrade_audio::mulaw::decode(b).abs() > 1000);
                            if voiced && !caller_speaking {
                                caller_speaking = true;
                                if now_ms < speaking_until {
                                    script.lock().unwrap().barge_ins += 1;
                                    due.push((now_ms + STOP_AFTER_BARGE_IN_MS, Out::Clear));
                                }
                            } else if !voiced && caller_speaking {
                                // The caller's speech ended where this silent frame begins.
                                caller_speaking = false;
                                let delay = DELAYS_MS[replies % DELAYS_MS.len()];
                                replies += 1;
                                script.lock().unwrap().delays.push(delay);
                                due.push((
                                    now_ms + delay,
                                    Out::Audio {
                                        ms: REPLY_MS,
                                        mark: format!("reply-{replies}"),
                                    },
                                ));
                            }
                            now_ms += 20;
                        }
                        "mark" => script
                            .lock()
                            .unwrap()
                            .marks_back
                            .push(v["mark"]["name"].as_str().unwrap().to_owned()),
                        "stop" => break,
                        _ => {}
                    }
                    let (now, later): (Vec<_>, Vec<_>) =
                        due.drain(..).partition(|(at, _)| *at <= now_ms);
                    due = later;
                    for (_, out) in now {
                        let mut sent = Vec::new();
                        match out {
                            Out::Audio { ms, mark } => {
                                let payload =
                                    B64.encode(callgrade_audio::mulaw::encode_all(&tone(ms, 8000)));
                                speaking_until = speaking_until.max(now_ms) + ms;
                                sent.push(json!({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}}));
                                sent.push(json!({"event": "mark", "streamSid": stream_sid, "mark": {"name": mark}}));
                            }
                            Out::Clear => {
                                speaking_until = now_ms;
                                script.lock().unwrap().clears += 1;
                                sent.push(json!({"event": "clear", "streamSid": stream_sid}));
                            }
                        }
                        for m in sent {
                            sink.send(Ws::text(m.to_string())).await.unwrap();
                        }
                    }
                }
            });
        }
    });
    url
}

/// The fakes of a voice test: the caller's LLM (`caller`), text to speech and speech to text
/// behind `base`, and the voice agent at `agent_url` with its `script`.
struct Fakes {
    base: String,
    speech: Speech,
    script: Arc<Mutex<Script>>,
    agent_url: String,
}

async fn fakes(caller: axum::routing::MethodRouter<Speech>) -> Fakes {
    let speech = Speech::default();
    let router = Router::new()
        .route("/v1/chat/completions", caller)
        .route("/v1/audio/speech", post(tts))
        .route("/v1/audio/transcriptions", post(stt))
        .with_state(speech.clone());
    let base = format!("{}/v1", serve(router).await);
    let script = Arc::new(Mutex::new(Script::default()));
    let agent_url = voice_agent(script.clone()).await;
    Fakes {
        base,
        speech,
        script,
        agent_url,
    }
}

/// The result's first run once the result is finished, within `limit`.
async fn finished_run(app: &TestApp, t: &Tenant, result: &Value, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (_, r) = app
            .api(&t.key, &format!("/api/v1/results/{}", result["id"]))
            .await;
        if r["finished"] == true {
            return r["runs"][0].clone();
        }
        assert!(Instant::now() < deadline, "the run did not finish: {r:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// Several threads, as the server has: the line keeps its 20 ms pace while the rest works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_and_barge_ins_are_measured_from_the_audio() {
    let app = TestApp::spawn().await;
    let Fakes {
        base,
        speech,
        script,
        agent_url,
    } = fakes(post(caller_llm)).await;

    let t = app.tenant("voice").await;
    let connector = json!({"kind": "media_stream", "url": agent_url,
        "custom_parameters": {"tenant": "acme"}, "end_of_turn_ms": 300, "timeout_seconds": 5});
    let (status, agent) = send(
        &app,
        &t.key,
        reqwest::Method::PATCH,
        &format!("/api/v1/agents/{}", t.agent_id),
        json!({"connector": connector}),
    )
    .await;
    assert_eq!(status, 200, "{agent}");
    let (status, sim) = send(
        &app,
        &t.key,
        reqwest::Method::PUT,
        "/api/v1/simulator",
        json!({"base_url": base, "model": "caller-1", "api_key": "sk-caller",
               "voice": {"tts_model": "voice-1", "voice": "ash", "tts_api_key": "sk-tts"}}),
    )
    .await;
    assert_eq!(status, 200, "{sim}");
    assert_eq!(sim["voice"]["tts_model"], "voice-1");
    assert_eq!(sim["voice"]["tts_api_key_set"], true);
    assert_eq!(sim["voice"]["stt_api_key_set"], false);
    assert!(
        !sim.to_string().contains("sk-tts"),
        "keys are write-only: {sim}"
    );
    let (status, bad) = send(
        &app,
        &t.key,
        reqwest::Method::PUT,
        "/api/v1/simulator",
        json!({"voice": {"stt_base_url": "ftp://x"}}),
    )
    .await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad.to_string().contains("voice.stt_base_url"), "{bad}");
    let id = scenario(
        &app,
        &t,
        "voice-refund",
        json!({"max_turns": 200, "max_seconds": 300,
        "persona": {"name": "Dana", "voice": {"voice": "verse", "pause_ms": 0,
            "barge_in": {"after_ms": 300, "line": "Wait, one thing.", "times": 3}}}}),
    )
    .await;
    let result = start(&app, &t, &[id], 1, "voice").await;

    // The conversation is real-time: about 40 s.
    let run = finished_run(&app, &t, &result, Duration::from_secs(120)).await;
    assert_eq!(run["status"], "completed", "{run:#}");
    let (_, call) = app
        .api(
            &t.key,
            &format!("/api/v1/calls/{}", run["call_id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(call["channel"], "voice", "{call:#}");

    let script = std::mem::take(&mut *script.lock().unwrap());
    assert_eq!(script.custom_parameters["tenant"], "acme");
    assert_eq!(script.custom_parameters["run_id"], run["id"].to_string());
    assert_eq!(script.custom_parameters["scenario_id"], id.to_string());
    assert_eq!(script.barge_ins, 3, "the persona barges in three times");
    assert_eq!(script.clears, 3);
    assert!(
        script.marks_back.contains(&"greeting".to_owned()),
        "marks come back: {:?}",
        script.marks_back
    );
    let spoken = speech.spoken.lock().unwrap().clone();
    assert!(
        spoken
            .iter()
            .all(|b| b["voice"] == "verse" && b["model"] == "voice-1"),
        "{spoken:?}"
    );

    // Each caller utterance, then the agent's next speech: the measured latency and stop time.
    let messages = call["messages"].as_array().unwrap();
    let time = |m: &Value, k: &str| m[k].as_f64().unwrap() * 1000.0;
    let users: Vec<&Value> = messages.iter().filter(|m| m["role"] == "user").collect();
    let bots: Vec<&Value> = messages.iter().filter(|m| m["role"] == "bot").collect();
    assert!(
        bots.iter()
            .all(|b| b["content"].as_str().unwrap().starts_with("Agent turn")),
        "{messages:#?}"
    );
    // How late the line's frames went out: a loaded machine shows here first.
    let pacing = &call["metadata"]["simulation"]["pacing"];
    let mut latencies = Vec::new();
    let mut stops = Vec::new();
    for u in &users {
        let (start, end) = (time(u, "start_offset"), time(u, "end_offset"));
        // The agent was speaking when the caller started: a barge-in.
        if let Some(b) = bots
            .iter()
            .find(|b| time(b, "start_offset") < start && time(b, "end_offset") > start)
        {
            stops.push(time(b, "end_offset") - start);
        }
        if let Some(b) = bots.iter().find(|b| time(b, "start_offset") >= end) {
            latencies.push(time(b, "start_offset") - end);
        }
    }
    assert!(
        latencies.len() >= 20,
        "at least 20 measured turns: {latencies:?}"
    );
    for (i, (measured, programmed)) in latencies.iter().zip(&script.delays).enumerate() {
        assert!((measured - *programmed as f64).abs() <= TOLERANCE_MS,
            "turn {i}: measured {measured} ms, programmed {programmed} ms; all: {latencies:?} vs {:?}; line pacing {pacing}", script.delays);
    }
    assert_eq!(stops.len(), 3, "{stops:?}");
    for s in &stops {
        assert!(
            (s - STOP_AFTER_BARGE_IN_MS as f64).abs() <= TOLERANCE_MS,
            "stop time {s} ms: {stops:?}; line pacing {pacing}"
        );
    }

    // The recording: stereo μ-law as the line carried it, caller left, agent right; seekable.
    let call_id = run["call_id"].as_str().unwrap();
    let url = format!("{}/api/v1/calls/{call_id}/recording", app.base);
    let whole = app
        .client
        .get(&url)
        .bearer_auth(&t.key)
        .send()
        .await
        .unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["content-type"], "audio/wav");
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    let bytes = whole.bytes().await.unwrap();
    let pcm = callgrade_audio::read_wav(&bytes).unwrap();
    assert_eq!((pcm.sample_rate, pcm.channels.len()), (8000, 2));
    let part = app
        .client
        .get(&url)
        .bearer_auth(&t.key)
        .header("Range", "bytes=0-43")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 0-43/{}", bytes.len()).as_str()
    );
    assert_eq!(part.bytes().await.unwrap(), bytes.slice(0..44));
    let past = app
        .client
        .get(&url)
        .bearer_auth(&t.key)
        .header("Range", format!("bytes={}-", bytes.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(past.status(), 416);
    let (status, _) = app
        .api("bad-key", &format!("/api/v1/calls/{call_id}/recording"))
        .await;
    assert_eq!(status, 401);

    // The audio metrics, from the recording stored with the call: the evaluation that
    // completed the run had them.
    let metric = |call: &Value, name: &str| {
        call["evaluations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["metric_name"] == name)
            .cloned()
    };
    assert!(
        metric(&call, "audio_latency").is_some_and(|e| e["value"].is_number()),
        "{call:#}"
    );
    let ms = |name: &str| metric(&call, name).unwrap()["value"].as_f64().unwrap() * 1000.0;
    // The median of the programmed delays (300, 700, 1100 in turn) is 700 ms.
    assert!(
        (ms("audio_latency") - 700.0).abs() <= TOLERANCE_MS,
        "{:#}",
        metric(&call, "audio_latency").unwrap()
    );
    assert!(
        (ms("audio_agent_stop_time") - STOP_AFTER_BARGE_IN_MS as f64).abs() <= TOLERANCE_MS,
        "{:#}",
        metric(&call, "audio_agent_stop_time").unwrap()
    );
    assert_eq!(
        metric(&call, "audio_caller_interrupting_agent").unwrap()["value"],
        3.0
    );
    // Each barge-in's overlap: the caller talks over the agent until it stops.
    let barge_ins = metric(&call, "audio_caller_interrupting_agent").unwrap();
    let overlaps: Vec<f64> = barge_ins["details"]["interruptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["overlap"].as_f64().unwrap() * 1000.0)
        .collect();
    assert_eq!(overlaps.len(), 3, "{barge_ins:#}");
    for o in &overlaps {
        assert!(
            (o - STOP_AFTER_BARGE_IN_MS as f64).abs() <= TOLERANCE_MS,
            "overlap {o} ms: {overlaps:?}; line pacing {pacing}"
        );
    }

    // The dashboard: a player, the waveform with its latencies and barge-ins, and the bytes.
    let (client, cookie) = crate::dashboard::signed_in(&app).await;
    let page_url = format!("{}/projects/{}/calls/{call_id}", app.base, t.project_id);
    let page = client
        .get(&page_url)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"<audio id="recording""#), "{page}");
    assert!(page.contains(r#"id="waveform""#));
    assert_eq!(
        page.matches("Barge-in at").count(),
        3,
        "three barge-ins drawn"
    );
    assert!(
        page.matches("Latency at the caller").count() >= 20,
        "every answer's latency drawn"
    );
    let audio = client
        .get(format!("{page_url}/recording"))
        .header("cookie", &cookie)
        .header("Range", "bytes=0-11")
        .send()
        .await
        .unwrap();
    assert_eq!(audio.status(), 206);
    assert_eq!(&audio.bytes().await.unwrap()[..4], b"RIFF");
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let refused = anonymous
        .get(format!("{page_url}/recording"))
        .send()
        .await
        .unwrap();
    assert_ne!(
        refused.status(),
        200,
        "the dashboard's recording needs a session"
    );
}

/// A caller that says one line, then hangs up after the agent's answer.
async fn one_line_caller(Json(body): Json<Value>) -> Json<Value> {
    let spoke = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["role"] == "assistant");
    let message = if spoke {
        json!({"role": "assistant", "content": "Bye.", "tool_calls": [
            {"id": "h", "type": "function", "function": {"name": "end_call", "arguments": "{}"}}]})
    } else {
        json!({"role": "assistant", "content": "Hello, I need help."})
    };
    Json(json!({"choices": [{"message": message}], "usage": {"total_tokens": 10}}))
}

/// A persona that answers over the agent's greeting, at its own speaking rate: its first line
/// starts while the greeting plays, and every line is asked of the TTS at that rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persona_talks_over_the_greeting_at_its_speaking_rate() {
    let app = TestApp::spawn().await;
    let Fakes {
        base,
        speech,
        script,
        agent_url,
    } = fakes(post(one_line_caller)).await;

    let t = app.tenant("eager").await;
    let connector = json!({"kind": "media_stream", "url": agent_url, "end_of_turn_ms": 300});
    let (status, _) = send(
        &app,
        &t.key,
        reqwest::Method::PATCH,
        &format!("/api/v1/agents/{}", t.agent_id),
        json!({"connector": connector}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send(
        &app,
        &t.key,
        reqwest::Method::PUT,
        "/api/v1/simulator",
        json!({"base_url": base, "model": "caller-1", "api_key": "sk-caller"}),
    )
    .await;
    assert_eq!(status, 200);
    let id = scenario(
        &app,
        &t,
        "eager",
        json!({"max_turns": 10, "max_seconds": 60,
        "persona": {"name": "Sam", "voice": {"speaking_rate": 1.5, "over_greeting": true}}}),
    )
    .await;
    let result = start(&app, &t, &[id], 1, "eager").await;
    let run = finished_run(&app, &t, &result, Duration::from_secs(60)).await;
    assert_eq!(run["status"], "completed", "{run:#}");
    let (_, call) = app
        .api(
            &t.key,
            &format!("/api/v1/calls/{}", run["call_id"].as_str().unwrap()),
        )
        .await;
    let messages = call["messages"].as_array().unwrap();
    let time = |m: &Value, k: &str| m[k].as_f64().unwrap() * 1000.0;
    let greeting = messages.iter().find(|m| m["role"] == "bot").unwrap();
    let opener = messages.iter().find(|m| m["role"] == "user").unwrap();
    assert_eq!(opener["content"], "Hello, I need help.");
    // The greeting starts 500 ms in and lasts 600 ms; the opener starts inside it.
    assert!(
        time(opener, "start_offset") >= time(greeting, "start_offset")
            && time(opener, "start_offset") < time(greeting, "end_offset"),
        "the opener is said over the greeting: {messages:#?}"
    );
    assert_eq!(
        script.lock().unwrap().barge_ins,
        1,
        "the agent heard it as one"
    );
    let spoken = speech.spoken.lock().unwrap().clone();
    assert!(!spoken.is_empty());
    assert!(
        spoken.iter().all(|b| b["speed"] == 1.5),
        "every line at the persona's rate: {spoken:?}"
    );
}
