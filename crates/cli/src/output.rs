use serde::Serialize;
use std::process::ExitCode;

/// Prints either human text or exactly one JSON object on stdout.
#[derive(Clone, Copy)]
pub struct Output {
    json: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Prints `value` as JSON, or `text` for humans.
    pub fn print(self, value: &impl Serialize, text: impl FnOnce() -> String) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string(value).expect("plain data serialises")
            );
        } else {
            let text = text();
            if !text.is_empty() {
                println!("{text}");
            }
        }
    }

    /// A progress line for humans: stdout in text mode, stderr in JSON mode.
    pub fn progress(self, text: &str) {
        if self.json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }

    /// Reports a failure (as `{"error": …}` in JSON mode) and returns exit code 1.
    pub fn fail(self, message: &str) -> ExitCode {
        if self.json {
            println!("{}", serde_json::json!({ "error": message }));
        } else {
            eprintln!("error: {message}");
        }
        ExitCode::FAILURE
    }
}
