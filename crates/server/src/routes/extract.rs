//! The extractors of the API: each rejection is an [`ApiError`] that names what is wrong, in the
//! words of the OpenAPI document, and each reads what the document admits.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Path, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use callgrade_core::{Rejection, RejectionKind};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::IntoParams;

use super::caused_by;
use crate::ApiError;

/// The largest JSON body the API reads (the webhook has its own limit, `--max-body-bytes`).
pub(crate) const JSON_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// Query parameters whose rejection is an [`ApiError`] naming the parameter and what it takes,
/// in the words of the same [`IntoParams`] description the OpenAPI document shows.
pub(crate) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + IntoParams + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let mut pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query).unwrap_or_default();
        let params: Vec<(String, Value)> = T::into_params(|| Some(ParameterIn::Query))
            .into_iter()
            .map(|p| (p.name, serde_json::to_value(p.schema).unwrap_or_default()))
            .collect();
        // JSON Schema counts `2.0` as an integer, and so does the document's `integer`.
        for (name, value) in &mut pairs {
            let integer = params
                .iter()
                .any(|(param, schema)| param == name && schema["type"] == "integer");
            if let Some(whole) = value
                .parse()
                .ok()
                .and_then(whole_number)
                .filter(|_| integer)
            {
                *value = whole.to_string();
            }
        }
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        serde_urlencoded::from_str(&query)
            .map(ApiQuery)
            .map_err(|_| query_error::<T>(&pairs, &params))
    }
}

/// A float with no fraction as the integer it is, within ±2^53 where each is exactly one.
fn whole_number(f: f64) -> Option<i64> {
    (f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0).then_some(f as i64)
}

/// Which parameter of a query that does not parse is wrong, and why. Every field of a query
/// type is optional, so a value that is wrong alone is the culprit.
fn query_error<T: DeserializeOwned>(
    pairs: &[(String, String)],
    params: &[(String, Value)],
) -> ApiError {
    for (name, schema) in params {
        let given: Vec<&str> = pairs
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect();
        match given[..] {
            [] => {}
            [value] => {
                let alone = serde_urlencoded::to_string([(name, value)]).unwrap_or_default();
                if serde_urlencoded::from_str::<T>(&alone).is_err() {
                    return ApiError::bad_request(format!(
                        "query parameter {name} must be {} (got {value:?})",
                        expected(schema)
                    ));
                }
            }
            _ => {
                return ApiError::bad_request(format!(
                    "query parameter {name} is given {} times; give it once",
                    given.len()
                ))
            }
        }
    }
    ApiError::bad_request("the query string could not be read as name=value pairs")
}

/// What a parameter's schema accepts, in words.
fn expected(schema: &Value) -> String {
    let text = |key: &str| schema.get(key).and_then(Value::as_str);
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let names: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
        return format!("one of {}", names.join(", "));
    }
    match (text("type"), text("format")) {
        (Some("integer"), format) => match (schema.get("minimum"), schema.get("maximum")) {
            (Some(min), Some(max)) => format!("an integer from {min} to {max}"),
            _ if format == Some("int64") => "an integer that fits in 64 bits".into(),
            _ => "an integer".into(),
        },
        (Some("boolean"), _) => "true or false".into(),
        (Some("string"), Some("date-time")) => {
            "an RFC 3339 date-time with its zone, such as 2025-10-15T09:22:21Z".into()
        }
        _ => "a valid value".into(),
    }
}

/// Path parameters whose rejection is an [`ApiError`] naming the parameter.
pub(crate) struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                Err(ApiError::bad_request(match e.into_kind() {
                    ErrorKind::InvalidUtf8InPathParam { key } => {
                        format!("path parameter {key} is not UTF-8 once percent-decoded")
                    }
                    other => format!("the path does not fit this route: {other}"),
                }))
            }
            Err(other) => Err(ApiError::new(
                other.status(),
                "bad_request",
                other.body_text(),
            )),
        }
    }
}

/// A JSON request body whose rejection is an [`ApiError`] naming what is wrong.
pub(crate) struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let bytes = match Bytes::from_request(Request::from_parts(parts.clone(), body), state).await
        {
            Ok(bytes) => as_the_document_reads(bytes)?,
            Err(e) => return Err(body_error(&e, e.status(), e.body_text())),
        };
        let req = Request::from_parts(parts, Body::from(bytes));
        <Json<T> as FromRequest<S>>::from_request(req, state)
            .await
            .map(|Json(v)| ApiJson(v))
            .map_err(|e| body_error(&e, e.status(), e.body_text()))
    }
}

/// A body as the OpenAPI document describes it: a JSON object or null (serde would also read a struct
/// from an array), whose whole numbers are integers (JSON Schema counts `2.0` as one and serde
/// does not). Bodies that are not JSON are left as they came, for the JSON extractor to report.
fn as_the_document_reads(bytes: Bytes) -> Result<Bytes, ApiError> {
    fn rewrite(value: &mut Value) -> bool {
        match value {
            Value::Number(n) if n.is_f64() => match n.as_f64().and_then(whole_number) {
                Some(whole) => {
                    *value = Value::from(whole);
                    true
                }
                None => false,
            },
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, v| rewrite(v) | changed),
            Value::Object(map) => map
                .values_mut()
                .fold(false, |changed, v| rewrite(v) | changed),
            _ => false,
        }
    }
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return Ok(bytes);
    };
    if !(value.is_object() || value.is_null()) {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    if !rewrite(&mut value) {
        return Ok(bytes);
    }
    Ok(serde_json::to_vec(&value).map_or(bytes, Bytes::from))
}

/// The error for a JSON body that could not be read.
fn body_error(e: &(dyn std::error::Error + 'static), status: StatusCode, text: String) -> ApiError {
    let refused = |kind, detail: String| ApiError::from(Rejection::new(kind, detail));
    if caused_by::<crate::deadline::BodyDeadlineExceeded>(e) {
        return refused(
            RejectionKind::BodyTimeout,
            "the request body did not arrive whole within the body deadline".into(),
        );
    }
    match status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => refused(
            RejectionKind::UnsupportedMediaType,
            "send the body as JSON, with Content-Type: application/json".into(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => refused(
            RejectionKind::PayloadTooLarge,
            format!("the body is over the limit of {JSON_BODY_LIMIT} bytes"),
        ),
        _ => ApiError::bad_request(text),
    }
}

/// An optional body: absent (no Content-Type) or `null` is `None`, any other must be valid.
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
        let ApiJson(body) =
            <ApiJson<Option<T>> as FromRequest<S>>::from_request(req, state).await?;
        Ok(body.map(ApiJson))
    }
}

/// A page size: 1–200, 50 when not asked. Out of range it is a query error like any other.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "u32")]
pub(crate) struct PageLimit(u32);

impl PageLimit {
    const MIN: u32 = 1;
    const MAX: u32 = 200;
    const DEFAULT: u32 = 50;

    pub(crate) fn or_default(limit: Option<Self>) -> u32 {
        limit.map_or(Self::DEFAULT, |PageLimit(n)| n)
    }
}

impl TryFrom<u32> for PageLimit {
    type Error = String;

    fn try_from(n: u32) -> Result<Self, String> {
        (Self::MIN..=Self::MAX)
            .contains(&n)
            .then_some(Self(n))
            .ok_or_else(|| format!("must be between {} and {}", Self::MIN, Self::MAX))
    }
}

impl utoipa::PartialSchema for PageLimit {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(Self::MIN))
            .maximum(Some(Self::MAX))
            .default(Some(Self::DEFAULT.into()))
            .into()
    }
}

impl utoipa::ToSchema for PageLimit {}
