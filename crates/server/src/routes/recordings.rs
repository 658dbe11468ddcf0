//! A call's recording, served with single-range requests so a player can seek.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use callgrade_app::recordings;

use super::ApiPath;
use crate::auth::ApiProject;
use crate::{ApiError, AppState};

/// What a `Range` header asks for, against a length.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wanted {
    All,
    Part(std::ops::Range<u64>),
    Unsatisfiable,
}

/// One `bytes=` range (`a-b`, `a-`, `-n`); several ranges or another unit get the whole body,
/// as RFC 9110 allows.
pub(crate) fn wanted(range: Option<&str>, len: u64) -> Wanted {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Wanted::All;
    };
    if spec.contains(',') {
        return Wanted::All;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Wanted::All;
    };
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    let (start, end) = match (first.trim().is_empty(), parse(first), parse(last)) {
        // The last n bytes.
        (true, _, Some(n)) if n > 0 => (len.saturating_sub(n), len),
        (false, Some(a), None) if last.trim().is_empty() => (a, len),
        (false, Some(a), Some(b)) if a <= b => (a, (b + 1).min(len)),
        _ => return Wanted::All,
    };
    if start >= len {
        Wanted::Unsatisfiable
    } else {
        Wanted::Part(start..end)
    }
}

/// The call's recording (WAV, FLAC, MP3, … as stored): `Range` gets `206` with
/// `Content-Range`; a range past the end gets `416`.
#[utoipa::path(get, path = "/api/v1/calls/{call_id}/recording", tag = "calls",
    params(("call_id" = String, Path, description = "Our call id (the receipt's `call_id`)"),
           ("Range" = Option<String>, Header, description = "One byte range, e.g. `bytes=0-1023`")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The recording", content_type = "application/octet-stream", body = Vec<u8>),
              (status = 206, description = "The part asked for", content_type = "application/octet-stream", body = Vec<u8>),
              (status = 401, body = crate::error::ErrorBody),
              (status = 404, description = "No such call, or it has no recording", body = crate::error::ErrorBody),
              (status = 416, description = "The range starts past the end")))]
pub async fn get_recording(
    State(state): State<AppState>,
    ApiProject(project): ApiProject,
    ApiPath(call_id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve(&state, project.id, &call_id, &headers).await
}

/// The recording's bytes (all, or the one range asked for), for the API and the dashboard.
pub(crate) async fn serve(
    state: &AppState,
    project_id: i64,
    call_id: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let Some(recording) = state.app.store.recording(project_id, call_id).await? else {
        return Err(ApiError::not_found(format!(
            "call {call_id} has no recording"
        )));
    };
    let len = recording.audio.size_bytes;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, part) = match wanted(range, len) {
        Wanted::All => (StatusCode::OK, None),
        Wanted::Part(r) => (StatusCode::PARTIAL_CONTENT, Some(r)),
        Wanted::Unsatisfiable => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            r.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{len}")).expect("a valid header"),
            );
            return Ok(r);
        }
    };
    let bytes = recordings::read(&state.app, &recording, part.clone()).await?;
    let content_type = HeaderValue::from_str(&recording.audio.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut response = (status, bytes).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(r) = part {
        let value = format!("bytes {}-{}/{len}", r.start, r.end - 1);
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&value).expect("a valid header"),
        );
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(wanted(None, 10), Wanted::All);
        assert_eq!(wanted(Some("bytes=0-3"), 10), Wanted::Part(0..4));
        assert_eq!(wanted(Some("bytes=4-"), 10), Wanted::Part(4..10));
        assert_eq!(wanted(Some("bytes=-3"), 10), Wanted::Part(7..10));
        assert_eq!(wanted(Some("bytes=5-100"), 10), Wanted::Part(5..10));
        assert_eq!(wanted(Some("bytes=10-"), 10), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=0-1,4-5"), 10), Wanted::All);
        assert_eq!(wanted(Some("bytes=5-2"), 10), Wanted::All);
        assert_eq!(wanted(Some("items=0-1"), 10), Wanted::All);
        assert_eq!(wanted(Some("bytes=-0"), 10), Wanted::All);
    }
}
