//! Date-times and message times: parsing any string, normalising any number, never panics.
#![no_main]

use callgrade_core::{parse_datetime, MessageTimes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_datetime(text);
    }
    if data.len() >= 16 {
        let value = f64::from_le_bytes(data[..8].try_into().unwrap());
        let start = i64::from_le_bytes(data[8..16].try_into().unwrap());
        if value.is_finite() && value >= 0.0 {
            let _ = MessageTimes::of(value).normalise(value, start);
        }
    }
});
