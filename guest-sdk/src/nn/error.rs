//! What a failed `wasi:nn` call reports.

use crate::__bindings::nn::wasi::nn::errors;

/// Why a `wasi:nn` call failed: `wasi:nn/errors.error-code`, one for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The guest passed an invalid argument (a tensor that does not fit the model, for example).
    InvalidArgument,
    /// The model's bytes are not in the encoding given, or not a model at all.
    InvalidEncoding,
    /// The operation ran out of time.
    Timeout,
    /// The backend failed while running the model.
    RuntimeError,
    /// The host does not support this operation, encoding or target.
    UnsupportedOperation,
    /// The model or a tensor is larger than the host allows.
    TooLarge,
    /// No model has that name.
    NotFound,
    /// The operation is not allowed (a hardware target the function may not use, for example).
    Security,
    /// Anything else.
    Unknown,
}

impl ErrorCode {
    /// The WIT name of the code: `"invalid-argument"`, `"not-found"`, ...
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
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<errors::ErrorCode> for ErrorCode {
    fn from(code: errors::ErrorCode) -> Self {
        use errors::ErrorCode as Wit;
        match code {
            Wit::InvalidArgument => Self::InvalidArgument,
            Wit::InvalidEncoding => Self::InvalidEncoding,
            Wit::Timeout => Self::Timeout,
            Wit::RuntimeError => Self::RuntimeError,
            Wit::UnsupportedOperation => Self::UnsupportedOperation,
            Wit::TooLarge => Self::TooLarge,
            Wit::NotFound => Self::NotFound,
            Wit::Security => Self::Security,
            Wit::Unknown => Self::Unknown,
        }
    }
}

/// A failed `wasi:nn` call: the code to match on and the host's explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NnError {
    /// What kind of failure; match on this, not on `message`.
    pub code: ErrorCode,
    /// The host's or backend's description, for people.
    pub message: String,
}

impl std::fmt::Display for NnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.message.is_empty() {
            write!(f, "wasi-nn error {}", self.code)
        } else {
            write!(f, "wasi-nn error {}: {}", self.code, self.message)
        }
    }
}

impl std::error::Error for NnError {}

/// The error as text, so that `?` works in the functions of
/// [`TrainingStep`](crate::TrainingStep), whose errors are strings.
impl From<NnError> for String {
    fn from(error: NnError) -> Self {
        error.to_string()
    }
}

impl From<errors::Error> for NnError {
    fn from(error: errors::Error) -> Self {
        Self { code: error.code().into(), message: error.data() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_their_wit_names() {
        let all = [
            (ErrorCode::InvalidArgument, "invalid-argument"),
            (ErrorCode::InvalidEncoding, "invalid-encoding"),
            (ErrorCode::Timeout, "timeout"),
            (ErrorCode::RuntimeError, "runtime-error"),
            (ErrorCode::UnsupportedOperation, "unsupported-operation"),
            (ErrorCode::TooLarge, "too-large"),
            (ErrorCode::NotFound, "not-found"),
            (ErrorCode::Security, "security"),
            (ErrorCode::Unknown, "unknown"),
        ];
        for (code, name) in all {
            assert_eq!(code.as_str(), name);
            assert_eq!(code.to_string(), name);
        }
    }

    #[test]
    fn display_names_the_code_and_the_message() {
        let error = NnError { code: ErrorCode::NotFound, message: "no model `digits`".to_owned() };
        assert_eq!(error.to_string(), "wasi-nn error not-found: no model `digits`");
        let bare = NnError { code: ErrorCode::Timeout, message: String::new() };
        assert_eq!(bare.to_string(), "wasi-nn error timeout");
    }
}
