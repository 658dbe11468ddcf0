//! G.711 μ-law, the codec of a media stream: one byte per sample at 8 kHz.

/// The μ-law byte of digital silence.
pub const SILENCE: u8 = 0xFF;

const BIAS: i32 = 0x84;
const CLIP: i32 = 32_635;

/// One sample to its μ-law byte.
pub fn encode(sample: i16) -> u8 {
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(CLIP) + BIAS;
    // The segment is the position of the highest set bit above bit 7.
    let exponent = (31 - (s as u32).leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// One μ-law byte to its sample.
pub fn decode(byte: u8) -> i16 {
    let b = !byte;
    let sign = b & 0x80;
    let exponent = i32::from((b >> 4) & 0x07);
    let mantissa = i32::from(b & 0x0F);
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    (if sign != 0 { -magnitude } else { magnitude }) as i16
}

pub fn encode_all(samples: &[i16]) -> Vec<u8> {
    samples.iter().copied().map(encode).collect()
}

pub fn decode_all(bytes: &[u8]) -> Vec<i16> {
    bytes.iter().copied().map(decode).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_and_extremes() {
        assert_eq!(encode(0), SILENCE);
        assert_eq!(decode(SILENCE), 0);
        assert_eq!(decode(encode(i16::MAX)), 32_124);
        assert_eq!(decode(encode(i16::MIN)), -32_124);
    }

    #[test]
    fn every_byte_round_trips() {
        // Decoding then encoding is the identity, but for the two zeros (0x7F is "−0").
        for b in 0..=255u8 {
            let back = encode(decode(b));
            assert!(
                back == b || (b == 0x7F && back == 0xFF),
                "{b:#x} → {back:#x}"
            );
        }
    }

    #[test]
    fn quantisation_error_is_bounded() {
        // μ-law keeps about 3% relative error above the smallest segment.
        for s in (-32_000i32..32_000).step_by(97) {
            let s = s as i16;
            let err = (i32::from(decode(encode(s))) - i32::from(s)).abs();
            assert!(err <= 16 + i32::from(s).abs() / 16, "{s}: error {err}");
        }
    }
}
