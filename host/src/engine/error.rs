//! Why a component cannot be run.

/// A component muon refuses, or could not prepare.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// The bytes are not a component muon can run (not wasm, a core module,
    /// invalid, too big to compile, no known world).
    #[error("{0}")]
    Invalid(String),
    /// The component imports an interface muon does not provide.
    #[error("the component imports `{import}`, which muon does not provide{detail}")]
    UnknownImport {
        /// The interface, as the component names it.
        import: String,
        /// What to do about it, if muon knows.
        detail: String,
    },
    /// A host-side failure.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl From<wasmtime::Error> for ComponentError {
    fn from(err: wasmtime::Error) -> Self {
        Self::Internal(anyhow::Error::from(err))
    }
}
