//! Calls in: read, validate, store, all or nothing; every outcome, accepted or refused, is
//! recorded in the delivery log. The edge authenticates and reads the body (its size and time
//! limits are the transport's); everything after that happens here.

use callgrade_core::{
    parse_json, validate_batch_owned, AnalysedRecording, Answer, FieldError, Rejection,
    RejectionKind,
};
use callgrade_store::{CallStatus, IngestOutcome, NewDelivery, Project, Receipt};
use chrono::{DateTime, Utc};

use crate::{App, AppError, Result};

/// One webhook request: whose, where it arrived, when, and how the edge answers it (the
/// delivery log records the status the edge gives).
pub struct Delivery<'a> {
    pub project: &'a Project,
    pub route: &'a str,
    pub received_at: DateTime<Utc>,
    pub answer: Answer,
}

impl Delivery<'_> {
    fn record(&self, app: &App, body: &[u8]) -> NewDelivery {
        NewDelivery::new(
            self.project.id,
            self.received_at,
            self.route,
            body,
            app.settings.delivery_body_cap,
            self.answer,
        )
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
    let json = match parsed {
        Ok(v) => v,
        Err(e) => {
            let rejection = Rejection {
                kind: RejectionKind::MalformedJson,
                detail: e.to_string(),
                errors: vec![FieldError::new("$", e.to_string())],
            };
            return Err(refuse(app, record, rejection).await);
        }
    };
    // Each call's raw object is moved out of the tree, which is then dropped.
    let mut batch = match validate_batch_owned(json, &app.settings.limits) {
        Ok(batch) => batch,
        Err(errors) => {
            let rejection = Rejection::invalid_payload(errors);
            return Err(refuse(app, record, rejection).await);
        }
    };
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
    let calls = batch.calls.len();
    match app.store.ingest(batch, record).await? {
        IngestOutcome::Accepted(receipt) => {
            tracing::info!(
                project_id = delivery.project.id,
                calls,
                created = receipt.created,
                delivery_id = receipt.delivery_id,
                "webhook accepted"
            );
            Ok(receipt)
        }
        IngestOutcome::Rejected(rejection) => {
            tracing::info!(
                project_id = delivery.project.id,
                error = rejection.kind.code(),
                "webhook rejected"
            );
            Err(AppError::Rejected(rejection))
        }
    }
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
async fn refuse(app: &App, record: NewDelivery, rejection: Rejection) -> AppError {
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
