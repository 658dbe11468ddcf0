//! Phone numbers: international `+` forms and a few national shapes.
//!
//! Digits alone never make a phone: a bare run of ten or more digits is an order number or a
//! timestamp far more often than a phone in a transcript. A phone needs a `+` or separators
//! in a phone's shape. Every shape is tried from one start and each valid end is offered, so
//! when a longer reading loses an overlap (to a card, say) a shorter one can still win.

use super::scan::{at, before, ends_token, Cursor};
use super::{Entity, Finding};

/// Every phone reading starting at `i` (a digit, `+` or `(` that starts a token).
pub(super) fn scan_at(b: &[u8], i: usize, out: &mut Vec<Finding>) {
    let mut push = |end: usize| out.push(Finding::new(Entity::Phone, i..end));
    match b.get(i) {
        Some(b'+') => e164(b, i, &mut push),
        Some(b'(') => us(b, i).into_iter().for_each(push),
        Some(_) if in_spaced_run(b, i) => {}
        Some(_) => {
            let mut cur = Cursor::new(b, i);
            let lead = cur.digits();
            if lead == b"1" && cur.eat_any(b" -.").is_some() {
                // "1-800-555-0199", "1 (800) 555-0199"
                us(b, cur.pos).into_iter().for_each(&mut push);
            } else if lead.len() == 3 {
                us(b, i).into_iter().for_each(&mut push);
            }
            if lead.first() == Some(&b'0') {
                trunk_zero(b, i, &mut push);
            }
        }
        None => {}
    }
}

/// Whether `i` continues a space-separated run of numbers ("9400 1000 0000 0000 0000 00"):
/// a national shape found in its middle is a piece of a longer number, not a phone.
fn in_spaced_run(b: &[u8], i: usize) -> bool {
    before(b, i, 1) == b' ' && before(b, i, 2).is_ascii_digit()
}

/// Whether a space and another number follow `end`: the same, on the right.
fn spaced_run_goes_on(b: &[u8], end: usize) -> bool {
    at(b, end) == b' ' && at(b, end + 1).is_ascii_digit()
}

/// `+` then 8 to 15 digits in groups split by single spaces, dashes or dots, a group maybe
/// in parentheses: `+14155550134`, `+1 (415) 555-0134`, `+44 (0)20 7946 0958`.
fn e164(b: &[u8], i: usize, push: &mut impl FnMut(usize)) {
    let mut cur = Cursor::new(b, i + 1);
    if !matches!(cur.peek(), b'1'..=b'9') {
        return; // no country code starts with 0, and "+0100" is a time zone
    }
    let mut total = 0;
    loop {
        let len = if cur.eat(b'(') {
            let inner = cur.digits().len();
            if inner == 0 || inner > 4 || !cur.eat(b')') {
                return;
            }
            inner
        } else {
            cur.digits().len()
        };
        total += len;
        if len == 0 || total > 15 {
            return;
        }
        if total >= 8 && ends_token(b, cur.pos) {
            push(cur.pos);
        }
        cur.eat_any(b" -.");
        if !(cur.peek().is_ascii_digit() || cur.peek() == b'(') {
            return;
        }
    }
}

/// The North American shape: `(415) 555-0134`, `(415)555-0134`, `415-555-0134`,
/// `415.555.0134`, `415 555 0134` (one separator kind throughout when unbracketed).
fn us(b: &[u8], i: usize) -> Option<usize> {
    let mut cur = Cursor::new(b, i);
    if cur.eat(b'(') {
        if cur.digits().len() != 3 || !cur.eat(b')') {
            return None;
        }
        cur.eat(b' ');
        if cur.digits().len() != 3 {
            return None;
        }
        cur.eat_any(b"-. ")?;
    } else {
        if cur.digits().len() != 3 {
            return None;
        }
        let sep = cur.eat_any(b"-. ")?;
        if cur.digits().len() != 3 || !cur.eat(sep) {
            return None;
        }
    }
    let spaced = b.get(i..cur.pos).is_some_and(|s| s.contains(&b' '));
    let fits = cur.digits().len() == 4 && ends_token(b, cur.pos);
    (fits && !(spaced && spaced_run_goes_on(b, cur.pos))).then_some(cur.pos)
}

/// National numbers with a trunk `0`, as most of Europe writes them: `020 7946 0958`,
/// `01632 960123`, `030 1234567`, `01 23 45 67 89`. 10 or 11 digits in 2 to 5 groups, one
/// separator kind throughout, so dates (8 digits) and times (colons) never fit.
fn trunk_zero(b: &[u8], i: usize, push: &mut impl FnMut(usize)) {
    let mut cur = Cursor::new(b, i);
    let (mut total, mut groups, mut sep) = (0, 0, None);
    loop {
        let len = cur.digits().len();
        let fits = if groups == 0 { 2..=5 } else { 2..=8 };
        if !fits.contains(&len) {
            return;
        }
        total += len;
        groups += 1;
        if total > 11 {
            return;
        }
        let alone = sep != Some(b' ') || !spaced_run_goes_on(b, cur.pos);
        if groups >= 2 && total >= 10 && ends_token(b, cur.pos) && alone {
            push(cur.pos);
        }
        let s = cur.peek();
        let same = matches!(s, b' ' | b'-' | b'.') && sep.is_none_or(|p| p == s);
        if groups == 5 || !same || !cur.peek_at(1).is_ascii_digit() {
            return;
        }
        sep = Some(s);
        cur.pos += 1;
    }
}
