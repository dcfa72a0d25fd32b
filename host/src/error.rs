//! Errors a user of the HTTP API sees, each a status code and a stable code.
//!
//! A leaf: it names failures and their stable codes. `server::errors` alone
//! turns them into HTTP statuses and JSON bodies
//! `{"error": {"code": "...", "message": "..."}}`; nothing reaches hyper as an
//! error, so no connection is dropped because a guest misbehaved.

use crate::api::ErrorCode;

/// A failure that is reported to the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The upload is not a component muon can run.
    #[error("{0}")]
    InvalidComponent(String),
    /// The upload is not a model muon can serve.
    #[error("{0}")]
    InvalidModel(String),
    /// The component imports an interface muon does not provide.
    #[error("the component imports `{import}`, which muon does not provide{detail}")]
    UnknownImport {
        /// The interface, as the component names it.
        import: String,
        /// What to do about it, if muon knows.
        detail: String,
    },
    /// A request body was over its limit.
    #[error("the request body is larger than the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The request body did not arrive in time; the connection is closed.
    #[error("the request body did not arrive within {timeout_ms} ms; send it faster or in a smaller piece")]
    BodyTimeout {
        /// How long the body had.
        timeout_ms: u64,
    },
    /// Request bodies being received hold the host's whole body memory budget.
    #[error("the server is receiving too many request bodies at once; retry after {retry_after_s} s")]
    BodiesBusy {
        /// When to retry.
        retry_after_s: u32,
    },
    /// The function answered with something that is not a valid HTTP response.
    #[error("the function returned an invalid response: {0}")]
    InvalidResponse(String),
    /// A function's response was over the response size cap.
    #[error("the function's response is larger than the limit of {limit} bytes")]
    ResponseTooLarge {
        /// The cap, in bytes.
        limit: u64,
    },
    /// Nothing by that name (or nothing visible to the caller).
    #[error("{0} was not found")]
    NotFound(String),
    /// No valid API key. The same for missing, malformed, unknown and revoked keys.
    #[error("missing or invalid API key; send `Authorization: Bearer <key>`")]
    Unauthorized,
    /// A tenant quota (functions, storage, memory, deadline, concurrency, budget) is used up.
    #[error("{message}")]
    QuotaExceeded {
        /// Which quota, and what to do.
        message: String,
        /// When a retry may pass (a budget resets at the month's start).
        retry_after_s: u32,
    },
    /// The tenant's request rate is over its limit.
    #[error("the tenant's request rate is over its limit of {limit} per second")]
    RateLimited {
        /// The tenant's limit, per second.
        limit: u32,
        /// When to retry.
        retry_after_s: u32,
    },
    /// The usage ledger cannot be written; the request is refused rather than run unbilled.
    #[error("the usage ledger is unavailable; the request was not served: {0}")]
    LedgerUnavailable(String),
    /// The caller is known but may not do this (admin-only routes).
    #[error("{0}")]
    Forbidden(String),
    /// Something with this name already exists.
    #[error("{0} already exists")]
    Conflict(String),
    /// The request conflicts with the current state (not a name clash).
    #[error("{0}")]
    StateConflict(String),
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
    Timeout {
        /// The deadline.
        timeout_ms: u64,
    },
    /// The function tried to grow its memory past its limit.
    #[error("the function tried to use more than its memory limit of {limit_mb} MiB")]
    MemoryLimit {
        /// The limit.
        limit_mb: u32,
    },
    /// The guest trapped (panic, unreachable, stack overflow, ...).
    #[error("the function trapped: {0}")]
    Trap(String),
    /// The function is at its concurrency limit and its queue is full or timed out.
    #[error("the function is at its concurrency limit; retry after {retry_after_s} s")]
    Overloaded {
        /// When a retry may find a slot.
        retry_after_s: u32,
    },
    /// Compiling the component took longer than the host allows.
    #[error(
        "compiling the component took longer than the limit of {timeout_ms} ms; deploy a smaller component (fewer or smaller functions)"
    )]
    CompileTimeout {
        /// The compile deadline.
        timeout_ms: u64,
    },
    /// Every compile slot stayed busy past the compile deadline.
    #[error("the host is busy compiling other components; retry after {retry_after_s} s")]
    CompileBusy {
        /// When to retry.
        retry_after_s: u32,
    },
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
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidComponent(_) => ErrorCode::InvalidComponent,
            Self::InvalidModel(_) => ErrorCode::InvalidModel,
            Self::UnknownImport { .. } => ErrorCode::UnknownImport,
            Self::BodyTooLarge { .. } => ErrorCode::BodyTooLarge,
            Self::BodyTimeout { .. } => ErrorCode::BodyTimeout,
            Self::BodiesBusy { .. } => ErrorCode::BodiesBusy,
            Self::InvalidResponse(_) => ErrorCode::InvalidResponse,
            Self::ResponseTooLarge { .. } => ErrorCode::ResponseTooLarge,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Unauthorized => ErrorCode::Unauthorized,
            Self::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::LedgerUnavailable(_) => ErrorCode::LedgerUnavailable,
            Self::Conflict(_) | Self::StateConflict(_) => ErrorCode::Conflict,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::Unprocessable(_) => ErrorCode::FunctionError,
            Self::Timeout { .. } => ErrorCode::Timeout,
            Self::MemoryLimit { .. } => ErrorCode::MemoryLimit,
            Self::Trap(_) => ErrorCode::Trap,
            Self::Overloaded { .. } => ErrorCode::Overloaded,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::CompileTimeout { .. } => ErrorCode::CompileTimeout,
            Self::CompileBusy { .. } => ErrorCode::CompileBusy,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<crate::names::InvalidName> for ApiError {
    fn from(err: crate::names::InvalidName) -> Self {
        Self::BadRequest(err.to_string())
    }
}
