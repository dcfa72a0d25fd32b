//! The one place where errors become HTTP: a status, a JSON body with the
//! error's stable code and message, and the headers some errors call for
//! (`Retry-After`, `Allow`, `WWW-Authenticate`).

use http::{HeaderValue, StatusCode};

use super::body::{self, Body};
use crate::api::ErrorBody;
use crate::auth::AuthError;
use crate::engine::ComponentError;
use crate::error::ApiError;
use crate::invoke::InvokeError;
use crate::nn::ModelError;
use crate::registry::RegistryError;
use crate::tenancy::{QuotaExceeded, TenancyError};

impl From<QuotaExceeded> for ApiError {
    fn from(err: QuotaExceeded) -> Self {
        Self::QuotaExceeded { message: err.message, retry_after_s: err.retry_after_s }
    }
}

impl From<TenancyError> for ApiError {
    fn from(err: TenancyError) -> Self {
        match err {
            TenancyError::RateLimited { limit, retry_after_s } => Self::RateLimited { limit, retry_after_s },
            TenancyError::Quota(err) => err.into(),
            TenancyError::UnknownTenant(tenant) => Self::NotFound(format!("tenant `{tenant}`")),
            TenancyError::Internal(err) => Self::Internal(err),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Unauthorized => Self::Unauthorized,
            AuthError::Forbidden(message) => Self::Forbidden(message),
            AuthError::NotFound(what) => Self::NotFound(what),
            AuthError::TooManyKeys(err) => err.into(),
            AuthError::LastAdmin(message) => Self::StateConflict(message),
            AuthError::Internal(err) => Self::Internal(err),
        }
    }
}

impl From<ModelError> for ApiError {
    fn from(err: ModelError) -> Self {
        match err {
            ModelError::BadOption(message) => Self::BadRequest(message),
            ModelError::Invalid(message) => Self::InvalidModel(message),
            ModelError::NotFound(what) => Self::NotFound(what),
            ModelError::Internal(err) => Self::Internal(err),
        }
    }
}

impl From<ComponentError> for ApiError {
    fn from(err: ComponentError) -> Self {
        match err {
            ComponentError::Invalid(message) => Self::InvalidComponent(message),
            ComponentError::UnknownImport { import, detail } => Self::UnknownImport { import, detail },
            ComponentError::Internal(err) => Self::Internal(err),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(err: RegistryError) -> Self {
        match err {
            RegistryError::Component(err) => err.into(),
            RegistryError::CompileTimeout { timeout_ms } => Self::CompileTimeout { timeout_ms },
            RegistryError::CompileBusy { retry_after_s } => Self::CompileBusy { retry_after_s },
            RegistryError::CompileAbandoned => Self::Unavailable(err.to_string()),
            RegistryError::BadOption(_) | RegistryError::InvalidName(_) | RegistryError::NoEarlierVersion { .. } => {
                Self::BadRequest(err.to_string())
            }
            RegistryError::NotFound(what) => Self::NotFound(what),
            RegistryError::Quota(err) => err.into(),
            RegistryError::Internal(err) => Self::Internal(err),
        }
    }
}

impl From<InvokeError> for ApiError {
    fn from(err: InvokeError) -> Self {
        match err {
            InvokeError::BadInput(message) => Self::BadRequest(message),
            InvokeError::Overloaded { retry_after_s } => Self::Overloaded { retry_after_s },
            InvokeError::Timeout { timeout_ms } => Self::Timeout { timeout_ms },
            InvokeError::MemoryLimit { limit_mb } => Self::MemoryLimit { limit_mb },
            InvokeError::Trap(message) => Self::Trap(message),
            InvokeError::Rejected(message) => Self::Unprocessable(message),
            InvokeError::InvalidResponse(message) => Self::InvalidResponse(message),
            InvokeError::ResponseTooLarge { limit } => Self::ResponseTooLarge { limit },
            InvokeError::Internal(err) => Self::Internal(err),
        }
    }
}

/// An error as an HTTP response.
pub trait IntoResponse {
    /// The HTTP status this error is answered with.
    fn status(&self) -> StatusCode;

    /// Builds the JSON error response.
    fn into_response(self) -> http::Response<Body>;
}

impl IntoResponse for ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::InvalidComponent(_) | Self::InvalidModel(_) | Self::UnknownImport { .. } | Self::BadRequest(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::QuotaExceeded { .. } | Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::LedgerUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Conflict(_) | Self::StateConflict(_) => StatusCode::CONFLICT,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::CompileTimeout { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Overloaded { .. } | Self::BodiesBusy { .. } | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::CompileBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::ResponseTooLarge { .. }
            | Self::InvalidResponse(_)
            | Self::MemoryLimit { .. }
            | Self::Trap(_)
            | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn into_response(self) -> http::Response<Body> {
        let status = self.status();
        if let Self::Internal(err) = &self {
            tracing::error!(error = format!("{err:#}"), "internal error");
        }
        let mut response = body::json_response(status, &ErrorBody::new(self.code(), self.to_string()));
        let retry_after = match self {
            Self::Overloaded { retry_after_s }
            | Self::BodiesBusy { retry_after_s }
            | Self::CompileBusy { retry_after_s }
            | Self::QuotaExceeded { retry_after_s, .. }
            | Self::RateLimited { retry_after_s, .. } => Some(retry_after_s),
            Self::LedgerUnavailable(_) => Some(1),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Self::MethodNotAllowed(methods) = self {
            response.headers_mut().insert(http::header::ALLOW, HeaderValue::from_static(methods));
        }
        if matches!(self, Self::Unauthorized) {
            response.headers_mut().insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
