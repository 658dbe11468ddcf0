//! Byte-level helpers shared by the detectors.
//!
//! Every detector works on the UTF-8 bytes and only starts or ends a match next to an ASCII
//! byte, so every range lies on char boundaries (no byte of a multi-byte character is ASCII).
//! Reads past either end of the text see a NUL byte, which counts as a boundary: no helper
//! indexes out of range.

/// The byte at `i`, or NUL past the end.
pub(super) fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// The byte `k` places before `i`, or NUL before the start.
pub(super) fn before(b: &[u8], i: usize, k: usize) -> u8 {
    i.checked_sub(k).map_or(0, |p| at(b, p))
}

/// The value of a short run of ASCII digits (saturating, so a long run cannot overflow).
pub(super) fn num(digits: &[u8]) -> u32 {
    digits.iter().fold(0u32, |acc, &d| {
        acc.saturating_mul(10)
            .saturating_add(u32::from(d.wrapping_sub(b'0')))
    })
}

/// Whether the separator at `k` glues its neighbours into one token: `2026-12-01`, `1.2.3`,
/// `call_8f3a2b`, `a/b`, `10:30`, `1,234`. A match may neither start nor end at such a
/// joint, so no detector picks a piece out of a longer id, date, version or price. A comma
/// glues only thousands (three digits after it), so `4111111111111111,4242424242424242`
/// is still two cards.
///
/// The same rule judges both sides of a joint, so a neighbour refused because of a match's
/// last character usually refuses that match too (and [`super::Redactor::text`] passes again
/// for the rest).
fn glued(b: &[u8], k: usize) -> bool {
    let (prev, next) = (before(b, k, 1), at(b, k + 1));
    match at(b, k) {
        b'-' | b'.' | b'/' | b'_' => prev.is_ascii_alphanumeric() && next.is_ascii_alphanumeric(),
        b':' => prev.is_ascii_digit() && next.is_ascii_digit(),
        b',' => {
            let run = b.get(k + 1..).map_or(0, |r| {
                r.iter().take(4).take_while(|c| c.is_ascii_digit()).count()
            });
            prev.is_ascii_digit() && run == 3
        }
        _ => false,
    }
}

/// Whether a match may start at `i`: not inside a word or number, not after a joint.
pub(super) fn starts_token(b: &[u8], i: usize) -> bool {
    if i == 0 {
        return true;
    }
    if before(b, i, 1).is_ascii_alphanumeric() {
        return escape_ends_at(b, i);
    }
    !glued(b, i - 1)
}

/// Whether a match may end at `j` (exclusive): the next byte does not continue it.
pub(super) fn ends_token(b: &[u8], j: usize) -> bool {
    !at(b, j).is_ascii_alphanumeric() && !glued(b, j)
}

/// Whether a JSON escape (`\n`, `\t`, `\r`, `\b`, `\f`, `\uXXXX`) ends right before `i`.
///
/// A raw JSON text (a delivery log's truncated body) writes a newline as `\n`; without this
/// the `n` would glue to `\n4111 1111 1111 1111` and hide the card. Starting after the whole
/// escape also means a token never splits one, so the text stays as well-formed as it was.
pub(super) fn escape_ends_at(b: &[u8], i: usize) -> bool {
    let short = matches!(before(b, i, 1), b'n' | b't' | b'r' | b'b' | b'f')
        && before(b, i, 2) == b'\\'
        && odd_backslashes(b, i.wrapping_sub(2));
    let unicode = before(b, i, 6) == b'\\'
        && before(b, i, 5) == b'u'
        && (1..=4).all(|k| before(b, i, k).is_ascii_hexdigit())
        && odd_backslashes(b, i.wrapping_sub(6));
    short || unicode
}

/// Whether the backslash at `p` starts an escape: an odd run of backslashes ends there.
fn odd_backslashes(b: &[u8], p: usize) -> bool {
    let run = b
        .get(..=p)
        .map_or(0, |s| s.iter().rev().take_while(|&&c| c == b'\\').count());
    run % 2 == 1
}

/// A read position over the bytes, for the small hand-written parsers.
pub(super) struct Cursor<'a> {
    b: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(b: &'a [u8], pos: usize) -> Self {
        Self { b, pos }
    }

    pub(super) fn peek(&self) -> u8 {
        at(self.b, self.pos)
    }

    pub(super) fn peek_at(&self, k: usize) -> u8 {
        at(self.b, self.pos + k)
    }

    /// Consumes `c` when it is next.
    pub(super) fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == c && self.pos < self.b.len();
        if hit {
            self.pos += 1;
        }
        hit
    }

    /// Consumes one byte of `set` when it is next, and says which.
    pub(super) fn eat_any(&mut self, set: &[u8]) -> Option<u8> {
        let c = self.peek();
        (self.pos < self.b.len() && set.contains(&c)).then(|| {
            self.pos += 1;
            c
        })
    }

    /// Consumes the whole run of ASCII digits here (maximal, so parsers never backtrack).
    pub(super) fn digits(&mut self) -> &'a [u8] {
        self.run(|c| c.is_ascii_digit())
    }

    /// Consumes the whole run of ASCII letters here.
    pub(super) fn letters(&mut self) -> &'a [u8] {
        self.run(|c| c.is_ascii_alphabetic())
    }

    fn run(&mut self, keep: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.pos.min(self.b.len());
        let len = self
            .b
            .get(start..)
            .map_or(0, |rest| rest.iter().take_while(|&&c| keep(c)).count());
        self.pos = start + len;
        self.b.get(start..start + len).unwrap_or_default()
    }
}

/// Words that make a nearby date a date of birth.
pub(super) const DOB_WORDS: &[&str] = &["born", "birth", "dob", "d.o.b"];

/// Words that make a nearby bare 9-digit run a social security number.
pub(super) const SSN_WORDS: &[&str] = &[
    "ssn",
    "s.s.n",
    "social security",
    "social_security",
    "socialsecurity",
];

/// Context words that a dot may end without ending the sentence.
const ABBREVIATIONS: &[&str] = &["dob", "d.o.b", "ssn", "s.s.n"];

/// Whether `word` (lowercase ASCII) starts at `i` as a word of its own, any case.
///
/// A camelCase joint counts as a word edge (`userDob`, `dateOfBirth`), and `birth` may end
/// inside a longer word (`birthday`, `birthdate`). A word right after `<` is part of one of
/// our own tokens (`<DOB>`), which must not give context on a second pass.
fn word_at(b: &[u8], i: usize, word: &str) -> bool {
    let w = word.as_bytes();
    let Some(slice) = b.get(i..i + w.len()) else {
        return false;
    };
    if !slice.eq_ignore_ascii_case(w) {
        return false;
    }
    let (first, last) = (at(slice, 0), at(slice, w.len() - 1));
    let prev = before(b, i, 1);
    let next = at(b, i + w.len());
    let left = (!prev.is_ascii_alphabetic() && prev != b'<')
        || (prev.is_ascii_lowercase() && first.is_ascii_uppercase());
    let right = word == "birth"
        || !next.is_ascii_alphabetic()
        || (last.is_ascii_lowercase() && next.is_ascii_uppercase());
    left && right
}

/// Whether any of `words` occurs anywhere in `b` (for JSON keys, and to skip the date scan
/// on the vast majority of messages, which mention no birth).
pub(super) fn has_word(b: &[u8], words: &[&str]) -> bool {
    (0..b.len()).any(|i| {
        let c = b[i].to_ascii_lowercase();
        words
            .iter()
            .any(|w| w.as_bytes().first() == Some(&c) && word_at(b, i, w))
    })
}

/// Whether one of `words` ends at most `max_gap` bytes before `start`, with only quiet bytes
/// between: "born on 14 March 1985" counts, "born in 1990. The appointment is 2026-12-01"
/// does not. Quiet means no digit (so only the first number after the word gets its
/// context), no sentence end (a question mark is allowed: "your date of birth? 9 Nov 1962"
/// is a question and its answer), and no `<`/`>` (a token of ours: replacing a long value
/// by a short token must not bring a later date into range on a second pass).
///
/// `outer` is context the text inherits from where it sits (its JSON key, `"dob": ...`): it
/// counts when a quiet gap reaches the start of the text.
pub(super) fn context_before(
    b: &[u8],
    start: usize,
    words: &[&str],
    max_gap: usize,
    outer: bool,
) -> bool {
    let ends_word = |end: usize| {
        words
            .iter()
            .any(|w| end >= w.len() && word_at(b, end - w.len(), w))
    };
    let mut gap = start;
    loop {
        if ends_word(gap) {
            return true;
        }
        if gap == 0 {
            return outer;
        }
        if start - gap >= max_gap {
            return false;
        }
        let c = before(b, gap, 1);
        match c {
            b'0'..=b'9' | b'<' | b'>' | b'!' | b';' => return false,
            // A dot then a space ends a sentence, unless it ends an abbreviation:
            // "D.O.B. 1985-03-14", "SSN. 123-45-6789".
            b'.' if at(b, gap).is_ascii_whitespace() => {
                return ABBREVIATIONS
                    .iter()
                    .any(|w| gap > w.len() && word_at(b, gap - 1 - w.len(), w))
            }
            _ => gap -= 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joints_glue_numbers_and_words() {
        let b = b"2026-12-01 call_8f3a2b 10:30 card:4111";
        assert!(starts_token(b, 0));
        assert!(!starts_token(b, 5), "inside a date");
        assert!(!ends_token(b, 4), "before -12");
        assert!(!starts_token(b, 16), "after call_");
        assert!(!starts_token(b, 26), "after 10:");
        assert!(starts_token(b, 34), "a colon after a word is no joint");
        assert!(!starts_token(b"$1,299.99", 3), "thousands");
        assert!(
            starts_token(b"1,4111111111111111", 2),
            "a list, not thousands"
        );
        assert!(ends_token(b, b.len()));
    }

    #[test]
    fn escapes_end_words() {
        assert!(starts_token(br"a\n4111", 3));
        assert!(
            !starts_token(br"a\\n4111", 4),
            "an escaped backslash then n"
        );
        assert!(starts_token(br"caf\u00e94111", 9));
    }

    #[test]
    fn words_and_context() {
        assert!(has_word(b"my dateOfBirth is", DOB_WORDS));
        assert!(has_word(b"D.O.B.", DOB_WORDS));
        assert!(!has_word(b"adobe stubborn <DOB>", DOB_WORDS));
        let t = b"born on 14 March";
        assert!(context_before(t, 8, DOB_WORDS, 30, false));
        let t = b"born in 1990 then 2026";
        assert!(!context_before(t, 18, DOB_WORDS, 30, false));
        let t = b"I was born. Then 2026";
        assert!(!context_before(t, 17, DOB_WORDS, 30, false));
        let t = b"D.O.B. 1985";
        assert!(context_before(t, 7, DOB_WORDS, 30, false));
        assert!(context_before(b"1985", 0, DOB_WORDS, 30, true));
    }

    #[test]
    fn cursor_reads_runs() {
        let mut c = Cursor::new(b"123ab", 0);
        assert_eq!(c.digits(), b"123");
        assert_eq!(c.letters(), b"ab");
        assert_eq!(c.digits(), b"");
        assert!(!c.eat(0));
        assert_eq!(c.eat_any(b"\0"), None);
    }
}
