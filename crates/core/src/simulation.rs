//! Simulated callers, as pure values: how callgrade reaches an agent (its [`Connector`]), who
//! the caller is ([`Persona`]), what the agent's tools answer in a test ([`ToolMock`]), when a
//! conversation stops ([`StopReason`]) and the caller's system prompt. The I/O that plays a
//! conversation is in `callgrade-sim`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use crate::FieldError;

/// What a write-only secret reads back as.
pub const REDACTED: &str = "***";

/// How callgrade reaches an agent to play a caller against it. Stored whole (secrets
/// included); served only as a [`ConnectorView`]; `Debug` shows the view, so a log line never
/// carries a secret.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Connector {
    /// One HTTP request per turn, the whole conversation in each (docs/simulation.md).
    HttpTurn(HttpTurn),
    /// An LLM behind an OpenAI-compatible chat-completions endpoint.
    OpenaiChat(OpenaiChat),
    /// A voice agent reached as telephony reaches it: Twilio's Media Streams protocol over a
    /// WebSocket, callgrade playing the phone line (docs/simulation.md, "Voice").
    MediaStream(MediaStream),
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpTurn {
    pub url: String,
    /// Sent with every request; values are write-only.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How long one turn may take before it is retried (default 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenaiChat {
    pub base_url: String,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Read the key from this environment variable of the server instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// The agent's system prompt (default: the agent's description).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// OpenAI tool definitions the agent may call; answered from the scenario's tool mocks.
    #[serde(default)]
    pub tools: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaStream {
    /// A `ws://` or `wss://` URL.
    pub url: String,
    /// Sent with the WebSocket handshake; values are write-only.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Passed in the `start` event's `customParameters`, beside the `run_id` and
    /// `scenario_id` callgrade adds.
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, String>,
    /// How long the agent may stay silent after the caller spoke before the run fails
    /// (default 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    /// Silence after the agent's speech that ends its turn, in ms (default 800).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_of_turn_ms: Option<u32>,
}

impl MediaStream {
    pub const DEFAULT_END_OF_TURN_MS: u32 = 800;

    pub fn end_of_turn_ms(&self) -> u32 {
        self.end_of_turn_ms.unwrap_or(Self::DEFAULT_END_OF_TURN_MS)
    }
}

/// The JSON Schema of a connector as submitted: what [`Connector::parse`] accepts, kind by
/// kind. A header sent as `"***"` keeps its stored value, so only a replacement (`keeps`) may
/// send one.
#[cfg(feature = "openapi")]
pub fn connector_schema(keeps: bool) -> utoipa::openapi::schema::Schema {
    serde_json::from_value(connector_schema_json(keeps)).expect("the connector schema is a schema")
}

#[cfg(feature = "openapi")]
fn connector_schema_json(keeps: bool) -> Value {
    // Tab is allowed, other control characters are not; a new connector has no stored value
    // for "***" to keep.
    let header = match keeps {
        true => {
            serde_json::json!({"type": "string", "pattern": "^[^\\x00-\\x08\\x0a-\\x1f\\x7f]*$"})
        }
        false => serde_json::json!({"type": "string",
            "pattern": "^(?!\\*\\*\\*$)[^\\x00-\\x08\\x0a-\\x1f\\x7f]*$"}),
    };
    let url = serde_json::json!({"type": "string", "pattern": "^https?://[^/\\s][^\\s]*$"});
    let timeout = serde_json::json!({"type": ["integer", "null"], "minimum": 1, "maximum": 600});
    let schema = serde_json::json!({
        "description": "How callgrade calls the agent; secrets read back as \"***\", which keeps them when sent back",
        "oneOf": [
            {"type": "object", "additionalProperties": false, "required": ["kind", "url"],
             "properties": {
                "kind": {"type": "string", "enum": ["http_turn"]},
                "url": url,
                "headers": {"type": "object", "propertyNames": {"type": "string", "pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"},
                            "additionalProperties": header},
                "timeout_seconds": timeout}},
            {"type": "object", "additionalProperties": false, "required": ["kind", "base_url", "model"],
             "properties": {
                "kind": {"type": "string", "enum": ["openai_chat"]},
                "base_url": url,
                "model": {"type": "string", "pattern": "\\S"},
                "api_key": {"type": ["string", "null"]},
                "api_key_env": {"type": ["string", "null"], "pattern": "^[A-Za-z0-9_]+$"},
                "system_prompt": {"type": ["string", "null"]},
                "tools": {"type": "array", "items": {"type": "object", "required": ["type", "function"],
                    "properties": {"type": {"type": "string", "enum": ["function"]},
                                   "function": {"type": "object", "required": ["name"],
                                                "properties": {"name": {"type": "string", "minLength": 1}}}}}},
                "timeout_seconds": timeout}},
            {"type": "object", "additionalProperties": false, "required": ["kind", "url"],
             "properties": {
                "kind": {"type": "string", "enum": ["media_stream"]},
                "url": {"type": "string", "pattern": "^wss?://[^/\\s][^\\s]*$"},
                "headers": {"type": "object", "propertyNames": {"type": "string", "pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"},
                            "additionalProperties": header},
                "custom_parameters": {"type": "object",
                    "propertyNames": {"type": "string", "minLength": 1, "maxLength": 256},
                    "additionalProperties": {"type": "string", "maxLength": 1024}},
                "timeout_seconds": timeout,
                "end_of_turn_ms": {"type": ["integer", "null"], "minimum": 200, "maximum": 10000}}}
        ]
    });
    schema
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.view().fmt(f)
    }
}

impl std::fmt::Debug for HttpTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Connector::HttpTurn(self.clone()).view().fmt(f)
    }
}

impl std::fmt::Debug for OpenaiChat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Connector::OpenaiChat(self.clone()).view().fmt(f)
    }
}

impl std::fmt::Debug for MediaStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Connector::MediaStream(self.clone()).view().fmt(f)
    }
}

/// A connector as the API shows it: every secret replaced by `"***"`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectorView {
    /// `http_turn`, `openai_chat` or `media_stream`.
    pub kind: String,
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub fields: Map<String, Value>,
}

impl Connector {
    pub const KINDS: [&'static str; 3] = ["http_turn", "openai_chat", "media_stream"];

    pub fn kind(&self) -> &'static str {
        match self {
            Self::HttpTurn(_) => "http_turn",
            Self::OpenaiChat(_) => "openai_chat",
            Self::MediaStream(_) => "media_stream",
        }
    }

    /// The per-turn timeout, in seconds.
    pub fn timeout_seconds(&self) -> u32 {
        match self {
            Self::HttpTurn(c) => c.timeout_seconds,
            Self::OpenaiChat(c) => c.timeout_seconds,
            Self::MediaStream(c) => c.timeout_seconds,
        }
        .unwrap_or(30)
    }

    /// Whether the conversation is spoken (a voice call) rather than written.
    pub fn is_voice(&self) -> bool {
        matches!(self, Self::MediaStream(_))
    }

    /// The connector with its secrets redacted.
    pub fn view(&self) -> ConnectorView {
        let mut redacted = self.clone();
        match &mut redacted {
            Self::HttpTurn(c) => c.headers.values_mut().for_each(|v| *v = REDACTED.into()),
            Self::MediaStream(c) => c.headers.values_mut().for_each(|v| *v = REDACTED.into()),
            Self::OpenaiChat(c) => {
                if c.api_key.is_some() {
                    c.api_key = Some(REDACTED.into());
                }
            }
        }
        let Ok(Value::Object(mut fields)) = serde_json::to_value(&redacted) else {
            unreachable!("a connector serialises to an object")
        };
        fields.remove("kind");
        ConnectorView {
            kind: self.kind().into(),
            fields,
        }
    }

    /// Parses a connector as submitted at `path`, every problem with its path. Secrets the
    /// submitter left out or sent back as `"***"` keep their value in `previous` (the
    /// connector being replaced), so a view can be edited and sent back as it is.
    pub fn parse(
        value: &Value,
        previous: Option<&Connector>,
        path: &str,
    ) -> Result<Connector, Vec<FieldError>> {
        let at = |field: &str| format!("{path}.{field}");
        let Some(object) = value.as_object() else {
            return Err(vec![FieldError::new(
                path,
                "must be null or an object with a \"kind\"",
            )]);
        };
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
        let mut connector: Connector = match serde_json::from_value(value.clone()) {
            Ok(c) => c,
            Err(_) if !Self::KINDS.contains(&kind) => {
                return Err(vec![FieldError::new(
                    at("kind"),
                    format!(
                        "must be one of {} (got {})",
                        Self::KINDS.join(", "),
                        object
                            .get("kind")
                            .map_or("nothing".into(), Value::to_string)
                    ),
                )]);
            }
            Err(e) => return Err(vec![FieldError::new(path.to_owned(), e.to_string())]),
        };
        let known: &[&str] = match connector {
            Self::HttpTurn(_) => &["kind", "url", "headers", "timeout_seconds"],
            Self::OpenaiChat(_) => &[
                "kind",
                "base_url",
                "model",
                "api_key",
                "api_key_env",
                "system_prompt",
                "tools",
                "timeout_seconds",
            ],
            Self::MediaStream(_) => &[
                "kind",
                "url",
                "headers",
                "custom_parameters",
                "timeout_seconds",
                "end_of_turn_ms",
            ],
        };
        let mut errors: Vec<FieldError> = object
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .map(|k| {
                FieldError::new(
                    at(k),
                    format!(
                        "is not a field of a {kind} connector (it has {})",
                        known[1..].join(", ")
                    ),
                )
            })
            .collect();
        let check_timeout = |t: Option<u32>, errors: &mut Vec<FieldError>| {
            if let Some(t) = t.filter(|t| !(1..=600).contains(t)) {
                errors.push(FieldError::new(
                    at("timeout_seconds"),
                    format!("must be between 1 and 600 (got {t})"),
                ));
            }
        };
        match &mut connector {
            Self::HttpTurn(c) => {
                check_url(&c.url, &at("url"), &mut errors);
                let kept = match previous {
                    Some(Self::HttpTurn(p)) => Some(&p.headers),
                    _ => None,
                };
                check_headers(&mut c.headers, kept, path, &mut errors);
                check_timeout(c.timeout_seconds, &mut errors);
            }
            Self::MediaStream(c) => {
                let rest = c
                    .url
                    .strip_prefix("ws://")
                    .or_else(|| c.url.strip_prefix("wss://"));
                if rest.is_none_or(|r| r.is_empty() || r.starts_with('/'))
                    || c.url.chars().any(char::is_whitespace)
                {
                    errors.push(FieldError::new(
                        at("url"),
                        format!(
                            "must be a ws:// or wss:// URL with a host (got {:?})",
                            c.url
                        ),
                    ));
                }
                let kept = match previous {
                    Some(Self::MediaStream(p)) => Some(&p.headers),
                    _ => None,
                };
                check_headers(&mut c.headers, kept, path, &mut errors);
                for (name, value) in &c.custom_parameters {
                    let (name_chars, value_chars) = (name.chars().count(), value.chars().count());
                    if value_chars > 1024 || name_chars > 256 || name.is_empty() {
                        errors.push(FieldError::new(
                            format!("{path}.custom_parameters.{name}"),
                            "must have a name of 1 to 256 characters and a value of at most 1024",
                        ));
                    }
                }
                check_timeout(c.timeout_seconds, &mut errors);
                if let Some(ms) = c.end_of_turn_ms.filter(|ms| !(200..=10_000).contains(ms)) {
                    errors.push(FieldError::new(
                        at("end_of_turn_ms"),
                        format!("must be between 200 and 10000 (got {ms})"),
                    ));
                }
            }
            Self::OpenaiChat(c) => {
                check_url(&c.base_url, &at("base_url"), &mut errors);
                if c.model.trim().is_empty() {
                    errors.push(FieldError::new(at("model"), "must not be empty"));
                }
                let previous_key = match previous {
                    Some(Self::OpenaiChat(p)) => p.api_key.clone(),
                    _ => None,
                };
                match c.api_key.as_deref() {
                    None if !object.contains_key("api_key") => c.api_key = previous_key,
                    Some(REDACTED) => c.api_key = previous_key,
                    Some("") => c.api_key = None,
                    _ => {}
                }
                if let Some(var) = &c.api_key_env {
                    let valid = !var.is_empty()
                        && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                    if !valid {
                        errors.push(FieldError::new(
                            at("api_key_env"),
                            "must be an environment variable name (letters, digits, _)",
                        ));
                    }
                }
                for (i, tool) in c.tools.iter().enumerate() {
                    let name = tool
                        .get("function")
                        .and_then(|f| f.get("name"))
                        .and_then(Value::as_str);
                    if tool.get("type").and_then(Value::as_str) != Some("function")
                        || name.is_none_or(str::is_empty)
                    {
                        errors.push(FieldError::new(
                            format!("{path}.tools[{i}]"),
                            "must be an OpenAI tool definition: {\"type\": \"function\", \"function\": {\"name\": …, \"parameters\": {…}}}",
                        ));
                    }
                }
                check_timeout(c.timeout_seconds, &mut errors);
            }
        }
        if errors.is_empty() {
            Ok(connector)
        } else {
            Err(errors)
        }
    }

    /// The stored form (secrets included): only the store writes it.
    pub fn to_document(&self) -> String {
        serde_json::to_string(self).expect("a connector serialises")
    }

    pub fn from_document(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("a stored connector: {e}"))
    }
}

/// Checks header names and values; a value sent as `"***"` takes the stored one in `kept`.
fn check_headers(
    headers: &mut BTreeMap<String, String>,
    kept: Option<&BTreeMap<String, String>>,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    for (name, value) in headers.iter_mut() {
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid_name {
            errors.push(FieldError::new(
                format!("{path}.headers.{name}"),
                "is not a valid header name",
            ));
        }
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            errors.push(FieldError::new(
                format!("{path}.headers.{name}"),
                "must not contain control characters",
            ));
        }
        if value == REDACTED {
            match kept.and_then(|k| k.get(name)) {
                Some(stored) => value.clone_from(stored),
                None => errors.push(FieldError::new(
                    format!("{path}.headers.{name}"),
                    "\"***\" keeps a stored value, and this header has none: send the value",
                )),
            }
        }
    }
}

fn check_url(url: &str, path: &str, errors: &mut Vec<FieldError>) {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    if rest.is_none_or(|r| r.is_empty() || r.starts_with('/'))
        || url.chars().any(char::is_whitespace)
    {
        errors.push(FieldError::new(
            path,
            format!("must be an http:// or https:// URL with a host (got {url:?})"),
        ));
    }
}

/// Who the simulated caller is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Persona {
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::name_schema))]
    pub name: String,
    /// The language the caller speaks, e.g. `en`, `de`, `Spanish` (default `en`).
    #[serde(default = "english")]
    #[cfg_attr(feature = "openapi", schema(pattern = "\\S"))]
    pub language: String,
    #[serde(default)]
    pub traits: Vec<Trait>,
    /// Anything else about the caller, in their own words.
    #[serde(default)]
    pub description: String,
    /// How the caller sounds and takes turns in a voice simulation (`media_stream`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<VoiceTraits>,
}

/// A caller's voice: its text-to-speech voice and pace, and how it takes turns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VoiceTraits {
    /// The text-to-speech voice (default: the project's voice setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "\\S"))]
    pub voice: Option<String>,
    /// The speech rate asked of text to speech, 1.0 normal (0.25 to 4.0).
    #[serde(default = "normal_rate")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0.25, maximum = 4.0))]
    pub speaking_rate: f32,
    /// The least time between the end of the agent's speech and the caller's answer, in ms.
    #[serde(default = "default_pause")]
    #[cfg_attr(feature = "openapi", schema(maximum = 10000))]
    pub pause_ms: u32,
    /// Talking over the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barge_in: Option<BargeIn>,
    /// Answer while the agent's greeting is still playing, `barge_in.after_ms` into it (or
    /// at once without `barge_in`), with the caller's first line.
    #[serde(default)]
    pub over_greeting: bool,
}

impl Default for VoiceTraits {
    fn default() -> Self {
        Self {
            voice: None,
            speaking_rate: normal_rate(),
            pause_ms: default_pause(),
            barge_in: None,
            over_greeting: false,
        }
    }
}

fn normal_rate() -> f32 {
    1.0
}

fn default_pause() -> u32 {
    300
}

/// The caller interrupts the agent `after_ms` into its speech with `line`, on the first
/// `times` agent turns long enough for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BargeIn {
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 60000))]
    pub after_ms: u32,
    #[cfg_attr(feature = "openapi", schema(pattern = "\\S"))]
    pub line: String,
    #[serde(default = "once")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub times: u32,
}

fn once() -> u32 {
    1
}

impl VoiceTraits {
    /// Every problem, with paths under `path`.
    pub fn check(&self, path: &str, errors: &mut Vec<FieldError>) {
        if !(0.25..=4.0).contains(&self.speaking_rate) {
            errors.push(FieldError::new(
                format!("{path}.speaking_rate"),
                format!("must be between 0.25 and 4.0 (got {})", self.speaking_rate),
            ));
        }
        if self.pause_ms > 10_000 {
            errors.push(FieldError::new(
                format!("{path}.pause_ms"),
                format!("must be at most 10000 (got {})", self.pause_ms),
            ));
        }
        if self.voice.as_deref().is_some_and(|v| v.trim().is_empty()) {
            errors.push(FieldError::new(
                format!("{path}.voice"),
                "must not be empty",
            ));
        }
        if let Some(b) = &self.barge_in {
            if b.after_ms > 60_000 {
                errors.push(FieldError::new(
                    format!("{path}.barge_in.after_ms"),
                    format!("must be at most 60000 (got {})", b.after_ms),
                ));
            }
            if b.line.trim().is_empty() {
                errors.push(FieldError::new(
                    format!("{path}.barge_in.line"),
                    "must not be empty",
                ));
            }
            if !(1..=1000).contains(&b.times) {
                errors.push(FieldError::new(
                    format!("{path}.barge_in.times"),
                    format!("must be between 1 and 1000 (got {})", b.times),
                ));
            }
        }
    }
}

fn english() -> String {
    "en".into()
}

/// A way of behaving that the caller's prompt spells out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Trait {
    Impatient,
    Confused,
    Interrupts,
    OffTopic,
    Angry,
    Terse,
    Verbose,
    Elderly,
}

impl Trait {
    fn instruction(self) -> &'static str {
        match self {
            Self::Impatient => "You are in a hurry: you push for a quick answer and say so when the agent is slow or wordy.",
            Self::Confused => "You are unsure what you need: you misunderstand some questions and ask for things to be repeated.",
            Self::Interrupts => "You cut in before the agent has finished a point, with short replies or new questions.",
            Self::OffTopic => "Now and then you drift to something unrelated before coming back to your goal.",
            Self::Angry => "You are upset about your problem and it shows, though you still want it solved.",
            Self::Terse => "You answer in as few words as possible.",
            Self::Verbose => "You give long answers with more detail than needed.",
            Self::Elderly => "You are elderly, polite and not used to automated systems; you need things explained simply.",
        }
    }
}

/// What a tool call of the agent answers in a test: the first mock whose `name` matches and
/// whose `when` (if any) equals the call's arguments on every key it names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ToolMock {
    #[cfg_attr(feature = "openapi", schema(pattern = "\\S"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub when: Option<Map<String, Value>>,
    /// Any JSON value.
    #[cfg_attr(feature = "openapi", schema(value_type = serde_json::Value))]
    pub result: Value,
}

/// The answer to a tool call: the first matching mock's result, else `unmatched` (or an
/// error object naming the tool).
pub fn answer_tool_call(
    mocks: &[ToolMock],
    unmatched: Option<&Value>,
    name: &str,
    arguments: &Value,
) -> (Value, bool) {
    let matches = |mock: &&ToolMock| {
        mock.name == name
            && mock.when.as_ref().is_none_or(|when| {
                when.iter()
                    .all(|(key, expected)| arguments.get(key) == Some(expected))
            })
    };
    match mocks.iter().find(matches) {
        Some(mock) => (mock.result.clone(), true),
        None => (
            unmatched.cloned().unwrap_or_else(|| {
                serde_json::json!({
                    "error": format!("no mock for the tool {name:?} with these arguments")
                })
            }),
            false,
        ),
    }
}

/// Validates tool mocks at `path`.
pub fn check_tool_mocks(mocks: &[ToolMock], path: &str, errors: &mut Vec<FieldError>) {
    for (i, mock) in mocks.iter().enumerate() {
        if mock.name.trim().is_empty() {
            errors.push(FieldError::new(
                format!("{path}[{i}].name"),
                "must not be empty",
            ));
        }
    }
}

/// The limits of one simulated conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StopRules {
    /// Caller and agent turns together.
    pub max_turns: u32,
    pub max_seconds: u32,
}

impl Default for StopRules {
    fn default() -> Self {
        Self {
            max_turns: 30,
            max_seconds: 600,
        }
    }
}

impl StopRules {
    pub const TURNS: std::ops::RangeInclusive<u32> = 1..=200;
    pub const SECONDS: std::ops::RangeInclusive<u32> = 5..=3600;
}

/// Why a simulated conversation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The simulated caller hung up (its `end_call` tool).
    CallerEnded,
    /// The agent ended the call (`end_call: true`).
    AgentEnded,
    MaxTurns,
    MaxSeconds,
    /// The run's token budget for the caller and agent LLMs was spent.
    TokenBudget,
}

impl StopReason {
    pub const ALL: [StopReason; 5] = [
        Self::CallerEnded,
        Self::AgentEnded,
        Self::MaxTurns,
        Self::MaxSeconds,
        Self::TokenBudget,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CallerEnded => "caller_ended",
            Self::AgentEnded => "agent_ended",
            Self::MaxTurns => "max_turns",
            Self::MaxSeconds => "max_seconds",
            Self::TokenBudget => "token_budget",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The call's `ended_reason`, in the words the webhook's senders use.
    pub fn ended_reason(self) -> &'static str {
        match self {
            Self::CallerEnded => "customer-ended-call",
            Self::AgentEnded => "assistant-ended-call",
            Self::MaxTurns => "max-turns-reached",
            Self::MaxSeconds => "exceeded-max-duration",
            Self::TokenBudget => "token-budget-exhausted",
        }
    }
}

/// LLM requests and tokens spent on one run, by whom.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Usage {
    pub caller_requests: u64,
    pub caller_tokens: u64,
    /// Requests to the agent (turns of `http_turn`, completions of `openai_chat`).
    pub agent_requests: u64,
    /// Tokens of an `openai_chat` agent.
    pub agent_tokens: u64,
    /// Judge requests the run's call cost when evaluated (cached verdicts cost none).
    pub judge_requests: u64,
    pub judge_tokens: u64,
}

impl Usage {
    /// The tokens that count against the run's budget (the conversation's, not the judges').
    pub fn tokens(&self) -> u64 {
        self.caller_tokens + self.agent_tokens
    }
}

/// A project's simulator endpoint: the LLM that plays the caller. Fields left unset fall back
/// to the server's defaults (`--simulator-*`).
#[derive(Clone, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SimulatorSettings {
    pub base_url: Option<String>,
    pub model: Option<String>,
    #[serde(skip)]
    pub api_key: Option<String>,
    /// Whether a key is set (the key itself is never shown).
    pub api_key_set: bool,
    /// Simulated runs of this project in flight at once.
    pub concurrency: u32,
    /// Caller and agent LLM tokens one run may spend before its conversation is stopped.
    pub token_budget: u64,
    /// Text to speech and speech to text, for voice runs.
    #[serde(default)]
    pub voice: VoiceSettings,
}

/// The project's text-to-speech and speech-to-text endpoints (OpenAI-compatible). Each field
/// left unset falls back: URLs and keys to the simulator endpoint's (a key only to its own
/// URL), models and voice to OpenAI's names. Keys are write-only.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VoiceSettings {
    pub tts_base_url: Option<String>,
    pub tts_model: Option<String>,
    /// The caller's voice when its persona names none.
    pub voice: Option<String>,
    #[serde(skip)]
    pub tts_api_key: Option<String>,
    pub tts_api_key_set: bool,
    pub stt_base_url: Option<String>,
    pub stt_model: Option<String>,
    #[serde(skip)]
    pub stt_api_key: Option<String>,
    pub stt_api_key_set: bool,
}

impl VoiceSettings {
    pub const DEFAULT_TTS_MODEL: &'static str = "tts-1";
    pub const DEFAULT_VOICE: &'static str = "alloy";
    pub const DEFAULT_STT_MODEL: &'static str = "whisper-1";
}

impl std::fmt::Debug for VoiceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceSettings")
            .field("tts_base_url", &self.tts_base_url)
            .field("tts_model", &self.tts_model)
            .field("voice", &self.voice)
            .field("tts_api_key", &self.tts_api_key.as_ref().map(|_| REDACTED))
            .field("stt_base_url", &self.stt_base_url)
            .field("stt_model", &self.stt_model)
            .field("stt_api_key", &self.stt_api_key.as_ref().map(|_| REDACTED))
            .finish()
    }
}

impl SimulatorSettings {
    pub const DEFAULT_CONCURRENCY: u32 = 4;
    pub const DEFAULT_TOKEN_BUDGET: u64 = 200_000;
}

impl std::fmt::Debug for SimulatorSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatorSettings")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| REDACTED))
            .field("concurrency", &self.concurrency)
            .field("token_budget", &self.token_budget)
            .field("voice", &self.voice)
            .finish()
    }
}

/// The simulated caller's system prompt: who they are, what they want, how to hang up.
pub fn caller_system_prompt(persona: Option<&Persona>, instructions: &str) -> String {
    let mut prompt = String::from(
        "You are playing a caller in a test of a voice agent: a person phoning a company's automated assistant. \
         Stay in character; never say you are an AI or that this is a test. \
         Speak as a person does on the phone: short turns, one thing at a time.\n",
    );
    if let Some(p) = persona {
        prompt.push_str(&format!("\nYou are {}.", p.name));
        if !p.description.trim().is_empty() {
            prompt.push_str(&format!(" {}", p.description.trim()));
        }
        prompt.push_str(&format!("\nSpeak only in this language: {}.", p.language));
        for t in &p.traits {
            prompt.push_str(&format!("\n- {}", t.instruction()));
        }
        prompt.push('\n');
    }
    if !instructions.trim().is_empty() {
        prompt.push_str(&format!(
            "\nYour goal in this call:\n{}\n",
            instructions.trim()
        ));
    }
    prompt.push_str(
        "\nWhen your goal is reached, or the conversation cannot go on, say goodbye and call the end_call tool.",
    );
    prompt
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_write_only_and_survive_a_round_trip_of_the_view() {
        let first = Connector::parse(
            &json!({"kind": "http_turn", "url": "https://agent.test/turn",
                    "headers": {"Authorization": "Bearer s3cret"}}),
            None,
            "connector",
        )
        .unwrap();
        let view = first.view();
        assert_eq!(view.fields["headers"]["Authorization"], "***");
        assert!(!serde_json::to_string(&view).unwrap().contains("s3cret"));
        assert!(
            !format!("{first:?}").contains("s3cret"),
            "Debug shows the view"
        );
        let mut sent_back = Value::Object(view.fields.clone());
        sent_back["kind"] = json!("http_turn");
        let again = Connector::parse(&sent_back, Some(&first), "connector").unwrap();
        assert_eq!(again, first);

        let chat = json!({"kind": "openai_chat", "base_url": "http://127.0.0.1:9/v1",
                          "model": "m", "api_key": "sk-1"});
        let chat = Connector::parse(&chat, None, "connector").unwrap();
        let edited =
            json!({"kind": "openai_chat", "base_url": "http://127.0.0.1:9/v1", "model": "m2"});
        let Connector::OpenaiChat(kept) = Connector::parse(&edited, Some(&chat), "c").unwrap()
        else {
            panic!()
        };
        assert_eq!(kept.api_key.as_deref(), Some("sk-1"));
        assert_eq!(chat.view().fields["api_key"], "***");
    }

    #[test]
    fn every_problem_has_its_path() {
        let errors = Connector::parse(
            &json!({"kind": "http_turn", "url": "ftp://x", "headers": {"Bad Name": "v", "X": "***"},
                    "timeout_seconds": 0, "extra": 1}),
            None,
            "connector",
        )
        .unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "connector.extra",
                "connector.url",
                "connector.headers.Bad Name",
                "connector.headers.X",
                "connector.timeout_seconds"
            ]
        );
        let kind = Connector::parse(&json!({"kind": "sip"}), None, "c").unwrap_err();
        assert_eq!(kind[0].path, "c.kind");
        let tools = Connector::parse(
            &json!({"kind": "openai_chat", "base_url": "https://x", "model": "m", "tools": [{"name": "f"}]}),
            None,
            "c",
        )
        .unwrap_err();
        assert_eq!(tools[0].path, "c.tools[0]");
    }

    #[test]
    fn the_first_matching_mock_answers() {
        let mocks: Vec<ToolMock> = serde_json::from_value(json!([
            {"name": "lookup", "when": {"order": "A1"}, "result": {"status": "shipped"}},
            {"name": "lookup", "result": {"status": "unknown"}},
        ]))
        .unwrap();
        let a1 = answer_tool_call(&mocks, None, "lookup", &json!({"order": "A1", "x": 1}));
        assert_eq!(a1, (json!({"status": "shipped"}), true));
        let other = answer_tool_call(&mocks, None, "lookup", &json!({"order": "B2"}));
        assert_eq!(other.0["status"], "unknown");
        let (none, matched) = answer_tool_call(&mocks, None, "refund", &json!({}));
        assert!(!matched);
        assert!(none["error"].as_str().unwrap().contains("refund"));
    }

    #[test]
    fn the_prompt_carries_the_persona_and_the_goal() {
        let persona = Persona {
            name: "Dana".into(),
            language: "German".into(),
            traits: vec![Trait::Impatient],
            description: "A customer since 2019.".into(),
            voice: None,
        };
        let prompt = caller_system_prompt(Some(&persona), "Get a refund for order A1.");
        for needle in [
            "Dana",
            "German",
            "in a hurry",
            "refund for order A1",
            "end_call",
        ] {
            assert!(prompt.contains(needle), "{needle} missing from {prompt}");
        }
    }
}

#[cfg(all(test, feature = "openapi"))]
mod schema_tests {
    /// utoipa reads a schema only if every part has a `type`: the hand-written one must parse.
    #[test]
    fn the_connector_schema_is_a_schema() {
        super::connector_schema(true);
        super::connector_schema(false);
    }
}
