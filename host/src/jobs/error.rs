//! What can go wrong submitting or reading a job.

use crate::tenancy::TenancyError;

/// A job request that cannot be served; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The spec is wrong in `field`.
    #[error("`{field}`: {message}")]
    BadSpec {
        /// The spec's field, dotted (`search.trials`, `hyper.learning_rate`).
        field: String,
        /// What is wrong with it and what it should be.
        message: String,
    },
    /// No job, function or dataset by that name visible to the caller.
    #[error("{0} not found")]
    NotFound(String),
    /// The job is in a state that does not allow this.
    #[error("{0}")]
    Conflict(String),
    /// A tenant's quota refused the job.
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    /// A host-side failure.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl JobError {
    /// A spec error in `field`.
    pub fn bad_spec(field: &str, message: impl Into<String>) -> Self {
        Self::BadSpec { field: field.to_owned(), message: message.into() }
    }
}
