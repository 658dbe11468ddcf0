//! Calls in: read, validate, store, all or nothing; every outcome, accepted or refused, is
//! recorded in the delivery log. The edge authenticates and reads the body (its size and time
//! limits are the transport's); everything after that happens here.

use callgrade_core::{parse_json, validate_batch, FieldError};
use callgrade_store::{IngestOutcome, NewDelivery, Project, Receipt, RejectedDelivery};
use chrono::{DateTime, Utc};

use crate::{App, AppError, Result};

/// One webhook request: whose, where it arrived, when.
pub struct Delivery<'a> {
    pub project: &'a Project,
    pub route: &'a str,
    pub received_at: DateTime<Utc>,
}

impl Delivery<'_> {
    fn record(&self, app: &App, body: &[u8]) -> NewDelivery {
        NewDelivery::new(
            self.project.id,
            self.received_at,
            self.route,
            body,
            app.settings.delivery_body_cap,
        )
    }
}

/// Validates and stores a webhook body; `is_json` is whether the request said it was JSON.
/// A 2xx may be answered once this returns `Ok`: the calls are durable.
pub async fn receive(
    app: &App,
    delivery: &Delivery<'_>,
    body: &[u8],
    is_json: bool,
) -> Result<Receipt> {
    if !is_json {
        let rejection = RejectedDelivery {
            status: 415,
            error: "unsupported_media_type".into(),
            detail: "Content-Type must be application/json".into(),
            errors: Vec::new(),
        };
        return Err(refuse(app, delivery.record(app, body), rejection).await);
    }
    let json = match parse_json(body) {
        Ok(v) => v,
        Err(e) => {
            let rejection = RejectedDelivery {
                status: 400,
                error: "malformed_json".into(),
                detail: e.to_string(),
                errors: vec![FieldError::new("$", e.to_string())],
            };
            return Err(refuse(app, delivery.record(app, body), rejection).await);
        }
    };
    let batch = match validate_batch(&json, &app.settings.limits) {
        Ok(batch) => batch,
        Err(errors) => {
            let rejection = RejectedDelivery::invalid_payload(errors);
            return Err(refuse(app, delivery.record(app, body), rejection).await);
        }
    };
    let calls = batch.calls.len();
    match app.store.ingest(batch, delivery.record(app, body)).await? {
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
            tracing::info!(project_id = delivery.project.id, status = rejection.status, error = %rejection.error, "webhook rejected");
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
    rejection: RejectedDelivery,
) -> AppError {
    let mut record = delivery.record(app, b"");
    record.body_size = body_size;
    refuse(app, record, rejection).await
}

/// Logs a refusal in the delivery log and gives it back to answer with. A failure to log does
/// not change the answer: the request was refused either way.
async fn refuse(app: &App, record: NewDelivery, rejection: RejectedDelivery) -> AppError {
    tracing::info!(project_id = record.project_id, status = rejection.status, error = %rejection.error, "webhook rejected");
    if let Err(e) = app.store.record_delivery(record, rejection.clone()).await {
        tracing::warn!(error = %e, "could not record a rejected delivery");
    }
    AppError::Rejected(rejection)
}
