//! Sample-rate conversion for speech: a windowed-sinc low-pass, so that a 24 kHz voice taken to
//! 8 kHz does not fold its high frequencies into the telephone band.

use std::f64::consts::PI;

/// Zero crossings of the sinc on each side: quality enough for speech at a modest cost.
const HALF_TAPS: f64 = 8.0;

/// `samples` at `from` Hz, at `to` Hz instead.
pub fn resample(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || samples.is_empty() || from == 0 || to == 0 {
        return samples.to_vec();
    }
    let ratio = f64::from(to) / f64::from(from);
    // Cut below the lower Nyquist frequency of the two rates.
    let cutoff = ratio.min(1.0) * 0.95;
    let half_width = HALF_TAPS / cutoff;
    let out_len = (samples.len() as f64 * ratio).round() as usize;
    let mut out = Vec::with_capacity(out_len);
    for n in 0..out_len {
        let centre = n as f64 / ratio;
        let first = (centre - half_width).ceil().max(0.0) as usize;
        let last = ((centre + half_width).floor() as usize).min(samples.len() - 1);
        let (mut acc, mut weight) = (0.0, 0.0);
        for (i, &s) in samples.iter().enumerate().take(last + 1).skip(first) {
            let x = i as f64 - centre;
            let w = cutoff * sinc(cutoff * x) * blackman(x / half_width);
            acc += w * f64::from(s);
            weight += w;
        }
        // Normalising by the taps' sum keeps the gain at 1 at the edges too.
        let v = if weight.abs() > 1e-9 {
            acc / weight
        } else {
            0.0
        };
        out.push(v.round().clamp(-32768.0, 32767.0) as i16);
    }
    out
}

fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-12 {
        1.0
    } else {
        (PI * x).sin() / (PI * x)
    }
}

/// The Blackman window on [-1, 1].
fn blackman(t: f64) -> f64 {
    if t.abs() >= 1.0 {
        return 0.0;
    }
    let a = PI * (t + 1.0);
    0.42 - 0.5 * a.cos() + 0.08 * (2.0 * a).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, rate: u32, ms: u32) -> Vec<i16> {
        let n = (rate * ms / 1000) as usize;
        (0..n)
            .map(|i| (10_000.0 * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()) as i16)
            .collect()
    }

    fn rms(s: &[i16]) -> f64 {
        (s.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
    }

    #[test]
    fn lengths_follow_the_ratio() {
        assert_eq!(
            resample(&tone(440.0, 24_000, 1000), 24_000, 8_000).len(),
            8_000
        );
        assert_eq!(
            resample(&tone(440.0, 8_000, 500), 8_000, 48_000).len(),
            24_000
        );
        assert_eq!(resample(&[1, 2, 3], 8_000, 8_000), vec![1, 2, 3]);
        assert!(resample(&[], 16_000, 8_000).is_empty());
    }

    #[test]
    fn the_voice_band_passes_and_high_frequencies_do_not_fold_back() {
        let kept = resample(&tone(440.0, 24_000, 500), 24_000, 8_000);
        let middle = &kept[400..3600];
        assert!(
            (rms(middle) - 10_000.0 / 2f64.sqrt()).abs() < 300.0,
            "{}",
            rms(middle)
        );
        // 7 kHz is above the 4 kHz Nyquist frequency of 8 kHz: it must not come back as 1 kHz.
        let folded = resample(&tone(7_000.0, 24_000, 500), 24_000, 8_000);
        assert!(
            rms(&folded[400..3600]) < 300.0,
            "{}",
            rms(&folded[400..3600])
        );
    }
}
