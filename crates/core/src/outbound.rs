//! Outbound webhooks, pure: the events callgrade sends, an endpoint's definition as a client
//! writes it, the Standard Webhooks signature, and when a failed delivery is tried again.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use std::fmt;

use crate::FieldError;

/// What happened, as the `type` of an event's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    CallReceived,
    CallEvaluated,
    RunCompleted,
    ResultCompleted,
    DeliveryRejected,
    AlertOpened,
    AlertResolved,
    /// Sent on demand to one endpoint, whatever it subscribes to.
    Test,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        EventType::CallReceived,
        EventType::CallEvaluated,
        EventType::RunCompleted,
        EventType::ResultCompleted,
        EventType::DeliveryRejected,
        EventType::AlertOpened,
        EventType::AlertResolved,
        EventType::Test,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::CallReceived => "call.received",
            EventType::CallEvaluated => "call.evaluated",
            EventType::RunCompleted => "run.completed",
            EventType::ResultCompleted => "result.completed",
            EventType::DeliveryRejected => "delivery.rejected",
            EventType::AlertOpened => "alert.opened",
            EventType::AlertResolved => "alert.resolved",
            EventType::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The event's bit in an [`EventSet`] (stored as an integer, so that the store selects the
    /// subscribed endpoints with one `events & bit` test).
    pub fn bit(self) -> i64 {
        1 << Self::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The events an endpoint subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventSet(i64);

impl EventSet {
    pub fn from_bits(bits: i64) -> Self {
        Self(bits)
    }

    pub fn bits(self) -> i64 {
        self.0
    }

    pub fn contains(self, event: EventType) -> bool {
        self.0 & event.bit() != 0
    }

    pub fn types(self) -> Vec<EventType> {
        EventType::ALL
            .into_iter()
            .filter(|t| self.contains(*t))
            .collect()
    }

    pub fn names(self) -> Vec<&'static str> {
        self.types().into_iter().map(EventType::as_str).collect()
    }
}

impl FromIterator<EventType> for EventSet {
    fn from_iter<I: IntoIterator<Item = EventType>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |bits, t| bits | t.bit()))
    }
}

/// The longest endpoint URL accepted.
pub const ENDPOINT_URL_MAX_CHARS: usize = 2048;

/// The longest description of an endpoint.
pub const ENDPOINT_DESCRIPTION_MAX_CHARS: usize = 500;

/// An endpoint as a client creates it.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointDraft {
    pub url: String,
    pub events: EventSet,
    pub enabled: bool,
    pub description: String,
    /// Also send the signing secret in `X-CEKURA-SECRET`, for consumers written for Cekura.
    pub cekura_secret_header: bool,
}

/// What a PATCH of an endpoint changes; `None` keeps the field.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub events: Option<EventSet>,
    pub enabled: Option<bool>,
    pub description: Option<String>,
    pub cekura_secret_header: Option<bool>,
}

impl EndpointDraft {
    /// `{url, events, enabled?, description?, cekura_secret_header?}`, every problem with its
    /// path.
    pub fn parse(body: &Value) -> Result<Self, Vec<FieldError>> {
        let patch = EndpointPatch::parse(body)?;
        let mut errors = Vec::new();
        if patch.url.is_none() {
            errors.push(FieldError::new(
                "url",
                "required: the URL events are posted to",
            ));
        }
        if patch.events.is_none() {
            errors.push(FieldError::new(
                "events",
                format!("required: the event types to send, of {}", known_events()),
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            url: patch.url.unwrap_or_default(),
            events: patch.events.unwrap_or_default(),
            enabled: patch.enabled.unwrap_or(true),
            description: patch.description.unwrap_or_default(),
            cekura_secret_header: patch.cekura_secret_header.unwrap_or(false),
        })
    }
}

impl EndpointPatch {
    pub fn parse(body: &Value) -> Result<Self, Vec<FieldError>> {
        let Some(obj) = body.as_object() else {
            return Err(vec![FieldError::new("$", "must be a JSON object")]);
        };
        let mut patch = Self::default();
        let mut errors = Vec::new();
        for (key, value) in obj {
            match key.as_str() {
                "url" => patch.url = endpoint_url(value, &mut errors),
                "events" => patch.events = events(value, &mut errors),
                "enabled" => patch.enabled = flag(value, key, &mut errors),
                "cekura_secret_header" => {
                    patch.cekura_secret_header = flag(value, key, &mut errors)
                }
                "description" => match value.as_str() {
                    Some(d) if d.chars().count() <= ENDPOINT_DESCRIPTION_MAX_CHARS => {
                        patch.description = Some(d.trim().to_owned())
                    }
                    Some(_) => errors.push(FieldError::new(
                        key,
                        format!("at most {ENDPOINT_DESCRIPTION_MAX_CHARS} characters"),
                    )),
                    None => errors.push(FieldError::new(key, "must be a string")),
                },
                other => errors.push(FieldError::new(
                    other,
                    "unknown field; an endpoint has url, events, enabled, description and \
                     cekura_secret_header",
                )),
            }
        }
        if errors.is_empty() {
            Ok(patch)
        } else {
            Err(errors)
        }
    }

    pub fn apply(&self, draft: &mut EndpointDraft) {
        if let Some(url) = &self.url {
            draft.url.clone_from(url);
        }
        if let Some(events) = self.events {
            draft.events = events;
        }
        if let Some(enabled) = self.enabled {
            draft.enabled = enabled;
        }
        if let Some(description) = &self.description {
            draft.description.clone_from(description);
        }
        if let Some(flag) = self.cekura_secret_header {
            draft.cekura_secret_header = flag;
        }
    }
}

fn known_events() -> String {
    let names: Vec<&str> = EventType::ALL
        .into_iter()
        .filter(|t| *t != EventType::Test)
        .map(EventType::as_str)
        .collect();
    names.join(", ")
}

fn flag(value: &Value, key: &str, errors: &mut Vec<FieldError>) -> Option<bool> {
    let flag = value.as_bool();
    if flag.is_none() {
        errors.push(FieldError::new(key, "must be true or false"));
    }
    flag
}

/// An http(s) URL with a host, no credentials in it and no fragment. Whether its host is a
/// public address is decided when it is resolved (the forgery guard), not here.
fn endpoint_url(value: &Value, errors: &mut Vec<FieldError>) -> Option<String> {
    let Some(url) = value.as_str() else {
        errors.push(FieldError::new("url", "must be a string"));
        return None;
    };
    let problem = if url.len() > ENDPOINT_URL_MAX_CHARS {
        Some(format!("at most {ENDPOINT_URL_MAX_CHARS} characters"))
    } else if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("must not contain spaces or control characters".to_owned())
    } else {
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        match rest {
            None => Some("must be an http:// or https:// URL".to_owned()),
            Some(rest) => {
                let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
                if authority.is_empty() {
                    Some("names no host".to_owned())
                } else if authority.contains('@') {
                    Some(
                        "must not carry a user or password; the signature authenticates \
                         callgrade to the receiver"
                            .to_owned(),
                    )
                } else if url.contains('#') {
                    Some("must not have a #fragment".to_owned())
                } else {
                    None
                }
            }
        }
    };
    match problem {
        Some(p) => {
            errors.push(FieldError::new("url", p));
            None
        }
        None => Some(url.to_owned()),
    }
}

fn events(value: &Value, errors: &mut Vec<FieldError>) -> Option<EventSet> {
    let Some(items) = value.as_array() else {
        errors.push(FieldError::new(
            "events",
            format!("must be a list of event types, of {}", known_events()),
        ));
        return None;
    };
    if items.is_empty() {
        errors.push(FieldError::new(
            "events",
            format!("must name at least one event type, of {}", known_events()),
        ));
        return None;
    }
    let mut set = Vec::new();
    let before = errors.len();
    for (i, item) in items.iter().enumerate() {
        match item.as_str().and_then(EventType::parse) {
            Some(EventType::Test) => errors.push(FieldError::new(
                format!("events[{i}]"),
                "`test` is sent on demand (POST …/test) to any endpoint; it is not subscribed to",
            )),
            Some(t) => set.push(t),
            None => errors.push(FieldError::new(
                format!("events[{i}]"),
                format!("unknown event type; one of {}", known_events()),
            )),
        }
    }
    (errors.len() == before).then(|| set.into_iter().collect())
}

/// The prefix of a signing secret (Standard Webhooks'), before its base64 key.
pub const SECRET_PREFIX: &str = "whsec_";

/// How many random bytes a new signing key has (Standard Webhooks asks for 24 to 64).
pub const SECRET_BYTES: usize = 32;

/// An endpoint's signing secret, `whsec_<base64 key>`. Its `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

impl SigningSecret {
    /// A secret of the given key bytes (the caller draws them at random).
    pub fn from_key(key: [u8; SECRET_BYTES]) -> Self {
        Self(key.to_vec())
    }

    /// A stored or shown secret, `whsec_…`.
    pub fn parse(s: &str) -> Option<Self> {
        let key = BASE64.decode(s.strip_prefix(SECRET_PREFIX)?).ok()?;
        (!key.is_empty()).then_some(Self(key))
    }

    /// The secret as it is stored and shown once.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", BASE64.encode(&self.0))
    }

    /// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC accepts a key of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(…)")
    }
}

/// The `webhook-signature` header: one signature per secret in force, space-separated (during a
/// rotation's overlap both the new and the old secret sign).
pub fn signature_header(
    secrets: &[SigningSecret],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let signatures: Vec<String> = secrets
        .iter()
        .map(|s| s.sign(msg_id, timestamp, body))
        .collect();
    signatures.join(" ")
}

/// An event as it is posted: `{type, timestamp, data}`.
pub fn envelope(event: EventType, at: DateTime<Utc>, data: Value) -> String {
    json!({
        "type": event.as_str(),
        "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": data,
    })
    .to_string()
}

/// The `data` of `call.evaluated`: the call, its verdict and each metric's value.
pub fn call_evaluated(
    call_id: &str,
    external_id: &str,
    agent_id: Option<i64>,
    run_id: Option<i64>,
    evaluation: &crate::CallEvaluation,
) -> Value {
    let metrics: Vec<Value> = evaluation
        .evaluations
        .iter()
        .map(|e| {
            let mut m = Map::new();
            m.insert("id".into(), json!(e.metric_id));
            m.insert("name".into(), json!(e.metric_name));
            m.insert("status".into(), json!(e.status.as_str()));
            m.insert("value".into(), e.value.clone().unwrap_or(Value::Null));
            m.insert("passed".into(), json!(e.passed));
            Value::Object(m)
        })
        .collect();
    json!({
        "call_id": call_id,
        "id": external_id,
        "agent_id": agent_id,
        "run_id": run_id,
        "success": evaluation.verdict.success,
        "undecided": evaluation.verdict.undecided,
        "metrics": metrics,
    })
}

/// Why an attempt did not deliver, as far as trying again goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptFailure {
    /// Worth another attempt: a timeout, a refused or reset connection, 408, 429 or a 5xx.
    Transient(String),
    /// Another attempt would fail the same way: the forgery guard, another 4xx, a redirect
    /// that is not followed. A replay sends it again once fixed.
    Permanent(String),
}

/// How an answer's status reads: `None` delivered, or why not.
pub fn judge_status(status: u16) -> Option<AttemptFailure> {
    match status {
        200..=299 => None,
        408 | 429 | 500..=599 => Some(AttemptFailure::Transient(format!("answered {status}"))),
        300..=399 => Some(AttemptFailure::Permanent(format!(
            "answered {status}; a webhook follows only 307 and 308 redirects, which keep the POST"
        ))),
        _ => Some(AttemptFailure::Permanent(format!(
            "answered {status}; a 4xx other than 408 and 429 is not retried (replay the delivery \
             once the receiver is fixed)"
        ))),
    }
}

/// The waits after each failed attempt (Svix's schedule): the first attempt right away, then
/// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h, eight attempts over about 27.6 hours.
pub const RETRY_SCHEDULE_SECS: [i64; 7] = [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000];

/// The longest `Retry-After` honoured; a longer one waits this long.
pub const MAX_RETRY_AFTER_SECS: i64 = 36_000;

/// How long an endpoint may fail every attempt before a delivery that gives up disables it.
pub const DISABLE_AFTER_FAILING_SECS: i64 = 24 * 3_600;

/// When to try again after `attempts` failed attempts, or `None` to give up. The wait is the
/// schedule's, at least the receiver's `Retry-After` (up to ten hours), with ±10% jitter drawn
/// from `seed` (the delivery's id and attempt), so that retries of one outage spread out and a
/// test can compute the bounds.
pub fn next_attempt(
    attempts: u32,
    now: DateTime<Utc>,
    retry_after_secs: Option<i64>,
    seed: u64,
) -> Option<DateTime<Utc>> {
    let scheduled = *RETRY_SCHEDULE_SECS.get(attempts.checked_sub(1)? as usize)?;
    let wanted = retry_after_secs
        .map(|r| r.clamp(0, MAX_RETRY_AFTER_SECS))
        .unwrap_or(0);
    let millis = scheduled.max(wanted) * 1_000;
    // A fraction in [-0.1, 0.1) of the wait, from a mixed seed (splitmix64).
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let fraction = (z % 2_000) as i64 - 1_000; // per ten thousand
    let jitter = millis * fraction / 10_000;
    Some(now + TimeDelta::milliseconds(millis + jitter))
}

/// `Retry-After` in seconds: a number of seconds, or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<i64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<i64>() {
        return Some(secs.max(0));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&Utc) - now).num_seconds().max(0))
}

/// Whether a delivery that gave up disables its endpoint: every attempt has failed since
/// `failing_since`, for a day or more.
pub fn should_disable(failing_since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    failing_since.is_some_and(|since| now - since >= TimeDelta::seconds(DISABLE_AFTER_FAILING_SECS))
}

/// How much of a receiver's answer the attempt log keeps.
pub const RESPONSE_SNIPPET_BYTES: usize = 2_048;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_webhooks_test_vector_signs_as_published() {
        // From the Standard Webhooks specification's reference libraries.
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            secret.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(
            secret.expose(),
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "a secret shows as it was read"
        );
        assert_eq!(format!("{secret:?}"), "SigningSecret(…)");
    }

    #[test]
    fn both_secrets_sign_during_an_overlap() {
        let a = SigningSecret::from_key([1; SECRET_BYTES]);
        let b = SigningSecret::from_key([2; SECRET_BYTES]);
        let header = signature_header(&[a.clone(), b.clone()], "msg_1", 10, b"{}");
        assert_eq!(
            header,
            format!(
                "{} {}",
                a.sign("msg_1", 10, b"{}"),
                b.sign("msg_1", 10, b"{}")
            )
        );
        assert_ne!(a.sign("msg_1", 10, b"{}"), b.sign("msg_1", 10, b"{}"));
        assert!(SigningSecret::parse("whsec_").is_none());
        assert!(SigningSecret::parse("sk_abc").is_none());
        assert!(SigningSecret::parse("whsec_!!").is_none());
    }

    #[test]
    fn an_endpoint_is_parsed_with_every_problem() {
        let ok = EndpointDraft::parse(&json!({
            "url": "https://example.com/hooks",
            "events": ["call.evaluated", "result.completed"],
        }))
        .unwrap();
        assert!(ok.enabled && !ok.cekura_secret_header);
        assert_eq!(ok.events.names(), ["call.evaluated", "result.completed"]);

        let errors = EndpointDraft::parse(&json!({
            "url": "ftp://example.com",
            "events": ["call.evaluated", "call.exploded", "test"],
            "enabled": "yes",
            "colour": 1,
        }))
        .unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["colour", "enabled", "events[1]", "events[2]", "url"],
            "{errors:?}"
        );
        for (url, problem) in [
            ("https://user:pw@example.com/", "user or password"),
            ("https:///path", "no host"),
            ("https://example.com/a b", "spaces"),
            ("https://example.com/#x", "fragment"),
        ] {
            let e = EndpointDraft::parse(&json!({"url": url, "events": ["test"]})).unwrap_err();
            assert!(
                e.iter().any(|e| e.message.contains(problem)),
                "{url}: {e:?}"
            );
        }
        let missing = EndpointDraft::parse(&json!({})).unwrap_err();
        assert_eq!(missing.len(), 2);
        assert!(EndpointDraft::parse(&json!({"url": "https://a.b", "events": []})).is_err());
    }

    #[test]
    fn event_sets_keep_their_types() {
        let set: EventSet = [EventType::RunCompleted, EventType::AlertOpened]
            .into_iter()
            .collect();
        assert!(set.contains(EventType::RunCompleted));
        assert!(!set.contains(EventType::CallReceived));
        assert_eq!(EventSet::from_bits(set.bits()), set);
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
    }

    #[test]
    fn retries_follow_the_schedule_within_the_jitter_then_give_up() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut total = 0;
        for (i, secs) in RETRY_SCHEDULE_SECS.iter().enumerate() {
            for seed in 0..50 {
                let at = next_attempt(i as u32 + 1, now, None, seed).unwrap();
                let waited = (at - now).num_milliseconds();
                assert!(
                    (secs * 900..=secs * 1_100).contains(&waited),
                    "attempt {}: {waited} ms",
                    i + 1
                );
            }
            total += secs;
        }
        assert!(
            (24 * 3_600..30 * 3_600).contains(&total),
            "about a day: {total} s"
        );
        assert_eq!(next_attempt(8, now, None, 1), None, "eight attempts in all");
        assert_eq!(next_attempt(0, now, None, 1), None);
        // Retry-After asks for more than the schedule: it is honoured, within ten hours.
        let later = next_attempt(1, now, Some(120), 3).unwrap();
        assert!((108_000..=132_000).contains(&(later - now).num_milliseconds()));
        let capped = next_attempt(1, now, Some(10_000_000), 3).unwrap();
        assert!((capped - now).num_seconds() <= MAX_RETRY_AFTER_SECS * 11 / 10);
        assert_eq!(parse_retry_after("30", now), Some(30));
        assert_eq!(
            parse_retry_after("Tue, 01 Dec 2026 00:01:00 GMT", now),
            Some(60)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn statuses_are_judged_for_retrying() {
        assert_eq!(judge_status(204), None);
        for transient in [408, 429, 500, 503] {
            assert!(matches!(
                judge_status(transient),
                Some(AttemptFailure::Transient(_))
            ));
        }
        for permanent in [301, 302, 400, 401, 404, 410] {
            assert!(matches!(
                judge_status(permanent),
                Some(AttemptFailure::Permanent(_))
            ));
        }
        let now = Utc::now();
        assert!(!should_disable(None, now));
        assert!(!should_disable(Some(now - TimeDelta::hours(23)), now));
        assert!(should_disable(Some(now - TimeDelta::hours(24)), now));
    }
}
