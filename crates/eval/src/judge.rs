//! LLM judges through any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama,
//! llama.cpp's server…): structured output, temperature 0, a timeout, retries on 429/5xx that
//! honour Retry-After, a per-project concurrency limit, and a cache keyed by (model, prompt) so a
//! re-evaluation does not pay twice.

use async_trait::async_trait;
use callgrade_core::{JudgeSettings, MetricDefinition};
use callgrade_core::{MetricSpec, OutputType};
use rand::Rng;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

use crate::templates::Template;

/// Where cached verdicts live (the store, in the server).
#[async_trait]
pub trait JudgeCache: Send + Sync {
    async fn get(&self, key: &str) -> Option<String>;
    async fn put(&self, key: &str, value: &str);
}

/// The server-wide judge settings, used where a project or metric sets none.
#[derive(Clone)]
pub struct JudgeDefaults {
    pub base_url: Option<String>,
    pub model: Option<String>,
    pub api_key: Option<String>,
    pub timeout: Duration,
    /// Retries after the first attempt, on 429, 5xx, timeouts and connection errors.
    pub max_retries: u32,
    /// The longest Retry-After we honour; longer waits fail the attempt (the job is retried).
    pub max_retry_after: Duration,
}

impl Default for JudgeDefaults {
    fn default() -> Self {
        Self {
            base_url: None,
            model: None,
            api_key: None,
            timeout: Duration::from_secs(60),
            max_retries: 3,
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for JudgeDefaults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JudgeDefaults")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A resolved endpoint for one metric.
#[derive(Clone)]
pub struct Endpoint {
    pub base_url: String,
    pub model: String,
    pub api_key: Option<String>,
}

pub struct JudgeRequest {
    pub system: String,
    pub prompt: String,
    pub schema: Value,
}

/// A judge's answer, with its provenance.
#[derive(Debug, Clone)]
pub struct JudgeAnswer {
    /// The JSON object the model returned.
    pub verdict: Value,
    pub model: String,
    pub usage: Value,
    pub prompt_hash: String,
    pub elapsed_ms: u64,
    pub cached: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// The endpoint is unreachable or overloaded after retries: try again later.
    #[error("{0}")]
    Transient(String),
    /// The endpoint answered, but not with a usable verdict: the metric's result is an error.
    #[error("{0}")]
    Invalid(String),
}

pub struct JudgeClient {
    http: reqwest::Client,
    pub defaults: JudgeDefaults,
    limits: Mutex<HashMap<i64, Arc<Semaphore>>>,
}

impl JudgeClient {
    pub fn new(defaults: JudgeDefaults) -> Self {
        let http = reqwest::Client::builder()
            .timeout(defaults.timeout)
            .build()
            .expect("a plain HTTP client builds");
        Self {
            http,
            defaults,
            limits: Mutex::new(HashMap::new()),
        }
    }

    /// The endpoint for a metric: its own config, else the project's, else the server's.
    pub fn endpoint(
        &self,
        project: &JudgeSettings,
        definition: &MetricDefinition,
    ) -> Result<Endpoint, String> {
        let (own_model, own_base_url) = match definition {
            MetricDefinition::LlmJudge {
                model, base_url, ..
            } => (model.clone(), base_url.clone()),
            _ => (None, None),
        };
        let base_url = own_base_url
            .or_else(|| project.base_url.clone())
            .or_else(|| self.defaults.base_url.clone());
        let model = own_model
            .or_else(|| project.model.clone())
            .or_else(|| self.defaults.model.clone());
        match (base_url, model) {
            (Some(base_url), Some(model)) => Ok(Endpoint {
                base_url,
                model,
                api_key: project.api_key.clone().or_else(|| self.defaults.api_key.clone()),
            }),
            _ => Err("skipped: no judge endpoint is configured (set a base URL and a model with `callgrade project judge`, PUT /api/v1/judge, or CALLGRADE_JUDGE_BASE_URL and CALLGRADE_JUDGE_MODEL)".into()),
        }
    }

    fn semaphore(&self, project_id: i64, permits: u32) -> Arc<Semaphore> {
        let mut limits = self
            .limits
            .lock()
            .expect("no panics while holding this lock");
        limits
            .entry(project_id)
            .or_insert_with(|| Arc::new(Semaphore::new(permits.max(1) as usize)))
            .clone()
    }

    /// Asks the judge, through the cache.
    pub async fn judge(
        &self,
        endpoint: &Endpoint,
        request: &JudgeRequest,
        project_id: i64,
        concurrency: u32,
        cache: &dyn JudgeCache,
    ) -> Result<JudgeAnswer, JudgeError> {
        let prompt_hash = hex::encode(Sha256::digest(request.prompt.as_bytes()));
        let key = hex::encode(Sha256::digest(
            json!([
                endpoint.model,
                request.system,
                request.prompt,
                request.schema
            ])
            .to_string()
            .as_bytes(),
        ));
        if let Some(hit) = cache.get(&key).await {
            if let Ok(stored) = serde_json::from_str::<Value>(&hit) {
                return Ok(JudgeAnswer {
                    verdict: stored["verdict"].clone(),
                    model: stored["model"]
                        .as_str()
                        .unwrap_or(&endpoint.model)
                        .to_owned(),
                    usage: stored["usage"].clone(),
                    prompt_hash,
                    elapsed_ms: 0,
                    cached: true,
                });
            }
        }
        let semaphore = self.semaphore(project_id, concurrency);
        let _permit = semaphore
            .acquire()
            .await
            .map_err(|_| JudgeError::Transient("the judge limiter closed".into()))?;
        let started = Instant::now();
        let body = self.call_with_retries(endpoint, request).await?;
        let verdict = parse_verdict(&body)?;
        let model = body["model"].as_str().unwrap_or(&endpoint.model).to_owned();
        let usage = body.get("usage").cloned().unwrap_or(Value::Null);
        let stored = json!({"verdict": verdict, "model": model, "usage": usage});
        cache.put(&key, &stored.to_string()).await;
        Ok(JudgeAnswer {
            verdict,
            model,
            usage,
            prompt_hash,
            elapsed_ms: started.elapsed().as_millis() as u64,
            cached: false,
        })
    }

    async fn call_with_retries(
        &self,
        endpoint: &Endpoint,
        request: &JudgeRequest,
    ) -> Result<Value, JudgeError> {
        let url = format!(
            "{}/chat/completions",
            endpoint.base_url.trim_end_matches('/')
        );
        let body = json!({
            "model": endpoint.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": request.system},
                {"role": "user", "content": request.prompt},
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "verdict", "strict": true, "schema": request.schema},
            },
        });
        let mut attempt = 0;
        loop {
            let mut call = self.http.post(&url).json(&body);
            if let Some(key) = &endpoint.api_key {
                call = call.bearer_auth(key);
            }
            let failure = match call.send().await {
                Ok(response) if response.status().is_success() => {
                    return response.json::<Value>().await.map_err(|e| {
                        JudgeError::Invalid(format!("the judge's answer is not JSON: {e}"))
                    });
                }
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
                        // Not worth retrying: the request itself is refused. The body may say
                        // why; it never holds our key.
                        let text = response.text().await.unwrap_or_default();
                        return Err(JudgeError::Invalid(format!(
                            "the judge endpoint refused the request: HTTP {status}: {}",
                            text.chars().take(300).collect::<String>()
                        )));
                    }
                    (format!("HTTP {status}"), retry_after)
                }
                Err(e) if e.is_timeout() => ("timed out".to_owned(), None),
                Err(e) => (format!("unreachable: {}", without_url(&e)), None),
            };
            if attempt >= self.defaults.max_retries {
                return Err(JudgeError::Transient(format!(
                    "{} after {} attempts",
                    failure.0,
                    attempt + 1
                )));
            }
            let wait = match failure.1 {
                Some(after) if after > self.defaults.max_retry_after => {
                    return Err(JudgeError::Transient(format!(
                        "{}; the endpoint asks to wait {} s",
                        failure.0,
                        after.as_secs()
                    )))
                }
                Some(after) => after,
                None => backoff(attempt),
            };
            tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, reason = %failure.0, "retrying the judge");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// 250 ms, 500 ms, 1 s… with up to 50% jitter.
pub fn backoff(attempt: u32) -> Duration {
    let base = 250u64.saturating_mul(1 << attempt.min(10));
    let jitter = rand::thread_rng().gen_range(0..=base / 2);
    Duration::from_millis(base + jitter)
}

/// A reqwest error's text without the URL (which could carry credentials).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "<judge endpoint>");
    }
    text
}

/// The verdict object from a chat completion: the message content, or a forced tool call's
/// arguments.
fn parse_verdict(body: &Value) -> Result<Value, JudgeError> {
    let message = &body["choices"][0]["message"];
    let text = message["content"]
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| message["tool_calls"][0]["function"]["arguments"].as_str())
        .ok_or_else(|| JudgeError::Invalid("malformed judge output: no message content".into()))?;
    let text = strip_fences(text);
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(JudgeError::Invalid(
            "malformed judge output: not a JSON object".into(),
        )),
        Err(e) => Err(JudgeError::Invalid(format!(
            "malformed judge output: {e}: {}",
            text.chars().take(200).collect::<String>()
        ))),
    }
}

/// Some models wrap JSON in ``` fences even when asked not to.
fn strip_fences(text: &str) -> &str {
    let t = text.trim();
    t.strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .and_then(|s| s.strip_suffix("```"))
        .map_or(t, str::trim)
}

/// The JSON schema of a metric's verdict.
pub fn verdict_schema(spec: &MetricSpec, template: Option<&Template>) -> Value {
    let verdict = match spec.output {
        OutputType::Binary => json!({"type": "boolean"}),
        OutputType::Numeric => json!({"type": "number"}),
        OutputType::Score => json!({"type": "integer", "minimum": 0, "maximum": 5}),
        OutputType::Enum => json!({"type": "string", "enum": enum_values(spec, template)}),
        OutputType::Text => json!({"type": "string"}),
    };
    let mut schema = json!({
        "type": "object",
        "properties": {"verdict": verdict, "explanation": {"type": "string"}},
        "required": ["verdict", "explanation"],
        "additionalProperties": false,
    });
    if template.is_some_and(|t| t.name == "instruction_following") {
        schema["properties"]["deviations"] = json!({
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "description": {"type": "string"},
                    "severity": {"type": "string", "enum": ["low", "medium", "high"]},
                },
                "required": ["description", "severity"],
                "additionalProperties": false,
            },
        });
        schema["required"] = json!(["verdict", "explanation", "deviations"]);
    }
    schema
}

fn enum_values(spec: &MetricSpec, template: Option<&Template>) -> Vec<String> {
    if spec.enum_values.is_empty() {
        template
            .map(|t| t.enum_values.iter().map(|s| (*s).to_owned()).collect())
            .unwrap_or_default()
    } else {
        spec.enum_values.clone()
    }
}

/// The verdict as the metric's type, or `None` when it does not fit.
pub fn check_verdict(spec: &MetricSpec, verdict: Value) -> Option<Value> {
    let template = spec
        .definition
        .template()
        .and_then(crate::templates::template);
    match spec.output {
        OutputType::Binary => verdict.as_bool().map(Value::Bool),
        OutputType::Numeric => verdict.as_f64().map(|n| json!(n)),
        OutputType::Score => verdict
            .as_f64()
            .filter(|n| (0.0..=5.0).contains(n))
            .map(|n| json!(n)),
        OutputType::Enum => verdict
            .as_str()
            .filter(|s| enum_values(spec, template).iter().any(|v| v == s))
            .map(|s| json!(s)),
        OutputType::Text => verdict.as_str().map(|s| json!(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_from_content_tool_calls_and_fences() {
        let content = json!({"choices": [{"message": {"content": "```json\n{\"verdict\": true, \"explanation\": \"ok\"}\n```"}}]});
        assert_eq!(parse_verdict(&content).unwrap()["verdict"], true);
        let tool = json!({"choices": [{"message": {"content": null, "tool_calls": [{"function": {"arguments": "{\"verdict\": 3}"}}]}}]});
        assert_eq!(parse_verdict(&tool).unwrap()["verdict"], 3);
        let bad = json!({"choices": [{"message": {"content": "I think yes"}}]});
        assert!(matches!(parse_verdict(&bad), Err(JudgeError::Invalid(_))));
    }

    #[test]
    fn backoff_grows() {
        assert!(
            backoff(0) >= Duration::from_millis(250) && backoff(0) <= Duration::from_millis(375)
        );
        assert!(backoff(3) >= Duration::from_millis(2000));
    }
}
