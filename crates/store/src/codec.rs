//! Encodings shared by both backends: JSON columns, times as ms since the epoch, page
//! cursors, enum columns, and the judge settings' patch fields.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use callgrade_core::MatchedBy;
use chrono::{DateTime, Utc};

use crate::{Result, StoreError};

pub(crate) fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("plain data serialises")
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn time(ms: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("time out of range: {ms}")))
}

pub(crate) fn opt_time(ms: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    ms.map(time).transpose()
}

pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub(crate) fn encode_cursor(parts: &[i64]) -> String {
    let text: Vec<String> = parts.iter().map(i64::to_string).collect();
    URL_SAFE_NO_PAD.encode(text.join(":"))
}

pub(crate) fn decode_cursor(cursor: &str, len: usize) -> Result<Vec<i64>> {
    let invalid = || StoreError::InvalidInput("cursor is not one this server gave out".into());
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let parts: Vec<i64> = text
        .split(':')
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| invalid())?;
    if parts.len() != len {
        return Err(invalid());
    }
    Ok(parts)
}

pub(crate) fn parse_column<T>(text: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T> {
    parse(text).ok_or_else(|| StoreError::Corrupt(format!("unexpected value {text:?}")))
}

pub(crate) fn matched_by(text: Option<String>) -> Result<Option<MatchedBy>> {
    text.map(|t| parse_column(&t, MatchedBy::parse)).transpose()
}

/// A judge settings field to write: `None` keeps it, `Some("")` clears it. Gives (set, value).
pub(crate) fn judge_field(v: &Option<String>) -> (bool, Option<String>) {
    match v {
        None => (false, None),
        Some(s) if s.is_empty() => (true, None),
        Some(s) => (true, Some(s.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor(&[1_760_520_142_852, 42]);
        assert_eq!(decode_cursor(&c, 2).unwrap(), [1_760_520_142_852, 42]);
        assert!(decode_cursor(&c, 1).is_err());
        assert!(decode_cursor("not base64!", 1).is_err());
    }
}
