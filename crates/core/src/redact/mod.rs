//! PII redaction at ingest, before anything is stored.
//!
//! Call transcripts carry emails, phone numbers, card numbers and more. A project's policy
//! masks them with typed tokens (`<CARD>`) or replaces them with a keyed hash
//! (`<CARD:1a2b3c4d>`), so one can still see "the same card twice" without the card. This
//! module is the pure detector ([`find`]) and rewriter ([`Redactor`]); ingest applies it to
//! message text, tool-call arguments and results, metadata values, and the delivery log's copy
//! of the body.
//!
//! **Precision first.** Redacting an order number or an appointment date destroys the very
//! evidence a QA reviewer needs, so every detector wants structure, not just digits: cards
//! and IBANs must pass their checksums, SSNs their issued ranges, a phone needs a `+` or a
//! phone's separators, a date needs birth context. No match starts or ends inside a longer
//! word, id or number (see `scan::starts_token`), so UUIDs, call ids, ISO dates, times,
//! prices and versions never yield pieces.
//!
//! **Overlaps.** When two readings overlap, the checksum-validated kinds (card, IBAN) beat
//! the structural ones (email, SSN, IP, date of birth), which beat phone, the loosest shape;
//! within a tier the longer match wins, then the earlier one. Redaction is idempotent:
//! tokens (`<`, capitals, `:`, hex, `>`) match no detector, and [`Redactor::text`] passes
//! until nothing changes, since a token can free a neighbour that touched the old value.
//!
//! **Why hand-written scanners, not `regex`.** Every kind needs work a regex cannot do
//! (Luhn, mod 97, issued ranges, calendar checks, context words before the match, the
//! symmetric token-edge rule, JSON escapes), so a regex would only find candidates for the
//! same code to re-check. Small cursors over bytes keep each kind's rule in one readable
//! function, read a bounded stretch per start (linear time, no backtracking by
//! construction), cost nothing on clean text, and add no dependency.
//!
//! **What it cannot catch.** Names and street addresses (they need a model); numbers spoken
//! as words ("four one one one ..."), spelled emails ("jane at example dot com"), or digits
//! split oddly by speech-to-text; national phone shapes beyond North America and trunk-`0`
//! Europe; lowercase IBANs; dates of birth without a birth word nearby, or with a two-digit
//! year; JSON numbers (a card sent as a number, not a string, is left alone); PII inside
//! `\uXXXX` escapes of a JSON text that does not parse.

mod dob;
mod email;
mod iban;
mod ip;
mod numbers;
mod phone;
mod scan;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

/// The kinds detected.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Email,
    Phone,
    Card,
    Ssn,
    Iban,
    IpAddress,
    DateOfBirth,
}

impl Entity {
    pub const ALL: [Entity; 7] = [
        Entity::Email,
        Entity::Phone,
        Entity::Card,
        Entity::Ssn,
        Entity::Iban,
        Entity::IpAddress,
        Entity::DateOfBirth,
    ];

    /// The name inside a token: `<EMAIL>`, `<CARD:1a2b3c4d>`.
    pub fn token_name(self) -> &'static str {
        match self {
            Entity::Email => "EMAIL",
            Entity::Phone => "PHONE",
            Entity::Card => "CARD",
            Entity::Ssn => "SSN",
            Entity::Iban => "IBAN",
            Entity::IpAddress => "IP",
            Entity::DateOfBirth => "DOB",
        }
    }

    /// The serialised name, as in [`Counts`].
    pub fn as_str(self) -> &'static str {
        match self {
            Entity::Email => "email",
            Entity::Phone => "phone",
            Entity::Card => "card",
            Entity::Ssn => "ssn",
            Entity::Iban => "iban",
            Entity::IpAddress => "ip_address",
            Entity::DateOfBirth => "date_of_birth",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// Which reading wins an overlap: checksums beat structure beats the phone shape.
    fn tier(self) -> u8 {
        match self {
            Entity::Card | Entity::Iban => 2,
            Entity::Email | Entity::Ssn | Entity::IpAddress | Entity::DateOfBirth => 1,
            Entity::Phone => 0,
        }
    }
}

/// A finding: which kind, and the byte range in the text (always on char boundaries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub entity: Entity,
    pub range: Range<usize>,
}

impl Finding {
    fn new(entity: Entity, range: Range<usize>) -> Self {
        Self { entity, range }
    }
}

/// Context a text inherits from where it sits: a JSON value under `"dob"` or `"ssn"` needs
/// no birth or SSN word of its own.
#[derive(Debug, Clone, Copy, Default)]
struct Context {
    dob: bool,
    ssn: bool,
}

impl Context {
    fn of_key(key: &str) -> Self {
        Self {
            dob: scan::has_word(key.as_bytes(), scan::DOB_WORDS),
            ssn: scan::has_word(key.as_bytes(), scan::SSN_WORDS),
        }
    }

    fn or(self, other: Self) -> Self {
        Self {
            dob: self.dob || other.dob,
            ssn: self.ssn || other.ssn,
        }
    }
}

/// Every finding in `text`, non-overlapping, in order (see the module doc for which reading
/// wins an overlap).
pub fn find(text: &str) -> Vec<Finding> {
    find_in(text, Context::default())
}

fn find_in(text: &str, ctx: Context) -> Vec<Finding> {
    let b = text.as_bytes();
    // Every kind needs a digit except email, which needs an `@`: one pass settles clean text.
    if !b.iter().any(|&c| c.is_ascii_digit() || c == b'@') {
        return Vec::new();
    }
    let mut found = Vec::new();
    numbers::scan(b, ctx, &mut found);
    email::scan(b, &mut found);
    iban::scan(b, &mut found);
    ip::v6(b, &mut found);
    dob::scan(b, ctx, &mut found);
    // Detectors cut next to ASCII bytes or whole characters; the filter keeps that a checked
    // promise.
    found.retain(|f| {
        let ok = f.range.start < f.range.end
            && text.is_char_boundary(f.range.start)
            && text.is_char_boundary(f.range.end);
        debug_assert!(ok, "{f:?} is not on char boundaries");
        ok
    });
    resolve(found)
}

/// Keeps the best of overlapping readings: higher tier, then longer, then earlier.
fn resolve(mut found: Vec<Finding>) -> Vec<Finding> {
    if found.len() < 2 {
        return found;
    }
    found.sort_by(|a, b| {
        (b.entity.tier(), b.range.len())
            .cmp(&(a.entity.tier(), a.range.len()))
            .then(a.range.start.cmp(&b.range.start))
            .then(a.entity.cmp(&b.entity))
    });
    let mut kept: BTreeMap<usize, Finding> = BTreeMap::new();
    for f in found {
        // Kept ranges are disjoint, so only the last one starting before `f` ends can overlap.
        let clash = kept
            .range(..f.range.end)
            .next_back()
            .is_some_and(|(_, k)| k.range.end > f.range.start);
        if !clash {
            kept.insert(f.range.start, f);
        }
    }
    kept.into_values().collect()
}

/// How found values are replaced.
#[derive(Clone, PartialEq, Eq)]
pub enum Replacement {
    /// `<EMAIL>`, `<PHONE>`, `<CARD>`, ...
    Mask,
    /// `<EMAIL:1a2b3c4d>`: the first 8 hex digits of HMAC-SHA256(key, normalised value), so
    /// one value gives one token however it was written, and nobody without the key can
    /// test a guess.
    Hash { key: [u8; 32] },
}

/// Never shows the key.
impl fmt::Debug for Replacement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Replacement::Mask => f.write_str("Mask"),
            Replacement::Hash { .. } => f.write_str("Hash { key: <hidden> }"),
        }
    }
}

/// Per-entity counts, serialised as a JSON object `{"email": 2, "card": 1}` holding only the
/// kinds seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "BTreeMap<Entity, u32>", into = "BTreeMap<Entity, u32>")]
pub struct Counts(BTreeMap<Entity, u32>);

impl Counts {
    pub fn add(&mut self, e: Entity) {
        let n = self.0.entry(e).or_insert(0);
        *n = n.saturating_add(1);
    }

    pub fn merge(&mut self, other: &Counts) {
        for (&e, &n) in &other.0 {
            let m = self.0.entry(e).or_insert(0);
            *m = m.saturating_add(n);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn total(&self) -> u32 {
        self.0.values().fold(0, |a, &n| a.saturating_add(n))
    }

    pub fn get(&self, e: Entity) -> u32 {
        self.0.get(&e).copied().unwrap_or(0)
    }

    /// The kinds seen, with their counts, in [`Entity`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Entity, u32)> + '_ {
        self.0.iter().map(|(&e, &n)| (e, n))
    }
}

/// Zero counts are dropped, so a stored `{"email": 0}` equals `{}`.
impl From<BTreeMap<Entity, u32>> for Counts {
    fn from(mut map: BTreeMap<Entity, u32>) -> Self {
        map.retain(|_, n| *n > 0);
        Self(map)
    }
}

impl From<Counts> for BTreeMap<Entity, u32> {
    fn from(c: Counts) -> Self {
        c.0
    }
}

/// Applies one project's policy to texts and JSON trees.
#[derive(Clone)]
pub struct Redactor {
    replacement: Replacement,
    /// Exact strings never redacted, e.g. the call's from/to numbers when the project keeps
    /// them.
    keep: Vec<String>,
}

/// Shows neither the hash key nor the kept values (phone numbers, most likely).
impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("replacement", &self.replacement)
            .field("keep", &format_args!("{} value(s)", self.keep.len()))
            .finish()
    }
}

impl Redactor {
    pub fn new(replacement: Replacement) -> Self {
        Self {
            replacement,
            keep: Vec::new(),
        }
    }

    /// Values left alone: a finding is kept when its text equals one of them, or normalises
    /// to the same value (same digits for a phone, card or SSN; same address in any case for
    /// an email). A phone written nationally is kept too when it is the kept number without
    /// its country code (and trunk `0`): "(415) 555-0134" for "+14155550134".
    pub fn keeping(mut self, values: impl IntoIterator<Item = String>) -> Self {
        self.keep
            .extend(values.into_iter().filter(|v| !v.trim().is_empty()));
        self
    }

    /// The text with every finding replaced, and `counts` incremented for each. Borrowed
    /// when nothing is replaced: this runs on every message of every call.
    pub fn text<'a>(&self, text: &'a str, counts: &mut Counts) -> Cow<'a, str> {
        self.text_in(text, Context::default(), counts)
    }

    /// Redacts to a fixed point. Replacing a value with a token changes what its neighbours
    /// touch (`4111…1111+1 (415) 555-0134`: the `+` touched a digit, now it touches `>`), so
    /// a value refused beside it may be found on a second pass. Passing again until nothing
    /// changes makes `text` idempotent; clean text costs one pass and PII text usually two.
    fn text_in<'a>(&self, text: &'a str, ctx: Context, counts: &mut Counts) -> Cow<'a, str> {
        const MAX_PASSES: usize = 4;
        let mut out = match self.pass(text, ctx, counts) {
            Cow::Borrowed(_) => return Cow::Borrowed(text),
            Cow::Owned(out) => out,
        };
        for _ in 1..MAX_PASSES {
            match self.pass(&out, ctx, counts) {
                Cow::Borrowed(_) => break,
                Cow::Owned(next) => out = next,
            }
        }
        Cow::Owned(out)
    }

    /// One pass: every finding of `find_in` replaced, unless kept.
    fn pass<'a>(&self, text: &'a str, ctx: Context, counts: &mut Counts) -> Cow<'a, str> {
        let mut out: Option<String> = None;
        let mut last = 0;
        for f in find_in(text, ctx) {
            let (Some(plain), Some(value)) =
                (text.get(last..f.range.start), text.get(f.range.clone()))
            else {
                continue;
            };
            if self.kept(f.entity, value) {
                continue;
            }
            let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
            out.push_str(plain);
            self.push_token(out, f.entity, value);
            counts.add(f.entity);
            last = f.range.end;
        }
        match out {
            None => Cow::Borrowed(text),
            Some(mut out) => {
                out.push_str(text.get(last..).unwrap_or_default());
                Cow::Owned(out)
            }
        }
    }

    /// Every string value in the tree, recursively, in place. Object keys are left alone
    /// (they are the sender's field names, not what was said), and so are numbers: JSON
    /// numbers are ids, amounts, durations and millisecond timestamps, not PII-bearing text,
    /// and a 13-digit timestamp can pass a card's checks. A key naming a birth date or SSN
    /// (`"dob"`, `"dateOfBirth"`, `"ssn"`) gives the values under it the context such a
    /// value would otherwise need in its own text.
    pub fn json(&self, value: &mut Value, counts: &mut Counts) {
        // A stack, not recursion: a deep tree built in code cannot overflow ours.
        let mut stack = vec![(value, Context::default())];
        while let Some((value, ctx)) = stack.pop() {
            match value {
                Value::String(s) => {
                    if let Cow::Owned(new) = self.text_in(s, ctx, counts) {
                        *s = new;
                    }
                }
                Value::Array(items) => stack.extend(items.iter_mut().map(|v| (v, ctx))),
                Value::Object(map) => {
                    stack.extend(map.iter_mut().map(|(k, v)| (v, ctx.or(Context::of_key(k)))))
                }
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
    }

    /// A JSON text, e.g. a delivery log's capped copy of a request body, which may be
    /// truncated or malformed. When it parses, its string values are redacted as by
    /// [`Redactor::json`] and it is re-serialised compactly (keys sorted); when nothing was
    /// found it comes back unchanged, byte for byte. When it does not parse it is redacted
    /// as plain text: tokens hold no quote or backslash and never split a JSON escape, so
    /// the text stays as well-formed as it was (and keys and numbers are redacted too then).
    pub fn json_text(&self, body: &str, counts: &mut Counts) -> String {
        if let Ok(mut value) = serde_json::from_str::<Value>(body) {
            let mut found = Counts::default();
            self.json(&mut value, &mut found);
            if found.is_empty() {
                return body.to_owned();
            }
            if let Ok(out) = serde_json::to_string(&value) {
                counts.merge(&found);
                return out;
            }
        }
        self.text(body, counts).into_owned()
    }

    /// The token for one value of one kind: `<PHONE>` when masking, `<PHONE:1a2b3c4d>` when
    /// hashing (the caller hashes the call's from/to numbers with it).
    pub fn token(&self, entity: Entity, value: &str) -> String {
        let mut out = String::new();
        self.push_token(&mut out, entity, value);
        out
    }

    fn push_token(&self, out: &mut String, entity: Entity, value: &str) {
        out.push('<');
        out.push_str(entity.token_name());
        if let Replacement::Hash { key } = &self.replacement {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(normalise(entity, value).as_bytes());
            let digest = mac.finalize().into_bytes();
            out.push(':');
            out.push_str(&hex::encode(digest.get(..4).unwrap_or_default()));
        }
        out.push('>');
    }

    fn kept(&self, entity: Entity, value: &str) -> bool {
        if self.keep.is_empty() {
            return false;
        }
        let norm = normalise(entity, value);
        self.keep.iter().any(|k| {
            k == value
                || (!norm.is_empty() && normalise(entity, k) == norm)
                || (entity == Entity::Phone && national_form_of(value, k))
        })
    }
}

/// The value a hashed token is computed from: one spelling per value.
fn normalise(entity: Entity, value: &str) -> String {
    let digits = || value.chars().filter(char::is_ascii_digit).collect();
    match entity {
        Entity::Phone | Entity::Card | Entity::Ssn => digits(),
        Entity::Email | Entity::IpAddress => value.to_ascii_lowercase(),
        Entity::Iban => value
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect(),
        Entity::DateOfBirth => {
            dob::normalise(value).unwrap_or_else(|| value.trim().to_ascii_lowercase())
        }
    }
}

/// Whether `value`, a phone written without `+`, is `kept` (an international number) minus
/// its country code and trunk `0`: "020 7946 0958" for "+44 20 7946 0958".
fn national_form_of(value: &str, kept: &str) -> bool {
    if value.starts_with('+') {
        return false;
    }
    let national = normalise(Entity::Phone, value);
    let national = national.strip_prefix('0').unwrap_or(&national);
    let kept = normalise(Entity::Phone, kept);
    national.len() >= 7
        && kept.len() > national.len()
        && kept.len() - national.len() <= 3
        && kept.ends_with(national)
}
