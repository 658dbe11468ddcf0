//! Any bytes through the vendor formats' parsers (the observe endpoint, Vapi, Retell,
//! ElevenLabs) and the signature checks: no panic, and every error has a path. The first byte
//! picks the format; the rest is the body.
#![no_main]

use callgrade_core::{parse_json, parse_observe, parse_vendor, signature, Limits, Vendor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let now = chrono::DateTime::from_timestamp(1_796_032_800, 0).unwrap();
    let limits = Limits::default();
    if let Ok(json) = parse_json(body) {
        let errors = match pick % 4 {
            0 => parse_observe(json, now, &limits).err(),
            n => parse_vendor(Vendor::ALL[usize::from(n - 1)], json, None, &limits).err(),
        };
        assert!(errors.iter().flatten().all(|e| !e.path.is_empty()));
    }
    // The body's first line as a signature header, the rest as what it signs.
    let text = String::from_utf8_lossy(body);
    let (header, signed) = text.split_once('\n').unwrap_or((&text, ""));
    for vendor in Vendor::ALL {
        let _ = signature::verify(vendor, "secret", |_| Some(header), signed.as_bytes(), now);
    }
});
