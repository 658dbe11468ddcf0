//! The agent's side of a conversation, one session per run, through its connector.

use callgrade_core::{answer_tool_call, Connector, HttpTurn, Message, OpenaiChat, Role};
use serde_json::{json, Value};
use std::time::Duration;

use crate::llm::{excerpt, read_capped, root_cause, ChatClient, LlmEndpoint};
use crate::{Plan, Step, Transcript};

/// Retries of one `http_turn` request after the first attempt, on 5xx, timeouts and
/// connection errors.
const HTTP_RETRIES: u32 = 2;
/// Tool rounds an `openai_chat` agent may take within one turn before it must answer.
const TOOL_ROUNDS: usize = 8;
/// `play` hands a media stream to the voice loop before any session starts.
const VOICE: &str = "a media_stream agent is played by the voice loop, not a turn session";

pub(crate) struct AgentSession<'a> {
    client: &'a ChatClient,
    plan: &'a Plan<'a>,
    session_id: String,
}

impl<'a> AgentSession<'a> {
    pub(crate) fn new(client: &'a ChatClient, plan: &'a Plan<'a>, session_id: String) -> Self {
        Self {
            client,
            plan,
            session_id,
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.plan.connector.timeout_seconds()))
    }

    /// The call connects: an `http_turn` agent may greet; an `openai_chat` agent waits for
    /// the caller.
    pub(crate) async fn start(&mut self, t: &mut Transcript) -> Step {
        match self.plan.connector {
            Connector::HttpTurn(c) => self.http_turn(c, "start", t).await,
            Connector::OpenaiChat(_) => Step::Go,
            Connector::MediaStream(_) => Step::Fail(VOICE.into()),
        }
    }

    pub(crate) async fn reply(&mut self, t: &mut Transcript) -> Step {
        match self.plan.connector {
            Connector::HttpTurn(c) => self.http_turn(c, "message", t).await,
            Connector::OpenaiChat(c) => self.openai_chat(c, t).await,
            Connector::MediaStream(_) => Step::Fail(VOICE.into()),
        }
    }

    /// Tells an `http_turn` agent the call is over; its answer does not matter.
    pub(crate) async fn end(&mut self, t: &Transcript) {
        if let Connector::HttpTurn(c) = self.plan.connector {
            let body = self.turn_body("end", &t.messages);
            if let Err(e) = self.post(c, &body).await {
                tracing::info!(run_id = self.plan.run_id, error = %e, "the agent did not take the end of the call");
            }
        }
    }

    fn turn_body(&self, event: &str, messages: &[Message]) -> Value {
        let scenario = self.plan.scenario;
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                let mut v = json!({"role": m.role.as_str(), "content": m.content});
                if let Some(data) = &m.data {
                    v["data"] = data.clone();
                }
                v
            })
            .collect();
        json!({
            "session_id": self.session_id,
            "run_id": self.plan.run_id,
            "scenario": {"id": scenario.id, "name": scenario.name},
            "event": event,
            "messages": messages,
        })
    }

    /// One request with bounded retries; the reply's body, or the exact reason it failed.
    async fn post(&self, c: &HttpTurn, body: &Value) -> Result<String, String> {
        let mut attempt = 0;
        loop {
            let mut request = self
                .client
                .http()
                .post(&c.url)
                .timeout(self.timeout())
                .json(body);
            for (name, value) in &c.headers {
                request = request.header(name, value);
            }
            let problem = match request.send().await {
                Ok(r) if r.status().is_success() => {
                    return read_capped(r)
                        .await
                        .map_err(|e| format!("the agent's reply: {e}"));
                }
                Ok(r) => {
                    let status = r.status();
                    let text = read_capped(r).await.unwrap_or_default();
                    let problem = format!("the agent answered HTTP {status}: {}", excerpt(&text));
                    if !status.is_server_error() {
                        return Err(problem);
                    }
                    problem
                }
                Err(e) if e.is_timeout() => format!(
                    "the agent did not answer within {} s",
                    self.timeout().as_secs()
                ),
                Err(e) => format!("could not reach the agent at {}: {}", c.url, root_cause(&e)),
            };
            if attempt >= HTTP_RETRIES {
                return Err(format!("{problem} (after {} attempts)", attempt + 1));
            }
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            attempt += 1;
        }
    }

    async fn http_turn(&mut self, c: &HttpTurn, event: &str, t: &mut Transcript) -> Step {
        let body = self.turn_body(event, &t.messages);
        t.usage.agent_requests += 1;
        let text = match self.post(c, &body).await {
            Ok(text) => text,
            Err(e) => return Step::Fail(format!("{e} (the {event:?} turn)")),
        };
        let answered = t.now();
        let (messages, end_call) = match parse_turn_reply(&text) {
            Ok(reply) => reply,
            Err(e) => {
                return Step::Fail(format!(
                    "the agent's reply to the {event:?} turn is malformed: {e}"
                ))
            }
        };
        for (role, content, data) in messages {
            t.push(role, content, data, answered, answered);
        }
        if end_call {
            Step::Stop(callgrade_core::StopReason::AgentEnded)
        } else {
            Step::Go
        }
    }

    async fn openai_chat(&mut self, c: &OpenaiChat, t: &mut Transcript) -> Step {
        let endpoint = LlmEndpoint {
            base_url: c.base_url.clone(),
            model: c.model.clone(),
            api_key: c
                .api_key
                .clone()
                .or_else(|| c.api_key_env.as_ref().and_then(|v| std::env::var(v).ok())),
            timeout: self.timeout(),
        };
        let system = c
            .system_prompt
            .clone()
            .or_else(|| self.plan.agent.description.clone())
            .unwrap_or_else(|| "You are a company's helpful phone agent.".into());
        let scenario = self.plan.scenario;
        for _ in 0..TOOL_ROUNDS {
            let messages = chat_messages(&system, &t.messages);
            t.usage.agent_requests += 1;
            let completion = match self.client.complete(&endpoint, &messages, &c.tools).await {
                Ok(c) => c,
                Err(e) => return Step::Fail(format!("the agent's LLM failed: {e}")),
            };
            t.usage.agent_tokens += completion.tokens;
            let at = t.now();
            if let Some(content) = completion.content.filter(|c| !c.trim().is_empty()) {
                t.push(Role::Bot, content.trim().to_owned(), None, at, at);
            }
            if completion.tool_calls.is_empty() {
                return Step::Go;
            }
            for call in completion.tool_calls {
                let data = json!({"id": call.id, "name": call.name, "arguments": call.arguments});
                t.push(Role::FunctionCall, String::new(), Some(data), at, at);
                if call.name == "end_call" {
                    return Step::Stop(callgrade_core::StopReason::AgentEnded);
                }
                let (result, _) = answer_tool_call(
                    &scenario.tool_mocks,
                    scenario.unmatched_tool_result.as_ref(),
                    &call.name,
                    &call.arguments,
                );
                let data = json!({"id": call.id, "name": call.name, "result": result});
                let done = t.now();
                t.push(
                    Role::FunctionCallResult,
                    String::new(),
                    Some(data),
                    done,
                    done,
                );
            }
            if t.usage.tokens() >= self.plan.token_budget {
                return Step::Stop(callgrade_core::StopReason::TokenBudget);
            }
        }
        Step::Fail(format!(
            "the agent's LLM called tools {TOOL_ROUNDS} times in one turn without answering the caller"
        ))
    }
}

/// What an agent said in one turn: (role, content, data) rows.
type Said = Vec<(Role, String, Option<Value>)>;

/// An `http_turn` reply: `{"messages": [{role, content, data?}…], "end_call": bool}`.
fn parse_turn_reply(text: &str) -> Result<(Said, bool), String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON ({e}): {}", excerpt(text)))?;
    let Some(list) = value.get("messages").and_then(Value::as_array) else {
        return Err(format!(
            "expected {{\"messages\": [...], \"end_call\": bool}}, got {}",
            excerpt(text)
        ));
    };
    let end_call = match value.get("end_call") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(format!("end_call must be a boolean, got {other}")),
    };
    let mut messages = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let role = match m.get("role").and_then(Value::as_str) {
            Some("bot") => Role::Bot,
            Some("function_call") => Role::FunctionCall,
            Some("function_call_result") => Role::FunctionCallResult,
            other => {
                return Err(format!(
                    "messages[{i}].role must be \"bot\", \"function_call\" or \"function_call_result\", got {}",
                    other.map_or("nothing".into(), |r| format!("{r:?}"))
                ))
            }
        };
        let Some(content) = m.get("content").and_then(Value::as_str) else {
            return Err(format!("messages[{i}].content must be a string"));
        };
        messages.push((role, content.to_owned(), m.get("data").cloned()));
    }
    Ok((messages, end_call))
}

/// The conversation as the agent's LLM sees it: the caller is its user, tool rows its own.
fn chat_messages(system: &str, transcript: &[Message]) -> Vec<Value> {
    let mut out = vec![json!({"role": "system", "content": system})];
    for m in transcript {
        let data = m.data.as_ref();
        let field = |k: &str| data.and_then(|d| d.get(k)).cloned().unwrap_or(Value::Null);
        match m.role {
            Role::User => out.push(json!({"role": "user", "content": m.content})),
            Role::Bot => out.push(json!({"role": "assistant", "content": m.content})),
            Role::FunctionCall => out.push(json!({"role": "assistant", "content": null,
                "tool_calls": [{"id": field("id"), "type": "function", "function": {
                    "name": field("name"), "arguments": field("arguments").to_string()}}]})),
            Role::FunctionCallResult => out.push(json!({"role": "tool",
                "tool_call_id": field("id"), "content": field("result").to_string()})),
            Role::System => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_replies_are_checked() {
        let (messages, end) = parse_turn_reply(
            r#"{"messages":[{"role":"bot","content":"Hi"},{"role":"function_call","content":"","data":{"name":"f"}}],"end_call":true}"#,
        )
        .unwrap();
        assert_eq!((messages.len(), end), (2, true));
        let bad = parse_turn_reply(r#"{"messages":[{"role":"user","content":"x"}]}"#).unwrap_err();
        assert!(bad.starts_with("messages[0].role must be"), "{bad}");
        assert!(parse_turn_reply(r#"{"reply":"x"}"#)
            .unwrap_err()
            .contains("expected"));
        assert!(parse_turn_reply(r#"{"messages":[],"end_call":"yes"}"#).is_err());
    }
}
