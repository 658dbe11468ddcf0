//! What a body costs before it is parsed. A JSON tree takes far more memory than its text (a
//! 10 MB body of tiny arrays became ~900 MB), so the number of values is counted on the bytes,
//! in one pass without allocating, and a body over the limit is refused before any tree exists.

use serde_json::Value;

/// An upper bound on the number of JSON values in `bytes`: every value but the first is an
/// element of a container, which starts with `[`/`{` or follows a `,`. Brackets and commas
/// inside strings are not counted. Malformed input gets some count; the parser reports it.
pub fn json_values(bytes: &[u8]) -> usize {
    let (mut count, mut in_string, mut escaped) = (1usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'[' | b'{' | b',' => count += 1,
                _ => {}
            }
        }
    }
    count
}

/// The length of `value` written as compact JSON, without writing it anywhere.
pub fn json_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a Value to an infallible writer cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_values_not_text() {
        assert_eq!(json_values(b"1"), 1);
        assert_eq!(
            json_values(b"[]"),
            2,
            "an upper bound: the empty array counts one more"
        );
        assert_eq!(json_values(br#"{"a": [1, 2, {"b": "x,[{"}]}"#), 6);
        assert_eq!(json_values(br#"["a\"[", "\\", ","]"#), 4);
        let tiny_arrays = format!("[{}]", vec!["[]"; 1000].join(","));
        assert!(json_values(tiny_arrays.as_bytes()) > 1000);
    }

    #[test]
    fn the_count_bounds_the_values_a_parser_builds() {
        fn values(v: &Value) -> usize {
            1 + match v {
                Value::Array(a) => a.iter().map(values).sum(),
                Value::Object(o) => o.values().map(values).sum(),
                _ => 0,
            }
        }
        for text in [
            r#"{"agent_id": 1, "calls": [{"id": "a", "messages": [{"role": "bot", "content": "hi, [there]"}]}]}"#,
            r#"[[[]], {}, [1, [2, [3]]], "\"", null]"#,
        ] {
            let parsed: Value = serde_json::from_str(text).unwrap();
            assert!(json_values(text.as_bytes()) >= values(&parsed), "{text}");
        }
        assert_eq!(json_len(&json!({"a": [1, "x"]})), r#"{"a":[1,"x"]}"#.len());
    }
}
