//! IP addresses: IPv4 dotted quads and IPv6 in full or `::`-compressed form.

use super::scan::{at, before, ends_token, num, starts_token, Cursor};
use super::{Entity, Finding};

/// A dotted quad at `i`, each octet 0-255 without leading zeros, not a piece of a longer
/// dotted number (`1.2.3.4.5`) and not right after "version"/"build"/...: `1.2.3.4` after
/// "version" is a version. A `:port` or `/prefix` may follow. Right after `hex:` or `::` it
/// is the tail of an IPv6 address, which [`v6`] reads whole or not at all.
pub(super) fn v4(b: &[u8], i: usize, out: &mut Vec<Finding>) {
    let Some(end) = quad(b, i) else {
        return;
    };
    let after_v6 = before(b, i, 1) == b':' && is_v6(before(b, i, 2));
    if !after_v6 && !after_version_word(b, i) && (port_or_prefix(b, end) || ends_token(b, end)) {
        out.push(Finding::new(Entity::IpAddress, i..end));
    }
}

/// Where the four dot-separated octets starting at `i` end.
fn quad(b: &[u8], i: usize) -> Option<usize> {
    let mut cur = Cursor::new(b, i);
    for k in 0..4 {
        if k > 0 && !cur.eat(b'.') {
            return None;
        }
        let octet = cur.digits();
        let leading_zero = octet.len() > 1 && octet.first() == Some(&b'0');
        if octet.is_empty() || octet.len() > 3 || leading_zero || num(octet) > 255 {
            return None;
        }
    }
    Some(cur.pos)
}

/// `:8080` or `/24` after an address.
fn port_or_prefix(b: &[u8], end: usize) -> bool {
    matches!(at(b, end), b':' | b'/') && at(b, end + 1).is_ascii_digit()
}

/// Whether the word before `i` (past spaces, `:` or `=`) names a version.
fn after_version_word(b: &[u8], i: usize) -> bool {
    let mut end = i;
    while end > 0 && i - end < 3 && matches!(before(b, end, 1), b' ' | b':' | b'=') {
        end -= 1;
    }
    let mut start = end;
    while start > 0 && end - start < 10 && before(b, start, 1).is_ascii_alphabetic() {
        start -= 1;
    }
    let word = b.get(start..end).unwrap_or_default();
    ["version", "ver", "release", "build", "firmware", "app", "v"]
        .iter()
        .any(|w| word.eq_ignore_ascii_case(w.as_bytes()))
}

/// Each IPv6 address: a run of hex digits and colons with at least two colons and a digit
/// (so `dead::beef` prose and `std::fmt` paths are not addresses), 8 groups or one `::`,
/// maybe ending in a dotted quad (`::ffff:192.0.2.1`, two groups' worth). A time such as
/// `10:30:00` has 3 groups and no `::`, so it never fits.
pub(super) fn v6(b: &[u8], out: &mut Vec<Finding>) {
    let mut i = 0;
    while i < b.len() {
        if !is_v6(at(b, i)) {
            i += 1;
            continue;
        }
        let mut start = i;
        while i < b.len() && is_v6(at(b, i)) {
            i += 1;
        }
        // "addr:fe80::1": a lone colon before the address is punctuation.
        if at(b, start) == b':' && at(b, start + 1) != b':' {
            start += 1;
        }
        let last_group = b
            .get(start..i)
            .and_then(|run| run.iter().rposition(|&c| c == b':'))
            .map_or(start, |k| start + k + 1);
        // A dotted-quad tail ("::ffff:192.0.2.1") stands for the last two groups.
        let tail = quad(b, last_group).filter(|_| at(b, i) == b'.');
        let mut head_end = if tail.is_some() { last_group } else { i };
        // "is fe80::1: ok", "::ffff:" before a quad: a lone trailing colon is not a group.
        if head_end > start + 1 && before(b, head_end, 1) == b':' && before(b, head_end, 2) != b':'
        {
            head_end -= 1;
        }
        let (end, extra) = tail.map_or((head_end, 0), |end| (end, 2));
        let head = b.get(start..head_end).unwrap_or_default();
        let prefix = at(b, end) == b'/' && at(b, end + 1).is_ascii_digit();
        if end.saturating_sub(start) <= 45
            && valid_v6(head, extra)
            && starts_token(b, start)
            && (prefix || ends_token(b, end))
        {
            out.push(Finding::new(Entity::IpAddress, start..end));
            i = i.max(end);
        }
    }
}

fn is_v6(c: u8) -> bool {
    c.is_ascii_hexdigit() || c == b':'
}

/// `head` holds the colon-separated groups; `extra` counts those a dotted quad stands for.
fn valid_v6(head: &[u8], extra: usize) -> bool {
    let colons = head.iter().filter(|&&c| c == b':').count();
    let digit = extra > 0 || head.iter().any(u8::is_ascii_digit);
    if colons < 2 || !digit {
        return false;
    }
    match head.windows(2).position(|w| w == b"::") {
        Some(k) => {
            let (left, right) = (&head[..k], &head[k + 2..]);
            match (groups(left), groups(right)) {
                (Some(l), Some(r)) => l + r + extra <= 7,
                _ => false,
            }
        }
        None => groups(head).map(|n| n + extra) == Some(8),
    }
}

/// How many valid groups (1-4 hex digits) a colon-separated side holds; `None` when one is
/// empty or too long (which also refuses a second `::` and `:::`).
fn groups(side: &[u8]) -> Option<usize> {
    if side.is_empty() {
        return Some(0);
    }
    side.split(|&c| c == b':')
        .try_fold(0, |n, g| (1..=4).contains(&g.len()).then_some(n + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(s: &str) -> Vec<&str> {
        let mut out = Vec::new();
        v6(s.as_bytes(), &mut out);
        for (i, c) in s.bytes().enumerate() {
            if c.is_ascii_digit() && starts_token(s.as_bytes(), i) {
                v4(s.as_bytes(), i, &mut out);
            }
        }
        out.iter().filter_map(|f| s.get(f.range.clone())).collect()
    }

    #[test]
    fn addresses() {
        assert_eq!(found("from 192.168.1.20 today"), ["192.168.1.20"]);
        assert_eq!(found("10.0.0.1:8080"), ["10.0.0.1"]);
        assert_eq!(
            found("2001:db8::8a2e:370:7334"),
            ["2001:db8::8a2e:370:7334"]
        );
        assert_eq!(
            found("2001:0db8:85a3:0000:0000:8a2e:0370:7334."),
            ["2001:0db8:85a3:0000:0000:8a2e:0370:7334"]
        );
        assert_eq!(found("addr:fe80::1 ok"), ["fe80::1"]);
        assert_eq!(found("loopback ::1"), ["::1"]);
        assert_eq!(found("::ffff:192.0.2.1 mapped"), ["::ffff:192.0.2.1"]);
        assert_eq!(found("fe80::10.0.0.1"), ["fe80::10.0.0.1"]);
    }

    #[test]
    fn look_alikes() {
        for s in [
            "1.2.3.4.5",
            "version 1.2.3.4",
            "v1.2.3.4",
            "256.1.1.1",
            "01.02.03.04",
            "10:30:00",
            "00:1a:2b:3c:4d:5e",
            "dead::beef",
            "std::fmt",
            "1.2.3",
            "a:b:c",
            "1:2:3:4:5:6:7:8:9",
        ] {
            assert!(found(s).is_empty(), "{s}: {:?}", found(s));
        }
    }
}
