use axum::extract::State;
use axum::Json;
use callgrade_store::{Delivery, DeliveryFilter, DeliveryOutcome, DeliverySummary, Page};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{ApiPath, ApiQuery, PageLimit};
use crate::auth::ApiProject;
use crate::{ApiError, AppState};

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeParam {
    Accepted,
    Rejected,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// `rejected` shows only the requests we refused.
    #[param(inline)]
    outcome: Option<OutcomeParam>,
    /// Page size.
    #[param(inline)]
    limit: Option<PageLimit>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The webhook delivery log, newest first: every authenticated webhook request, accepted or
/// rejected, with its errors. Where to look first when "no calls appear".
#[utoipa::path(get, path = "/api/v1/deliveries", tag = "deliveries", params(DeliveriesQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Page<DeliverySummary>),
              (status = 400, body = crate::error::ErrorBody),
              (status = 401, body = crate::error::ErrorBody)))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> Result<Json<Page<DeliverySummary>>, ApiError> {
    let filter = DeliveryFilter {
        outcome: q.outcome.map(|o| match o {
            OutcomeParam::Accepted => DeliveryOutcome::Accepted,
            OutcomeParam::Rejected => DeliveryOutcome::Rejected,
        }),
        cursor: q.cursor,
        limit: PageLimit::or_default(q.limit),
    };
    Ok(Json(
        state.app.store.list_deliveries(project.id, &filter).await?,
    ))
}

/// One delivery with its body as received (cut at the log's cap).
#[utoipa::path(get, path = "/api/v1/deliveries/{id}", tag = "deliveries",
    params(("id" = i64, Path, description = "The delivery id (the receipt's `delivery_id`)")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Delivery),
              (status = 401, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_delivery(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Delivery>, ApiError> {
    let missing = || ApiError::not_found(format!("no delivery {id:?} in this project"));
    let Ok(numeric) = id.parse::<i64>() else {
        return Err(missing());
    };
    state
        .app
        .store
        .delivery(project.id, numeric)
        .await?
        .map(Json)
        .ok_or_else(missing)
}
