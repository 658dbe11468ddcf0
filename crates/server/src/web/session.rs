//! Dashboard sign-in: one admin token (shown once, stored as a hash), and sessions in signed,
//! HttpOnly, SameSite=Strict cookies. Sessions are signed with a key derived from the token's
//! hash, so rotating the token signs everyone out. Every form carries a CSRF token derived from
//! the session.

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, LOCATION};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;

const COOKIE_NAME: &str = "cg_session";
/// Sessions last 12 hours.
const SESSION_SECONDS: i64 = 12 * 3600;

/// The signing key, or `None` when no admin token exists yet.
async fn signing_key(state: &AppState) -> Option<Vec<u8>> {
    let hash = callgrade_app::admin::admin_token_hash(&state.app)
        .await
        .ok()??;
    Some(Sha256::digest(format!("callgrade-session:{hash}").as_bytes()).to_vec())
}

fn sign(key: &[u8], message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A `Set-Cookie` value for a new session.
pub async fn new_session_cookie(state: &AppState) -> Option<HeaderValue> {
    let key = signing_key(state).await?;
    let expires = state.app.now().timestamp() + SESSION_SECONDS;
    let value = format!("{expires}.{}", sign(&key, &format!("session:{expires}")));
    let secure = if state.settings.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}{secure}"
    ))
    .ok()
}

/// A `Set-Cookie` value that ends the session.
pub fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static("cg_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// A signed-in administrator; the CSRF token their forms must carry.
pub struct Admin {
    pub csrf: String,
}

impl Admin {
    /// Whether a submitted form's CSRF token is this session's.
    pub fn csrf_ok(&self, submitted: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(submitted.as_bytes()))
    }
}

/// Not signed in: off to the sign-in page.
pub struct SignIn;

impl IntoResponse for SignIn {
    fn into_response(self) -> Response {
        (StatusCode::SEE_OTHER, [(LOCATION, "/login")]).into_response()
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = SignIn;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, SignIn> {
        let cookie = parts
            .headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix("cg_session="))
            .ok_or(SignIn)?;
        let (expires, signature) = cookie.split_once('.').ok_or(SignIn)?;
        let expires: i64 = expires.parse().map_err(|_| SignIn)?;
        if expires < state.app.now().timestamp() {
            return Err(SignIn);
        }
        let key = signing_key(state).await.ok_or(SignIn)?;
        let expected = sign(&key, &format!("session:{expires}"));
        if !bool::from(expected.as_bytes().ct_eq(signature.as_bytes())) {
            return Err(SignIn);
        }
        Ok(Admin {
            csrf: sign(&key, &format!("csrf:{expires}")),
        })
    }
}
