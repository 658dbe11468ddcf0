//! The audio corpus: generated stereo recordings with known speech boundaries (tones on the
//! agent's side, noise bursts on the caller's), at 8, 16 and 48 kHz, as PCM16 and μ-law WAV
//! and one FLAC file; each goes through decode → analyse → the builtin metrics, and every
//! audio metric is checked against the values worked out by hand in the comments.

use callgrade_audio::{analyse, decode, wav_bytes, Pcm, WavEncoding};
use callgrade_core::{
    compute_all_builtins, AudioTimeline, BuiltinConfig, BuiltinKey, BuiltinOutcome, Conversation,
    Detector, Message, MetricValue, Role,
};

/// Caller left (channel 0), agent right (channel 1), as a simulated call is recorded.
const AGENT: usize = 1;

/// `[start, end)` in ms.
type Spans = &'static [(u64, u64)];

/// The main call, 15 s:
/// - agent greets `[500, 2500]`: time to first audio 0.5 s;
/// - caller `[3000, 3600]`, agent `[4000, 6000]`: latency 0.4 s;
/// - caller `[6200, 6800]`, agent `[7000, 8400]`: latency 0.2 s; the caller barges in at
///   `[8000, 9000]`, the agent stops at 8.4 s: overlap 0.4 s, stop time 0.4 s;
/// - the barge-in ends at 9 s, agent `[10000, 11000]`: latency 1.0 s;
/// - caller `[12000, 13000]`, the agent starts over it at `[12600, 13500]`: overlap 0.4 s.
const CALLER: Spans = &[
    (3_000, 3_600),
    (6_200, 6_800),
    (8_000, 9_000),
    (12_000, 13_000),
];
const AGENT_SPEECH: Spans = &[
    (500, 2_500),
    (4_000, 6_000),
    (7_000, 8_400),
    (10_000, 11_000),
    (12_600, 13_500),
];

#[derive(Clone, Copy)]
enum Sound {
    Tone(f64),
    Noise,
    /// A full-scale square wave: every sample clips.
    Square,
}

fn side(spans: &[(u64, u64)], ms: u64, rate: u32, sound: Sound, seed: u32) -> Vec<i16> {
    let at = |t: u64| (t * u64::from(rate) / 1000) as usize;
    let mut v = vec![0i16; at(ms)];
    let mut x = seed;
    for &(a, b) in spans {
        for (i, sample) in v.iter_mut().enumerate().take(at(b)).skip(at(a)) {
            *sample = match sound {
                Sound::Tone(f) => {
                    let t = i as f64 / f64::from(rate);
                    (8_000.0 * (2.0 * std::f64::consts::PI * f * t).sin()) as i16
                }
                Sound::Noise => {
                    // A linear congruential generator: reproducible noise, ±8,192.
                    x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    ((((x >> 16) as i32) - 32_768) / 4) as i16
                }
                Sound::Square => {
                    if i % 8 < 4 {
                        i16::MAX
                    } else {
                        i16::MIN
                    }
                }
            };
        }
    }
    v
}

fn stereo(caller: Vec<i16>, agent: Vec<i16>, rate: u32) -> Pcm {
    Pcm {
        sample_rate: rate,
        channels: vec![caller, agent],
    }
}

fn call(rate: u32, caller_sound: Sound) -> Pcm {
    stereo(
        side(CALLER, 15_000, rate, caller_sound, 7),
        side(AGENT_SPEECH, 15_000, rate, Sound::Tone(440.0), 0),
        rate,
    )
}

fn timeline(bytes: &[u8]) -> AudioTimeline {
    let pcm = decode(bytes, 600).expect("decodes");
    analyse(&pcm, AGENT, &Detector::default()).expect("stereo")
}

fn msg(role: Role, words: usize, start: f64, end: f64) -> Message {
    Message {
        role,
        content: vec!["word"; words].join(" "),
        start_offset: Some(start),
        end_offset: Some(end),
        start_at_ms: None,
        end_at_ms: None,
        data: None,
    }
}

/// The main call's transcript, with the agent's own (earlier) idea of its times: latencies of
/// 0.2, 0.05 and 0.4 s where the caller heard 0.4, 0.2 and 1.0 s; its last turn is an overlap.
/// 15 + 15 + 15 + 15 + 13 = 73 agent words.
fn transcript() -> Vec<Message> {
    vec![
        msg(Role::Bot, 15, 0.3, 2.3),
        msg(Role::User, 4, 3.0, 3.7),
        msg(Role::Bot, 15, 3.9, 5.9),
        msg(Role::User, 4, 6.2, 6.9),
        msg(Role::Bot, 15, 6.95, 8.4),
        msg(Role::User, 4, 8.0, 9.0),
        msg(Role::Bot, 15, 9.4, 11.0),
        msg(Role::User, 4, 12.0, 13.0),
        msg(Role::Bot, 13, 12.6, 13.5),
    ]
}

fn metrics(t: &AudioTimeline, messages: &[Message]) -> Vec<(BuiltinKey, BuiltinOutcome)> {
    let conv = Conversation {
        duration_seconds: t.duration_ms as f64 / 1000.0,
        messages,
        ended_reason: "customer-ended-call",
        audio: Some(t),
        trace: None,
    };
    compute_all_builtins(&conv, &BuiltinConfig::default())
        .into_iter()
        .filter(|(k, _)| k.needs_recording())
        .collect()
}

fn get(m: &[(BuiltinKey, BuiltinOutcome)], key: &str) -> BuiltinOutcome {
    m.iter()
        .find(|(k, _)| k.as_str() == key)
        .unwrap_or_else(|| panic!("no {key}"))
        .1
        .clone()
}

fn num(m: &[(BuiltinKey, BuiltinOutcome)], key: &str) -> f64 {
    match get(m, key).value {
        Some(MetricValue::Number(n)) => n,
        other => panic!("{key}: {other:?}, {:?}", get(m, key).not_computable),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

fn not_computable(m: &[(BuiltinKey, BuiltinOutcome)], key: &str, because: &str) {
    let o = get(m, key);
    assert!(o.value.is_none(), "{key} = {:?}", o.value);
    assert!(!o.not_applicable);
    let reason = o.not_computable.unwrap_or_default();
    assert!(reason.contains(because), "{key}: {reason}");
}

fn check_main_call(t: &AudioTimeline) {
    let m = metrics(t, &transcript());
    // Latencies 0.4, 0.2, 1.0: sorted 0.2, 0.4, 1.0, so p50 = 0.4 and
    // p90 = 0.4 + 0.8 × (1.0 − 0.4) = 0.88; fewer than 30 turns: no p95/p99.
    let lat = get(&m, "audio_latency");
    assert!(close(num(&m, "audio_latency"), 0.4));
    assert!(close(lat.details["p90"].as_f64().unwrap(), 0.88));
    assert!(lat.details.get("p95").is_none() && lat.details.get("p99").is_none());
    assert_eq!(lat.details["samples"].as_array().unwrap().len(), 3);
    assert_eq!(lat.details["resolution_ms"], 20);
    assert_eq!(lat.details["detector"]["min_silence_ms"], 200);
    assert!(close(num(&m, "audio_time_to_first_audio"), 0.5));
    // One each way, 0.4 s of overlap each.
    for key in [
        "audio_agent_interrupting_caller",
        "audio_caller_interrupting_agent",
    ] {
        assert!(close(num(&m, key), 1.0), "{key}");
        let o = get(&m, key);
        assert!(close(
            o.details["interruptions"][0]["overlap"].as_f64().unwrap(),
            0.4
        ));
    }
    assert!(close(
        get(&m, "audio_caller_interrupting_agent").details["interruptions"][0]["at"]
            .as_f64()
            .unwrap(),
        8.0
    ));
    // Barge-in at 8.0, agent's end at 8.4.
    assert!(close(num(&m, "audio_agent_stop_time"), 0.4));
    // Agent 2 + 2 + 1.4 + 1 + 0.9 = 7.3 s; caller 0.6 + 0.6 + 1 + 1 = 3.2 s.
    assert!(close(num(&m, "audio_talk_ratio"), 7.3 / 3.2));
    assert!(close(num(&m, "audio_speech_share"), 0.695238)); // 7.3 / 10.5
    assert!(close(num(&m, "audio_call_share"), 0.486667)); // 7.3 / 15
                                                           // Gaps: 0.5, 0.5, 0.4, 0.2, 0.2, 1.0, 1.0 and 13.5 → 15: 1.5 s.
    assert!(close(num(&m, "audio_longest_silence"), 1.5));
    assert!(close(
        get(&m, "audio_longest_silence").details["start"]
            .as_f64()
            .unwrap(),
        13.5
    ));
    // 73 words in 7.3 s: 600 words a minute.
    assert!(close(num(&m, "audio_agent_speaking_rate"), 600.0));
    // Paired turns: (0.2 → 0.4), (0.05 → 0.2), (0.4 → 1.0): differences 0.2, 0.15, 0.6,
    // median 0.2; the transcript's overlap at 12.6 s has no audio handoff left to pair.
    let gap = get(&m, "audio_transcript_latency_gap");
    assert!(close(num(&m, "audio_transcript_latency_gap"), 0.2));
    assert!(close(gap.details["transcript_p50"].as_f64().unwrap(), 0.2));
    assert!(close(gap.details["audio_p50"].as_f64().unwrap(), 0.4));
    assert_eq!(gap.details["unpaired_transcript_turns"], 1);
    assert!(gap
        .explanation
        .contains("says 200 ms, the caller heard 400 ms"));
    assert!(m.iter().all(|(_, o)| o.warnings.is_empty()));
}

#[test]
fn the_main_call_at_every_rate_and_encoding() {
    for rate in [8_000, 16_000, 48_000] {
        for encoding in [WavEncoding::Pcm16, WavEncoding::Mulaw] {
            let t = timeline(&wav_bytes(&call(rate, Sound::Noise), encoding));
            assert_eq!(t.duration_ms, 15_000);
            let spans: Vec<(u64, u64)> = t.agent.iter().map(|s| (s.start_ms, s.end_ms)).collect();
            assert_eq!(spans, AGENT_SPEECH, "{rate} Hz {encoding:?}");
            let spans: Vec<(u64, u64)> = t.caller.iter().map(|s| (s.start_ms, s.end_ms)).collect();
            assert_eq!(spans, CALLER, "{rate} Hz {encoding:?}");
            check_main_call(&t);
        }
    }
}

/// `tests/fixtures/call-8k.flac`: the main call at 8 kHz with a 300 Hz tone for the caller (a
/// tone compresses to a small file; noise would not), written by
/// `CALLGRADE_WRITE_FIXTURE=/tmp/call-8k.wav cargo test -p callgrade-audio --test corpus` and
/// converted with `sox /tmp/call-8k.wav tests/fixtures/call-8k.flac`.
#[test]
fn a_compressed_file() {
    if let Ok(path) = std::env::var("CALLGRADE_WRITE_FIXTURE") {
        let wav = wav_bytes(&call(8_000, Sound::Tone(300.0)), WavEncoding::Pcm16);
        std::fs::write(path, wav).expect("writes the fixture's source");
    }
    let flac = include_bytes!("fixtures/call-8k.flac");
    assert!(!callgrade_audio::is_wav(flac));
    let pcm = decode(flac, 600).expect("FLAC decodes");
    // Lossless: the very samples generated.
    assert_eq!(pcm, call(8_000, Sound::Tone(300.0)));
    check_main_call(&analyse(&pcm, AGENT, &Detector::default()).unwrap());
    // A recording longer than allowed is refused while decoding.
    assert!(decode(flac, 10).unwrap_err().to_string().contains("longer"));
}

#[test]
fn silence_only() {
    let pcm = stereo(vec![0; 40_000], vec![0; 40_000], 8_000);
    let t = timeline(&wav_bytes(&pcm, WavEncoding::Mulaw));
    assert!(t.caller.is_empty() && t.agent.is_empty());
    let m = metrics(&t, &transcript());
    not_computable(&m, "audio_latency", "no caller→agent handoff");
    not_computable(&m, "audio_time_to_first_audio", "never spoke");
    assert!(close(num(&m, "audio_agent_interrupting_caller"), 0.0));
    assert!(close(num(&m, "audio_caller_interrupting_agent"), 0.0));
    not_computable(&m, "audio_agent_stop_time", "no barge-in");
    not_computable(&m, "audio_talk_ratio", "caller never spoke");
    not_computable(&m, "audio_speech_share", "nobody spoke");
    assert!(close(num(&m, "audio_call_share"), 0.0));
    assert!(close(num(&m, "audio_longest_silence"), 5.0));
    not_computable(&m, "audio_agent_speaking_rate", "never spoke");
    not_computable(
        &m,
        "audio_transcript_latency_gap",
        "no caller→agent handoff",
    );
}

#[test]
fn one_sided() {
    // Only the agent speaks, [1000, 3000] in 5 s.
    let pcm = stereo(
        vec![0; 80_000],
        side(&[(1_000, 3_000)], 5_000, 16_000, Sound::Tone(440.0), 0),
        16_000,
    );
    let t = timeline(&wav_bytes(&pcm, WavEncoding::Pcm16));
    let m = metrics(&t, &[msg(Role::Bot, 5, 1.0, 3.0)]);
    assert!(close(num(&m, "audio_time_to_first_audio"), 1.0));
    not_computable(&m, "audio_latency", "no caller→agent handoff");
    not_computable(&m, "audio_talk_ratio", "caller never spoke");
    assert!(close(num(&m, "audio_speech_share"), 1.0));
    assert!(close(num(&m, "audio_call_share"), 0.4));
    // Silences 0 → 1 s and 3 → 5 s: the later is longer.
    assert!(close(num(&m, "audio_longest_silence"), 2.0));
    assert!(close(num(&m, "audio_agent_speaking_rate"), 150.0)); // 5 words in 2 s
    not_computable(&m, "audio_transcript_latency_gap", "no user→agent handoff");
}

#[test]
fn clipped() {
    // The agent's square wave clips throughout [1000, 2000] of 4 s: a quarter of its samples;
    // the caller answers at [2500, 3000], so there is no caller→agent handoff.
    let pcm = stereo(
        side(&[(2_500, 3_000)], 4_000, 48_000, Sound::Noise, 3),
        side(&[(1_000, 2_000)], 4_000, 48_000, Sound::Square, 0),
        48_000,
    );
    let t = timeline(&wav_bytes(&pcm, WavEncoding::Pcm16));
    assert_eq!(t.clipped, [0.0, 0.25]);
    let m = metrics(&t, &[]);
    assert!(close(num(&m, "audio_time_to_first_audio"), 1.0));
    assert!(close(num(&m, "audio_talk_ratio"), 2.0));
    assert!(close(num(&m, "audio_longest_silence"), 1.0));
    not_computable(&m, "audio_agent_speaking_rate", "no agent words");
    for (k, o) in &m {
        assert_eq!(
            o.warnings,
            ["25.00% of the agent's samples are clipped (at full scale): its levels are distorted"],
            "{k:?}"
        );
    }
}

#[test]
fn thirty_turns_have_tail_percentiles() {
    // Turn k in [2k, 2k + 2) s: the caller speaks 0–600 ms, the agent answers after
    // 200 + 20·(k mod 10) ms for 600 ms. Latencies 200, 220, …, 380 ms, three of each.
    let mut caller = Vec::new();
    let mut agent = Vec::new();
    for k in 0..30u64 {
        let base = k * 2_000;
        caller.push((base, base + 600));
        let start = base + 600 + 200 + 20 * (k % 10);
        agent.push((start, start + 600));
    }
    let pcm = stereo(
        side(&caller, 60_000, 8_000, Sound::Noise, 1),
        side(&agent, 60_000, 8_000, Sound::Tone(440.0), 0),
        8_000,
    );
    let t = timeline(&wav_bytes(&pcm, WavEncoding::Mulaw));
    let m = metrics(&t, &[]);
    let lat = get(&m, "audio_latency");
    // Sorted, x[14] = 280 and x[15] = 300: p50 = 290 ms; p90: h = 26.1, 360 + 0.1 × 20;
    // p95 (h = 27.55) and p99 (h = 28.71) fall among the 380s.
    assert!(close(num(&m, "audio_latency"), 0.29));
    assert!(close(lat.details["p90"].as_f64().unwrap(), 0.362));
    assert!(close(lat.details["p95"].as_f64().unwrap(), 0.38));
    assert!(close(lat.details["p99"].as_f64().unwrap(), 0.38));
    assert_eq!(lat.details["count"], 30);
}

#[test]
fn without_a_recording_audio_metrics_are_not_applicable() {
    let messages = transcript();
    let conv = Conversation {
        duration_seconds: 15.0,
        messages: &messages,
        ended_reason: "customer-ended-call",
        audio: None,
        trace: None,
    };
    let all = compute_all_builtins(&conv, &BuiltinConfig::default());
    let audio: Vec<_> = all.iter().filter(|(k, _)| k.needs_recording()).collect();
    assert_eq!(audio.len(), 11);
    for (k, o) in audio {
        assert!(o.not_applicable, "{k:?}");
        assert_eq!(
            o.not_computable.as_deref(),
            Some("the call has no stereo recording")
        );
    }
    // A mono recording is refused by the analysis, not guessed at.
    let mono = Pcm {
        sample_rate: 8_000,
        channels: vec![vec![0; 8_000]],
    };
    assert!(analyse(&mono, 0, &Detector::default()).is_err());
}

#[test]
fn a_malformed_timeline_gives_numbers_not_panics() {
    // As if read back damaged from storage: reversed, unsorted and overlapping spans.
    let span = |start_ms, end_ms| callgrade_core::Span { start_ms, end_ms };
    let t = AudioTimeline {
        frame_ms: 0,
        detector: Detector::default(),
        duration_ms: 1_000,
        caller: vec![span(900, 100), span(50, 60), span(40, 2_000)],
        agent: vec![span(500, 400), span(0, 5_000), span(10, 20)],
        clipped: [f32::NAN, 2.0],
    };
    assert_eq!(metrics(&t, &transcript()).len(), 11);
}

#[test]
fn damaged_compressed_files_are_errors_or_audio_never_panics() {
    let flac = include_bytes!("fixtures/call-8k.flac");
    for cut in [0, 4, 41, 42, 100, 1_000, flac.len() / 2] {
        let _ = decode(&flac[..cut], 600);
    }
    let mut x = 1u32;
    for _ in 0..20 {
        let mut bytes = flac.to_vec();
        for _ in 0..50 {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let i = (x >> 8) as usize % bytes.len();
            bytes[i] ^= (x >> 24) as u8 | 1;
        }
        if let Ok(pcm) = decode(&bytes, 600) {
            assert!(pcm.channels.len() <= 2);
        }
    }
}
