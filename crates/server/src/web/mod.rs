//! The dashboard: server-rendered HTML (maud), readable without JavaScript; htmx and a copy
//! button only improve it. Assets are vendored and served from the binary.

mod layout;
mod pages;
mod session;
mod timeline;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login_page).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/projects", post(pages::create_project))
        .route("/projects/{id}", get(pages::project))
        .route("/projects/{id}/setup", get(pages::setup))
        .route("/projects/{id}/agents", post(pages::create_agent))
        .route(
            "/projects/{id}/agents/{agent_id}",
            post(pages::update_agent),
        )
        .route("/projects/{id}/settings", post(pages::update_settings))
        .route("/projects/{id}/keys", post(pages::create_key))
        .route(
            "/projects/{id}/keys/{key_id}/rotate",
            post(pages::rotate_key),
        )
        .route(
            "/projects/{id}/keys/{key_id}/revoke",
            post(pages::revoke_key),
        )
        .route("/projects/{id}/calls", get(pages::calls))
        .route("/projects/{id}/calls/{call_id}", get(pages::call))
        .route("/projects/{id}/calls/{call_id}/raw", get(pages::call_raw))
        .route(
            "/projects/{id}/calls/{call_id}/recording",
            get(pages::call_recording),
        )
        .route(
            "/projects/{id}/calls/{call_id}/evaluate",
            post(pages::evaluate),
        )
        .route("/projects/{id}/runs", get(pages::runs))
        .route("/projects/{id}/runs/{run_id}/attach", post(pages::attach))
        .route("/projects/{id}/runs/{run_id}", get(pages::run))
        .route(
            "/projects/{id}/runs/{run_id}/conversation",
            get(pages::run_conversation),
        )
        .route("/projects/{id}/metrics", get(pages::metrics))
        .route("/projects/{id}/metrics/try", post(pages::try_metric))
        .route("/projects/{id}/metrics/save", post(pages::save_metric))
        .route("/projects/{id}/results/{result_id}", get(pages::result))
        .route(
            "/projects/{id}/results/{result_id}/rerun-failed",
            post(pages::rerun_failed),
        )
        .route("/projects/{id}/deliveries", get(pages::deliveries))
        .route(
            "/projects/{id}/deliveries/{delivery_id}",
            get(pages::delivery),
        )
        .route(
            "/projects/{id}/alerts",
            get(pages::alert_rules).post(pages::create_alert_rule),
        )
        .route(
            "/projects/{id}/alerts/{rule_id}/delete",
            post(pages::delete_alert_rule),
        )
        .route("/projects/{id}/webhooks", get(pages::webhooks))
        .route(
            "/projects/{id}/webhooks/endpoints",
            post(pages::create_endpoint),
        )
        .route(
            "/projects/{id}/webhooks/endpoints/{endpoint_id}/{action}",
            post(pages::endpoint_action),
        )
        .route(
            "/projects/{id}/webhooks/replay-failed",
            post(pages::replay_failed),
        )
        .route(
            "/projects/{id}/webhooks/deliveries/{delivery_id}",
            get(pages::outbound_delivery),
        )
        .route(
            "/projects/{id}/webhooks/deliveries/{delivery_id}/replay",
            post(pages::replay_delivery),
        )
        .route("/assets/{file}", get(asset))
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> axum::response::Response {
    let (body, kind): (&'static [u8], &str) = match file.as_str() {
        "htmx.min.js" => (
            include_bytes!("../../assets/htmx.min.js"),
            "text/javascript",
        ),
        "app.js" => (include_bytes!("../../assets/app.js"), "text/javascript"),
        "app.css" => (include_bytes!("../../assets/app.css"), "text/css"),
        _ => {
            return layout::error(axum::http::StatusCode::NOT_FOUND, "no such asset")
                .into_response()
        }
    };
    (
        [
            (CONTENT_TYPE, kind),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}
