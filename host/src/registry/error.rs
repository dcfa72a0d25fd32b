//! Why a deploy, rollback or delete failed.

use crate::engine::ComponentError;
use crate::names::InvalidName;
use crate::tenancy::QuotaExceeded;

/// A failed change to the function catalog.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The component cannot be run.
    #[error(transparent)]
    Component(#[from] ComponentError),
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
    /// The compile task ended without an answer (the host is stopping).
    #[error("the compile was abandoned")]
    CompileAbandoned,
    /// A deploy option is malformed or outside the host's caps.
    #[error("{0}")]
    BadOption(String),
    /// A name breaks the rules.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// No such function, or nothing to roll back to.
    #[error("{0} was not found")]
    NotFound(String),
    /// There is no earlier version to roll back to.
    #[error("function `{name}` has no version before {version}; nothing to roll back to")]
    NoEarlierVersion {
        /// The function.
        name: String,
        /// Its active version.
        version: i64,
    },
    /// The change would pass the tenant's storage quota.
    #[error(transparent)]
    Quota(#[from] QuotaExceeded),
    /// A host-side failure (the database, the disk).
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}
