//! Every failure a user of the HTTP API can see: the server's own (bodies,
//! keys, routes) and each capability's typed error, carried whole so its
//! message is written once, where it happens. `server::errors` turns them
//! into statuses and JSON bodies; nothing reaches hyper as an error, so no
//! connection is dropped because a guest misbehaved.

use crate::api::ErrorCode;
use crate::auth::AuthError;
use crate::datasets::DatasetError;
use crate::engine::ComponentError;
use crate::invoke::InvokeError;
use crate::jobs::JobError;
use crate::ledger::LedgerError;
use crate::monitor::SinkError;
use crate::names::InvalidName;
use crate::nn::ModelError;
use crate::registry::{CircuitOpen, RegistryError};
use crate::settle::SettleError;
use crate::tenancy::{QuotaExceeded, TenancyError};

/// A failure that is reported to the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
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
    /// Nothing by that name (or nothing visible to the caller).
    #[error("{0} was not found")]
    NotFound(String),
    /// The caller is known but may not do this (admin-only routes).
    #[error("{0}")]
    Forbidden(String),
    /// Something with this name already exists.
    #[error("{0} already exists")]
    Conflict(String),
    /// The route exists but not for this method.
    #[error("method not allowed; this route accepts {0}")]
    MethodNotAllowed(&'static str),
    /// The request itself is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The host is shutting down or not ready.
    #[error("{0}")]
    Unavailable(String),
    /// A name breaks the rules.
    #[error(transparent)]
    Name(#[from] InvalidName),
    /// A key did not authenticate, or a key change was refused.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A tenant's limit refused the request.
    #[error(transparent)]
    Tenancy(#[from] TenancyError),
    /// A deploy, rollback or delete failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A model upload or deletion failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A dataset could not be built, stored or read.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// A training job could not be submitted or read.
    #[error(transparent)]
    Job(#[from] JobError),
    /// An alert sink cannot be registered.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The function call failed.
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    /// The function's circuit breaker refused the call; nothing ran.
    #[error(transparent)]
    CircuitOpen(#[from] CircuitOpen),
    /// The usage ledger cannot be written; the request is refused rather than run unbilled.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A host-side failure; the details are logged, not shown.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl From<ComponentError> for ApiError {
    fn from(err: ComponentError) -> Self {
        Self::Registry(err.into())
    }
}

impl From<QuotaExceeded> for ApiError {
    fn from(err: QuotaExceeded) -> Self {
        Self::Tenancy(err.into())
    }
}

impl From<SettleError> for ApiError {
    fn from(err: SettleError) -> Self {
        match err {
            SettleError::Ledger(err) => Self::Ledger(err),
            SettleError::Tenancy(err) => Self::Tenancy(err),
        }
    }
}

impl ApiError {
    /// The stable, machine-readable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BodyTooLarge { .. } => ErrorCode::BodyTooLarge,
            Self::BodyTimeout { .. } => ErrorCode::BodyTimeout,
            Self::BodiesBusy { .. } => ErrorCode::BodiesBusy,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            Self::BadRequest(_) | Self::Name(_) | Self::Sink(_) => ErrorCode::BadRequest,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Auth(err) => match err {
                AuthError::Unauthorized => ErrorCode::Unauthorized,
                AuthError::Forbidden(_) => ErrorCode::Forbidden,
                AuthError::NotFound(_) => ErrorCode::NotFound,
                AuthError::TooManyKeys(_) => ErrorCode::QuotaExceeded,
                AuthError::LastAdmin(_) => ErrorCode::Conflict,
                AuthError::Internal(_) => ErrorCode::Internal,
            },
            Self::Tenancy(err) => match err {
                TenancyError::RateLimited { .. } => ErrorCode::RateLimited,
                TenancyError::Quota(_) => ErrorCode::QuotaExceeded,
                TenancyError::UnknownTenant(_) => ErrorCode::NotFound,
                TenancyError::Internal(_) => ErrorCode::Internal,
            },
            Self::Registry(err) => match err {
                RegistryError::Component(ComponentError::Invalid(_)) => ErrorCode::InvalidComponent,
                RegistryError::Component(ComponentError::UnknownImport { .. }) => ErrorCode::UnknownImport,
                RegistryError::CompileTimeout { .. } => ErrorCode::CompileTimeout,
                RegistryError::CompileBusy { .. } => ErrorCode::CompileBusy,
                RegistryError::CompileAbandoned => ErrorCode::Unavailable,
                RegistryError::BadOption(_)
                | RegistryError::InvalidName(_)
                | RegistryError::NoEarlierVersion { .. } => ErrorCode::BadRequest,
                RegistryError::NotFound(_) => ErrorCode::NotFound,
                RegistryError::Quota(_) => ErrorCode::QuotaExceeded,
                RegistryError::Component(ComponentError::Internal(_)) | RegistryError::Internal(_) => {
                    ErrorCode::Internal
                }
            },
            Self::Model(err) => match err {
                ModelError::BadOption(_) => ErrorCode::BadRequest,
                ModelError::Invalid(_) => ErrorCode::InvalidModel,
                ModelError::NotFound(_) => ErrorCode::NotFound,
                ModelError::Quota(_) => ErrorCode::QuotaExceeded,
                ModelError::Internal(_) => ErrorCode::Internal,
            },
            Self::Dataset(err) => match err {
                DatasetError::UnsupportedFormat { .. } => ErrorCode::UnsupportedMediaType,
                DatasetError::BadRows { .. } => ErrorCode::BadRows,
                DatasetError::NotFound(_) => ErrorCode::NotFound,
                DatasetError::Quota(_) => ErrorCode::QuotaExceeded,
                DatasetError::UnknownColumn { .. } | DatasetError::InvalidCursor(_) => ErrorCode::BadRequest,
                DatasetError::NoColumns(_)
                | DatasetError::HeaderNotUtf8
                | DatasetError::DuplicateColumn(_)
                | DatasetError::InvalidParquet(_)
                | DatasetError::MissingValues { .. }
                | DatasetError::TooManyCategories { .. }
                | DatasetError::TooManyClasses { .. }
                | DatasetError::TooManyRows(_)
                | DatasetError::Empty(_) => ErrorCode::InvalidData,
                DatasetError::Io { .. } | DatasetError::Storage(_) | DatasetError::Internal(_) => ErrorCode::Internal,
            },
            Self::Job(err) => match err {
                JobError::BadSpec { .. } => ErrorCode::BadRequest,
                JobError::NotFound(_) => ErrorCode::NotFound,
                JobError::Conflict(_) => ErrorCode::Conflict,
                JobError::Tenancy(TenancyError::RateLimited { .. }) => ErrorCode::RateLimited,
                JobError::Tenancy(TenancyError::Quota(_)) => ErrorCode::QuotaExceeded,
                JobError::Tenancy(TenancyError::UnknownTenant(_)) => ErrorCode::NotFound,
                JobError::Tenancy(TenancyError::Internal(_)) | JobError::Internal(_) => ErrorCode::Internal,
            },
            Self::Invoke(err) => err.code(),
            Self::CircuitOpen(_) => ErrorCode::CircuitOpen,
            Self::Ledger(_) => ErrorCode::LedgerUnavailable,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// Whether a quota, a rate limit or a circuit breaker refused the work before anything ran.
    pub fn is_refusal(&self) -> bool {
        matches!(self.code(), ErrorCode::QuotaExceeded | ErrorCode::RateLimited | ErrorCode::CircuitOpen)
    }

    /// When a retry may succeed, for errors that know.
    pub fn retry_after_s(&self) -> Option<u32> {
        match self {
            Self::BodiesBusy { retry_after_s }
            | Self::Invoke(InvokeError::Overloaded { retry_after_s })
            | Self::Registry(RegistryError::CompileBusy { retry_after_s })
            | Self::CircuitOpen(CircuitOpen { retry_after_s, .. })
            | Self::Tenancy(TenancyError::RateLimited { retry_after_s, .. }) => Some(*retry_after_s),
            Self::Tenancy(TenancyError::Quota(quota))
            | Self::Registry(RegistryError::Quota(quota))
            | Self::Model(ModelError::Quota(quota))
            | Self::Dataset(DatasetError::Quota(quota))
            | Self::Job(JobError::Tenancy(TenancyError::Quota(quota)))
            | Self::Auth(AuthError::TooManyKeys(quota)) => Some(quota.retry_after_s),
            Self::Ledger(_) => Some(1),
            _ => None,
        }
    }
}

impl From<wasmtime::Error> for ApiError {
    fn from(err: wasmtime::Error) -> Self {
        Self::Internal(anyhow::Error::from(err))
    }
}

/// How work that ended in `result` is settled: a refusal (a quota, a rate
/// limit, an open circuit breaker) is recorded free, any other error as a failure with its code.
pub fn outcome_of<T>(result: &Result<T, ApiError>) -> crate::settle::Outcome {
    use crate::settle::Outcome;
    match result {
        Ok(_) => Outcome::Ok,
        Err(err) if err.is_refusal() => Outcome::Refused(err.code()),
        Err(err) => Outcome::Failed(err.code()),
    }
}
