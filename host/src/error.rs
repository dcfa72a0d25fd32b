//! Errors a user of the HTTP API sees, each a status code and a stable code.
//!
//! Every failure on a request path ends up here and becomes a response with a
//! JSON body `{"error": {"code": "...", "message": "..."}}`; nothing reaches
//! hyper as an error, so no connection is dropped because a guest misbehaved.

use http::{HeaderValue, StatusCode};

use crate::server::body::{self, Body};

/// A failure that is reported to the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The upload is not a component muon can run.
    #[error("{0}")]
    InvalidComponent(String),
    /// The component imports an interface muon does not provide.
    #[error("the component imports `{import}`, which muon does not provide{detail}")]
    UnknownImport { import: String, detail: String },
    /// A request body was over its limit.
    #[error("the request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    /// A function's response was over the response size cap.
    #[error("the function's response is larger than the limit of {limit} bytes")]
    ResponseTooLarge { limit: u64 },
    /// Nothing by that name (or nothing visible to the caller).
    #[error("{0} was not found")]
    NotFound(String),
    /// The route exists but not for this method.
    #[error("method not allowed; this route accepts {0}")]
    MethodNotAllowed(&'static str),
    /// The request itself is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// A typed function rejected its input with its own error.
    #[error("the function rejected the input: {0}")]
    Unprocessable(String),
    /// The function ran past its deadline.
    #[error("the function did not finish within its deadline of {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
    /// The function tried to grow its memory past its limit.
    #[error("the function tried to use more than its memory limit of {limit_mb} MiB")]
    MemoryLimit { limit_mb: u32 },
    /// The guest trapped (panic, unreachable, stack overflow, ...).
    #[error("the function trapped: {0}")]
    Trap(String),
    /// The function is at its concurrency limit and its queue is full or timed out.
    #[error("the function is at its concurrency limit; retry after {retry_after_s} s")]
    Overloaded { retry_after_s: u32 },
    /// The host is shutting down or not ready.
    #[error("{0}")]
    Unavailable(String),
    /// A host-side failure; the details are logged, not shown.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl From<wasmtime::Error> for ApiError {
    fn from(err: wasmtime::Error) -> Self {
        Self::Internal(anyhow::Error::from(err))
    }
}

impl ApiError {
    /// The stable, machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidComponent(_) => "invalid_component",
            Self::UnknownImport { .. } => "unknown_import",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::ResponseTooLarge { .. } => "response_too_large",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::BadRequest(_) => "bad_request",
            Self::Unprocessable(_) => "function_error",
            Self::Timeout { .. } => "timeout",
            Self::MemoryLimit { .. } => "memory_limit",
            Self::Trap(_) => "trap",
            Self::Overloaded { .. } => "overloaded",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidComponent(_) | Self::UnknownImport { .. } | Self::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Overloaded { .. } | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::ResponseTooLarge { .. }
            | Self::MemoryLimit { .. }
            | Self::Trap(_)
            | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Builds the JSON error response.
    pub fn into_response(self) -> http::Response<Body> {
        let status = self.status();
        if let Self::Internal(err) = &self {
            tracing::error!(error = format!("{err:#}"), "internal error");
        }
        let payload = serde_json::json!({
            "error": { "code": self.code(), "message": self.to_string() }
        });
        let mut response = body::json_response(status, &payload);
        if let Self::Overloaded { retry_after_s } = self {
            response.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(retry_after_s));
        }
        response
    }
}
