//! `{{variables}}` in judge prompts.

use callgrade_core::EvaluationInput;
use callgrade_core::{Message, Role};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::HashMap;

/// The values a prompt may name. Missing ones render empty and are listed with the result.
#[derive(Debug, Clone, Default)]
pub struct Variables(HashMap<String, String>);

impl Variables {
    pub fn of(input: &EvaluationInput, now: DateTime<Utc>) -> Self {
        let call = &input.call;
        let mut v = HashMap::new();
        let mut put = |k: &str, val: String| {
            v.insert(k.to_owned(), val);
        };
        put("transcript", transcript_text(&call.messages));
        put("call_end_reason", call.ended_reason.clone());
        put("date", call.started_at.format("%Y-%m-%d").to_string());
        put("timestamp", call.started_at.to_rfc3339());
        put("now", now.to_rfc3339());
        put("duration", format!("{:.1}", call.duration_seconds));
        put("call_id", call.call_id.clone());
        if let Some(n) = &call.from_phone_number {
            put("from_phone_number", n.clone());
        }
        if let Some(n) = &call.to_phone_number {
            put("to_phone_number", n.clone());
        }
        if let Some(meta) = call.metadata.as_object() {
            for (key, value) in meta {
                let text = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                put(&format!("metadata.{key}"), text);
            }
        }
        if let Some(agent) = &input.agent {
            put("agent.name", agent.name.clone());
            if let Some(d) = &agent.description {
                put("agent.description", d.clone());
            }
        }
        if let Some(s) = &input.scenario {
            put("scenario.name", s.name.clone());
            put("scenario.instructions", s.instructions.clone());
            put(
                "scenario.expected_outcome_prompt",
                s.expected_outcome_prompt.clone(),
            );
        }
        Self(v)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn insert(&mut self, name: &str, value: &str) {
        self.0.insert(name.to_owned(), value.to_owned());
    }
}

/// The transcript as a judge reads it: one line per row, speaker first.
pub fn transcript_text(messages: &[Message]) -> String {
    let mut out = String::new();
    for m in messages {
        let when = m
            .start_offset
            .map(|t| format!("[{t:.1}s] "))
            .unwrap_or_default();
        let line = match m.role {
            Role::Bot => format!("{when}Agent: {}", m.content),
            Role::User => format!("{when}User: {}", m.content),
            Role::System => format!("{when}System: {}", m.content),
            Role::FunctionCall => format!(
                "{when}[tool call] {}",
                m.data.as_ref().map_or(m.content.clone(), Value::to_string)
            ),
            Role::FunctionCallResult => format!(
                "{when}[tool result] {}",
                m.data.as_ref().map_or(m.content.clone(), Value::to_string)
            ),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Replaces each `{{ name }}`; returns the prompt and the names that had no value.
pub fn render_prompt(template: &str, vars: &Variables) -> (String, Vec<String>) {
    let mut out = String::with_capacity(template.len());
    let mut missing = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return (out, missing);
        };
        let name = after[..end].trim();
        match vars.get(name) {
            Some(value) => out.push_str(value),
            None => {
                if !missing.iter().any(|m| m == name) {
                    missing.push(name.to_owned());
                }
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    (out, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_lists_missing() {
        let mut vars = Variables::default();
        vars.insert("agent.name", "Alex");
        let (text, missing) = render_prompt(
            "Hi {{agent.name}}, {{ metadata.tier }}! {{agent.name}} {{unclosed",
            &vars,
        );
        assert_eq!(text, "Hi Alex, ! Alex {{unclosed");
        assert_eq!(missing, ["metadata.tier"]);
    }
}
