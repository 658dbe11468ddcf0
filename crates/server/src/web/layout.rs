//! The page frame shared by every dashboard page.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use callgrade_store::Project;
use maud::{html, Markup, DOCTYPE};

use super::session::Admin;

/// A full page: header, project navigation, body.
pub fn page(
    title: &str,
    admin: Option<&Admin>,
    project: Option<&Project>,
    body: Markup,
) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · callgrade" }
                    link rel="stylesheet" href="/assets/app.css";
                    script src="/assets/htmx.min.js" defer {}
                    script src="/assets/app.js" defer {}
                }
                body {
                    header {
                        a.brand href="/" { "callgrade" }
                        @if let Some(p) = project {
                            a href={ "/projects/" (p.id) } { (p.name) }
                            a href={ "/projects/" (p.id) "/calls" } { "Calls" }
                            a href={ "/projects/" (p.id) "/runs" } { "Runs" }
                            a href={ "/projects/" (p.id) "/metrics" } { "Metrics" }
                            a href={ "/projects/" (p.id) "/deliveries" } { "Deliveries" }
                            a href={ "/projects/" (p.id) "/alerts" } { "Alerts" }
                            a href={ "/projects/" (p.id) "/webhooks" } { "Webhooks" }
                            a href={ "/projects/" (p.id) "/setup" } { "Set-up" }
                        }
                        @if let Some(admin) = admin {
                            form method="post" action="/logout" {
                                (csrf(admin))
                                button.secondary type="submit" { "Sign out" }
                            }
                        }
                    }
                    main { (body) }
                }
            }
        }
        .into_string(),
    )
}

/// The hidden CSRF field every form carries.
pub fn csrf(admin: &Admin) -> Markup {
    html! { input type="hidden" name="_csrf" value=(admin.csrf); }
}

/// A page that could not be shown: its status and why, rendered as an error page.
#[derive(Debug)]
pub struct WebError {
    status: StatusCode,
    message: String,
}

/// An error page with its status.
pub fn error(status: StatusCode, message: &str) -> WebError {
    WebError {
        status,
        message: message.to_owned(),
    }
}

/// Every use case's error as a page; internal causes were logged where they arose.
impl From<callgrade_app::AppError> for WebError {
    fn from(e: callgrade_app::AppError) -> Self {
        let (status, message) = explain(&e);
        error(status, &message)
    }
}

/// A use case's error as the page says it: its status and its message (every problem of an
/// invalid input, joined). A form shows it beside what was typed; otherwise it is the page.
pub fn explain(e: &callgrade_app::AppError) -> (StatusCode, String) {
    use callgrade_app::AppError::*;
    let status = match e {
        NotFound(_) => StatusCode::NOT_FOUND,
        Invalid(_) | BadRequest(_) => StatusCode::BAD_REQUEST,
        AlreadyExists(_) | Conflict(_) => StatusCode::CONFLICT,
        Rejected(r) => StatusCode::from_u16(crate::error::webhook_answer(Some(r.kind)))
            .unwrap_or(StatusCode::BAD_REQUEST),
        Upstream(_) => StatusCode::BAD_GATEWAY,
        Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = match e {
        Invalid(_) => e.problems().join("; "),
        other => other.to_string(),
    };
    (status, message)
}

/// Reads go to the store directly; their failures map as the use cases' do.
impl From<callgrade_store::StoreError> for WebError {
    #[track_caller]
    fn from(e: callgrade_store::StoreError) -> Self {
        callgrade_app::AppError::from(e).into()
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let body = html! {
            h1 { (self.status.as_u16()) " " (self.status.canonical_reason().unwrap_or("")) }
            p { (self.message) }
            p { a href="/" { "Back to the projects" } }
        };
        (self.status, page("Error", None, None, body)).into_response()
    }
}

/// A value that may be missing, shown as a dash.
pub fn or_dash<T: std::fmt::Display>(v: Option<T>) -> Markup {
    match v {
        Some(v) => html! { (v) },
        None => html! { span.muted { "–" } },
    }
}

/// A pass/fail verdict.
pub fn verdict(success: Option<bool>) -> Markup {
    match success {
        Some(true) => html! { span.ok { "pass" } },
        Some(false) => html! { span.bad { "fail" } },
        None => html! { span.muted { "–" } },
    }
}

/// Pretty JSON shown up to this many bytes; a page never grows to the size of a large payload.
const JSON_PREVIEW_BYTES: usize = 64 * 1024;

/// JSON, pretty and escaped, cut at [`JSON_PREVIEW_BYTES`] with a link to the whole of it.
pub fn json_preview(value: &serde_json::Value, whole: &str) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    if text.len() <= JSON_PREVIEW_BYTES {
        return html! { pre { (text) } };
    }
    let mut cut = JSON_PREVIEW_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    html! {
        p.muted { "Showing the first " (cut / 1024) " KiB of " (text.len() / 1024) " KiB. "
            a href=(whole) { "Download the whole payload" } "." }
        pre { (&text[..cut]) "\n…" }
    }
}

/// JSON, pretty and escaped.
pub fn json_block(value: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    html! { pre { (text) } }
}
