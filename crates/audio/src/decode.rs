//! Any recording to PCM: WAV through our own reader, compressed formats (MP3, FLAC, Ogg Vorbis,
//! AAC in MP4/M4A) through symphonia. Bounded by the caller's limit on length, so a recording
//! from outside costs at most what its duration allows, whatever its headers claim.

use std::io::Cursor;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::{is_wav, read_wav, AudioError, Pcm};

/// The most channels a recording may have: a stereo call has one side on each.
pub const MAX_CHANNELS: usize = 2;
/// Sample rates outside this range are not speech recordings (the WAV reader's range too).
const RATES: std::ops::RangeInclusive<u32> = 1_000..=384_000;

/// Decodes a recording of at most `max_seconds` and [`MAX_CHANNELS`] channels.
///
/// WAV (PCM 8/16/24/32-bit, float, μ-law) is read directly; anything else is probed by its
/// content (not its name) as MP3, FLAC, Ogg Vorbis or AAC in MP4. A recording longer than
/// `max_seconds` is refused as soon as decoding passes the limit, before the rest is decoded.
pub fn decode(bytes: &[u8], max_seconds: u32) -> Result<Pcm, AudioError> {
    let pcm = if is_wav(bytes) {
        // The WAV reader allocates at most what the bytes hold, so checking after is bounded.
        read_wav(bytes)?
    } else {
        // A third-party decoder on untrusted bytes: should it panic, the recording is
        // malformed, and the process goes on.
        std::panic::catch_unwind(|| decode_compressed(bytes, max_seconds)).unwrap_or_else(|_| {
            Err(AudioError::Malformed(
                "the decoder failed on this file".into(),
            ))
        })?
    };
    check_channels(pcm.channels.len())?;
    let limit = u64::from(max_seconds) * u64::from(pcm.sample_rate);
    if pcm.frames() as u64 > limit {
        return Err(too_long(max_seconds));
    }
    Ok(pcm)
}

fn check_channels(n: usize) -> Result<(), AudioError> {
    if n > MAX_CHANNELS {
        return Err(AudioError::Unsupported(format!(
            "{n} channels (a call recording has at most {MAX_CHANNELS}: the caller and the agent)"
        )));
    }
    Ok(())
}

fn too_long(max_seconds: u32) -> AudioError {
    AudioError::Unsupported(format!("a recording longer than {max_seconds} s"))
}

fn decode_compressed(bytes: &[u8], max_seconds: u32) -> Result<Pcm, AudioError> {
    let source = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            &Hint::new(),
            source,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| {
            AudioError::Unsupported(format!(
                "not a recognised audio format (WAV, MP3, FLAC, Ogg Vorbis or AAC in MP4): {e}"
            ))
        })?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| AudioError::Unsupported("the file has no audio track".into()))?;
    let track_id = track.id;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| AudioError::Unsupported(format!("the audio codec: {e}")))?;
    if let Some(channels) = track.codec_params.channels {
        check_channels(channels.count())?;
    }

    let mut rate = track.codec_params.sample_rate;
    let mut planes: Vec<Vec<i16>> = Vec::new();
    let mut buffer: Option<SampleBuffer<i16>> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break
            }
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => return Err(AudioError::Malformed(e.to_string())),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            // A corrupt packet is skipped, as players do; anything else ends the decoding.
            Err(SymphoniaError::DecodeError(_)) => continue,
            Err(e) => return Err(AudioError::Malformed(e.to_string())),
        };
        let spec = *decoded.spec();
        let channels = spec.channels.count();
        check_channels(channels)?;
        if !RATES.contains(&spec.rate) {
            return Err(AudioError::Unsupported(format!(
                "a sample rate of {} Hz",
                spec.rate
            )));
        }
        if planes.is_empty() {
            planes = vec![Vec::new(); channels];
            rate = Some(spec.rate);
        } else if planes.len() != channels || rate != Some(spec.rate) {
            return Err(AudioError::Unsupported(
                "the channels or the sample rate change within the file".into(),
            ));
        }
        let limit = u64::from(max_seconds) * u64::from(spec.rate);
        if (planes[0].len() + decoded.frames()) as u64 > limit {
            return Err(too_long(max_seconds));
        }
        // One packet's worth, reused: a codec bounds its packets' frames.
        let buf = match &mut buffer {
            Some(b) if b.capacity() >= decoded.capacity() * channels => b,
            _ => buffer.insert(SampleBuffer::new(decoded.capacity() as u64, spec)),
        };
        buf.copy_interleaved_ref(decoded);
        for frame in buf.samples().chunks_exact(channels) {
            for (plane, &s) in planes.iter_mut().zip(frame) {
                plane.push(s);
            }
        }
    }
    match rate {
        Some(sample_rate) if !planes.is_empty() => Ok(Pcm {
            sample_rate,
            channels: planes,
        }),
        _ => Err(AudioError::Malformed("no audio could be decoded".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{wav_bytes, WavEncoding};

    fn pcm(channels: usize, seconds: u32) -> Pcm {
        Pcm {
            sample_rate: 8_000,
            channels: vec![vec![100; 8_000 * seconds as usize]; channels],
        }
    }

    #[test]
    fn wav_within_the_limits_is_read() {
        let p = pcm(2, 3);
        assert_eq!(decode(&wav_bytes(&p, WavEncoding::Pcm16), 3).unwrap(), p);
    }

    #[test]
    fn too_long_or_too_many_channels_is_refused() {
        let long = wav_bytes(&pcm(2, 3), WavEncoding::Pcm16);
        assert_eq!(
            decode(&long, 2).unwrap_err().to_string(),
            "unsupported audio: a recording longer than 2 s"
        );
        let wide = wav_bytes(&pcm(3, 1), WavEncoding::Mulaw);
        assert!(decode(&wide, 10)
            .unwrap_err()
            .to_string()
            .contains("3 channels"));
    }

    #[test]
    fn garbage_is_a_clear_error() {
        for bytes in [
            &b""[..],
            b"hello, this is not audio",
            &[0xFF; 4096],
            b"fLaC\0\0\0\x22",
        ] {
            let e = decode(bytes, 60).unwrap_err();
            assert!(
                matches!(e, AudioError::Unsupported(_) | AudioError::Malformed(_)),
                "{e}"
            );
        }
    }
}
