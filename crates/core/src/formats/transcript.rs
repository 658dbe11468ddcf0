//! The transcript types of Cekura's observe endpoint (`transcript_type`), each read into
//! callgrade's rows: who spoke, what, when, and tool calls with their results as
//! `function_call` / `function_call_result` rows whose `data` holds `id`, `name` and
//! `arguments` or `result`, the shape the tool metrics read.

use serde_json::{json, Value};

use super::{Fields, Time, Turn};
use crate::payload::kind;
use crate::{FieldError, Role};

/// `transcript_type`: which vendor's shape `transcript_json` is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TranscriptType {
    /// `{role, content, start_time, end_time, data}` with `Main Agent` / `Testing Agent`
    /// (`vocera` is its old name).
    Cekura,
    Vapi,
    Retell,
    Deepgram,
    Pipecat,
    Livekit,
    Elevenlabs,
    /// No transcript: a recording only.
    NoneMono,
}

impl TranscriptType {
    pub const NAMES: &'static str =
        "cekura (the default; vocera is its old name), vapi, retell, deepgram, pipecat, livekit, elevenlabs, none-mono";

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "cekura" | "vocera" => Self::Cekura,
            "vapi" => Self::Vapi,
            "retell" => Self::Retell,
            "deepgram" => Self::Deepgram,
            "pipecat" => Self::Pipecat,
            "livekit" => Self::Livekit,
            "elevenlabs" => Self::Elevenlabs,
            "none-mono" | "none_mono" => Self::NoneMono,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cekura => "cekura",
            Self::Vapi => "vapi",
            Self::Retell => "retell",
            Self::Deepgram => "deepgram",
            Self::Pipecat => "pipecat",
            Self::Livekit => "livekit",
            Self::Elevenlabs => "elevenlabs",
            Self::NoneMono => "none-mono",
        }
    }
}

/// Reads `value` (at `path`) as a transcript of type `ty`. `agent_speaker` is the Deepgram
/// speaker (or recording channel) that is the agent. Problems go to `errors`, remarks that do
/// not refuse the call (a role alias, an assumed speaker) to `warnings`.
pub(crate) fn parse_transcript(
    ty: TranscriptType,
    value: &Value,
    path: &str,
    agent_speaker: Option<u32>,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<FieldError>,
) -> Vec<Turn> {
    if ty == TranscriptType::Deepgram {
        return deepgram(value, path, agent_speaker, errors, warnings);
    }
    let Some(items) = value.as_array() else {
        errors.push(FieldError::new(
            path,
            format!(
                "must be an array of {} transcript items, got {}",
                ty.as_str(),
                kind(value)
            ),
        ));
        return Vec::new();
    };
    let mut turns = Vec::with_capacity(items.len());
    for (j, item) in items.iter().enumerate() {
        let at = format!("{path}[{j}]");
        let Some(f) = Fields::of(item, &at, "a transcript item object", errors) else {
            continue;
        };
        match ty {
            TranscriptType::Cekura | TranscriptType::Pipecat => {
                cekura_item(&f, ty, &mut turns, errors, warnings)
            }
            TranscriptType::Vapi => vapi_item(&f, &mut turns, errors, warnings),
            TranscriptType::Retell => retell_item(&f, &mut turns, errors, warnings),
            TranscriptType::Livekit => livekit_item(&f, &mut turns, errors, warnings),
            TranscriptType::Elevenlabs => elevenlabs_item(&f, &mut turns, errors, warnings),
            TranscriptType::Deepgram | TranscriptType::NoneMono => {}
        }
    }
    turns
}

/// A role as real senders write it: any case, spaces or dashes for underscores, the names of
/// other vendors. `canonical` is the spelling the transcript type documents; any other is
/// accepted with a warning, so a sender learns it without losing the transcript.
fn role(
    f: &Fields<'_>,
    canonical: &[(&str, Role)],
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<FieldError>,
) -> Option<Role> {
    let path = f.at("role");
    let Some(s) = f.str("role", errors) else {
        if f.get("role").is_none() {
            let names: Vec<&str> = canonical.iter().map(|(n, _)| *n).collect();
            errors.push(FieldError::new(
                path,
                format!("is required: one of {}", names.join(", ")),
            ));
        }
        return None;
    };
    if let Some((_, r)) = canonical.iter().find(|(n, _)| *n == s) {
        return Some(*r);
    }
    let folded = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
    let alias = match folded.as_str() {
        "main_agent" | "assistant" | "agent" | "bot" | "ai" => Some(Role::Bot),
        "testing_agent" | "user" | "customer" | "caller" | "human" => Some(Role::User),
        "system" => Some(Role::System),
        "function_call" | "tool_call" | "tool_calls" | "tool_call_invocation" => {
            Some(Role::FunctionCall)
        }
        "function_call_result" | "tool_call_result" | "tool_result" => {
            Some(Role::FunctionCallResult)
        }
        _ => None,
    };
    let names: Vec<&str> = canonical.iter().map(|(n, _)| *n).collect();
    match alias {
        Some(r) => {
            let spelled = canonical
                .iter()
                .find(|(_, c)| *c == r)
                .map_or(r.as_str(), |(n, _)| *n);
            warnings.push(FieldError::new(
                path,
                format!(
                    "{s:?} was read as {spelled:?}; this transcript type spells its roles {}",
                    names.join(", ")
                ),
            ));
            Some(r)
        }
        None => {
            errors.push(FieldError::new(
                path,
                format!("must be one of {}; got {s:?}", names.join(", ")),
            ));
            None
        }
    }
}

fn text(f: &Fields<'_>, field: &str, errors: &mut Vec<FieldError>) -> String {
    f.str(field, errors).unwrap_or_default().to_owned()
}

fn from_start(f: &Fields<'_>, field: &str, errors: &mut Vec<FieldError>) -> Option<Time> {
    f.number(field, errors).map(|v| {
        if v >= crate::MessageTimes::EPOCH_MS_THRESHOLD {
            Time::EpochMs(v)
        } else {
            Time::FromStart(v)
        }
    })
}

/// A tool's result as the metrics can read it: vendors send JSON results as text
/// (`"{\"error\": …}"`), which is read as the object it holds; any other text stays text.
fn structured(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) if s.trim_start().starts_with(['{', '[']) => {
            serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
        }
        Some(v) => v.clone(),
        None => Value::Null,
    }
}

/// A tool row's `data`: an object as given (Cekura's and Pipecat's `{id, name, arguments}`
/// or `{id, name, result}`).
fn tool_data(f: &Fields<'_>, errors: &mut Vec<FieldError>) -> Value {
    match f.get("data") {
        Some(Value::Object(data)) => {
            let mut data = data.clone();
            if let Some(result) = data.get_mut("result") {
                *result = structured(Some(result));
            }
            Value::Object(data)
        }
        Some(other) => {
            errors.push(FieldError::new(
                f.at("data"),
                format!(
                    "must be an object such as {{\"id\", \"name\", \"arguments\"}}, got {}",
                    kind(other)
                ),
            ));
            Value::Null
        }
        None => json!({}),
    }
}

// Cekura's own shape, and Pipecat's (the same fields, OpenAI's role names).
fn cekura_item(
    f: &Fields<'_>,
    ty: TranscriptType,
    turns: &mut Vec<Turn>,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<FieldError>,
) {
    const CEKURA: &[(&str, Role)] = &[
        ("Main Agent", Role::Bot),
        ("Testing Agent", Role::User),
        ("Function Call", Role::FunctionCall),
        ("Function Call Result", Role::FunctionCallResult),
        ("System", Role::System),
    ];
    const PIPECAT: &[(&str, Role)] = &[
        ("assistant", Role::Bot),
        ("user", Role::User),
        ("tool_call", Role::FunctionCall),
        ("tool_call_result", Role::FunctionCallResult),
        ("system", Role::System),
    ];
    let names = if ty == TranscriptType::Pipecat {
        PIPECAT
    } else {
        CEKURA
    };
    let Some(r) = role(f, names, errors, warnings) else {
        return;
    };
    let start = from_start(f, "start_time", errors);
    let end = from_start(f, "end_time", errors);
    let turn = match r {
        Role::FunctionCall | Role::FunctionCallResult => Turn::tool(r, tool_data(f, errors)),
        _ => Turn::said(r, text(f, "content", errors)),
    };
    turns.push(turn.at(start, end));
}

// Vapi's `artifact.messages`: epoch-millisecond `time`/`endTime`, else `secondsFromStart`.
pub(super) fn vapi_item(
    f: &Fields<'_>,
    turns: &mut Vec<Turn>,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<FieldError>,
) {
    const VAPI: &[(&str, Role)] = &[
        ("bot", Role::Bot),
        ("user", Role::User),
        ("system", Role::System),
        ("tool_calls", Role::FunctionCall),
        ("tool_call_result", Role::FunctionCallResult),
    ];
    let Some(r) = role(f, VAPI, errors, warnings) else {
        return;
    };
    let seconds = f.number("secondsFromStart", errors);
    let start = match f.number("time", errors) {
        Some(ms) => Some(Time::EpochMs(ms)),
        None => seconds.map(Time::FromStart),
    };
    let duration_ms = f.number("duration", errors);
    let end = match (f.number("endTime", errors), start, duration_ms) {
        (Some(ms), _, _) => Some(Time::EpochMs(ms)),
        (None, Some(Time::EpochMs(t)), Some(d)) => Some(Time::EpochMs(t + d)),
        (None, Some(Time::FromStart(s)), Some(d)) => Some(Time::FromStart(s + d / 1000.0)),
        _ => None,
    };
    match r {
        Role::FunctionCall => {
            let Some(calls) = f.array("toolCalls", errors) else {
                if f.get("toolCalls").is_none() {
                    errors.push(FieldError::new(
                        f.at("toolCalls"),
                        "is required on a tool_calls message",
                    ));
                }
                return;
            };
            for (k, call) in calls.iter().enumerate() {
                let Some(c) = Fields::of(
                    call,
                    &f.at(&format!("toolCalls[{k}]")),
                    "a tool call object",
                    errors,
                ) else {
                    continue;
                };
                let function = c.object("function", errors);
                let name = function.as_ref().and_then(|fun| fun.str("name", errors));
                let arguments = function
                    .as_ref()
                    .and_then(|fun| fun.get("arguments"))
                    .cloned();
                let data = json!({
                    "id": c.id("id", errors),
                    "name": name,
                    "arguments": arguments,
                });
                turns.push(Turn::tool(Role::FunctionCall, data).at(start, None));
            }
        }
        Role::FunctionCallResult => {
            let data = json!({
                "id": f.id("toolCallId", errors),
                "name": f.str("name", errors),
                "result": structured(f.get("result")),
            });
            turns.push(Turn::tool(Role::FunctionCallResult, data).at(start, None));
        }
        _ => turns.push(Turn::said(r, text(f, "message", errors)).at(start, end)),
    }
}

// Retell's `transcript_object` / `transcript_with_tool_calls`: times from the words.
pub(super) fn retell_item(
    f: &Fields<'_>,
    turns: &mut Vec<Turn>,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<FieldError>,
) {
    const RETELL: &[(&str, Role)] = &[
        ("agent", Role::Bot),
        ("user", Role::User),
        ("tool_call_invocation", Role::FunctionCall),
        ("tool_call_result", Role::FunctionCallResult),
    ];
    // Retell also writes rows that are not speech (`node_transition`, `dtmf`): kept in the
    // raw call, noted here.
    if let Some(s @ ("node_transition" | "dtmf" | "transfer")) =
        f.get("role").and_then(Value::as_str)
    {
        warnings.push(FieldError::new(
            f.at("role"),
            format!("a {s:?} row is kept in the raw call, not in the transcript"),
        ));
        return;
    }
    let Some(r) = role(f, RETELL, errors, warnings) else {
        return;
    };
    match r {
        Role::FunctionCall => {
            let data = json!({
                "id": f.id("tool_call_id", errors),
                "name": f.str("name", errors),
                "arguments": f.get("arguments").cloned(),
            });
            turns.push(Turn::tool(r, data));
        }
        Role::FunctionCallResult => {
            let mut data = json!({
                "id": f.id("tool_call_id", errors),
                "result": structured(f.get("content")),
            });
            if let Some(ok) = f.get("successful").and_then(Value::as_bool) {
                data["success"] = Value::Bool(ok);
            }
            turns.push(Turn::tool(r, data));
        }
        _ => {
            let (mut start, mut end) = (None, None);
            if let Some(words) = f.array("words", errors) {
                for (k, w) in words.iter().enumerate() {
                    let Some(w) =
                        Fields::of(w, &f.at(&format!("words[{k}]")), "a word object", errors)
                    else {
                        continue;
                    };
                    let s = w.number("start", errors);
                    let e = w.number("end", errors);
                    start = start.or(s);
                    end = e.or(end);
                }
            }
            let turn = Turn::said(r, text(f, "content", errors));
            turns.push(turn.at(start.map(Time::FromStart), end.map(Time::FromStart)));
        }
    }
}

// LiveKit's conversation items: one `timestamp`, epoch seconds or seconds from the start;
// content a string or a list of strings.
fn livekit_item(
    f: &Fields<'_>,
    turns: &mut Vec<Turn>,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<FieldError>,
) {
    const LIVEKIT: &[(&str, Role)] = &[
        ("assistant", Role::Bot),
        ("user", Role::User),
        ("system", Role::System),
    ];
    let Some(r) = role(f, LIVEKIT, errors, warnings) else {
        return;
    };
    let content = match f.get("content") {
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        _ => text(f, "content", errors),
    };
    // One stamp per row: the row's start. Its end is unknown, so latency is not guessed.
    let start = f.number("timestamp", errors).map(|t| {
        if t >= 1e9 {
            Time::EpochMs(t * 1000.0)
        } else {
            Time::FromStart(t)
        }
    });
    turns.push(Turn::said(r, content).at(start, None));
}

// ElevenLabs' `transcript[]`: whole seconds in `time_in_call_secs`; tool calls and their
// results inside the turn that made them.
pub(super) fn elevenlabs_item(
    f: &Fields<'_>,
    turns: &mut Vec<Turn>,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<FieldError>,
) {
    const ELEVENLABS: &[(&str, Role)] = &[("agent", Role::Bot), ("user", Role::User)];
    let Some(r) = role(f, ELEVENLABS, errors, warnings) else {
        return;
    };
    let start = f.number("time_in_call_secs", errors).map(Time::FromStart);
    let message = text(f, "message", errors);
    if !message.is_empty() {
        turns.push(Turn::said(r, message).at(start, None));
    }
    for (k, call) in f
        .array("tool_calls", errors)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let Some(c) = Fields::of(
            call,
            &f.at(&format!("tool_calls[{k}]")),
            "a tool call object",
            errors,
        ) else {
            continue;
        };
        let data = json!({
            "id": c.id("request_id", errors),
            "name": c.str("tool_name", errors),
            "arguments": c.get("params_as_json").cloned(),
        });
        turns.push(Turn::tool(Role::FunctionCall, data).at(start, None));
    }
    for (k, result) in f
        .array("tool_results", errors)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let Some(c) = Fields::of(
            result,
            &f.at(&format!("tool_results[{k}]")),
            "a tool result object",
            errors,
        ) else {
            continue;
        };
        let mut data = json!({
            "id": c.id("request_id", errors),
            "name": c.str("tool_name", errors),
            "result": structured(c.get("result_value")),
        });
        if let Some(is_error) = c.get("is_error").and_then(Value::as_bool) {
            data["success"] = Value::Bool(!is_error);
        }
        if let Some(latency) = c.number("tool_latency_secs", errors) {
            data["latency_secs"] = json!(latency);
        }
        turns.push(Turn::tool(Role::FunctionCallResult, data).at(start, None));
    }
}

// Deepgram's words, grouped into utterances by speaker: the array itself, or a whole
// pre-recorded response (`results.channels[0].alternatives[0].words`).
fn deepgram(
    value: &Value,
    path: &str,
    agent_speaker: Option<u32>,
    errors: &mut Vec<FieldError>,
    warnings: &mut Vec<FieldError>,
) -> Vec<Turn> {
    let (words, words_path) = match value {
        Value::Array(words) => (words.as_slice(), path.to_owned()),
        Value::Object(_) => {
            let inner = "results.channels[0].alternatives[0].words";
            match value
                .pointer("/results/channels/0/alternatives/0/words")
                .and_then(Value::as_array)
            {
                Some(words) => (words.as_slice(), format!("{path}.{inner}")),
                None => {
                    errors.push(FieldError::new(
                        path,
                        format!("must be Deepgram's word list, or a response with {inner}"),
                    ));
                    return Vec::new();
                }
            }
        }
        other => {
            errors.push(FieldError::new(
                path,
                format!("must be Deepgram's word list, got {}", kind(other)),
            ));
            return Vec::new();
        }
    };
    let agent = agent_speaker.unwrap_or_else(|| {
        warnings.push(FieldError::new(
            "main_agent_channel_index",
            "is not given: speaker 0 was taken as the agent",
        ));
        0
    });
    let mut turns: Vec<(u64, Turn)> = Vec::new();
    for (k, w) in words.iter().enumerate() {
        let Some(w) = Fields::of(w, &format!("{words_path}[{k}]"), "a word object", errors) else {
            continue;
        };
        let word = w
            .get("punctuated_word")
            .and_then(Value::as_str)
            .or_else(|| w.str("word", errors))
            .unwrap_or_default();
        let speaker = match w.get("speaker") {
            None => 0,
            Some(v) => match v.as_u64() {
                Some(s) => s,
                None => {
                    errors.push(FieldError::new(
                        w.at("speaker"),
                        "must be a speaker index 0 or 1",
                    ));
                    continue;
                }
            },
        };
        let start = w.number("start", errors);
        let end = w.number("end", errors);
        match turns.last_mut() {
            Some((s, turn)) if *s == speaker => {
                turn.content.push(' ');
                turn.content.push_str(word);
                turn.end = end.map(Time::FromStart).or(turn.end);
            }
            _ => {
                let r = if speaker == u64::from(agent) {
                    Role::Bot
                } else {
                    Role::User
                };
                let turn =
                    Turn::said(r, word).at(start.map(Time::FromStart), end.map(Time::FromStart));
                turns.push((speaker, turn));
            }
        }
    }
    turns.into_iter().map(|(_, t)| t).collect()
}
