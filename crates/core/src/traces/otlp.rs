//! An OTLP/HTTP trace export (`ExportTraceServiceRequest`, protobuf or JSON) read into
//! [`TraceSpan`]s. Every problem is collected with its path in OTLP JSON's names
//! (`resourceSpans[0].scopeSpans[1].spans[4].traceId`), so an exporter's author sees them all
//! at once; a request with any problem is refused whole.

use std::collections::BTreeSet;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, Span};
use prost::Message as _;
use serde_json::{Map, Value};

use super::{ReadTraces, SpanEvent, SpanStatus, TraceSpan};
use crate::FieldError;

/// How the body is encoded, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpEncoding {
    /// `application/x-protobuf`
    Protobuf,
    /// `application/json`
    Json,
}

/// Bounds on one export request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceLimits {
    pub max_spans: usize,
    /// Attributes of one span (or one event), counted before they are read.
    pub max_attributes: usize,
    pub max_events: usize,
    /// A string attribute longer than this is cut (with `…` at the end), as OTel SDKs do with
    /// their attribute length limit: an LLM span's prompt should not cost a whole body.
    pub max_string_chars: usize,
    pub max_name_chars: usize,
}

impl Default for TraceLimits {
    fn default() -> Self {
        Self {
            max_spans: 10_000,
            max_attributes: 256,
            max_events: 128,
            max_string_chars: 16 * 1024,
            max_name_chars: 256,
        }
    }
}

/// Reads an export request. The error is one sentence when the body is not an OTLP request
/// at all, or every problem with its path.
pub fn read_traces(
    body: &[u8],
    encoding: OtlpEncoding,
    limits: &TraceLimits,
) -> Result<ReadTraces, Vec<FieldError>> {
    let request = match encoding {
        OtlpEncoding::Protobuf => ExportTraceServiceRequest::decode(body).map_err(|e| {
            FieldError::new(
                "$",
                format!("not an OTLP ExportTraceServiceRequest in protobuf: {e}"),
            )
        }),
        // serde would read a JSON array as the request's fields in order; OTLP JSON is an object.
        OtlpEncoding::Json if body.trim_ascii_start().first() != Some(&b'{') => {
            Err(FieldError::new(
                "$",
                "not an OTLP ExportTraceServiceRequest in JSON: the body must be a JSON object",
            ))
        }
        OtlpEncoding::Json => serde_json::from_slice(body).map_err(|e| {
            FieldError::new(
                "$",
                format!("not an OTLP ExportTraceServiceRequest in JSON: {e}"),
            )
        }),
    }
    .map_err(|e| vec![e])?;
    read_request(request, limits)
}

fn read_request(
    request: ExportTraceServiceRequest,
    limits: &TraceLimits,
) -> Result<ReadTraces, Vec<FieldError>> {
    let total: usize = request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    if total > limits.max_spans {
        return Err(vec![FieldError::new(
            "resourceSpans",
            format!(
                "{total} spans in one request; at most {} are accepted (export in smaller batches)",
                limits.max_spans
            ),
        )]);
    }
    let mut errors = Vec::new();
    let mut spans = Vec::with_capacity(total);
    let mut trace_ids = BTreeSet::new();
    for (r, resource_spans) in request.resource_spans.into_iter().enumerate() {
        let service_name = resource_spans.resource.as_ref().and_then(|resource| {
            resource
                .attributes
                .iter()
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    any_value::Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
        });
        for (s, scope_spans) in resource_spans.scope_spans.into_iter().enumerate() {
            for (i, span) in scope_spans.spans.into_iter().enumerate() {
                let at = format!("resourceSpans[{r}].scopeSpans[{s}].spans[{i}]");
                if let Some(span) = read_span(span, &at, service_name.clone(), limits, &mut errors)
                {
                    trace_ids.insert(span.trace_id.clone());
                    spans.push(span);
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(ReadTraces {
            spans,
            trace_ids: trace_ids.into_iter().collect(),
        })
    } else {
        Err(errors)
    }
}

fn read_span(
    span: Span,
    at: &str,
    service_name: Option<String>,
    limits: &TraceLimits,
    errors: &mut Vec<FieldError>,
) -> Option<TraceSpan> {
    let before = errors.len();
    let trace_id = id(&span.trace_id, 16, &format!("{at}.traceId"), errors);
    let span_id = id(&span.span_id, 8, &format!("{at}.spanId"), errors);
    let parent_span_id = if span.parent_span_id.is_empty() {
        None
    } else {
        id(
            &span.parent_span_id,
            8,
            &format!("{at}.parentSpanId"),
            errors,
        )
    };
    let name = span.name.trim();
    if name.is_empty() {
        errors.push(FieldError::new(
            format!("{at}.name"),
            "a span needs a name (frameworks name them stt, llm, tts, turn…)",
        ));
    } else if name.chars().count() > limits.max_name_chars {
        errors.push(FieldError::new(
            format!("{at}.name"),
            format!("longer than {} characters", limits.max_name_chars),
        ));
    }
    let start = nanos(
        span.start_time_unix_nano,
        &format!("{at}.startTimeUnixNano"),
        errors,
    );
    let end = nanos(
        span.end_time_unix_nano,
        &format!("{at}.endTimeUnixNano"),
        errors,
    );
    if let (Some(start), Some(end)) = (start, end) {
        if end < start {
            errors.push(FieldError::new(
                format!("{at}.endTimeUnixNano"),
                format!("the span ends ({end}) before it starts ({start})"),
            ));
        }
    }
    let attributes = attributes(span.attributes, &format!("{at}.attributes"), limits, errors);
    if span.events.len() > limits.max_events {
        errors.push(FieldError::new(
            format!("{at}.events"),
            format!(
                "{} events; at most {} per span",
                span.events.len(),
                limits.max_events
            ),
        ));
    }
    let mut events = Vec::new();
    for (e, event) in span.events.into_iter().take(limits.max_events).enumerate() {
        let at = format!("{at}.events[{e}]");
        let time = nanos(event.time_unix_nano, &format!("{at}.timeUnixNano"), errors);
        let attributes = attributes_of(
            event.attributes,
            &format!("{at}.attributes"),
            limits,
            errors,
        );
        events.push(SpanEvent {
            name: cut(event.name, limits.max_name_chars),
            time_unix_nano: time.unwrap_or(0),
            attributes,
        });
    }
    let (status, status_message) = match span.status {
        None => (SpanStatus::Unset, None),
        Some(status) => {
            let code = match StatusCode::try_from(status.code) {
                Ok(StatusCode::Ok) => SpanStatus::Ok,
                Ok(StatusCode::Error) => SpanStatus::Error,
                Ok(StatusCode::Unset) => SpanStatus::Unset,
                Err(_) => {
                    errors.push(FieldError::new(
                        format!("{at}.status.code"),
                        format!(
                            "{} is not a status code (0 unset, 1 ok, 2 error)",
                            status.code
                        ),
                    ));
                    SpanStatus::Unset
                }
            };
            let message = Some(status.message)
                .filter(|m| !m.is_empty())
                .map(|m| cut(m, limits.max_string_chars));
            (code, message)
        }
    };
    if errors.len() > before {
        return None;
    }
    Some(TraceSpan {
        trace_id: trace_id?,
        span_id: span_id?,
        parent_span_id,
        name: name.to_owned(),
        service_name: service_name.map(|s| cut(s, limits.max_name_chars)),
        start_unix_nano: start?,
        end_unix_nano: end?,
        status,
        status_message,
        attributes: attributes?,
        events,
    })
}

/// A trace (16 bytes) or span (8 bytes) id as lowercase hex; all zeros is invalid in OTLP.
fn id(bytes: &[u8], len: usize, at: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    let what = if len == 16 { "trace id" } else { "span id" };
    if bytes.is_empty() {
        errors.push(FieldError::new(at, format!("the {what} is missing")));
        None
    } else if bytes.len() != len {
        errors.push(FieldError::new(
            at,
            format!(
                "a {what} is {len} bytes ({} hex digits), got {} bytes",
                len * 2,
                bytes.len()
            ),
        ));
        None
    } else if bytes.iter().all(|b| *b == 0) {
        errors.push(FieldError::new(
            at,
            format!("an all-zero {what} is invalid"),
        ));
        None
    } else {
        Some(hex::encode(bytes))
    }
}

fn nanos(value: u64, at: &str, errors: &mut Vec<FieldError>) -> Option<i64> {
    match i64::try_from(value) {
        Ok(0) => {
            errors.push(FieldError::new(at, "the time is missing"));
            None
        }
        Ok(n) => Some(n),
        Err(_) => {
            errors.push(FieldError::new(
                at,
                format!("{value} ns is past the year 2262"),
            ));
            None
        }
    }
}

fn attributes(
    attributes: Vec<KeyValue>,
    at: &str,
    limits: &TraceLimits,
    errors: &mut Vec<FieldError>,
) -> Option<Map<String, Value>> {
    let before = errors.len();
    let map = attributes_of(attributes, at, limits, errors);
    (errors.len() == before).then_some(map)
}

fn attributes_of(
    attributes: Vec<KeyValue>,
    at: &str,
    limits: &TraceLimits,
    errors: &mut Vec<FieldError>,
) -> Map<String, Value> {
    if attributes.len() > limits.max_attributes {
        errors.push(FieldError::new(
            at,
            format!(
                "{} attributes; at most {} are accepted",
                attributes.len(),
                limits.max_attributes
            ),
        ));
        return Map::new();
    }
    let mut map = Map::new();
    for (k, kv) in attributes.into_iter().enumerate() {
        if kv.key.is_empty() {
            errors.push(FieldError::new(
                format!("{at}[{k}].key"),
                "an attribute needs a key",
            ));
            continue;
        }
        let value = kv.value.map_or(Value::Null, |v| json(v, limits));
        map.insert(cut(kv.key, limits.max_name_chars), value);
    }
    map
}

/// OTLP's typed value as JSON: bytes as hex, a non-finite double as its name.
fn json(value: AnyValue, limits: &TraceLimits) -> Value {
    use any_value::Value as V;
    match value.value {
        None => Value::Null,
        Some(V::StringValue(s)) => Value::String(cut(s, limits.max_string_chars)),
        Some(V::BoolValue(b)) => Value::Bool(b),
        Some(V::IntValue(i)) => Value::from(i),
        Some(V::DoubleValue(d)) => serde_json::Number::from_f64(d)
            .map_or_else(|| Value::String(d.to_string()), Value::Number),
        Some(V::BytesValue(b)) => Value::String(cut(hex::encode(b), limits.max_string_chars)),
        Some(V::ArrayValue(a)) => {
            Value::Array(a.values.into_iter().map(|v| json(v, limits)).collect())
        }
        // An index into a profile's string table: there is no table in a trace.
        Some(V::StringValueStrindex(_)) => Value::Null,
        Some(V::KvlistValue(l)) => Value::Object(
            l.values
                .into_iter()
                .map(|kv| (kv.key, kv.value.map_or(Value::Null, |v| json(v, limits))))
                .collect(),
        ),
    }
}

fn cut(mut s: String, max_chars: usize) -> String {
    if let Some((i, _)) = s.char_indices().nth(max_chars) {
        s.truncate(i);
        s.push('…');
    }
    s
}
