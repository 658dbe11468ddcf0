//! Dashboard pages, one module per area. Thin like the API handlers: extract, call a use case
//! (or read the store), render. The helpers here, and the imports below, are shared by every
//! page module through its `use super::*`.

use axum::extract::{Path, Query, State};
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use callgrade_app::AppError;
use callgrade_core::{BuiltinKey, FieldError, MetricDefinition, Role};
use callgrade_store::{
    CallDetail, CallFilter, CallKind, DeliveryFilter, DeliveryOutcome, Project, RunFilter,
};
use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use super::layout::{
    csrf, error, explain, json_block, json_preview, or_dash, page, verdict, WebError,
};
use super::session::{cleared_cookie, new_session_cookie, Admin};
use crate::{cekura_webhook_url, project_webhook_url, AppState};
use callgrade_app::admin;

use super::timeline::SLOW_SECONDS;

type Page = Result<Response, WebError>;

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, to.to_owned())]).into_response()
}

async fn load_project(state: &AppState, id: &str) -> Result<Project, WebError> {
    let missing = || error(StatusCode::NOT_FOUND, "no such project");
    let id: i64 = id.parse().map_err(|_| missing())?;
    state.app.store.project(id).await?.ok_or_else(missing)
}

fn check_csrf(admin: &Admin, submitted: &str) -> Result<(), WebError> {
    if admin.csrf_ok(submitted) {
        Ok(())
    } else {
        Err(error(
            StatusCode::FORBIDDEN,
            "this form has expired; reload the page and try again",
        ))
    }
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn seconds(v: f64) -> String {
    format!("{v:.2} s")
}

/// Who said a message, in the words of the transcript tables.
fn speaker(role: Role) -> &'static str {
    match role {
        Role::Bot => "Agent",
        Role::User => "User",
        Role::System => "System",
        Role::FunctionCall => "Tool call",
        Role::FunctionCallResult => "Tool result",
    }
}

mod alerts;
mod calls;
mod deliveries;
mod metrics;
mod overview;
mod projects;
mod runs;
mod sign_in;
mod traces;
mod webhooks;

pub use self::{
    alerts::*, calls::*, deliveries::*, metrics::*, overview::*, projects::*, runs::*, sign_in::*,
    webhooks::*,
};
