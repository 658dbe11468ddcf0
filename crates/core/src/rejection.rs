//! Why a webhook request is refused. The kind is decided where the reason is found (the
//! validator, the store for reasons that need stored facts, the edge for transport limits); the
//! HTTP status each kind is answered with is the edge's choice alone, and the delivery log
//! records what the edge answered.

use crate::FieldError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// The payload breaks the contract (or names an agent or run that is not there).
    InvalidPayload,
    /// A call id was already received with other content.
    Conflict,
    /// The body is not JSON.
    MalformedJson,
    /// The request did not say it was JSON.
    UnsupportedMediaType,
    /// The body is over the size limit.
    PayloadTooLarge,
    /// The body did not arrive in time.
    BodyTimeout,
    /// A vendor's signature (or shared secret) is missing or does not match.
    Unauthorized,
    /// A vendor event that carries no finished call (a Vapi `status-update`, a Retell
    /// `call_started`): acknowledged, nothing stored.
    IgnoredEvent,
}

impl RejectionKind {
    /// The stable machine code of errors (`error` in a response body and the delivery log).
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidPayload => "invalid_payload",
            Self::Conflict => "conflict",
            Self::MalformedJson => "malformed_json",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge => "payload_too_large",
            Self::BodyTimeout => "body_timeout",
            Self::Unauthorized => "unauthorized",
            Self::IgnoredEvent => "ignored_event",
        }
    }
}

/// How the edge answers a webhook request: the status for an accepted one (`None`) and for
/// each kind of refusal. The delivery log records the status this gives.
pub type Answer = fn(Option<RejectionKind>) -> u16;

/// A refused webhook request: its kind, a sentence, and every problem with its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub kind: RejectionKind,
    pub detail: String,
    pub errors: Vec<FieldError>,
}

impl Rejection {
    pub fn new(kind: RejectionKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    pub fn invalid_payload(errors: Vec<FieldError>) -> Self {
        let n = errors.len();
        Self {
            kind: RejectionKind::InvalidPayload,
            detail: format!(
                "the payload has {n} problem{}; each is listed with its JSON path",
                if n == 1 { "" } else { "s" }
            ),
            errors,
        }
    }

    pub fn conflict(errors: Vec<FieldError>) -> Self {
        Self {
            kind: RejectionKind::Conflict,
            detail: "calls with these ids were already received with different content; nothing from this request was stored".into(),
            errors,
        }
    }
}
