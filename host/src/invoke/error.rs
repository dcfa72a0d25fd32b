//! How a call can fail, as the invoker's callers need to tell apart: a
//! training job retries a timeout but not a rejected input, the HTTP server
//! answers each with its own status.

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The input could not be turned into what the function takes.
    #[error("{0}")]
    BadInput(String),
    /// The function is at its concurrency limit and its queue is full or timed out.
    #[error("the function is at its concurrency limit; retry after {retry_after_s} s")]
    Overloaded {
        /// When a retry may find a slot.
        retry_after_s: u32,
    },
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
    /// A typed function rejected its input with its own error.
    #[error("the function rejected the input: {0}")]
    Rejected(String),
    /// The function answered with something that is not a valid HTTP response.
    #[error("the function returned an invalid response: {0}")]
    InvalidResponse(String),
    /// The function's response or output was over the cap.
    #[error("the function's response is larger than the limit of {limit} bytes")]
    ResponseTooLarge {
        /// The cap, in bytes.
        limit: u64,
    },
    /// The client went away while the function streamed its response, and
    /// the function was stopped.
    #[error("the client closed the connection before the response was complete")]
    ClientGone,
    /// A host-side failure.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl From<wasmtime::Error> for InvokeError {
    fn from(err: wasmtime::Error) -> Self {
        Self::Internal(anyhow::Error::from(err))
    }
}

impl InvokeError {
    /// The API's code for this error, which the ledger records as the outcome.
    pub fn code(&self) -> crate::api::ErrorCode {
        use crate::api::ErrorCode;
        match self {
            Self::BadInput(_) => ErrorCode::BadRequest,
            Self::Overloaded { .. } => ErrorCode::Overloaded,
            Self::Timeout { .. } => ErrorCode::Timeout,
            Self::MemoryLimit { .. } => ErrorCode::MemoryLimit,
            Self::Trap(_) => ErrorCode::Trap,
            Self::Rejected(_) => ErrorCode::FunctionError,
            Self::InvalidResponse(_) => ErrorCode::InvalidResponse,
            Self::ResponseTooLarge { .. } => ErrorCode::ResponseTooLarge,
            Self::ClientGone => ErrorCode::ClientClosed,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }
}
