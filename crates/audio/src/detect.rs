//! The voice-activity detector, streaming: fed one 20 ms frame at a time, it says when speech
//! starts and ends as soon as each is decidable. [`crate::analyse`] runs it over a recording;
//! the voice simulator runs it live on the agent's audio.
//!
//! Its semantics, in the order they apply (docs/metrics.md, "The speech detector"):
//! 1. a frame is **voiced** when its level ([`crate::level_dbfs`]) is at least
//!    `threshold_dbfs`;
//! 2. a run of voiced frames shorter than `min_speech_ms` is noise and is dropped;
//! 3. the silence between two remaining runs, when shorter than `min_silence_ms`, is bridged:
//!    the runs are one stretch of speech.
//!
//! Every time is a frame boundary: `k × 20 ms` from the first frame pushed.

use callgrade_core::{Detector, Span};

use crate::{level_dbfs, FRAME_MS};

/// A change of state, at a frame boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// Speech started at `at_ms`.
    Start { at_ms: u64 },
    /// Speech ended at `at_ms` (the end of its last voiced frame).
    End { at_ms: u64 },
}

/// The streaming detector.
///
/// **Decision delay.** A start is reported once the speech has lasted `min_speech_ms` (at least
/// one frame), with the time it started. An end is reported once `min_silence_ms` of silence
/// has followed it, or, when a burst of sound begins inside that silence, once the burst is
/// known to be noise (it stopped short of `min_speech_ms`): so at most
/// `min_silence_ms + min_speech_ms` after the end. Each push costs one pass over its frame.
#[derive(Debug, Clone)]
pub struct SpeechTracker {
    detector: Detector,
    /// Frames pushed so far.
    frames: u64,
    /// The raw voiced run in progress: its first frame, and whether it is long enough to be
    /// speech.
    run: Option<(u64, bool)>,
    /// Speech has started and its end is not yet decided.
    in_speech: bool,
    /// While in speech: the frame after the last voiced frame of speech.
    speech_end: u64,
}

impl SpeechTracker {
    /// `sample_rate` is not needed to decide (each push is one frame, whatever its length) and
    /// is kept in the signature so that a caller states what it feeds.
    pub fn new(detector: Detector, sample_rate: u32) -> Self {
        let _ = sample_rate;
        Self {
            detector,
            frames: 0,
            run: None,
            in_speech: false,
            speech_end: 0,
        }
    }

    /// The samples per 20 ms frame at `sample_rate` (rounded down).
    pub fn frame_samples(sample_rate: u32) -> usize {
        (u64::from(sample_rate) * u64::from(FRAME_MS) / 1000) as usize
    }

    /// Where the next frame starts, in ms.
    pub fn now_ms(&self) -> u64 {
        self.frames * u64::from(FRAME_MS)
    }

    /// Whether speech is going on, as decided so far (an end not yet decided counts as speech).
    pub fn in_speech(&self) -> bool {
        self.in_speech
    }

    /// Feeds the next 20 ms frame.
    pub fn push(&mut self, frame: &[i16]) -> Option<Edge> {
        let voiced = level_dbfs(frame) >= self.detector.threshold_dbfs;
        self.step(voiced)
    }

    /// Feeds the next frame's decision directly (voiced or not).
    pub fn step(&mut self, voiced: bool) -> Option<Edge> {
        let n = self.frames;
        self.frames += 1;
        let f = u64::from(FRAME_MS);
        let mut edge = None;
        if voiced {
            let (start, kept) = self.run.get_or_insert((n, false));
            if *kept {
                self.speech_end = n + 1;
            } else if (n + 1 - *start) * f >= u64::from(self.detector.min_speech_ms) {
                *kept = true;
                // Still in speech means the silence since its end was short enough to bridge
                // (a longer one would have ended it before this run began).
                if !self.in_speech {
                    self.in_speech = true;
                    edge = Some(Edge::Start { at_ms: *start * f });
                }
                self.speech_end = n + 1;
            }
        } else {
            // A run that never reached min_speech_ms is dropped: noise.
            self.run = None;
        }
        if self.in_speech && !matches!(self.run, Some((_, true))) {
            let silence = (n + 1 - self.speech_end) * f;
            // A burst that began early enough may still become speech and bridge the silence.
            let may_bridge = self.run.is_some_and(|(s, _)| {
                (s - self.speech_end) * f < u64::from(self.detector.min_silence_ms)
            });
            if silence >= u64::from(self.detector.min_silence_ms) && !may_bridge {
                self.in_speech = false;
                edge = Some(Edge::End {
                    at_ms: self.speech_end * f,
                });
            }
        }
        edge
    }

    /// The end of the audio: speech still going ends at its last voiced frame.
    pub fn finish(&mut self) -> Option<Edge> {
        self.run = None;
        if self.in_speech {
            self.in_speech = false;
            return Some(Edge::End {
                at_ms: self.speech_end * u64::from(FRAME_MS),
            });
        }
        None
    }
}

/// The speech in one channel, as spans: the detector over every whole 20 ms frame (frame `k`
/// covers samples `⌊k·r/50⌋ .. ⌊(k+1)·r/50⌋` at rate `r`, so no drift at any rate); a last part
/// shorter than a frame is not analysed.
pub fn speech_spans(samples: &[i16], sample_rate: u32, detector: &Detector) -> Vec<Span> {
    let mut tracker = SpeechTracker::new(*detector, sample_rate);
    let mut spans = Vec::new();
    let mut start = None;
    let mut take = |edge: Option<Edge>, spans: &mut Vec<Span>| match edge {
        Some(Edge::Start { at_ms }) => start = Some(at_ms),
        Some(Edge::End { at_ms }) => spans.push(Span {
            start_ms: start.take().unwrap_or(0),
            end_ms: at_ms,
        }),
        None => {}
    };
    for frame in frames(samples, sample_rate) {
        let edge = tracker.push(frame);
        take(edge, &mut spans);
    }
    take(tracker.finish(), &mut spans);
    spans
}

/// The whole 20 ms frames of `samples`.
pub(crate) fn frames(samples: &[i16], sample_rate: u32) -> impl Iterator<Item = &[i16]> {
    let per_second = 1000 / u64::from(FRAME_MS);
    let bound = move |k: u64| (k * u64::from(sample_rate) / per_second) as usize;
    (0u64..)
        .map(move |k| (bound(k), bound(k + 1)))
        .take_while(move |&(a, b)| b <= samples.len() && b > a)
        .map(move |(a, b)| &samples[a..b])
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Detector = Detector {
        threshold_dbfs: -40.0,
        min_speech_ms: 60,
        min_silence_ms: 200,
    };

    /// The definition, applied offline in its three steps: the reference for the tracker.
    fn reference(voiced: &[bool], d: &Detector) -> Vec<Span> {
        let f = u64::from(FRAME_MS);
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for (i, &v) in voiced.iter().enumerate() {
            let i = i as u64;
            match runs.last_mut() {
                Some(r) if v && r.1 == i => r.1 = i + 1,
                _ if v => runs.push((i, i + 1)),
                _ => {}
            }
        }
        runs.retain(|r| (r.1 - r.0) * f >= u64::from(d.min_speech_ms));
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for r in runs {
            match merged.last_mut() {
                Some(m) if (r.0 - m.1) * f < u64::from(d.min_silence_ms) => m.1 = r.1,
                _ => merged.push(r),
            }
        }
        merged
            .into_iter()
            .map(|(a, b)| Span {
                start_ms: a * f,
                end_ms: b * f,
            })
            .collect()
    }

    /// The tracker's spans, checking that each edge comes within the documented delay.
    fn streamed(voiced: &[bool], d: &Detector) -> Vec<Span> {
        let mut t = SpeechTracker::new(*d, 8_000);
        let mut spans = Vec::new();
        let mut start = None;
        let limit = u64::from(d.min_silence_ms + d.min_speech_ms) + u64::from(FRAME_MS);
        for &v in voiced {
            match t.step(v) {
                Some(Edge::Start { at_ms }) => {
                    assert!(t.now_ms() - at_ms <= u64::from(d.min_speech_ms.max(FRAME_MS)));
                    start = Some(at_ms);
                }
                Some(Edge::End { at_ms }) => {
                    assert!(t.now_ms() - at_ms <= limit, "late end at {at_ms}");
                    spans.push(Span {
                        start_ms: start.take().expect("an end follows a start"),
                        end_ms: at_ms,
                    });
                }
                None => {}
            }
        }
        if let Some(Edge::End { at_ms }) = t.finish() {
            spans.push(Span {
                start_ms: start.take().expect("an end follows a start"),
                end_ms: at_ms,
            });
        }
        assert!(start.is_none());
        spans
    }

    fn pattern(s: &str) -> Vec<bool> {
        s.chars().map(|c| c == '#').collect()
    }

    #[test]
    fn short_noise_is_dropped_and_short_gaps_bridged() {
        // 2 voiced frames (40 ms) are noise; 3 (60 ms) are speech; a 9-frame gap (180 ms) is
        // bridged, a 10-frame one (200 ms) is not.
        let v = pattern("..##....###.........###..........###");
        assert_eq!(
            streamed(&v, &D),
            vec![
                Span {
                    start_ms: 160,
                    end_ms: 460
                },
                Span {
                    start_ms: 660,
                    end_ms: 720
                }
            ]
        );
        let v = pattern("###..........###");
        assert_eq!(streamed(&v, &D).len(), 2);
        // Noise inside a silence neither bridges it nor ends up as speech.
        let v = pattern("###...##...###");
        assert_eq!(
            streamed(&v, &D),
            vec![Span {
                start_ms: 0,
                end_ms: 280
            }]
        );
        // Dropped before bridging: this noise does not chain two 120 ms gaps into speech.
        let v = pattern("###......##......###");
        assert_eq!(streamed(&v, &D), reference(&v, &D));
        assert_eq!(streamed(&v, &D).len(), 2);
    }

    #[test]
    fn the_tracker_matches_the_definition() {
        // Every pattern of 14 frames, under detectors with and without delays.
        let detectors = [
            D,
            Detector {
                min_speech_ms: 0,
                min_silence_ms: 0,
                ..D
            },
            Detector {
                min_speech_ms: 20,
                min_silence_ms: 40,
                ..D
            },
            Detector {
                min_speech_ms: 100,
                min_silence_ms: 60,
                ..D
            },
        ];
        for d in &detectors {
            for bits in 0u32..(1 << 14) {
                let v: Vec<bool> = (0..14).map(|i| bits >> i & 1 == 1).collect();
                assert_eq!(streamed(&v, d), reference(&v, d), "{v:?} under {d:?}");
            }
        }
    }

    #[test]
    fn levels_decide_voicing_and_frames_do_not_drift() {
        let loud = vec![3_000i16; 160];
        let quiet = vec![30i16; 160];
        let mut t = SpeechTracker::new(D, 8_000);
        assert_eq!(t.push(&loud), None);
        assert_eq!(t.push(&loud), None);
        assert_eq!(t.push(&loud), Some(Edge::Start { at_ms: 0 }));
        assert!(t.in_speech());
        for _ in 0..9 {
            assert_eq!(t.push(&quiet), None);
        }
        assert_eq!(t.push(&quiet), Some(Edge::End { at_ms: 60 }));
        // 11,025 Hz is 220.5 samples a frame: frames alternate 220 and 221 samples.
        let s = vec![1i16; 11_025];
        let lens: Vec<usize> = frames(&s, 11_025).map(<[i16]>::len).collect();
        assert_eq!(lens.len(), 50);
        assert_eq!(lens.iter().sum::<usize>(), 11_025);
        assert_eq!(frames(&s[..100], 11_025).count(), 0);
    }
}
