//! Text normalisation for comparing what was said.

// ---------------------------------------------------------------------------------------------
// Text normalisation: lowercase, punctuation (anything neither alphanumeric nor whitespace)
// removed, split on whitespace; tokens left empty are dropped.

pub(super) fn raw_tokens(s: &str) -> impl Iterator<Item = &str> + Clone {
    s.split_whitespace()
        .filter(|t| t.chars().any(char::is_alphanumeric))
}

pub(super) fn token_chars(t: &str) -> impl Iterator<Item = char> + '_ {
    t.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
}

/// Whether two texts are equal once normalised (no allocation).
pub(super) fn normalised_eq(a: &str, b: &str) -> bool {
    let mut ta = raw_tokens(a);
    let mut tb = raw_tokens(b);
    loop {
        match (ta.next(), tb.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if token_chars(x).eq(token_chars(y)) => {}
            _ => return false,
        }
    }
}

/// A short utterance (at most 3 words after normalisation) whose normalised text is one of the
/// backchannels.
pub(super) fn is_backchannel(text: &str, backchannels: &[String]) -> bool {
    let words = raw_tokens(text).take(4).count();
    words > 0 && words <= 3 && backchannels.iter().any(|b| normalised_eq(text, b))
}

/// Appends the normalised tokens of `text` to `out` (UTF-8), separated by single spaces, and
/// reports each token's byte range in `out`. Same normalisation as [`raw_tokens`] +
/// [`token_chars`].
pub(super) fn normalise_append(
    text: &str,
    out: &mut Vec<u8>,
    mut on_token: impl FnMut(usize, usize),
) {
    // Whether a token is open, where it starts in `out`, and whether one was written already.
    let (mut open, mut start, mut any) = (false, 0usize, false);
    if text.is_ascii() {
        for &b in text.as_bytes() {
            if b.is_ascii_alphanumeric() {
                if !open {
                    if any {
                        out.push(b' ');
                    }
                    (open, start, any) = (true, out.len(), true);
                }
                out.push(b.to_ascii_lowercase());
            } else if open && matches!(b, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ') {
                on_token(start, out.len());
                open = false;
            }
        }
    } else {
        let mut buf = [0u8; 4];
        for c in text.chars() {
            if c.is_alphanumeric() {
                if !open {
                    if any {
                        out.push(b' ');
                    }
                    (open, start, any) = (true, out.len(), true);
                }
                for l in c.to_lowercase() {
                    out.extend_from_slice(l.encode_utf8(&mut buf).as_bytes());
                }
            } else if open && c.is_whitespace() {
                on_token(start, out.len());
                open = false;
            }
        }
    }
    if open {
        on_token(start, out.len());
    }
}

/// Whitespace-separated tokens, as `str::split_whitespace` counts them.
pub(super) fn word_count(s: &str) -> usize {
    if !s.is_ascii() {
        return s.split_whitespace().count();
    }
    let mut n = 0;
    let mut in_word = false;
    for &b in s.as_bytes() {
        // The ASCII characters with the Unicode White_Space property.
        let space = matches!(b, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ');
        n += usize::from(!space && !in_word);
        in_word = !space;
    }
    n
}
