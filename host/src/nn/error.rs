//! wasi-nn errors: a code from the WIT `error-code` enum and a message that
//! names what was expected and what was given.

/// The WIT `error-code`s muon returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The guest passed what the model or call cannot take (a tensor's type
    /// or shape, a model in several parts).
    InvalidArgument,
    /// The model's bytes are not a valid ONNX model.
    InvalidEncoding,
    /// The compute was stopped at the request's deadline.
    Timeout,
    /// The backend or the inference threads failed; not the guest's fault.
    RuntimeError,
    /// The model or call needs something muon does not offer (an operator,
    /// a device, an output kind).
    UnsupportedOperation,
    /// A model or tensor is past a size limit.
    TooLarge,
    /// No model by that name is available to the function.
    NotFound,
    /// The model reaches outside its upload (external data).
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
    /// What the guest may branch on.
    pub code: ErrorCode,
    /// What was expected and what was given, for the guest's author.
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
