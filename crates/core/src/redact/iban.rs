//! IBANs: country code, check digits, BBAN; compact or in groups of four; mod-97 checked.

use super::scan::{at, ends_token, starts_token};
use super::{Entity, Finding};

const MAX_LEN: usize = 34;

/// Each IBAN: a token starting with two capitals and two digits that passes the checksum.
/// Only capitals count as letters, as banks print them; the checksum leaves about one
/// random candidate in 97, and the country length table most of the rest.
pub(super) fn scan(b: &[u8], out: &mut Vec<Finding>) {
    for i in 0..b.len().saturating_sub(3) {
        let head = [at(b, i), at(b, i + 1), at(b, i + 2), at(b, i + 3)];
        let starts = head[0].is_ascii_uppercase()
            && head[1].is_ascii_uppercase()
            && head[2].is_ascii_digit()
            && head[3].is_ascii_digit();
        if starts && starts_token(b, i) {
            if let Some(end) = iban_at(b, i) {
                out.push(Finding::new(Entity::Iban, i..end));
            }
        }
    }
}

fn is_char(c: u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit()
}

/// The end of the IBAN starting at `i`: compact (one run) or grouped by single spaces in
/// fours, the last group maybe shorter; of several valid group ends, the longest.
fn iban_at(b: &[u8], i: usize) -> Option<usize> {
    let want = country_len([at(b, i), at(b, i + 1)]);
    let mut chars = [0u8; MAX_LEN];
    let mut n = 0;
    let mut pos = i;
    let fits = |n: usize| want.map_or((15..=MAX_LEN).contains(&n), |w| w == n);
    // The first four always touch; then either the run goes on (compact) or groups follow.
    let compact = is_char(at(b, i + 4));
    let mut best = None;
    loop {
        let group_start = pos;
        while is_char(at(b, pos)) {
            if n == MAX_LEN {
                return best;
            }
            chars[n] = at(b, pos);
            n += 1;
            pos += 1;
        }
        let len = pos - group_start;
        if !compact && len > 4 {
            return best;
        }
        if fits(n) && ends_token(b, pos) && mod97(&chars[..n]) {
            best = Some(pos);
        }
        if compact || len < 4 || at(b, pos) != b' ' || !is_char(at(b, pos + 1)) {
            return best;
        }
        pos += 1;
    }
}

/// ISO 13616: move the first four characters to the end, letters as 10..35, mod 97 is 1.
fn mod97(s: &[u8]) -> bool {
    let (head, tail) = s.split_at(s.len().min(4));
    let r = tail.iter().chain(head).fold(0u32, |r, &c| {
        if c.is_ascii_digit() {
            (r * 10 + u32::from(c - b'0')) % 97
        } else {
            (r * 100 + u32::from(c.wrapping_sub(b'A')) + 10) % 97
        }
    });
    r == 1
}

/// IBAN lengths of the common countries; others may be any length from 15 to 34.
fn country_len(cc: [u8; 2]) -> Option<usize> {
    Some(match &cc {
        b"DE" | b"GB" | b"IE" => 22,
        b"FR" | b"IT" => 27,
        b"ES" | b"SE" => 24,
        b"NL" | b"DK" | b"FI" => 18,
        b"BE" => 16,
        b"CH" => 21,
        b"AT" | b"LU" => 20,
        b"PL" => 28,
        b"PT" => 25,
        b"NO" => 15,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(s: &str) -> Vec<&str> {
        let mut out = Vec::new();
        scan(s.as_bytes(), &mut out);
        out.iter().filter_map(|f| s.get(f.range.clone())).collect()
    }

    #[test]
    fn ibans() {
        assert_eq!(
            found("IBAN DE89 3704 0044 0532 0130 00 please"),
            ["DE89 3704 0044 0532 0130 00"]
        );
        assert_eq!(found("GB82WEST12345698765432."), ["GB82WEST12345698765432"]);
        assert_eq!(found("NO9386011117947"), ["NO9386011117947"]);
    }

    #[test]
    fn look_alikes() {
        for s in [
            "DE89 3704 0044 0532 0130 01",
            "DE89370400440532013000X",
            "GB82WEST1234569876543",
            "UA1234",
            "AB12CDEFGHIJKLMNOP",
            "de89370400440532013000",
        ] {
            assert!(found(s).is_empty(), "{s}: {:?}", found(s));
        }
    }
}
