//! wasi-nn errors: a code from the WIT `error-code` enum and a message that
//! names what was expected and what was given.

/// The WIT `error-code`s muon returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    InvalidEncoding,
    Timeout,
    RuntimeError,
    UnsupportedOperation,
    TooLarge,
    NotFound,
    Security,
}

impl ErrorCode {
    /// The code as WIT spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "invalid-argument",
            Self::InvalidEncoding => "invalid-encoding",
            Self::Timeout => "timeout",
            Self::RuntimeError => "runtime-error",
            Self::UnsupportedOperation => "unsupported-operation",
            Self::TooLarge => "too-large",
            Self::NotFound => "not-found",
            Self::Security => "security",
        }
    }
}

/// A failed wasi-nn call, returned to the guest as an `error` resource.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} ({})", message, code.as_str())]
pub struct NnError {
    pub code: ErrorCode,
    pub message: String,
}

impl NnError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// A backend failure, with its own message kept for the guest.
    pub fn runtime(context: &str, err: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::RuntimeError, format!("{context}: {err}"))
    }
}
