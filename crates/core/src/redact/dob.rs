//! Dates of birth: a date counts only with birth context shortly before it.
//!
//! Transcripts are full of dates (appointments, deliveries, the call's own timestamps) that
//! are not personal data; "born", "birth", "DOB" or "d.o.b" at most 30 bytes before the date,
//! in the same sentence, is what makes one a date of birth. Only the date is replaced.

use super::scan::{context_before, ends_token, has_word, num, starts_token, Cursor, DOB_WORDS};
use super::{Context, Entity, Finding};

const MAX_GAP: usize = 30;

/// Each date with birth context. The date scan runs only when a birth word occurs at all
/// (or the text's JSON key is one), so almost every message costs one cheap pass.
pub(super) fn scan(b: &[u8], ctx: Context, out: &mut Vec<Finding>) {
    if !ctx.dob && !has_word(b, DOB_WORDS) {
        return;
    }
    for (i, c) in b.iter().enumerate() {
        if !c.is_ascii_alphanumeric() || !starts_token(b, i) {
            continue;
        }
        if let Some((end, _)) = date_at(b, i) {
            if context_before(b, i, DOB_WORDS, MAX_GAP, ctx.dob) {
                out.push(Finding::new(Entity::DateOfBirth, i..end));
            }
        }
    }
}

/// A calendar date; `ambiguous` when day and month could be read either way (`04/05/1985`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Date {
    pub(super) year: u32,
    pub(super) month: u32,
    pub(super) day: u32,
    pub(super) ambiguous: bool,
}

/// The value a hashed token is computed from: ISO `YYYY-MM-DD` when the date reads one way
/// only, so "14 March 1985" and "1985-03-14" give the same token.
pub(super) fn normalise(value: &str) -> Option<String> {
    let (_, d) = date_at(value.as_bytes(), 0)?;
    (!d.ambiguous).then(|| format!("{:04}-{:02}-{:02}", d.year, d.month, d.day))
}

/// The date starting at `i`, and where it ends: `1985-03-14`, `1985/03/14`, `03/14/1985`,
/// `14/03/1985`, `14.03.1985`, `14-03-1985`, `March 14, 1985`, `Mar. 14th 1985`,
/// `14 March 1985`, `14th of March, 1985`. Four-digit years only: `03/14/85` is as likely a
/// reference as a date.
pub(super) fn date_at(b: &[u8], i: usize) -> Option<(usize, Date)> {
    let found = if b.get(i)?.is_ascii_digit() {
        numeric(b, i).or_else(|| day_month_year(b, i))
    } else {
        month_day_year(b, i)
    }?;
    ends_token(b, found.0).then_some(found)
}

fn numeric(b: &[u8], i: usize) -> Option<(usize, Date)> {
    let mut cur = Cursor::new(b, i);
    let first = cur.digits();
    let sep = cur.eat_any(b"-/.")?;
    let second = cur.digits();
    if !cur.eat(sep) {
        return None;
    }
    let third = cur.digits();
    let short = |d: &[u8]| (1..=2).contains(&d.len());
    let date = if first.len() == 4 && short(second) && short(third) {
        make(num(first), num(second), num(third))?
    } else if short(first) && short(second) && third.len() == 4 {
        let (a, m, y) = (num(first), num(second), num(third));
        match (make(y, a, m), make(y, m, a)) {
            (Some(us), Some(_)) => Date {
                ambiguous: a != m,
                ..us
            },
            (Some(d), None) | (None, Some(d)) => d,
            (None, None) => return None,
        }
    } else {
        return None;
    };
    Some((cur.pos, date))
}

fn day_month_year(b: &[u8], i: usize) -> Option<(usize, Date)> {
    let mut cur = Cursor::new(b, i);
    let day = cur.digits();
    if !(1..=2).contains(&day.len()) {
        return None;
    }
    ordinal(&mut cur);
    if !cur.eat(b' ') {
        return None;
    }
    let save = cur.pos;
    if !(cur.letters().eq_ignore_ascii_case(b"of") && cur.eat(b' ')) {
        cur.pos = save;
    }
    let month = month(&mut cur)?;
    cur.eat(b'.');
    cur.eat(b',');
    let year = year(&mut cur)?;
    Some((cur.pos, make(year, month, num(day))?))
}

fn month_day_year(b: &[u8], i: usize) -> Option<(usize, Date)> {
    let mut cur = Cursor::new(b, i);
    let month = month(&mut cur)?;
    cur.eat(b'.');
    if !cur.eat(b' ') {
        return None;
    }
    let day = cur.digits();
    if !(1..=2).contains(&day.len()) {
        return None;
    }
    ordinal(&mut cur);
    cur.eat(b',');
    let year = year(&mut cur)?;
    Some((cur.pos, make(year, month, num(day))?))
}

/// " 1985": a space then a four-digit year.
fn year(cur: &mut Cursor) -> Option<u32> {
    if !cur.eat(b' ') {
        return None;
    }
    let y = cur.digits();
    (y.len() == 4).then(|| num(y))
}

/// Skips "st", "nd", "rd" or "th" right after a day number.
fn ordinal(cur: &mut Cursor) {
    let save = cur.pos;
    let word = cur.letters();
    if !["st", "nd", "rd", "th"]
        .iter()
        .any(|s| word.eq_ignore_ascii_case(s.as_bytes()))
    {
        cur.pos = save;
    }
}

/// A month name or its usual abbreviation, any case; 1-12.
fn month(cur: &mut Cursor) -> Option<u32> {
    const NAMES: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    let word = cur.letters();
    let hit = |name: &str| {
        word.eq_ignore_ascii_case(name.as_bytes())
            || (word.len() == 3
                && name
                    .as_bytes()
                    .get(..3)
                    .is_some_and(|abbr| word.eq_ignore_ascii_case(abbr)))
    };
    let k = NAMES
        .iter()
        .position(|n| hit(n))
        .or_else(|| word.eq_ignore_ascii_case(b"sept").then_some(8))?;
    u32::try_from(k + 1).ok()
}

/// A real day of a month, in years 1900-2099.
fn make(year: u32, month: u32, day: u32) -> Option<Date> {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    ((1900..=2099).contains(&year) && (1..=days).contains(&day)).then_some(Date {
        year,
        month,
        day,
        ambiguous: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(s: &str) -> Option<(usize, (u32, u32, u32))> {
        date_at(s.as_bytes(), 0).map(|(end, d)| (end, (d.year, d.month, d.day)))
    }

    #[test]
    fn forms() {
        let want = Some((1985, 3, 14));
        for s in [
            "1985-03-14",
            "1985/3/14",
            "03/14/1985",
            "14/03/1985",
            "14.03.1985",
            "March 14, 1985",
            "Mar 14 1985",
            "mar. 14th, 1985",
            "14 March 1985",
            "14th of March, 1985",
            "14 Mar 1985",
        ] {
            assert_eq!(read(s).map(|r| r.1), want, "{s}");
            assert_eq!(read(s).map(|r| r.0), Some(s.len()), "{s}");
        }
    }

    #[test]
    fn not_dates() {
        for s in [
            "1985-13-01",
            "1985-02-30",
            "31/31/1985",
            "14 Marcho 1985",
            "14 March 85",
            "1985-03-14-7",
            "14.03.1985.1",
            "12 months 2020",
            "03/14",
            "1885-03-14",
        ] {
            assert_eq!(read(s), None, "{s}");
        }
    }

    #[test]
    fn normalised_only_when_unambiguous() {
        assert_eq!(normalise("14 March 1985").as_deref(), Some("1985-03-14"));
        assert_eq!(normalise("03/14/1985").as_deref(), Some("1985-03-14"));
        assert_eq!(normalise("04/05/1985"), None);
        assert_eq!(normalise("05/05/1985").as_deref(), Some("1985-05-05"));
    }
}
