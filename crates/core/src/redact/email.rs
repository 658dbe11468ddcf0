//! Email addresses: `local@domain.tld`, conservative about characters.

use super::scan::{ends_token, escape_ends_at, starts_token};
use super::{Entity, Finding};

const MAX_LOCAL: usize = 64;
const MAX_DOMAIN: usize = 255;

/// File extensions that are no top-level domain: `icon@2x.png` is an image, not an address.
const FILE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "pdf", "txt", "json", "csv", "mp3", "wav",
    "ogg", "flac", "js", "ts", "html", "css",
];

/// Each address around an `@`. Both sides are read at most to their RFC length limits, so
/// even a text of many `@`s stays linear.
pub(super) fn scan(b: &[u8], out: &mut Vec<Finding>) {
    for (k, _) in b.iter().enumerate().filter(|&(_, &c)| c == b'@') {
        if let Some(range) = around(b, k) {
            out.push(Finding::new(Entity::Email, range));
        }
    }
}

fn is_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// Whether an accented Latin letter (`é`, `ñ`, `ø`: U+00C0–U+024F, two bytes in UTF-8) ends
/// right before `end`, so `josé@…` (RFC 6531) is one address; other scripts are not taken,
/// since text in them runs on without spaces (`我的邮箱是li.wei@…`).
fn latin_letter_before(b: &[u8], end: usize) -> bool {
    let bytes = end.checked_sub(2).and_then(|start| b.get(start..end));
    let c = bytes.and_then(|bytes| std::str::from_utf8(bytes).ok()?.chars().next());
    c.is_some_and(|c| ('\u{00C0}'..='\u{024F}').contains(&c) && c.is_alphabetic())
}

fn is_domain(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-')
}

fn around(b: &[u8], at: usize) -> Option<std::ops::Range<usize>> {
    // The local part: letters, digits and ._%+- back from the `@`, stopping after a JSON
    // escape so "\njane@..." does not take the `n`.
    let mut start = at;
    loop {
        let step = match start {
            0 => break,
            _ if is_local(b[start - 1]) && !escape_ends_at(b, start) => 1,
            _ if latin_letter_before(b, start) => 2,
            _ => break,
        };
        start -= step;
        if at - start > MAX_LOCAL {
            return None;
        }
    }
    while start < at && b[start] == b'.' {
        start += 1;
    }
    let local = b.get(start..at)?;
    if local.is_empty() || local.ends_with(b".") || local.windows(2).any(|w| w == b"..") {
        return None;
    }
    // The domain: dot-separated labels of letters, digits and inner dashes, the last one
    // (the TLD) letters only; a trailing dot or dash ends the sentence, not the address.
    let mut end = at + 1;
    while end < b.len() && is_domain(b[end]) {
        end += 1;
        if end - at > MAX_DOMAIN {
            return None;
        }
    }
    while end > at + 1 && matches!(b[end - 1], b'.' | b'-') {
        end -= 1;
    }
    let domain = b.get(at + 1..end)?;
    let labels: Vec<&[u8]> = domain.split(|&c| c == b'.').collect();
    let label_ok =
        |l: &&[u8]| (1..=63).contains(&l.len()) && !l.starts_with(b"-") && !l.ends_with(b"-");
    let tld = labels.last()?;
    let ok = labels.len() >= 2
        && labels.iter().all(label_ok)
        && tld.len() >= 2
        && tld.iter().all(u8::is_ascii_alphabetic)
        && !FILE_EXTENSIONS
            .iter()
            .any(|x| tld.eq_ignore_ascii_case(x.as_bytes()));
    (ok && starts_token(b, start) && ends_token(b, end)).then_some(start..end)
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
    fn addresses() {
        assert_eq!(
            found("my email is jane.doe@example.com."),
            ["jane.doe@example.com"]
        );
        assert_eq!(found("<a+tag@mail.co.uk>"), ["a+tag@mail.co.uk"]);
        assert_eq!(found(r#"{"t":"hi\njo_e@x-y.io"}"#), ["jo_e@x-y.io"]);
        assert_eq!(found("mailto:Bob@Example.ORG"), ["Bob@Example.ORG"]);
    }

    #[test]
    fn look_alikes() {
        for s in [
            "@handle",
            "user@localhost",
            "a@b.c",
            "x@1.2.3.4",
            "jane@example.c0m",
            "me@-bad.com",
            "first..last@x.com",
            "a@b@",
            "meet @ 10",
            "logo@2x.png",
        ] {
            assert!(found(s).is_empty(), "{s}: {:?}", found(s));
        }
    }

    #[test]
    fn accented_latin_letters_belong_to_the_address_other_scripts_do_not() {
        let found = |t: &str| -> Vec<String> {
            crate::redact::find(t)
                .iter()
                .map(|f| t[f.range.clone()].to_owned())
                .collect()
        };
        assert_eq!(found("my email is josé@example.com"), ["josé@example.com"]);
        assert_eq!(found("是li.wei@example.cn谢谢"), ["li.wei@example.cn"]);
        assert_eq!(found("“ana@example.com”"), ["ana@example.com"]);
    }
}
