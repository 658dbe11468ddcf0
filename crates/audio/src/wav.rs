//! WAV (RIFF) files: read PCM 8/16/24/32-bit, 32-bit float and μ-law; write PCM16 or μ-law.

use crate::{mulaw, AudioError, Pcm};

/// How [`wav_bytes`] stores its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavEncoding {
    Pcm16,
    /// G.711 μ-law, one byte per sample: a media stream's own bytes.
    Mulaw,
}

const PCM: u16 = 1;
const FLOAT: u16 = 3;
const MULAW: u16 = 7;
const EXTENSIBLE: u16 = 0xFFFE;

/// A WAV file of `pcm`, interleaved.
pub fn wav_bytes(pcm: &Pcm, encoding: WavEncoding) -> Vec<u8> {
    let channels = pcm.channels.len() as u16;
    let (format, width) = match encoding {
        WavEncoding::Pcm16 => (PCM, 2u16),
        WavEncoding::Mulaw => (MULAW, 1),
    };
    let data_len = pcm.frames() * usize::from(channels) * usize::from(width);
    let mut out = Vec::with_capacity(44 + data_len);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&((36 + data_len) as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&format.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&pcm.sample_rate.to_le_bytes());
    let block = channels * width;
    out.extend_from_slice(&(pcm.sample_rate * u32::from(block)).to_le_bytes());
    out.extend_from_slice(&block.to_le_bytes());
    out.extend_from_slice(&(width * 8).to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data_len as u32).to_le_bytes());
    for i in 0..pcm.frames() {
        for channel in &pcm.channels {
            match encoding {
                WavEncoding::Pcm16 => out.extend_from_slice(&channel[i].to_le_bytes()),
                WavEncoding::Mulaw => out.push(mulaw::encode(channel[i])),
            }
        }
    }
    out
}

/// Whether `bytes` start like a WAV file.
pub fn is_wav(bytes: &[u8]) -> bool {
    bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE"
}

struct Format {
    tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
}

/// Reads a WAV file. A `data` chunk whose length runs past the file (as streaming writers
/// leave it) is read to the end of the file.
pub fn read_wav(bytes: &[u8]) -> Result<Pcm, AudioError> {
    if !is_wav(bytes) {
        return Err(AudioError::NotWav("no RIFF/WAVE header".into()));
    }
    let mut at = 12;
    let mut format = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        let body = at + 8;
        let end = body.saturating_add(len).min(bytes.len());
        match id {
            b"fmt " => format = Some(parse_format(&bytes[body..end])?),
            b"data" => {
                let f = format.ok_or_else(|| {
                    AudioError::Malformed("the data chunk comes before fmt".into())
                })?;
                return samples(&f, &bytes[body..end]);
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        at = body.saturating_add(len).saturating_add(len & 1);
    }
    Err(AudioError::Malformed("no data chunk".into()))
}

fn parse_format(b: &[u8]) -> Result<Format, AudioError> {
    if b.len() < 16 {
        return Err(AudioError::Malformed(
            "the fmt chunk is shorter than 16 bytes".into(),
        ));
    }
    let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let mut tag = u16_at(0);
    if tag == EXTENSIBLE && b.len() >= 26 {
        // The sub-format GUID starts with the plain format tag.
        tag = u16_at(24);
    }
    let f = Format {
        tag,
        channels: u16_at(2),
        rate: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        bits: u16_at(14),
    };
    if f.channels == 0 || f.channels > 8 {
        return Err(AudioError::Unsupported(format!("{} channels", f.channels)));
    }
    if !(1_000..=384_000).contains(&f.rate) {
        return Err(AudioError::Unsupported(format!(
            "a sample rate of {} Hz",
            f.rate
        )));
    }
    Ok(f)
}

fn samples(f: &Format, data: &[u8]) -> Result<Pcm, AudioError> {
    let width = match (f.tag, f.bits) {
        (PCM, 8) | (MULAW, 8) => 1,
        (PCM, 16) => 2,
        (PCM, 24) => 3,
        (PCM, 32) | (FLOAT, 32) => 4,
        (tag, bits) => {
            return Err(AudioError::Unsupported(format!(
                "WAV format {tag} with {bits}-bit samples (PCM 8/16/24/32-bit, 32-bit float and μ-law are read)"
            )))
        }
    };
    let channels = usize::from(f.channels);
    let frames = data.len() / (width * channels);
    let mut out = vec![Vec::with_capacity(frames); channels];
    for (i, s) in data.chunks_exact(width).take(frames * channels).enumerate() {
        let v = match (f.tag, width) {
            (MULAW, _) => mulaw::decode(s[0]),
            (_, 1) => (i16::from(s[0]) - 128) << 8,
            (_, 2) => i16::from_le_bytes([s[0], s[1]]),
            (_, 3) => i16::from_le_bytes([s[1], s[2]]),
            (FLOAT, _) => {
                let x = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
                (x.clamp(-1.0, 1.0) * 32767.0) as i16
            }
            _ => i16::from_le_bytes([s[2], s[3]]),
        };
        out[i % channels].push(v);
    }
    Ok(Pcm {
        sample_rate: f.rate,
        channels: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stereo() -> Pcm {
        Pcm {
            sample_rate: 8_000,
            channels: vec![vec![0, 1000, -1000, 32767], vec![5, -5, 20000, -32768]],
        }
    }

    #[test]
    fn pcm16_round_trips() {
        let bytes = wav_bytes(&stereo(), WavEncoding::Pcm16);
        assert_eq!(bytes.len(), 44 + 16);
        assert_eq!(read_wav(&bytes).unwrap(), stereo());
    }

    #[test]
    fn mulaw_round_trips_within_its_quantisation() {
        let back = read_wav(&wav_bytes(&stereo(), WavEncoding::Mulaw)).unwrap();
        assert_eq!(back.channels.len(), 2);
        for (a, b) in stereo()
            .channels
            .iter()
            .flatten()
            .zip(back.channels.iter().flatten())
        {
            assert!((i32::from(*a) - i32::from(*b)).abs() <= 1100, "{a} vs {b}");
        }
    }

    #[test]
    fn bad_files_are_errors_not_panics() {
        assert!(matches!(read_wav(b"hello"), Err(AudioError::NotWav(_))));
        let mut bytes = wav_bytes(&stereo(), WavEncoding::Pcm16);
        bytes.truncate(30);
        assert!(read_wav(&bytes).is_err());
        let mut bytes = wav_bytes(&stereo(), WavEncoding::Pcm16);
        bytes[34] = 12; // 12-bit samples
        assert!(matches!(read_wav(&bytes), Err(AudioError::Unsupported(_))));
        // A data length past the end (a streaming writer's) reads what is there.
        let mut bytes = wav_bytes(&stereo(), WavEncoding::Pcm16);
        bytes[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(read_wav(&bytes).unwrap(), stereo());
    }
}
