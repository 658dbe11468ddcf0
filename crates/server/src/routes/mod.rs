mod agents;
mod alerts;
mod calls;
mod deliveries;
mod extract;
mod health;
mod keys;
pub(crate) mod metrics;
pub(crate) mod observe;
mod outbound;
mod project;
pub(crate) mod recordings;
mod runs;
mod scenarios;
mod telemetry;
pub(crate) mod traces;
pub(crate) mod vendors;
pub(crate) mod webhook;

pub use webhook::CEKURA_PATH;

pub(crate) use extract::{ApiJson, ApiPath, ApiQuery, PageLimit};

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::openapi::ApiDoc;
use crate::{ApiError, AppState};

/// The OpenAPI document of every documented route, for a deployment with the default limits.
pub fn openapi() -> utoipa::openapi::OpenApi {
    crate::openapi::complete(documented().into_openapi(), &Default::default())
}

/// Every documented route, registered once for both the router and the OpenAPI document.
pub(crate) fn documented() -> OpenApiRouter<AppState> {
    use utoipa::OpenApi;
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(webhook::cekura_path))
        .routes(routes!(webhook::project_path))
        .routes(routes!(calls::list_calls))
        .routes(routes!(calls::get_call, calls::patch_call))
        .routes(routes!(calls::patch_call_log))
        .routes(routes!(calls::get_call_raw))
        .routes(routes!(recordings::get_recording))
        .routes(routes!(deliveries::list_deliveries))
        .routes(routes!(deliveries::get_delivery))
        .routes(routes!(project::get_project, project::update_project))
        .routes(routes!(project::list_vendor_secrets))
        .routes(routes!(keys::create_key, keys::list_keys))
        .routes(routes!(keys::get_key, keys::revoke_key))
        .routes(routes!(keys::rotate_key))
        .routes(routes!(
            project::put_vendor_secret,
            project::delete_vendor_secret
        ))
        .routes(routes!(observe::observe))
        .routes(routes!(traces::export))
        .routes(routes!(traces::get_call_trace))
        .routes(routes!(vendors::vapi_cekura_path))
        .routes(routes!(vendors::vapi_project_path))
        .routes(routes!(vendors::retell_cekura_path))
        .routes(routes!(vendors::retell_project_path))
        .routes(routes!(vendors::elevenlabs_cekura_path))
        .routes(routes!(vendors::elevenlabs_project_path))
        .routes(routes!(
            scenarios::create_scenario,
            scenarios::list_scenarios
        ))
        .routes(routes!(scenarios::get_scenario))
        .routes(routes!(agents::create_agent, agents::list_agents))
        .routes(routes!(agents::get_agent, agents::patch_agent))
        .routes(routes!(agents::get_simulator, agents::put_simulator))
        .routes(routes!(runs::get_gate))
        .routes(routes!(runs::rerun_failed))
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
        .routes(routes!(outbound::create_endpoint, outbound::list_endpoints))
        .routes(routes!(
            outbound::get_endpoint,
            outbound::patch_endpoint,
            outbound::delete_endpoint
        ))
        .routes(routes!(outbound::rotate_secret))
        .routes(routes!(outbound::send_test))
        .routes(routes!(outbound::list_deliveries))
        .routes(routes!(outbound::replay_failed))
        .routes(routes!(outbound::get_delivery))
        .routes(routes!(outbound::replay))
        .routes(routes!(alerts::create_rule, alerts::list_rules))
        .routes(routes!(
            alerts::get_rule,
            alerts::replace_rule,
            alerts::delete_rule
        ))
        .routes(routes!(alerts::list_alerts))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
}

pub(crate) fn router(state: AppState) -> Router {
    let body_timeout = state.settings.http.body_read_timeout;
    let counted = state.app.telemetry.clone();
    let (router, spec) = documented().split_for_parts();
    let spec = Arc::new(crate::openapi::complete(spec, &state.settings.app.limits));
    router
        // Cekura's own clients post without the trailing slash.
        .route(
            webhook::CEKURA_PATH.trim_end_matches('/'),
            post(webhook::cekura_path),
        )
        .route(
            observe::OBSERVE_PATH.trim_end_matches('/'),
            post(observe::observe),
        )
        .route(
            vendors::VAPI_PATH.trim_end_matches('/'),
            post(vendors::vapi_cekura_path),
        )
        .route(
            vendors::RETELL_PATH.trim_end_matches('/'),
            post(vendors::retell_cekura_path),
        )
        .route(
            vendors::ELEVENLABS_PATH.trim_end_matches('/'),
            post(vendors::elevenlabs_cekura_path),
        )
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let spec = spec.clone();
                async move { Json(spec.as_ref().clone()) }
            }),
        )
        .route("/metrics", get(telemetry::metrics))
        .merge(crate::web::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(move |req, next| {
            telemetry::count_requests(counted.clone(), req, next)
        }))
        .layer(DefaultBodyLimit::max(extract::JSON_BODY_LIMIT))
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
