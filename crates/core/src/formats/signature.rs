//! How each vendor proves a webhook is its own, checked on the raw body with the project's
//! secret, in constant time. A refusal names the header that was missing or wrong and never
//! shows a secret or a digest.

use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::Vendor;

/// Retell signs with a timestamp and refuses signatures older than five minutes.
pub const RETELL_TOLERANCE: TimeDelta = TimeDelta::minutes(5);
/// ElevenLabs' own libraries accept a signature for 30 minutes.
pub const ELEVENLABS_TOLERANCE: TimeDelta = TimeDelta::minutes(30);

pub const VAPI_HEADER: &str = "x-vapi-secret";
pub const RETELL_HEADER: &str = "x-retell-signature";
pub const ELEVENLABS_HEADER: &str = "elevenlabs-signature";

/// Checks a request against `secret`. `header` gives a request header's value by its
/// lower-case name.
pub fn verify<'h>(
    vendor: Vendor,
    secret: &str,
    header: impl Fn(&str) -> Option<&'h str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), String> {
    match vendor {
        Vendor::Vapi => vapi(secret, header),
        Vendor::Retell => retell(secret, header(RETELL_HEADER), body, now),
        Vendor::ElevenLabs => elevenlabs(secret, header(ELEVENLABS_HEADER), body, now),
    }
}

/// Vapi sends the shared secret itself, in `X-Vapi-Secret` or as a bearer token.
fn vapi<'h>(secret: &str, header: impl Fn(&str) -> Option<&'h str>) -> Result<(), String> {
    let given = match header(VAPI_HEADER) {
        Some(v) => v,
        None => header("authorization")
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .ok_or("missing X-Vapi-Secret header (or Authorization: Bearer <secret>): set the server URL secret in Vapi to the one saved in callgrade")?,
    };
    if equal(given.trim().as_bytes(), secret.as_bytes()) {
        Ok(())
    } else {
        Err("X-Vapi-Secret does not match the Vapi secret saved for this project".into())
    }
}

/// `X-Retell-Signature: v=<epoch ms>,d=<hex HMAC-SHA256 of body followed by the timestamp>`,
/// keyed with the Retell API key.
fn retell(
    secret: &str,
    value: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), String> {
    let value = value.ok_or("missing X-Retell-Signature header: Retell signs every webhook; is this request from Retell?")?;
    let (mut stamp, mut digest) = (None, None);
    for part in value.split(',') {
        match part.trim().split_once('=') {
            Some(("v", v)) => stamp = Some(v),
            Some(("d", d)) => digest = Some(d),
            _ => {}
        }
    }
    let (Some(stamp), Some(digest)) = (stamp, digest) else {
        return Err("X-Retell-Signature must read v=<timestamp>,d=<digest>".into());
    };
    let ms: i64 = stamp
        .parse()
        .map_err(|_| "X-Retell-Signature's v= must be a timestamp in milliseconds")?;
    fresh(
        DateTime::from_timestamp_millis(ms),
        now,
        RETELL_TOLERANCE,
        "X-Retell-Signature",
    )?;
    let mut mac = mac(secret);
    mac.update(body);
    mac.update(stamp.as_bytes());
    check(
        mac,
        digest,
        "X-Retell-Signature",
        "the Retell API key saved for this project",
    )
}

/// `ElevenLabs-Signature: t=<epoch s>,v0=<hex HMAC-SHA256 of "t.body">`, keyed with the
/// webhook's secret.
fn elevenlabs(
    secret: &str,
    value: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), String> {
    let value = value.ok_or(
        "missing ElevenLabs-Signature header: enable HMAC authentication on the ElevenLabs webhook",
    )?;
    let (mut stamp, mut digests) = (None, Vec::new());
    for part in value.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => stamp = Some(t),
            Some(("v0", d)) => digests.push(d),
            _ => {}
        }
    }
    let (Some(stamp), false) = (stamp, digests.is_empty()) else {
        return Err("ElevenLabs-Signature must read t=<timestamp>,v0=<digest>".into());
    };
    let secs: i64 = stamp
        .parse()
        .map_err(|_| "ElevenLabs-Signature's t= must be a timestamp in seconds")?;
    fresh(
        DateTime::from_timestamp(secs, 0),
        now,
        ELEVENLABS_TOLERANCE,
        "ElevenLabs-Signature",
    )?;
    let mut mac = mac(secret);
    mac.update(stamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    // A rotated secret may sign with both: any one matching is enough.
    let expected = mac.finalize().into_bytes();
    if digests
        .iter()
        .any(|d| hex::decode(d).is_ok_and(|d| equal(&d, &expected)))
    {
        Ok(())
    } else {
        Err("ElevenLabs-Signature does not match the body signed with the ElevenLabs webhook secret saved for this project".into())
    }
}

fn mac(secret: &str) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length")
}

fn check(mac: Hmac<Sha256>, digest: &str, header: &str, key: &str) -> Result<(), String> {
    let digest =
        hex::decode(digest).map_err(|_| format!("{header}'s digest must be hexadecimal"))?;
    mac.verify_slice(&digest)
        .map_err(|_| format!("{header} does not match the body signed with {key}"))
}

fn fresh(
    at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    tolerance: TimeDelta,
    header: &str,
) -> Result<(), String> {
    let at = at.ok_or_else(|| format!("{header}'s timestamp is out of range"))?;
    if (now - at).abs() > tolerance {
        return Err(format!(
            "{header} was made at {} and is outside the {}-minute window around the server's time (a replay, or a clock that is off)",
            at.to_rfc3339(),
            tolerance.num_minutes()
        ));
    }
    Ok(())
}

/// Compares in constant time (`subtle`, as the admin token is compared).
fn equal(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

/// A valid signature header for `body`, as the vendor would send it (tests and benches).
pub fn sign(
    vendor: Vendor,
    secret: &str,
    body: &[u8],
    at: DateTime<Utc>,
) -> (&'static str, String) {
    match vendor {
        Vendor::Vapi => (VAPI_HEADER, secret.to_owned()),
        Vendor::Retell => {
            let stamp = at.timestamp_millis().to_string();
            let mut mac = mac(secret);
            mac.update(body);
            mac.update(stamp.as_bytes());
            let d = hex::encode(mac.finalize().into_bytes());
            (RETELL_HEADER, format!("v={stamp},d={d}"))
        }
        Vendor::ElevenLabs => {
            let stamp = at.timestamp().to_string();
            let mut mac = mac(secret);
            mac.update(stamp.as_bytes());
            mac.update(b".");
            mac.update(body);
            let d = hex::encode(mac.finalize().into_bytes());
            (ELEVENLABS_HEADER, format!("t={stamp},v0={d}"))
        }
    }
}
