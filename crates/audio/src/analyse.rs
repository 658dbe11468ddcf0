//! A stereo recording to its [`AudioTimeline`]: who spoke when on each side, and how much of
//! each side clips. The audio metrics (`callgrade_core::conversation`) are computed from it.

use callgrade_core::{AudioTimeline, Detector};

use crate::detect::speech_spans;
use crate::{AudioError, Pcm, FRAME_MS};

/// A sample at least this far from zero counts as clipped: the largest μ-law value (98% of
/// 16-bit full scale), so that a μ-law recording, which never reaches 32,767, can clip too.
pub const CLIP_LEVEL: i16 = 32_124;

/// The timeline of a stereo recording whose channel `agent_channel` (0 or 1) is the agent and
/// the other the caller.
///
/// A mono recording is refused: its one channel mixes both sides, and speech that cannot be
/// told apart would make every metric (latency, interruptions, talk ratio) a number about
/// neither side.
pub fn analyse(
    pcm: &Pcm,
    agent_channel: usize,
    detector: &Detector,
) -> Result<AudioTimeline, AudioError> {
    let [left, right] = pcm.channels.as_slice() else {
        return Err(AudioError::Unsupported(format!(
            "{} channel{}: the audio metrics need a stereo recording, the caller on one channel and the agent on the other",
            pcm.channels.len(),
            if pcm.channels.len() == 1 { "" } else { "s" }
        )));
    };
    let (caller, agent) = match agent_channel {
        0 => (right, left),
        1 => (left, right),
        n => {
            return Err(AudioError::Unsupported(format!(
                "agent channel {n} (a stereo recording has channels 0 and 1)"
            )))
        }
    };
    Ok(AudioTimeline {
        frame_ms: FRAME_MS,
        detector: *detector,
        duration_ms: pcm.duration_ms(),
        caller: speech_spans(caller, pcm.sample_rate, detector),
        agent: speech_spans(agent, pcm.sample_rate, detector),
        clipped: [clipped(caller), clipped(agent)],
    })
}

/// The fraction of samples at or beyond [`CLIP_LEVEL`].
pub fn clipped(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let n = samples
        .iter()
        .filter(|&&s| s >= CLIP_LEVEL || s <= -CLIP_LEVEL)
        .count();
    (n as f64 / samples.len() as f64) as f32
}

/// The peak of each `bucket_ms` of `samples`, scaled to 0–255 (255 is full scale), for
/// drawing a waveform. The last bucket may be shorter; no bucket (`bucket_ms` 0, or a rate of
/// 0) gives nothing.
pub fn envelope(samples: &[i16], sample_rate: u32, bucket_ms: u32) -> Vec<u8> {
    let per_bucket = (u64::from(sample_rate) * u64::from(bucket_ms) / 1000) as usize;
    if per_bucket == 0 {
        return Vec::new();
    }
    samples
        .chunks(per_bucket)
        .map(|b| {
            let peak = b.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
            // 32,768 (the magnitude of i16::MIN) and 32,767 both round to 255.
            ((u32::from(peak) * 255 + 16_384) / 32_768).min(255) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use callgrade_core::Span;

    fn side(spans: &[(usize, usize)], len: usize, rate: usize) -> Vec<i16> {
        let mut v = vec![0i16; len * rate / 1000];
        for &(a, b) in spans {
            for (i, s) in v[a * rate / 1000..b * rate / 1000].iter_mut().enumerate() {
                *s = if i % 2 == 0 { 8_000 } else { -8_000 };
            }
        }
        v
    }

    #[test]
    fn sides_follow_the_agent_channel() {
        let pcm = Pcm {
            sample_rate: 16_000,
            channels: vec![
                side(&[(100, 500)], 2_000, 16_000),
                side(&[(1_000, 1_500)], 2_000, 16_000),
            ],
        };
        let t = analyse(&pcm, 1, &Detector::default()).unwrap();
        assert_eq!(
            t.caller,
            vec![Span {
                start_ms: 100,
                end_ms: 500
            }]
        );
        assert_eq!(
            t.agent,
            vec![Span {
                start_ms: 1_000,
                end_ms: 1_500
            }]
        );
        assert_eq!(
            (t.frame_ms, t.duration_ms, t.clipped),
            (20, 2_000, [0.0, 0.0])
        );
        assert_eq!(
            analyse(&pcm, 0, &Detector::default()).unwrap().caller,
            t.agent
        );
        assert!(analyse(&pcm, 2, &Detector::default()).is_err());
        let mono = Pcm {
            sample_rate: 8_000,
            channels: vec![vec![0; 800]],
        };
        assert!(analyse(&mono, 0, &Detector::default())
            .unwrap_err()
            .to_string()
            .contains("stereo"));
    }

    #[test]
    fn clipping_and_envelope() {
        assert_eq!(clipped(&[0, 32_124, -32_124, 32_123]), 0.5);
        assert_eq!(clipped(&[]), 0.0);
        let s = [0, 100, -32_768, 5, 16_384, 0, 0];
        assert_eq!(envelope(&s, 1_000, 2), vec![1, 255, 128, 0]);
        assert!(envelope(&s, 1_000, 0).is_empty());
    }
}
