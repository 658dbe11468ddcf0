//! `GET /metrics`: Prometheus' text exposition (`app::telemetry`), behind a bearer token when
//! `--metrics-token` is set; and the middleware that counts and times every request by its
//! route template (never the path itself, which holds ids).

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use callgrade_app::telemetry::Telemetry;
use std::sync::Arc;
use subtle::ConstantTimeEq;

use crate::{ApiError, AppState};

pub(crate) async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(token) = &state.settings.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
            return Err(ApiError::unauthorized(
                "/metrics needs Authorization: Bearer <the --metrics-token>",
            ));
        }
    }
    let text = callgrade_app::telemetry::exposition(&state.app).await?;
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Counts and times a request under its route template (`/api/v1/calls/:call_id`;
/// `unmatched` for none).
pub(crate) async fn count_requests(
    telemetry: Arc<Telemetry>,
    req: Request,
    next: Next,
) -> Response {
    // `{id}` is written `:id`: some text-format parsers stop a label value at a brace.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_owned(), |p| {
            p.as_str().replace('{', ":").replace('}', "")
        });
    let method = req.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    telemetry.count(
        "callgrade_http_requests_total",
        &[("route", &route), ("method", &method), ("status", &status)],
        1,
    );
    telemetry.observe(
        "callgrade_http_request_duration_seconds",
        &[("route", &route)],
        started.elapsed().as_secs_f64(),
    );
    response
}
