//! The audio metrics: who spoke when in the call's stereo recording ([`AudioTimeline`]), as the
//! caller heard it, rather than what the transcript's times claim. Times in the timeline are
//! milliseconds at frame boundaries; results are seconds like every other builtin.

use super::*;
use crate::audio::{AudioTimeline, Span};

/// Transcript and audio turns further apart than this (agent starts) are not the same turn.
const PAIRING_WINDOW_MS: u64 = 3_000;
/// A side with more of its samples clipped than this earns a warning.
const CLIPPING_WARNING: f32 = 0.001;
/// Percentiles above p90 need this many samples to mean something.
const TAIL_SAMPLES: usize = 30;

pub(super) const NO_RECORDING: &str = "the call has no stereo recording";

pub(super) fn not_applicable() -> BuiltinOutcome {
    BuiltinOutcome {
        explanation: format!("Not applicable: {NO_RECORDING}."),
        not_applicable: true,
        ..BuiltinOutcome::not_computable(NO_RECORDING.to_owned(), Vec::new())
    }
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

// The timeline is ours (`callgrade-audio` builds it sorted and well-formed), but it may come
// back from storage: differences saturate rather than trust that.

/// What every audio result states: its resolution and the detector that found the speech.
fn details(t: &AudioTimeline, mut own: Value) -> Value {
    if let Some(map) = own.as_object_mut() {
        map.insert("resolution_ms".into(), json!(t.frame_ms));
        map.insert(
            "detector".into(),
            json!({
                "threshold_dbfs": t.detector.threshold_dbfs,
                "min_speech_ms": t.detector.min_speech_ms,
                "min_silence_ms": t.detector.min_silence_ms,
            }),
        );
        map.insert("recording_seconds".into(), json!(secs(t.duration_ms)));
    }
    own
}

fn warnings(t: &AudioTimeline) -> Vec<String> {
    ["caller", "agent"]
        .iter()
        .zip(t.clipped)
        .filter(|(_, c)| *c > CLIPPING_WARNING)
        .map(|(who, c)| {
            format!(
                "{:.2}% of the {who}'s samples are clipped (at full scale): its levels are distorted",
                f64::from(c) * 100.0
            )
        })
        .collect()
}

fn not_computable(t: &AudioTimeline, reason: &str) -> BuiltinOutcome {
    BuiltinOutcome::not_computable(reason.to_owned(), warnings(t))
}

fn total(spans: &[Span]) -> u64 {
    spans.iter().map(Span::duration_ms).sum()
}

/// The end of the analysed audio: speech reaching it was cut off by the recording's end.
fn analysed_end(t: &AudioTimeline) -> u64 {
    match t.frame_ms {
        0 => t.duration_ms,
        f => t.duration_ms / u64::from(f) * u64::from(f),
    }
}

/// A caller→agent handoff in the audio: the caller's speech ended at `caller_end`, and the
/// agent's next speech, not begun during caller speech, started at `agent_start`.
#[derive(Debug, Clone, Copy)]
pub(super) struct AudioHandoff {
    caller_end: u64,
    agent_start: u64,
}

/// Every agent span whose latest preceding speech (by end, the caller's on a tie) is the
/// caller's, and that does not start inside caller speech.
pub(super) fn audio_handoffs(t: &AudioTimeline) -> Vec<AudioHandoff> {
    let mut out = Vec::new();
    for (j, a) in t.agent.iter().enumerate() {
        let i = t.caller.partition_point(|c| c.end_ms <= a.start_ms);
        if i == 0 {
            continue;
        }
        let c = t.caller[i - 1];
        let inside_caller = t.caller.get(i).is_some_and(|n| n.start_ms <= a.start_ms);
        let agent_before = j.checked_sub(1).map_or(0, |k| t.agent[k].end_ms);
        if !inside_caller && c.end_ms >= agent_before {
            out.push(AudioHandoff {
                caller_end: c.end_ms,
                agent_start: a.start_ms,
            });
        }
    }
    out
}

/// Spans of `movers` that start strictly inside a span of `holders`, with that span: the
/// `(holder, mover)` pairs, and the movers that started at the same frame as a holder (ties).
fn starts_inside(holders: &[Span], movers: &[Span]) -> (Vec<(Span, Span)>, Vec<Span>) {
    let mut inside = Vec::new();
    let mut ties = Vec::new();
    for m in movers {
        let i = holders.partition_point(|h| h.end_ms <= m.start_ms);
        let Some(h) = holders.get(i) else { continue };
        if h.start_ms == m.start_ms {
            ties.push(*m);
        } else if h.start_ms < m.start_ms {
            inside.push((*h, *m));
        }
    }
    (inside, ties)
}

fn stats(sorted: &[f64]) -> Value {
    let n = sorted.len();
    let mut m = Map::new();
    m.insert("count".into(), json!(n));
    if n > 0 {
        m.insert("p50".into(), json!(r6(percentile(sorted, 50.0))));
        m.insert("p90".into(), json!(r6(percentile(sorted, 90.0))));
        if n >= TAIL_SAMPLES {
            m.insert("p95".into(), json!(r6(percentile(sorted, 95.0))));
            m.insert("p99".into(), json!(r6(percentile(sorted, 99.0))));
        }
        m.insert("max".into(), json!(r6(sorted[n - 1])));
    }
    Value::Object(m)
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_unstable_by(f64::total_cmp);
    v
}

fn median(v: &[f64]) -> f64 {
    percentile(&sorted(v.to_vec()), 50.0)
}

// ---------------------------------------------------------------------------------------------

pub(super) fn latency(t: &AudioTimeline) -> BuiltinOutcome {
    let handoffs = audio_handoffs(t);
    if handoffs.is_empty() {
        return not_computable(
            t,
            "no caller→agent handoff in the recording (the agent never answered caller speech)",
        );
    }
    let samples: Vec<f64> = handoffs
        .iter()
        .map(|h| secs(h.agent_start.saturating_sub(h.caller_end)))
        .collect();
    let s = sorted(samples.clone());
    let p50 = percentile(&s, 50.0);
    let mut d = stats(&s);
    d["samples"] = json!(handoffs
        .iter()
        .map(|h| json!({
            "caller_end": secs(h.caller_end),
            "agent_start": secs(h.agent_start),
            "latency": secs(h.agent_start.saturating_sub(h.caller_end)),
        }))
        .collect::<Vec<_>>());
    BuiltinOutcome::number(
        p50,
        format!(
            "At the caller's ear, the agent's median latency over {} turn{} is {p50:.2} s.",
            s.len(),
            plural(s.len())
        ),
        details(t, d),
        warnings(t),
    )
}

pub(super) fn time_to_first_audio(t: &AudioTimeline) -> BuiltinOutcome {
    let Some(first) = t.agent.first() else {
        return not_computable(t, "the agent never spoke in the recording");
    };
    let v = secs(first.start_ms);
    BuiltinOutcome::number(
        v,
        format!("The caller first heard the agent {v:.2} s after the call started."),
        details(t, json!({ "start": v })),
        warnings(t),
    )
}

/// Interruptions: `agent` is whether the agent is the one starting over the caller.
pub(super) fn interruptions(t: &AudioTimeline, cfg: &BuiltinConfig, agent: bool) -> BuiltinOutcome {
    let (holders, movers) = if agent {
        (&t.caller, &t.agent)
    } else {
        (&t.agent, &t.caller)
    };
    let (inside, ties) = starts_inside(holders, movers);
    let (mover, holder) = if agent {
        ("agent", "caller")
    } else {
        ("caller", "agent")
    };
    let mut counted = Vec::new();
    let mut below = Vec::new();
    for (h, m) in inside {
        let overlap = secs(h.end_ms.min(m.end_ms).saturating_sub(m.start_ms));
        let event = json!({
            "at": secs(m.start_ms),
            "overlap": overlap,
            format!("{holder}_speech"): [secs(h.start_ms), secs(h.end_ms)],
            format!("{mover}_speech"): [secs(m.start_ms), secs(m.end_ms)],
        });
        if overlap + EPS >= cfg.min_overlap_seconds {
            counted.push(event);
        } else {
            below.push(event);
        }
    }
    let n = counted.len();
    BuiltinOutcome::count(
        n,
        format!(
            "The {mover} started speaking while the {holder} spoke {n} time{} (overlap of at least {} s).",
            plural(n),
            cfg.min_overlap_seconds
        ),
        details(
            t,
            json!({
                "interruptions": counted,
                "below_min_overlap": below,
                "simultaneous_starts": ties.iter().map(|s| secs(s.start_ms)).collect::<Vec<_>>(),
                "min_overlap_seconds": cfg.min_overlap_seconds,
            }),
        ),
        warnings(t),
    )
}

pub(super) fn stop_time(t: &AudioTimeline) -> BuiltinOutcome {
    let end = analysed_end(t);
    let mut events = Vec::new();
    let mut samples = Vec::new();
    let mut cut_off = 0usize;
    // The first caller start inside each agent span is its barge-in.
    let (inside, _) = starts_inside(&t.agent, &t.caller);
    let mut last_agent: Option<Span> = None;
    for (a, c) in inside {
        if last_agent == Some(a) {
            continue;
        }
        last_agent = Some(a);
        let censored = a.end_ms >= end;
        let stop = secs(a.end_ms.saturating_sub(c.start_ms));
        if censored {
            cut_off += 1;
        } else {
            samples.push(stop);
        }
        events.push(json!({
            "barge_in_at": secs(c.start_ms),
            "agent_end": secs(a.end_ms),
            "stop_time": stop,
            "talked_over": a.end_ms > c.end_ms,
            "cut_off": censored,
        }));
    }
    if samples.is_empty() {
        let reason = if cut_off > 0 {
            "every barge-in was still being talked over when the recording ended"
        } else {
            "the caller never started speaking while the agent spoke (no barge-in)"
        };
        return not_computable(t, reason);
    }
    let s = sorted(samples);
    let p50 = percentile(&s, 50.0);
    let mut d = stats(&s);
    d["barge_ins"] = json!(events);
    d["cut_off"] = json!(cut_off);
    BuiltinOutcome::number(
        p50,
        format!(
            "After the caller barged in, the agent stopped in {p50:.2} s (median of {}).",
            s.len()
        ),
        details(t, d),
        warnings(t),
    )
}

/// What the agent's speech is divided by: the caller's speech, all speech, or the recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Portion {
    /// agent / caller
    Caller,
    /// agent / (agent + caller)
    Speech,
    /// agent / recording
    Call,
}

pub(super) fn share(t: &AudioTimeline, which: Portion) -> BuiltinOutcome {
    let agent = total(&t.agent);
    let caller = total(&t.caller);
    let (den, reason, what) = match which {
        Portion::Caller => (
            caller,
            "the caller never spoke in the recording",
            "the agent's speech per second of the caller's",
        ),
        Portion::Speech => (
            agent + caller,
            "nobody spoke in the recording",
            "the agent's share of all speech",
        ),
        Portion::Call => (
            t.duration_ms,
            "the recording is empty",
            "the agent's share of the recording",
        ),
    };
    if den == 0 {
        return not_computable(t, reason);
    }
    let v = agent as f64 / den as f64;
    BuiltinOutcome::number(
        v,
        format!("From the audio, {what} is {v:.3}."),
        details(
            t,
            json!({
                "agent_seconds": secs(agent),
                "caller_seconds": secs(caller),
            }),
        ),
        warnings(t),
    )
}

pub(super) fn longest_silence(t: &AudioTimeline) -> BuiltinOutcome {
    let mut all: Vec<Span> = t.agent.iter().chain(&t.caller).copied().collect();
    all.sort_unstable_by_key(|s| s.start_ms);
    let (mut best, mut covered_to) = ((0u64, 0u64), 0u64);
    let consider = |from: u64, to: u64, best: &mut (u64, u64)| {
        if to > from && to - from > best.1 - best.0 {
            *best = (from, to);
        }
    };
    for s in &all {
        consider(covered_to, s.start_ms, &mut best);
        covered_to = covered_to.max(s.end_ms);
    }
    consider(covered_to, t.duration_ms, &mut best);
    let v = secs(best.1 - best.0);
    BuiltinOutcome::number(
        v,
        format!(
            "The longest stretch with neither side speaking is {v:.2} s (from {:.2} s).",
            secs(best.0)
        ),
        details(t, json!({ "start": secs(best.0), "end": secs(best.1) })),
        warnings(t),
    )
}

pub(super) fn speaking_rate(p: &Prepared, t: &AudioTimeline) -> BuiltinOutcome {
    let words: usize = p
        .rows
        .iter()
        .filter(|r| r.bot)
        .map(|r| p.content(r.idx).split_whitespace().count())
        .sum();
    if words == 0 {
        return not_computable(t, "the transcript has no agent words to count");
    }
    let speech = total(&t.agent);
    if speech == 0 {
        return not_computable(t, "the agent never spoke in the recording");
    }
    let v = words as f64 / (speech as f64 / 60_000.0);
    BuiltinOutcome::number(
        v,
        format!("The agent spoke {v:.0} words per minute of its audio speech."),
        details(
            t,
            json!({ "words": words, "speaking_seconds": secs(speech) }),
        ),
        warnings(t),
    )
}

pub(super) fn transcript_gap(p: &Prepared, t: &AudioTimeline) -> BuiltinOutcome {
    let text: Vec<(usize, usize, f64, f64)> = handoffs_to_agent(p)
        .filter_map(|(u, a)| Some((u.idx, a.idx, u.end?, a.start?)))
        .collect();
    if text.is_empty() {
        return not_computable(
            t,
            "the transcript has no user→agent handoff with the user's end and the agent's start times",
        );
    }
    let audio = audio_handoffs(t);
    if audio.is_empty() {
        return not_computable(t, "no caller→agent handoff in the recording");
    }
    // In order, each transcript turn takes the nearest later-unused audio turn by agent start.
    let mut next = 0usize;
    let mut pairs = Vec::new();
    let mut diffs = Vec::new();
    let mut text_lat = Vec::new();
    let mut audio_lat = Vec::new();
    let mut agreeing = 0usize;
    for &(u, a, u_end, a_start) in &text {
        let a_start_ms = (a_start * 1000.0).round();
        let best = audio[next..]
            .iter()
            .enumerate()
            .map(|(k, h)| (k, (h.agent_start as f64 - a_start_ms).abs()))
            .filter(|(_, d)| *d <= PAIRING_WINDOW_MS as f64)
            .min_by(|x, y| x.1.total_cmp(&y.1));
        let Some((k, _)) = best else { continue };
        let h = audio[next + k];
        next += k + 1;
        let tl = a_start - u_end;
        let al = secs(h.agent_start.saturating_sub(h.caller_end));
        let diff = al - tl;
        if diff.abs() * 1000.0 < f64::from(t.frame_ms) {
            agreeing += 1;
        }
        diffs.push(diff);
        text_lat.push(tl);
        audio_lat.push(al);
        pairs.push(json!({
            "user_message": u,
            "agent_message": a,
            "transcript_latency": r6(tl),
            "audio_latency": al,
            "difference": r6(diff),
            "agent_start_offset": r6(secs(h.agent_start) - a_start),
        }));
        if next >= audio.len() {
            break;
        }
    }
    if pairs.is_empty() {
        return not_computable(
            t,
            "no transcript turn has an audio turn within 3 s of its agent start",
        );
    }
    let v = median(&diffs);
    let (mt, ma) = (median(&text_lat), median(&audio_lat));
    let n = pairs.len();
    BuiltinOutcome::number(
        v,
        format!(
            "The transcript says {:.0} ms, the caller heard {:.0} ms (medians over {n} paired turn{}; median difference {:+.0} ms).",
            mt * 1000.0,
            ma * 1000.0,
            plural(n),
            v * 1000.0
        ),
        details(
            t,
            json!({
                "pairs": pairs,
                "transcript_p50": r6(mt),
                "audio_p50": r6(ma),
                "agreeing": agreeing,
                "unpaired_transcript_turns": text.len() - n,
                "unpaired_audio_turns": audio.len() - n,
                "pairing_window_seconds": secs(PAIRING_WINDOW_MS),
            }),
        ),
        warnings(t),
    )
}
