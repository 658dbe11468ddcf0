//! A small client for OpenAI-compatible chat completions with tools, shared by the caller's
//! LLM and `openai_chat` agents: a timeout per request, and bounded retries on 429, 5xx,
//! timeouts and connection errors that honour a short Retry-After.

use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

/// Where an LLM is.
#[derive(Clone)]
pub struct LlmEndpoint {
    /// e.g. `https://api.openai.com/v1`; `/chat/completions` is appended.
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
}

impl std::fmt::Debug for LlmEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmEndpoint")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// Parsed from the model's JSON string; `{}` when it sent none.
    pub arguments: Value,
}

#[derive(Debug, Clone, Default)]
pub struct Completion {
    pub content: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    /// `usage.total_tokens`, or 0 when the endpoint does not say.
    pub tokens: u64,
}

/// Retries after the first attempt.
const RETRIES: u32 = 2;
/// The most of one answer (an LLM's or an agent's turn) read; a longer one fails the turn
/// rather than the server's memory.
pub(crate) const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// A response's body as text, read up to [`MAX_ANSWER_BYTES`].
pub(crate) async fn read_capped(response: reqwest::Response) -> Result<String, String> {
    let body = read_bytes_capped(response, MAX_ANSWER_BYTES).await?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// A response's body, read up to `cap` bytes; a longer one is an error, not a large buffer.
pub(crate) async fn read_bytes_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the answer: {}", root_cause(&e)))?
    {
        if body.len() + chunk.len() > cap {
            return Err(format!("the answer is over {} KiB", cap / 1024));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The longest Retry-After honoured; a longer one fails the request.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

#[derive(Clone, Default)]
pub struct ChatClient {
    http: reqwest::Client,
}

impl ChatClient {
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared HTTP client (connection pool) for the agents' HTTP too.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub async fn complete(
        &self,
        endpoint: &LlmEndpoint,
        messages: &[Value],
        tools: &[Value],
    ) -> Result<Completion, String> {
        let url = format!(
            "{}/chat/completions",
            endpoint.base_url.trim_end_matches('/')
        );
        let mut body = json!({"model": endpoint.model, "messages": messages});
        if !tools.is_empty() {
            body["tools"] = json!(tools);
        }
        let mut attempt = 0;
        loop {
            let mut request = self.http.post(&url).timeout(endpoint.timeout).json(&body);
            if let Some(key) = &endpoint.api_key {
                request = request.bearer_auth(key);
            }
            let (problem, wait) = match request.send().await {
                Ok(r) if r.status().is_success() => {
                    let text = r
                        .text()
                        .await
                        .map_err(|e| format!("reading the answer: {e}"))?;
                    return parse_completion(&text);
                }
                Ok(r) => {
                    let status = r.status();
                    let retry_after = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let body = read_capped(r).await.unwrap_or_default();
                    let problem = format!("HTTP {status}: {}", excerpt(&body));
                    if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
                        return Err(problem);
                    }
                    (problem, retry_after)
                }
                Err(e) if e.is_timeout() => (
                    format!("no answer within {} s", endpoint.timeout.as_secs()),
                    None,
                ),
                Err(e) => (format!("could not reach {url}: {}", root_cause(&e)), None),
            };
            if attempt >= RETRIES {
                return Err(format!("{problem} (after {} attempts)", attempt + 1));
            }
            let wait = wait.unwrap_or(Duration::from_millis(250 << attempt));
            if wait > MAX_RETRY_AFTER {
                return Err(format!(
                    "{problem}; it asked to retry after {} s",
                    wait.as_secs()
                ));
            }
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// The first choice's message: its text and tool calls.
fn parse_completion(text: &str) -> Result<Completion, String> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| format!("the answer is not JSON ({e}): {}", excerpt(text)))?;
    let Some(message) = value.pointer("/choices/0/message") else {
        return Err(format!(
            "the answer has no choices[0].message: {}",
            excerpt(text)
        ));
    };
    let mut tool_calls = Vec::new();
    for (i, call) in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = call.pointer("/function/name").and_then(Value::as_str);
        let Some(name) = name else {
            return Err(format!("tool_calls[{i}] has no function.name"));
        };
        let arguments = match call.pointer("/function/arguments") {
            Some(Value::String(s)) if !s.trim().is_empty() => serde_json::from_str(s)
                .map_err(|e| format!("tool_calls[{i}].function.arguments is not JSON: {e}"))?,
            Some(Value::Object(o)) => Value::Object(o.clone()),
            _ => json!({}),
        };
        tool_calls.push(ToolCall {
            id: call
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("call_{i}"), str::to_owned),
            name: name.to_owned(),
            arguments,
        });
    }
    Ok(Completion {
        content: message
            .get("content")
            .and_then(Value::as_str)
            .map(str::to_owned),
        tool_calls,
        tokens: value
            .pointer("/usage/total_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    })
}

/// At most 200 characters of a body, for an error message.
pub(crate) fn excerpt(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &body[..i]),
        None if body.is_empty() => "(empty body)".into(),
        None => body.to_owned(),
    }
}

/// The innermost error of a chain (reqwest's outer messages say only "error sending request").
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut source = e;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_are_read_with_their_tool_calls() {
        let c = parse_completion(
            r#"{"choices":[{"message":{"content":null,"tool_calls":[
                {"id":"c1","type":"function","function":{"name":"lookup","arguments":"{\"order\":\"A1\"}"}}]}}],
               "usage":{"total_tokens":42}}"#,
        )
        .unwrap();
        assert_eq!(c.tokens, 42);
        assert_eq!(c.tool_calls[0].arguments, json!({"order": "A1"}));
        assert!(parse_completion(r#"{"choices":[]}"#)
            .unwrap_err()
            .contains("choices[0].message"));
        assert!(parse_completion("<html>").unwrap_err().contains("not JSON"));
    }
}
