//! Any bytes through the webhook's parser and validator: no panic, and every error has a path.
#![no_main]

use callgrade_core::{parse_json, validate_batch, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(body) = parse_json(data) {
        if let Err(errors) = validate_batch(&body, &Limits::default()) {
            assert!(errors.iter().all(|e| !e.path.is_empty()));
        }
    }
});
