//! `callgrade bench audio`: how fast a recording is analysed, in multiples of real time on one
//! core. The recording is generated (a stereo call of alternating turns with noise on the
//! caller's side and tones on the agent's), written as a PCM16 WAV, then decoded and analysed
//! repeatedly on one thread.

use callgrade_audio::{analyse, decode, wav_bytes, Detector, Pcm, WavEncoding};
use clap::Args;
use serde_json::json;
use std::process::ExitCode;
use std::time::Instant;

use crate::output::Output;

#[derive(Args)]
pub struct AudioBench {
    /// Minutes of generated recording.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=120))]
    minutes: u32,
    /// Its sample rate (Hz).
    #[arg(long, default_value_t = 8_000, value_parser = clap::value_parser!(u32).range(8_000..=48_000))]
    rate: u32,
    /// Analyses to time; the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    repetitions: u32,
}

/// Turns of 4 s: the caller speaks 1.5 s, the agent answers 0.7 s later for 1.5 s.
fn recording(minutes: u32, rate: u32) -> Pcm {
    let n = (u64::from(minutes) * 60 * u64::from(rate)) as usize;
    let (mut caller, mut agent) = (vec![0i16; n], vec![0i16; n]);
    let mut x = 7u32;
    for (i, (c, a)) in caller.iter_mut().zip(agent.iter_mut()).enumerate() {
        let ms = (i as u64 * 1000 / u64::from(rate)) % 4_000;
        if ms < 1_500 {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *c = (((x >> 16) as i32 - 32_768) / 4) as i16;
        }
        if (2_200..3_700).contains(&ms) {
            let t = i as f64 / f64::from(rate);
            *a = (8_000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16;
        }
    }
    Pcm {
        sample_rate: rate,
        channels: vec![caller, agent],
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(args: AudioBench, out: &Output) -> anyhow::Result<ExitCode> {
    out.progress(&format!(
        "analysing a generated {}-minute stereo recording at {} Hz, {} times (one thread)…",
        args.minutes, args.rate, args.repetitions
    ));
    let wav = wav_bytes(&recording(args.minutes, args.rate), WavEncoding::Pcm16);
    let detector = Detector::default();
    let seconds = f64::from(args.minutes) * 60.0;
    let (mut analysis, mut total) = (Vec::new(), Vec::new());
    let mut turns = 0;
    for _ in 0..args.repetitions {
        let started = Instant::now();
        let pcm = decode(&wav, args.minutes * 60)?;
        let decoded = started.elapsed().as_secs_f64();
        let timeline = analyse(&pcm, 1, &detector)?;
        let elapsed = started.elapsed().as_secs_f64();
        turns = timeline.agent.len();
        analysis.push(elapsed - decoded);
        total.push(elapsed);
    }
    let (analysis, total) = (median(analysis), median(total));
    let report = json!({
        "benchmark": "audio_analysis",
        "recording_seconds": seconds,
        "sample_rate": args.rate,
        "channels": 2,
        "agent_turns_found": turns,
        "analysis_seconds": analysis,
        "decode_and_analysis_seconds": total,
        "analysis_times_real_time_per_core": (seconds / analysis).round(),
        "decode_and_analysis_times_real_time_per_core": (seconds / total).round(),
        "target_times_real_time_per_core": 500,
    });
    out.print(&report, || {
        format!(
            "audio analysis: {:.0}× real time on one core ({:.0}× with WAV decoding) for a {}-minute stereo recording at {} Hz ({} agent turns; target 500×)",
            seconds / analysis,
            seconds / total,
            args.minutes,
            args.rate,
            turns
        )
    });
    Ok(ExitCode::SUCCESS)
}
