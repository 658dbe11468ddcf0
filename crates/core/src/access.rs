//! What an API key may do, pure: its scopes, which scope each kind of request needs, and a new
//! key's definition as a client writes it.

use chrono::{DateTime, Utc};
use serde_json::Value;
use std::fmt;

use crate::FieldError;

/// One permission of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Send calls: the webhook, vendor, observe and trace routes, nothing else. The key that
    /// lives in a production agent's configuration.
    Ingest,
    /// Read calls, runs, metrics, the delivery log and settings.
    Read,
    /// Change runs, scenarios, metrics, the rubric, alerts, outbound webhooks and settings;
    /// includes `read`.
    Write,
    /// Manage keys and vendor secrets; includes every other scope.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Ingest, Scope::Read, Scope::Write, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    fn bit(self) -> i64 {
        1 << self as i64
    }

    /// The scopes that grant this one: itself and the broader ones that include it.
    fn granted_by(self) -> Scopes {
        let broader: &[Scope] = match self {
            Scope::Ingest | Scope::Write => &[Scope::Admin],
            Scope::Read => &[Scope::Write, Scope::Admin],
            Scope::Admin => &[],
        };
        Scopes::of(broader.iter().copied().chain([self]))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scopes a key holds, stored as an integer of [`Scope`] bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(i64);

impl Scopes {
    /// What `project create` gives the project's first key.
    pub const ALL: Scopes = Scopes(0b1111);

    pub fn of(scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self(scopes.into_iter().fold(0, |bits, s| bits | s.bit()))
    }

    /// `None` for bits no scope has: a stored value this release cannot read.
    pub fn from_bits(bits: i64) -> Option<Self> {
        (bits & !Self::ALL.0 == 0).then_some(Self(bits))
    }

    pub fn bits(self) -> i64 {
        self.0
    }

    /// Whether a request needing `needed` may go ahead with these scopes.
    pub fn allow(self, needed: Scope) -> bool {
        self.0 & needed.granted_by().0 != 0
    }

    /// The scopes held, in the order of [`Scope::ALL`].
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL
            .into_iter()
            .filter(move |s| self.0 & s.bit() != 0)
    }

    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Scope::as_str).collect()
    }

    /// A non-empty list of scope names, each once; every problem with its path.
    pub fn parse(value: &Value, path: &str) -> Result<Self, Vec<FieldError>> {
        let Some(items) = value.as_array() else {
            return Err(vec![FieldError::new(
                path,
                format!("must be a list of scopes, of {}", known_scopes()),
            )]);
        };
        if items.is_empty() {
            return Err(vec![FieldError::new(
                path,
                format!("must name at least one scope, of {}", known_scopes()),
            )]);
        }
        let mut errors = Vec::new();
        let mut scopes = Scopes::default();
        for (i, item) in items.iter().enumerate() {
            match item.as_str().and_then(Scope::parse) {
                Some(s) if scopes.0 & s.bit() != 0 => {
                    errors.push(FieldError::new(format!("{path}[{i}]"), "listed twice"))
                }
                Some(s) => scopes.0 |= s.bit(),
                None => errors.push(FieldError::new(
                    format!("{path}[{i}]"),
                    format!("unknown scope {item}; the scopes are {}", known_scopes()),
                )),
            }
        }
        match errors.is_empty() {
            true => Ok(scopes),
            false => Err(errors),
        }
    }
}

impl serde::Serialize for Scopes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter().map(Scope::as_str))
    }
}

fn known_scopes() -> String {
    Scope::ALL.map(Scope::as_str).join(", ")
}

pub const KEY_NAME_MAX_CHARS: usize = 100;

/// A key to create: `{name, scopes, expires_at?}`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyDraft {
    pub name: String,
    pub scopes: Scopes,
    pub expires_at: Option<DateTime<Utc>>,
}

impl KeyDraft {
    /// Every problem with its path; an expiry must lie after `now`.
    pub fn parse(body: &Value, now: DateTime<Utc>) -> Result<Self, Vec<FieldError>> {
        let Some(obj) = body.as_object() else {
            return Err(vec![FieldError::new("$", "must be a JSON object")]);
        };
        let mut errors = Vec::new();
        let mut draft = KeyDraft {
            name: String::new(),
            scopes: Scopes::default(),
            expires_at: None,
        };
        for (key, value) in obj {
            match key.as_str() {
                "name" => match value.as_str().map(str::trim) {
                    Some(n) if !n.is_empty() && n.chars().count() <= KEY_NAME_MAX_CHARS => {
                        draft.name = n.to_owned()
                    }
                    _ => errors.push(FieldError::new(
                        key,
                        format!(
                            "must be a non-empty string of at most {KEY_NAME_MAX_CHARS} characters"
                        ),
                    )),
                },
                "scopes" => match Scopes::parse(value, key) {
                    Ok(scopes) => draft.scopes = scopes,
                    Err(e) => errors.extend(e),
                },
                "expires_at" => match value {
                    Value::Null => {}
                    Value::String(s) => match DateTime::parse_from_rfc3339(s) {
                        Ok(at) if at > now => draft.expires_at = Some(at.with_timezone(&Utc)),
                        Ok(_) => errors.push(FieldError::new(key, "must lie in the future")),
                        Err(_) => errors.push(FieldError::new(
                            key,
                            "must be an RFC 3339 time, such as 2027-01-31T00:00:00Z",
                        )),
                    },
                    _ => errors.push(FieldError::new(key, "must be an RFC 3339 time or null")),
                },
                other => errors.push(FieldError::new(
                    other,
                    "unknown field; a key has name, scopes and expires_at",
                )),
            }
        }
        if !obj.contains_key("name") {
            errors.push(FieldError::new("name", "required: what the key is for"));
        }
        if !obj.contains_key("scopes") {
            errors.push(FieldError::new(
                "scopes",
                format!("required: the key's scopes, of {}", known_scopes()),
            ));
        }
        match errors.is_empty() {
            true => Ok(draft),
            false => Err(errors),
        }
    }
}

/// Longest overlap a rotation grants the old key: a week.
pub const MAX_ROTATION_OVERLAP_MINUTES: i64 = 7 * 24 * 60;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn broader_scopes_include_narrower_ones_but_ingest_stands_alone() {
        let read = Scopes::of([Scope::Read]);
        assert!(read.allow(Scope::Read));
        assert!(!read.allow(Scope::Write) && !read.allow(Scope::Ingest));
        let write = Scopes::of([Scope::Write]);
        assert!(write.allow(Scope::Read) && write.allow(Scope::Write));
        assert!(!write.allow(Scope::Ingest) && !write.allow(Scope::Admin));
        let ingest = Scopes::of([Scope::Ingest]);
        assert!(ingest.allow(Scope::Ingest));
        assert!(!ingest.allow(Scope::Read));
        assert!(Scope::ALL
            .iter()
            .all(|s| Scopes::of([Scope::Admin]).allow(*s)));
        assert!(!Scopes::default().allow(Scope::Read));
    }

    #[test]
    fn scopes_round_trip_through_bits_and_names() {
        let s = Scopes::of([Scope::Write, Scope::Ingest]);
        assert_eq!(Scopes::from_bits(s.bits()), Some(s));
        assert_eq!(s.names(), ["ingest", "write"]);
        assert_eq!(serde_json::to_value(s).unwrap(), json!(["ingest", "write"]));
        assert_eq!(Scopes::from_bits(1 << 9), None);
        assert_eq!(Scopes::of(Scope::ALL), Scopes::ALL);
    }

    #[test]
    fn a_key_draft_names_every_problem() {
        let now = "2026-12-01T00:00:00Z".parse().unwrap();
        let draft = KeyDraft::parse(
            &json!({"name": " sender ", "scopes": ["ingest"], "expires_at": "2027-01-01T00:00:00Z"}),
            now,
        )
        .unwrap();
        assert_eq!(draft.name, "sender");
        assert_eq!(draft.scopes, Scopes::of([Scope::Ingest]));
        assert!(draft.expires_at.is_some());

        let errors = KeyDraft::parse(
            &json!({"name": "", "scopes": ["read", "read", "owner"], "expires_at": "2020-01-01T00:00:00Z", "x": 1}),
            now,
        )
        .unwrap_err();
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["expires_at", "name", "scopes[1]", "scopes[2]", "x"],
            "{errors:?}"
        );
        assert!(errors[3].message.contains("ingest, read, write, admin"));

        let errors = KeyDraft::parse(&json!({"scopes": []}), now).unwrap_err();
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["scopes", "name"]);
        assert!(KeyDraft::parse(&json!([]), now).is_err());
    }
}
