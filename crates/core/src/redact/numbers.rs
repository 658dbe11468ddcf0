//! The digit-led kinds: cards, social security numbers, and the scan that tries every
//! digit-led detector (phones and IPv4 too) at each place a number may start.

use super::scan::{before, context_before, ends_token, num, starts_token, Cursor, SSN_WORDS};
use super::{ip, phone, Context, Entity, Finding};

/// Tries each digit-led detector where a number (or `+`, `(` for phones) starts a token.
///
/// A start needs a non-word byte before it, so inside a run of digits only its first byte is
/// tried, and each detector reads a bounded stretch: the scan stays linear.
pub(super) fn scan(b: &[u8], ctx: Context, out: &mut Vec<Finding>) {
    for (i, &c) in b.iter().enumerate() {
        if !(c.is_ascii_digit() || c == b'+' || c == b'(') || !starts_token(b, i) {
            continue;
        }
        if c.is_ascii_digit() {
            card(b, i, out);
            ssn(b, i, ctx, out);
            ip::v4(b, i, out);
        }
        phone::scan_at(b, i, out);
    }
}

/// A card number: 13 to 19 digits, bare or grouped by single spaces or dashes (the first
/// group of four, as every issuer prints them), Luhn-valid with a known issuer prefix.
///
/// Never right after `+`, which makes a phone. Of several valid lengths from one start, 16 digits wins (a short number spoken after the
/// card, "4242 4242 4242 4242 12", is rarely a 19-digit card), otherwise the longest.
fn card(b: &[u8], i: usize, out: &mut Vec<Finding>) {
    if before(b, i, 1) == b'+' {
        return; // "+4915112345678" is a phone, however its digits check out
    }
    let mut digits = [0u8; 19];
    let mut n = 0;
    let mut cur = Cursor::new(b, i);
    let mut sep = None;
    let mut first_len = 0;
    let mut best: Option<(usize, usize)> = None;
    loop {
        let group = cur.digits();
        if group.is_empty() || n + group.len() > digits.len() {
            break;
        }
        for &d in group {
            digits[n] = d - b'0';
            n += 1;
        }
        if first_len == 0 {
            first_len = group.len();
        }
        if n >= 13
            && ends_token(b, cur.pos)
            && is_card(&digits[..n])
            && best.is_none_or(|(_, len)| len != 16)
        {
            best = Some((cur.pos, n));
        }
        let s = cur.peek();
        let next_sep = matches!(s, b' ' | b'-') && sep.is_none_or(|p| p == s);
        if first_len != 4 || !next_sep || !cur.peek_at(1).is_ascii_digit() {
            break;
        }
        sep = Some(s);
        cur.pos += 1;
    }
    if let Some((end, _)) = best {
        out.push(Finding::new(Entity::Card, i..end));
    }
}

/// Luhn and a known issuer prefix for that length.
pub(super) fn is_card(d: &[u8]) -> bool {
    luhn(d) && issuer(d)
}

fn luhn(d: &[u8]) -> bool {
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(k, &x)| {
            let x = u32::from(x);
            match (k % 2 == 1, x * 2) {
                (false, _) => x,
                (true, y) if y > 9 => y - 9,
                (true, y) => y,
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Visa, Mastercard, Amex, Discover, JCB, Diners and UnionPay prefixes, each with the lengths
/// its cards come in: a Luhn-valid order number rarely also fits both.
fn issuer(d: &[u8]) -> bool {
    let n = d.len();
    let prefix = |k: usize| {
        d.iter()
            .take(k)
            .fold(0u32, |acc, &x| acc * 10 + u32::from(x))
    };
    let (p2, p3, p4) = (prefix(2), prefix(3), prefix(4));
    let long = (16..=19).contains(&n);
    match prefix(1) {
        4 => matches!(n, 13 | 16 | 19),
        2 | 5 => n == 16 && ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)),
        3 => {
            (n == 15 && matches!(p2, 34 | 37))
                || (long && (3528..=3589).contains(&p4))
                || ((14..=19).contains(&n) && (matches!(p2, 36 | 38) || (300..=305).contains(&p3)))
        }
        6 => long && (p4 == 6011 || p2 == 65 || p2 == 62 || (644..=649).contains(&p3)),
        _ => false,
    }
}

/// A US social security number: `AAA-GG-SSSS` (dashes or spaces), or a bare 9-digit run
/// with "SSN" / "social security" shortly before it; the number ranges never issued are
/// refused either way.
fn ssn(b: &[u8], i: usize, ctx: Context, out: &mut Vec<Finding>) {
    let mut cur = Cursor::new(b, i);
    let area = cur.digits();
    let found = match area.len() {
        9 => {
            let (a, rest) = area.split_at(3);
            let (g, s) = rest.split_at(2);
            ssn_ranges(a, g, s)
                && ends_token(b, cur.pos)
                && context_before(b, i, SSN_WORDS, 20, ctx.ssn)
        }
        3 => {
            let Some(sep) = cur.eat_any(b"- ") else {
                return;
            };
            let group = cur.digits();
            let serial = if group.len() == 2 && cur.eat(sep) {
                cur.digits()
            } else {
                return;
            };
            serial.len() == 4 && ssn_ranges(area, group, serial) && ends_token(b, cur.pos)
        }
        _ => false,
    };
    if found {
        out.push(Finding::new(Entity::Ssn, i..cur.pos));
    }
}

/// Area not 000, 666 or 900-999; group not 00; serial not 0000.
fn ssn_ranges(area: &[u8], group: &[u8], serial: &[u8]) -> bool {
    let a = num(area);
    a != 0 && a != 666 && a < 900 && num(group) != 0 && num(serial) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digits(s: &str) -> Vec<u8> {
        s.bytes()
            .filter(u8::is_ascii_digit)
            .map(|c| c - b'0')
            .collect()
    }

    #[test]
    fn test_cards_are_cards() {
        for card in [
            "4111111111111111",
            "4242424242424242",
            "5555555555554444",
            "2223003122003222",
            "378282246310005",
            "6011111111111117",
            "3530111333300000",
            "30569309025904",
            "6200000000000005",
            "4222222222222",
        ] {
            assert!(is_card(&digits(card)), "{card}");
        }
    }

    #[test]
    fn look_alikes_are_not_cards() {
        // Luhn-invalid, unknown prefix, wrong length for the issuer.
        for not in [
            "4111111111111112",
            "1234567812345670",
            "9400100000000000",
            "37828224631000",
            "55555555555544",
        ] {
            assert!(!is_card(&digits(not)), "{not}");
        }
    }
}
