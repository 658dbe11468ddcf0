//! What a call's stereo recording says about who spoke when: each side's speech as spans of
//! milliseconds from the recording's start, found by a voice-activity detector over fixed
//! frames (`callgrade-audio` computes it). The audio metrics are pure functions of it.

use serde::{Deserialize, Serialize};

/// The voice-activity detector's settings, stated in every audio metric's result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Detector {
    /// A frame is speech when its level is at least this (dBFS).
    pub threshold_dbfs: f32,
    /// Speech shorter than this is noise, not speech (ms).
    pub min_speech_ms: u32,
    /// Silence shorter than this inside speech does not end it (ms).
    pub min_silence_ms: u32,
}

impl Default for Detector {
    fn default() -> Self {
        Self {
            threshold_dbfs: -40.0,
            min_speech_ms: 60,
            min_silence_ms: 200,
        }
    }
}

/// One stretch of speech, `[start_ms, end_ms)` from the recording's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Span {
    pub start_ms: u64,
    pub end_ms: u64,
}

impl Span {
    pub fn duration_ms(&self) -> u64 {
        self.end_ms.saturating_sub(self.start_ms)
    }
}

/// A recording ready to be stored with its call: where its bytes were put in the recording
/// store, what they are, and what the analysis found.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysedRecording {
    /// The object's key in the recording store.
    pub object_key: String,
    pub content_type: String,
    pub size_bytes: u64,
    pub sample_rate: u32,
    pub channels: u32,
    pub duration_ms: u64,
    /// The agent's channel (0 or 1); the other is the caller's.
    pub agent_channel: u32,
    /// `simulation` or `upload`.
    pub origin: String,
    pub timeline: AudioTimeline,
    /// Peak per bucket (0–255), caller then agent: the waveform the dashboard draws.
    pub envelope: [Vec<u8>; 2],
    pub bucket_ms: u32,
}

/// A stereo recording's speech, side by side. The recording is taken to start at the call's
/// start (a simulated call's recording does; a sender's is documented to).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AudioTimeline {
    /// The detector's resolution: times are multiples of it, and differences under it are ties.
    pub frame_ms: u32,
    pub detector: Detector,
    pub duration_ms: u64,
    /// The caller's (the user's) speech, in order, not overlapping each other.
    pub caller: Vec<Span>,
    /// The agent's speech, likewise.
    pub agent: Vec<Span>,
    /// Fraction of each side's samples at full scale (clipping), caller then agent.
    #[serde(default)]
    pub clipped: [f32; 2],
}
