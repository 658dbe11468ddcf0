//! Generated transcripts for the benches: the same seed gives the same calls.

use callgrade_core::{Message, Role};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

/// A realistic call: alternating turns with response gaps, some interruptions and backchannels,
/// tool calls with results (some failing). Returns (duration, messages).
pub fn generated_messages(rng: &mut StdRng, count: usize) -> (f64, Vec<Message>) {
    const WORDS: &[&str] = &[
        "account", "billing", "charge", "refund", "please", "order", "delivery", "today", "thanks",
        "could", "you", "check", "my", "the", "number", "is", "and", "when", "will", "it",
        "arrive", "sure", "let", "me", "look", "that", "up", "for",
    ];
    let sentence = |rng: &mut StdRng| -> String {
        let n = rng.gen_range(3..25);
        (0..n)
            .map(|_| WORDS[rng.gen_range(0..WORDS.len())])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut t = rng.gen_range(0.2..1.5);
    let mut messages = Vec::with_capacity(count);
    let mut role = Role::Bot;
    while messages.len() < count {
        if role == Role::Bot && rng.gen_bool(0.1) && messages.len() + 2 <= count {
            let id = format!("call_{}", messages.len());
            let ok = rng.gen_bool(0.9);
            messages.push(tool(
                Role::FunctionCall,
                json!({"id": id, "name": "lookup", "arguments": {}}),
                t,
            ));
            let result = if ok {
                json!({"status": "ok"})
            } else {
                json!({"error": "timeout"})
            };
            messages.push(tool(
                Role::FunctionCallResult,
                json!({"id": id, "name": "lookup", "result": result}),
                t + 0.3,
            ));
            t += 0.4;
            continue;
        }
        let content = if role == Role::User && rng.gen_bool(0.05) {
            "uh-huh".to_owned()
        } else {
            sentence(rng)
        };
        let words = content.split(' ').count() as f64;
        let length = words / 2.6; // about 156 words per minute
                                  // Mostly a pause; sometimes the next speaker starts early (an interruption).
        let start = if rng.gen_bool(0.08) {
            (t - rng.gen_range(0.1..0.8)).max(0.0)
        } else {
            t + rng.gen_range(0.2..2.5)
        };
        messages.push(Message {
            role,
            content,
            start_offset: Some(start),
            end_offset: Some(start + length),
            start_at_ms: None,
            end_at_ms: None,
            data: None,
        });
        t = start + length;
        role = if role == Role::Bot {
            Role::User
        } else {
            Role::Bot
        };
    }
    (t + 1.0, messages)
}

fn tool(role: Role, data: Value, at: f64) -> Message {
    Message {
        role,
        content: String::new(),
        start_offset: Some(at),
        end_offset: Some(at),
        start_at_ms: None,
        end_at_ms: None,
        data: Some(data),
    }
}
