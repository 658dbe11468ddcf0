use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;

/// How the server stands.
#[derive(Serialize, ToSchema)]
pub struct Health {
    status: HealthStatus,
    /// Why it is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'static str>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// The process answers.
    Ok,
    /// The database answers.
    Ready,
    /// The database does not answer.
    Unavailable,
}

impl Health {
    fn is(status: HealthStatus) -> Json<Self> {
        Json(Self {
            status,
            detail: None,
        })
    }
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Health::is(HealthStatus::Ok)
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "Ready", body = Health),
              (status = 503, description = "The database does not answer", body = Health)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    match state.app.store.ping().await {
        Ok(()) => (StatusCode::OK, Health::is(HealthStatus::Ready)),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: HealthStatus::Unavailable,
                    detail: Some("the database does not answer"),
                }),
            )
        }
    }
}
