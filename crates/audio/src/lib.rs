//! Audio for callgrade, pure of I/O: the telephony codec (G.711 μ-law), WAV files, decoding
//! compressed recordings, resampling and the level of a frame; the speech detector and the
//! analysis of a stereo recording into the `AudioTimeline` that audio metrics read. Samples are
//! signed 16-bit PCM throughout; channels are planar.

mod analyse;
mod decode;
mod detect;
pub mod mulaw;
mod resample;
mod wav;

pub use analyse::{analyse, clipped, envelope, CLIP_LEVEL};
pub use callgrade_core::{AudioTimeline, Detector, Span};
pub use decode::{decode, MAX_CHANNELS};
pub use detect::{speech_spans, Edge, SpeechTracker};
pub use resample::resample;
pub use wav::{is_wav, read_wav, wav_bytes, WavEncoding};

/// The telephony sample rate of a media stream.
pub const TELEPHONY_RATE: u32 = 8_000;
/// One media-stream frame: 20 ms.
pub const FRAME_MS: u32 = 20;
/// Samples in one frame at [`TELEPHONY_RATE`] (one μ-law byte each).
pub const FRAME_SAMPLES: usize = (TELEPHONY_RATE * FRAME_MS / 1000) as usize;

/// Decoded audio: one sample vector per channel, all the same length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pcm {
    pub sample_rate: u32,
    pub channels: Vec<Vec<i16>>,
}

impl Pcm {
    /// Samples per channel.
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    pub fn duration_ms(&self) -> u64 {
        match self.sample_rate {
            0 => 0,
            rate => self.frames() as u64 * 1000 / u64::from(rate),
        }
    }
}

/// Why audio could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudioError {
    #[error("not a WAV file: {0}")]
    NotWav(String),
    #[error("unsupported audio: {0}")]
    Unsupported(String),
    #[error("the audio is truncated or malformed: {0}")]
    Malformed(String),
}

/// The level of a block of samples in dBFS (root mean square relative to full scale);
/// `-inf` for digital silence.
pub fn level_dbfs(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return f32::NEG_INFINITY;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let rms = (sum / samples.len() as f64).sqrt();
    (20.0 * (rms / 32768.0).log10()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(level_dbfs(&[0; 160]), f32::NEG_INFINITY);
        assert!((level_dbfs(&[i16::MAX; 160]) - 0.0).abs() < 0.01);
        // A full-scale square wave is 0 dBFS; half of full scale is about −6 dBFS.
        assert!((level_dbfs(&[16384, -16384]) + 6.02).abs() < 0.01);
    }
}
