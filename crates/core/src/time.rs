use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

/// Parses an ISO 8601 date-time. `Z` or an offset (`+02:00`, `+0200`) are honoured; a time
/// without a zone is read as UTC.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z") {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

/// The date-times the API reads, as a schema: RFC 3339 with a zone. OpenAPI 3.1 takes `format`
/// as a note only, so the pattern is what states the rule (the calendar is `format`'s).
#[cfg(feature = "openapi")]
pub struct Rfc3339;

#[cfg(feature = "openapi")]
impl Rfc3339 {
    pub const PATTERN: &'static str =
        "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?([Zz]|[+-][0-9]{2}:?[0-9]{2})$";
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Rfc3339 {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .pattern(Some(Self::PATTERN))
            .examples(["2025-10-15T09:22:21.787Z"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Rfc3339 {
    fn name() -> std::borrow::Cow<'static, str> {
        "DateTime".into()
    }
}

/// How the message times of one call were read. Cekura's docs say epoch milliseconds, its own
/// senders send seconds from the call's start; we accept both and say which we used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MessageTimes {
    /// No message carried a time.
    None,
    /// Milliseconds since the Unix epoch.
    EpochMs,
    /// Seconds from the call's `startedAt`.
    SecondsFromStart,
}

impl MessageTimes {
    /// A value at or above this is epoch milliseconds (1e11 ms is March 1973; 1e11 s from the
    /// start of a call is three millennia).
    pub const EPOCH_MS_THRESHOLD: f64 = 1e11;

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::EpochMs => "epoch_ms",
            Self::SecondsFromStart => "seconds_from_start",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "epoch_ms" => Some(Self::EpochMs),
            "seconds_from_start" => Some(Self::SecondsFromStart),
            _ => None,
        }
    }

    /// Which reading applies to a value.
    pub fn of(value: f64) -> Self {
        if value >= Self::EPOCH_MS_THRESHOLD {
            Self::EpochMs
        } else {
            Self::SecondsFromStart
        }
    }

    /// Converts a raw message time to (seconds from start, absolute epoch ms).
    pub fn normalise(self, value: f64, started_at_ms: i64) -> (f64, i64) {
        match self {
            Self::EpochMs => (
                (value - started_at_ms as f64) / 1000.0,
                value.round() as i64,
            ),
            Self::SecondsFromStart | Self::None => {
                // Saturating: the validator's bounds make overflow impossible, the fuzzer's don't.
                (
                    value,
                    started_at_ms.saturating_add((value * 1000.0).round() as i64),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_iso_forms() {
        let z = parse_datetime("2025-10-15T09:22:21.787Z").unwrap();
        assert_eq!(z.timestamp_millis(), 1_760_520_141_787);
        let off = parse_datetime("2025-10-15T11:22:21.787+02:00").unwrap();
        assert_eq!(off, z);
        let compact = parse_datetime("2025-10-15T11:22:21.787+0200").unwrap();
        assert_eq!(compact, z);
        let naive = parse_datetime("2025-10-15T09:22:21.787").unwrap();
        assert_eq!(naive, z);
        assert!(parse_datetime("2025-10-15").is_none());
        assert!(parse_datetime("yesterday").is_none());
        assert!(parse_datetime("2025-13-15T09:22:21Z").is_none());
    }

    #[test]
    fn normalises_both_forms() {
        let start = 1_760_520_141_787;
        assert_eq!(MessageTimes::of(1_760_520_142_852.0), MessageTimes::EpochMs);
        assert_eq!(MessageTimes::of(1.5), MessageTimes::SecondsFromStart);
        let (off, abs) = MessageTimes::EpochMs.normalise(1_760_520_142_852.0, start);
        assert!((off - 1.065).abs() < 1e-9);
        assert_eq!(abs, 1_760_520_142_852);
        let (off, abs) = MessageTimes::SecondsFromStart.normalise(1.065, start);
        assert!((off - 1.065).abs() < 1e-9);
        assert_eq!(abs, 1_760_520_142_852);
    }
}
