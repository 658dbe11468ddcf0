mod calls;
mod deliveries;
mod health;
pub(crate) mod metrics;
mod project;
mod runs;
mod scenarios;
mod webhook;

pub use webhook::CEKURA_PATH;

use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::openapi::ApiDoc;
use crate::{ApiError, AppState};

/// The OpenAPI document of every documented route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented().into_openapi()
}

/// Every documented route, registered once for both the router and the OpenAPI document.
pub(crate) fn documented() -> OpenApiRouter<AppState> {
    use utoipa::OpenApi;
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(webhook::cekura_path))
        .routes(routes!(webhook::project_path))
        .routes(routes!(calls::list_calls))
        .routes(routes!(calls::get_call))
        .routes(routes!(calls::get_call_raw))
        .routes(routes!(deliveries::list_deliveries))
        .routes(routes!(deliveries::get_delivery))
        .routes(routes!(project::get_project, project::update_project))
        .routes(routes!(
            scenarios::create_scenario,
            scenarios::list_scenarios
        ))
        .routes(routes!(scenarios::get_scenario))
        .routes(routes!(runs::create_result))
        .routes(routes!(runs::get_result))
        .routes(routes!(runs::list_runs))
        .routes(routes!(runs::get_run))
        .routes(routes!(runs::call_started))
        .routes(routes!(runs::call_ended))
        .routes(routes!(runs::cancel_run))
        .routes(routes!(runs::attach))
        .routes(routes!(metrics::list_metrics, metrics::create_metric))
        .routes(routes!(metrics::apply_metrics))
        .routes(routes!(metrics::summary))
        .routes(routes!(metrics::try_metric))
        .routes(routes!(
            metrics::get_metric,
            metrics::update_metric,
            metrics::delete_metric
        ))
        .routes(routes!(metrics::get_rubric, metrics::put_rubric))
        .routes(routes!(metrics::get_judge, metrics::put_judge))
        .routes(routes!(metrics::evaluate_call))
        .routes(routes!(metrics::rerun))
        .routes(routes!(metrics::jobs))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
}

pub(crate) fn router(state: AppState) -> Router {
    let body_timeout = state.settings.http.body_read_timeout;
    let (router, spec) = documented().split_for_parts();
    let spec = Arc::new(spec);
    router
        // Cekura's own clients post without the trailing slash.
        .route(
            webhook::CEKURA_PATH.trim_end_matches('/'),
            post(webhook::cekura_path),
        )
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let spec = spec.clone();
                async move { Json(spec.as_ref().clone()) }
            }),
        )
        .merge(crate::web::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TraceLayer::new_for_http())
        // A body not in whole by its deadline gets 408, however it trickles.
        .layer(axum::middleware::from_fn(move |req, next| {
            crate::deadline::body_deadline(body_timeout, req, next)
        }))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; the API is described at /api/v1/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method; see /api/v1/openapi.json",
    )
}

/// Query parameters whose rejection is an [`ApiError`], like every other error.
pub(crate) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {}", e.body_text())))
    }
}

/// A JSON request body whose rejection is an [`ApiError`] naming what is wrong.
pub(crate) struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        <Json<T> as FromRequest<S>>::from_request(req, state)
            .await
            .map(|Json(v)| ApiJson(v))
            .map_err(|e| {
                if caused_by::<crate::deadline::BodyDeadlineExceeded>(&e) {
                    ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "body_timeout",
                        "the request body did not arrive whole within the body deadline",
                    )
                } else {
                    ApiError::bad_request(e.body_text())
                }
            })
    }
}

/// An optional body: absent (no Content-Type) is `None`, present must be valid.
impl<T: DeserializeOwned, S: Send + Sync> OptionalFromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        if req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .is_none()
        {
            return Ok(None);
        }
        <Self as FromRequest<S>>::from_request(req, state)
            .await
            .map(Some)
    }
}

/// Whether an error, or anything in its chain of causes, is a `T`.
pub(crate) fn caused_by<T: std::error::Error + 'static>(
    e: &(dyn std::error::Error + 'static),
) -> bool {
    let mut current = Some(e);
    while let Some(err) = current {
        if err.is::<T>() {
            return true;
        }
        current = err.source();
    }
    false
}

/// Integer ids in paths; anything else names nothing.
pub(crate) fn parse_id(id: &str) -> Option<i64> {
    id.parse().ok()
}

/// Page sizes: 50 unless asked, 200 at most.
pub(crate) fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(50),
        Some(n @ 1..=200) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "limit must be between 1 and 200 (got {n})"
        ))),
    }
}
