//! Traces in: an OTLP/HTTP export (protobuf or JSON, maybe gzip-compressed) read, checked and
//! stored all or nothing, with its delivery record; and a call's trace read back with its
//! breakdown by turn.

use std::io::Read as _;

use callgrade_core::{
    breakdown, read_traces, FieldError, OtlpEncoding, Rejection, RejectionKind, TraceBreakdown,
    TraceLimits, TraceSpan,
};
use callgrade_store::SpanReceipt;
use flate2::read::GzDecoder;

use crate::ingest::{refuse, Delivery};
use crate::{App, AppError, Result};

/// How the request said its body is encoded, from its headers.
pub struct Encoding<'a> {
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
}

/// Reads and stores an export. `max_bytes` bounds the body once decompressed, as the edge
/// bounds it on the wire. A 2xx may be answered once this returns `Ok`: the spans are durable.
pub async fn receive(
    app: &App,
    delivery: &Delivery<'_>,
    body: &[u8],
    encoding: Encoding<'_>,
    max_bytes: usize,
) -> Result<SpanReceipt> {
    let format = match encoding.content_type.map(media_type).as_deref() {
        Some("application/x-protobuf" | "application/protobuf") => Some(OtlpEncoding::Protobuf),
        Some("application/json") => Some(OtlpEncoding::Json),
        _ => None,
    };
    let gzip = match encoding.content_encoding.map(str::trim) {
        None | Some("") => false,
        Some(e) if e.eq_ignore_ascii_case("identity") => false,
        Some(e) if e.eq_ignore_ascii_case("gzip") => true,
        Some(e) => {
            let rejection = Rejection::new(
                RejectionKind::UnsupportedMediaType,
                format!(
                    "Content-Encoding {:?} is not accepted; send gzip or no encoding",
                    e.chars().take(40).collect::<String>()
                ),
            );
            return Err(refuse(app, delivery.record(app, b""), rejection).await);
        }
    };
    let inflated;
    let body = if gzip {
        match gunzip(body, max_bytes) {
            Ok(bytes) => {
                inflated = bytes;
                &inflated[..]
            }
            Err(rejection) => {
                return Err(refuse(app, delivery.record(app, b""), rejection).await);
            }
        }
    } else {
        body
    };
    // The log keeps JSON as it came; protobuf is not text, so it is described.
    let record = match format {
        Some(OtlpEncoding::Protobuf) => {
            let mut record = delivery.record(app, b"");
            record.body = format!("({} bytes of OTLP protobuf)", body.len());
            record.body_size = body.len();
            record
        }
        _ => delivery.record(app, body),
    };
    let Some(format) = format else {
        let rejection = Rejection::new(
            RejectionKind::UnsupportedMediaType,
            "Content-Type must be application/x-protobuf or application/json (OTLP/HTTP)",
        );
        return Err(refuse(app, record, rejection).await);
    };
    if format == OtlpEncoding::Json {
        if let Err(too_many) = app.settings.limits.check_json_values(body) {
            let rejection = Rejection::new(RejectionKind::PayloadTooLarge, too_many);
            return Err(refuse(app, record, rejection).await);
        }
    }
    let read = match read_traces(body, format, &TraceLimits::default()) {
        Ok(read) => read,
        Err(errors) => {
            let unreadable = errors.len() == 1 && errors[0].path == "$";
            let rejection = match unreadable {
                true => Rejection {
                    kind: RejectionKind::MalformedJson,
                    detail: errors[0].message.clone(),
                    errors,
                },
                false => Rejection::invalid_payload(errors),
            };
            return Err(refuse(app, record, rejection).await);
        }
    };
    let (spans, traces) = (read.spans.len(), read.trace_ids.len());
    let receipt = app
        .store
        .store_spans(delivery.project.id, read.spans, record)
        .await?;
    tracing::info!(
        project_id = delivery.project.id,
        spans,
        traces,
        stored = receipt.stored,
        calls = receipt.calls.len(),
        delivery_id = receipt.delivery_id,
        "traces accepted"
    );
    Ok(receipt)
}

/// `application/json; charset=utf-8` → `application/json`.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// A gzip body inflated to at most `max_bytes`: a small body that inflates without bound
/// (a "zip bomb") is refused as too large, not held in memory.
fn gunzip(body: &[u8], max_bytes: usize) -> std::result::Result<Vec<u8>, Rejection> {
    let mut out = Vec::new();
    let limit = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    match GzDecoder::new(body).take(limit).read_to_end(&mut out) {
        Ok(n) if n > max_bytes => Err(Rejection::new(
            RejectionKind::PayloadTooLarge,
            format!("the body inflates to over {max_bytes} bytes; export in smaller batches"),
        )),
        Ok(_) => Ok(out),
        Err(e) => Err(Rejection {
            kind: RejectionKind::MalformedJson,
            detail: format!("the body is not valid gzip: {e}"),
            errors: vec![FieldError::new("$", format!("not valid gzip: {e}"))],
        }),
    }
}

/// A call's trace: its spans in start order and what they say turn by turn.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallTrace {
    pub trace_id: String,
    pub breakdown: Option<TraceBreakdown>,
    pub spans: Vec<TraceSpan>,
}

/// The trace of a call (ours or the sender's id); `None` when the call has no `trace_id`.
pub async fn call_trace(app: &App, project_id: i64, call_id: &str) -> Result<Option<CallTrace>> {
    let id = crate::calls::resolve(app, project_id, call_id).await?;
    let call = app
        .store
        .call(project_id, &id)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no call {call_id:?} in this project")))?;
    match call.trace_id {
        Some(trace_id) => Ok(Some(trace(app, project_id, trace_id).await?)),
        None => Ok(None),
    }
}

/// A trace's spans and breakdown, for a caller that has the call already.
pub async fn trace(app: &App, project_id: i64, trace_id: String) -> Result<CallTrace> {
    let spans = app.store.trace(project_id, &trace_id).await?;
    Ok(CallTrace {
        trace_id,
        breakdown: breakdown(&spans),
        spans,
    })
}
