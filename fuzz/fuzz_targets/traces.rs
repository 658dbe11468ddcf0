//! Any bytes through the OTLP trace reader, as protobuf and as JSON, and whatever it accepts
//! through the per-turn breakdown: no panic, every error has a path, every span it keeps has
//! well-formed ids and ends no earlier than it starts.
#![no_main]

use callgrade_core::{breakdown, read_traces, OtlpEncoding, TraceLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = TraceLimits::default();
    for encoding in [OtlpEncoding::Protobuf, OtlpEncoding::Json] {
        match read_traces(data, encoding, &limits) {
            Ok(read) => {
                for span in &read.spans {
                    assert_eq!(span.trace_id.len(), 32);
                    assert_eq!(span.span_id.len(), 16);
                    assert!(span.end_unix_nano >= span.start_unix_nano);
                }
                let _ = breakdown(&read.spans);
            }
            Err(errors) => assert!(errors.iter().all(|e| !e.path.is_empty())),
        }
    }
});
