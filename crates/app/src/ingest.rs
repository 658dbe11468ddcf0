//! Calls in: read, validate, store, all or nothing; every outcome, accepted or refused, is
//! recorded in the delivery log. The edge authenticates and reads the body (its size and time
//! limits are the transport's); everything after that happens here.

use callgrade_core::privacy::{redact_call, RedactionMode};
use callgrade_core::redact::{Counts, Redactor, Replacement};
use callgrade_core::{
    parse_json, parse_observe, parse_vendor, signature, validate_batch_owned, AgentRef,
    AnalysedRecording, Answer, Batch, FieldError, Format, Rejection, RejectionKind, Vendor,
    VendorBody, VendorCall,
};
use callgrade_store::{CallStatus, IngestOutcome, NewDelivery, Project, Receipt};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::recordings::Origin;
use crate::{App, AppError, Result};

/// One webhook request: whose, where it arrived, when, in which format, and how the edge
/// answers it (the delivery log records the status the edge gives).
pub struct Delivery<'a> {
    pub project: &'a Project,
    pub route: &'a str,
    pub received_at: DateTime<Utc>,
    pub answer: Answer,
    pub format: Format,
}

impl Delivery<'_> {
    /// The delivery log's entry, its copy of the body redacted under the project's policy
    /// (with typed tokens whatever the mode: the log is read to debug a sender, and hashing
    /// it would keep a key's worth of linkable tokens in a second place).
    pub(crate) fn record(&self, app: &App, body: &[u8]) -> NewDelivery {
        let mut record = NewDelivery {
            format: self.format,
            ..NewDelivery::new(
                self.project.id,
                self.received_at,
                self.route,
                body,
                app.settings.delivery_body_cap,
                self.answer,
            )
        };
        if self.project.redaction.mode != RedactionMode::Off {
            let masked = Redactor::new(Replacement::Mask);
            record.body = masked.json_text(&record.body, &mut Counts::default());
        }
        record
    }
}

/// Validates and stores a webhook body; `is_json` is whether the request said it was JSON.
/// A 2xx may be answered once this returns `Ok`: the calls are durable. The body is taken so
/// it can be let go once parsed: a large request is not held in three forms at once.
pub async fn receive(
    app: &App,
    delivery: &Delivery<'_>,
    body: impl AsRef<[u8]>,
    is_json: bool,
) -> Result<Receipt> {
    store(app, delivery, body, is_json, None).await
}

/// Like [`receive`], for a body of one call that comes with its recording (already written
/// by [`crate::recordings::prepare`]): the recording is stored in the call's transaction, so
/// the call is evaluated once, with its audio. When the call is refused or was stored before,
/// the recording's object is removed.
pub async fn receive_with_recording(
    app: &App,
    delivery: &Delivery<'_>,
    body: impl AsRef<[u8]>,
    recording: AnalysedRecording,
) -> Result<Receipt> {
    let key = recording.object_key.clone();
    let stored = store(app, delivery, body, true, Some(recording)).await;
    if !matches!(&stored, Ok(r) if r.calls.iter().all(|c| c.status == CallStatus::Created)) {
        crate::recordings::discard(app, &key).await;
    }
    stored
}

async fn store(
    app: &App,
    delivery: &Delivery<'_>,
    body: impl AsRef<[u8]>,
    is_json: bool,
    recording: Option<AnalysedRecording>,
) -> Result<Receipt> {
    // The delivery log keeps (a capped copy of) the body, whatever the outcome.
    let record = delivery.record(app, body.as_ref());
    let (json, record) = read_json(app, record, body, is_json).await?;
    // Each call's raw object is moved out of the tree, which is then dropped.
    let batch = match validate_batch_owned(json, &app.settings.limits) {
        Ok(batch) => batch,
        Err(errors) => {
            let rejection = Rejection::invalid_payload(errors);
            return Err(refuse(app, record, rejection).await);
        }
    };
    store_batch(app, delivery, record, batch, recording).await
}

/// The body as JSON, within the value budget, or the refusal already logged.
async fn read_json(
    app: &App,
    record: NewDelivery,
    body: impl AsRef<[u8]>,
    is_json: bool,
) -> Result<(Value, NewDelivery)> {
    if !is_json {
        let rejection = Rejection::new(
            RejectionKind::UnsupportedMediaType,
            "Content-Type must be application/json",
        );
        return Err(refuse(app, record, rejection).await);
    }
    if let Err(too_many) = app.settings.limits.check_json_values(body.as_ref()) {
        let rejection = Rejection::new(RejectionKind::PayloadTooLarge, too_many);
        return Err(refuse(app, record, rejection).await);
    }
    let parsed = parse_json(body.as_ref());
    drop(body);
    match parsed {
        Ok(v) => Ok((v, record)),
        Err(e) => {
            let rejection = Rejection {
                kind: RejectionKind::MalformedJson,
                detail: e.to_string(),
                errors: vec![FieldError::new("$", e.to_string())],
            };
            Err(refuse(app, record, rejection).await)
        }
    }
}

/// Stores a validated batch (with the recording of its one call, if any) and logs the outcome.
async fn store_batch(
    app: &App,
    delivery: &Delivery<'_>,
    record: NewDelivery,
    mut batch: Batch,
    recording: Option<AnalysedRecording>,
) -> Result<Receipt> {
    if let Some(recording) = recording {
        let [call] = batch.calls.as_mut_slice() else {
            let rejection = Rejection::invalid_payload(vec![FieldError::new(
                "calls",
                "a recording goes with exactly one call",
            )]);
            return Err(refuse(app, record, rejection).await);
        };
        call.recording = Some(Box::new(recording));
    }
    redact(app, delivery.project, &mut batch).await?;
    let calls = batch.calls.len();
    match app.store.ingest(batch, record).await? {
        IngestOutcome::Accepted(receipt) => {
            let stored = (receipt.created + receipt.updated) as u64;
            let project = delivery.project.id.to_string();
            let labels = [("project", project.as_str())];
            app.telemetry
                .count("callgrade_calls_ingested_total", &labels, stored);
            tracing::info!(
                project_id = delivery.project.id,
                calls,
                created = receipt.created,
                delivery_id = receipt.delivery_id,
                format = receipt.format,
                "webhook accepted"
            );
            Ok(receipt)
        }
        IngestOutcome::Rejected(rejection) => {
            count_rejection(app, delivery.project.id, &rejection);
            tracing::info!(
                project_id = delivery.project.id,
                error = rejection.kind.code(),
                "webhook rejected"
            );
            Err(AppError::Rejected(rejection))
        }
    }
}

/// Applies the project's redaction policy to every call of the batch, before anything of it
/// is stored (the raw object, the messages, the metadata), so evaluation sees it redacted too.
async fn redact(app: &App, project: &Project, batch: &mut Batch) -> Result<()> {
    let policy = project.redaction;
    let key = match policy.mode {
        RedactionMode::Off => return Ok(()),
        RedactionMode::Mask => None,
        RedactionMode::Hash => app.store.redaction_key(project.id).await?,
    };
    let Some(redactor) = policy.redactor(key) else {
        return Ok(());
    };
    for call in &mut batch.calls {
        redact_call(call, &redactor, policy);
    }
    Ok(())
}

/// Records a request the edge refused before reading all of it (too slow, too large);
/// `body_size` is what the request announced.
pub async fn refuse_unread(
    app: &App,
    delivery: &Delivery<'_>,
    body_size: usize,
    rejection: Rejection,
) -> AppError {
    let mut record = delivery.record(app, b"");
    record.body_size = body_size;
    refuse(app, record, rejection).await
}

/// Logs a refusal in the delivery log and gives it back to answer with. A failure to log does
/// not change the answer: the request was refused either way.
pub(crate) async fn refuse(app: &App, record: NewDelivery, rejection: Rejection) -> AppError {
    count_rejection(app, record.project_id, &rejection);
    tracing::info!(
        project_id = record.project_id,
        error = rejection.kind.code(),
        "webhook rejected"
    );
    if let Err(e) = app.store.record_delivery(record, rejection.clone()).await {
        tracing::warn!(error = %e, "could not record a rejected delivery");
    }
    AppError::Rejected(rejection)
}

fn count_rejection(app: &App, project_id: i64, rejection: &Rejection) {
    let project = project_id.to_string();
    let labels = [
        ("project", project.as_str()),
        ("error", rejection.kind.code()),
    ];
    app.telemetry
        .count("callgrade_deliveries_rejected_total", &labels, 1);
}

/// What a vendor's webhook came to: its calls stored, or an event with none, acknowledged.
#[derive(Debug)]
pub enum VendorOutcome {
    Stored(Receipt),
    Ignored { event: String, reason: String },
}

/// How a vendor's request proves itself: the signature headers the edge read, by lower-case
/// name, and whether the route has nothing else to trust (a per-project URL without a key).
pub struct Signed<'a> {
    pub headers: &'a [(&'static str, String)],
    /// When true, a project with no saved secret refuses the request.
    pub required: bool,
}

/// Receives a vendor's post-call webhook: its signature checked with the project's secret,
/// its body read by the vendor's parser, its agent found, then stored like the webhook's.
/// `agent_id` is the route's `agent_id` query parameter, when given.
pub async fn receive_vendor(
    app: &App,
    delivery: &Delivery<'_>,
    vendor: Vendor,
    body: impl AsRef<[u8]>,
    is_json: bool,
    signed: Signed<'_>,
    agent_id: Option<i64>,
) -> Result<VendorOutcome> {
    let record = delivery.record(app, body.as_ref());
    let project_id = delivery.project.id;
    match app.store.vendor_secret(project_id, vendor).await? {
        Some(secret) => {
            let header = |name: &str| {
                signed
                    .headers
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.as_str())
            };
            let checked =
                signature::verify(vendor, &secret, header, body.as_ref(), delivery.received_at);
            if let Err(why) = checked {
                let rejection = Rejection::new(RejectionKind::Unauthorized, why);
                return Err(refuse(app, record, rejection).await);
            }
        }
        None if signed.required => {
            let rejection = Rejection::new(
                RejectionKind::Unauthorized,
                format!(
                    "no {name} secret is saved for this project, so nothing proves this request is {name}'s: save it with PUT /api/v1/vendor-secrets/{name} (or send to /observability/v1/{name}/observe/ with the project key)",
                    name = vendor.as_str()
                ),
            );
            return Err(refuse(app, record, rejection).await);
        }
        None => {}
    }
    let (json, record) = read_json(app, record, body, is_json).await?;
    let parsed = parse_vendor(vendor, json, agent_id, &app.settings.limits);
    let found = match parsed {
        Ok(VendorBody::Call(found)) => *found,
        Ok(VendorBody::Ignored { event, reason }) => {
            let rejection = Rejection::new(
                RejectionKind::IgnoredEvent,
                format!("{event:?} is not stored: {reason}"),
            );
            // Logged like a refusal, so the delivery log shows why no call came of it.
            let _ = refuse(app, record, rejection).await;
            return Ok(VendorOutcome::Ignored { event, reason });
        }
        Err(errors) => {
            return Err(refuse(app, record, Rejection::invalid_payload(errors)).await);
        }
    };
    let batch = match placed(app, project_id, found).await? {
        Ok(batch) => batch,
        Err(e) => return Err(refuse(app, record, Rejection::invalid_payload(vec![e])).await),
    };
    store_batch(app, delivery, record, batch, None)
        .await
        .map(VendorOutcome::Stored)
}

/// The file field of a multipart observe body.
const RECORDING_FIELD: &str = "voice_recording";

/// Receives a call on Cekura's observe endpoint, in any of the bodies it takes: JSON, a
/// urlencoded form, or multipart with the recording as a `voice_recording` file.
pub async fn receive_observe(
    app: &App,
    delivery: &Delivery<'_>,
    body: bytes::Bytes,
    content_type: Option<&str>,
) -> Result<Receipt> {
    let record = delivery.record(app, &body);
    let mime = content_type
        .and_then(|c| c.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    let (json, record, recording) = match mime.as_deref() {
        Some("application/x-www-form-urlencoded") => {
            match serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) {
                Ok(pairs) => (fields(pairs), record, None),
                Err(e) => {
                    let e = FieldError::new("$", format!("the form could not be read: {e}"));
                    return Err(refuse(app, record, Rejection::invalid_payload(vec![e])).await);
                }
            }
        }
        Some("multipart/form-data") => {
            match multipart(content_type.unwrap_or_default(), body).await {
                Ok((pairs, file)) => (fields(pairs), record, file),
                Err(why) => {
                    let e = FieldError::new("$", why);
                    return Err(refuse(app, record, Rejection::invalid_payload(vec![e])).await);
                }
            }
        }
        other => {
            let is_json = other == Some("application/json");
            let (json, record) = read_json(app, record, body, is_json).await?;
            (json, record, None)
        }
    };
    let found = match parse_observe(json, delivery.received_at, &app.settings.limits) {
        Ok(found) => found,
        Err(errors) => {
            return Err(refuse(app, record, Rejection::invalid_payload(errors)).await);
        }
    };
    let project_id = delivery.project.id;
    let recording = match recording {
        None => None,
        Some(bytes) => {
            if found.call.recording_request.is_some() {
                let e = FieldError::new(
                    "voice_recording_url",
                    "and a voice_recording file were both sent; send one of them",
                );
                return Err(refuse(app, record, Rejection::invalid_payload(vec![e])).await);
            }
            let channel = found
                .call
                .raw
                .get("main_agent_channel_index")
                .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
                .map_or(1, |c| c as u32);
            match crate::recordings::prepare(app, project_id, bytes, Origin::Uploaded, channel)
                .await
            {
                Ok(recording) => Some(recording),
                Err(AppError::BadRequest(why)) => {
                    let e = FieldError::new("voice_recording", why);
                    return Err(refuse(app, record, Rejection::invalid_payload(vec![e])).await);
                }
                Err(other) => return Err(other),
            }
        }
    };
    let key = recording.as_ref().map(|r| r.object_key.clone());
    let batch = match placed(app, project_id, found).await? {
        Ok(batch) => batch,
        Err(e) => {
            if let Some(key) = &key {
                crate::recordings::discard(app, key).await;
            }
            return Err(refuse(app, record, Rejection::invalid_payload(vec![e])).await);
        }
    };
    let stored = store_batch(app, delivery, record, batch, recording).await;
    if let Some(key) = key {
        if !matches!(&stored, Ok(r) if r.calls.iter().all(|c| c.status == CallStatus::Created)) {
            crate::recordings::discard(app, &key).await;
        }
    }
    stored
}

/// A form's fields as a JSON object of strings (a repeated name keeps its last value).
fn fields(pairs: Vec<(String, String)>) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
}

/// A multipart body's text fields and its recording file. A body made by any HTTP client
/// library parses; the error says what broke otherwise.
async fn multipart(
    content_type: &str,
    body: bytes::Bytes,
) -> std::result::Result<(Vec<(String, String)>, Option<Vec<u8>>), String> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| format!("the multipart Content-Type has no usable boundary: {e}"))?;
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut parts = multer::Multipart::new(stream, boundary);
    let (mut pairs, mut file) = (Vec::new(), None);
    let broken = |e: multer::Error| format!("the multipart body could not be read: {e}");
    while let Some(field) = parts.next_field().await.map_err(broken)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == RECORDING_FIELD {
            if file.is_some() {
                return Err(format!(
                    "{RECORDING_FIELD} is sent twice; send one recording"
                ));
            }
            file = Some(field.bytes().await.map_err(broken)?.to_vec());
        } else {
            let text = field.text().await.map_err(broken)?;
            pairs.push((name, text));
        }
    }
    Ok((pairs, file))
}

/// The call as a batch of one, for the agent its body names: callgrade's id as is, a vendor's
/// through the agents' `external_ids`. The inner error is the sender's to fix.
async fn placed(
    app: &App,
    project_id: i64,
    found: VendorCall,
) -> Result<std::result::Result<Batch, FieldError>> {
    let agent_id = match found.agent {
        Some(AgentRef::Id(id)) => id,
        Some(AgentRef::External { id, path }) => {
            match app.store.agent_by_external_id(project_id, &id).await? {
                Some(agent_id) => agent_id,
                None => {
                    return Ok(Err(FieldError::new(
                        path,
                        format!(
                            "{id:?} is no agent's external id in this project: add it to the agent's external_ids (PATCH /api/v1/agents/{{id}} with {{\"external_ids\": [{id:?}]}}), or pass ?agent_id= on the URL"
                        ),
                    )))
                }
            }
        }
        None => {
            return Ok(Err(FieldError::new(
                "agent_id",
                "is required: pass ?agent_id= on the URL, or store the vendor's assistant or agent id in the agent's external_ids",
            )))
        }
    };
    Ok(Ok(Batch {
        agent_id: Some(agent_id),
        calls: vec![found.call],
    }))
}
