//! The one error of the use cases, free of any transport: the API maps it to a status and its
//! JSON body, the dashboard to a page, the CLI to a message. Internal causes are logged where
//! they are converted and never carried to a client.

use callgrade_core::FieldError;
use callgrade_core::Rejection;
use callgrade_store::StoreError;

#[derive(Debug, Clone, PartialEq)]
pub enum AppError {
    /// The thing asked for does not exist (in this project).
    NotFound(String),
    /// The input has problems, each with its path.
    Invalid(Vec<FieldError>),
    /// The input is wrong as a whole (one sentence, no path).
    BadRequest(String),
    /// A thing with that name already exists.
    AlreadyExists(String),
    /// The input is valid but the thing is not in a state that allows it.
    Conflict(String),
    /// A webhook request refused, as answered and as recorded in the delivery log.
    Rejected(Rejection),
    /// An upstream service (a judge endpoint) failed.
    Upstream(String),
    /// The server is shutting down; retrying shortly will work.
    Unavailable(String),
    /// Something failed inside; the cause was logged.
    Internal,
}

impl AppError {
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::NotFound(detail.into())
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::BadRequest(detail.into())
    }

    /// Problems found inside a part of a larger input: each path gets `prefix` in front.
    pub fn invalid_at(prefix: &str, errors: Vec<FieldError>) -> Self {
        Self::Invalid(
            errors
                .into_iter()
                .map(|e| FieldError::new(format!("{prefix}{}", e.path), e.message))
                .collect(),
        )
    }

    /// One line per problem, for people reading a page or a terminal.
    pub fn problems(&self) -> Vec<String> {
        match self {
            Self::Invalid(errors) => errors
                .iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect(),
            Self::Rejected(r) => r
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotFound(d)
            | Self::BadRequest(d)
            | Self::AlreadyExists(d)
            | Self::Conflict(d)
            | Self::Upstream(d)
            | Self::Unavailable(d) => f.write_str(d),
            Self::Invalid(errors) => write!(
                f,
                "{} problem{}: {}",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" },
                self.problems().join("; ")
            ),
            Self::Rejected(r) => f.write_str(&r.detail),
            Self::Internal => f.write_str("the server could not complete the request"),
        }
    }
}

impl std::error::Error for AppError {}

impl From<StoreError> for AppError {
    #[track_caller]
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(detail) => Self::NotFound(detail),
            StoreError::AlreadyExists(detail) => Self::AlreadyExists(detail),
            StoreError::InvalidInput(detail) => Self::BadRequest(detail),
            StoreError::Conflict(detail) => Self::Conflict(detail),
            StoreError::Closed => {
                Self::Unavailable("the server is shutting down; retry shortly".into())
            }
            other => {
                let at = std::panic::Location::caller();
                tracing::error!(error = %other, at = %at, "storage failure");
                Self::Internal
            }
        }
    }
}
