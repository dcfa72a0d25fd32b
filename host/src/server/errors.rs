//! The one place where errors become HTTP: a status for each error code, a
//! JSON body with the code and the message, and the headers some errors call
//! for (`Retry-After`, `Allow`, `WWW-Authenticate`).

use http::{HeaderValue, StatusCode};

use super::body::{self, Body};
use super::error::ApiError;
use crate::api::{ErrorBody, ErrorCode};
use crate::auth::AuthError;

/// An error as an HTTP response.
pub trait IntoResponse {
    /// The HTTP status this error is answered with.
    fn status(&self) -> StatusCode;

    /// Builds the JSON error response.
    fn into_response(self) -> http::Response<Body>;
}

impl IntoResponse for ApiError {
    fn status(&self) -> StatusCode {
        status_of(self.code())
    }

    fn into_response(self) -> http::Response<Body> {
        let status = self.status();
        if self.code() == ErrorCode::Internal {
            tracing::error!(error = format!("{self:#}"), "internal error");
        }
        let mut response = body::json_response(status, &ErrorBody::new(self.code(), self.to_string()));
        if let Some(seconds) = self.retry_after_s() {
            response.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let ApiError::MethodNotAllowed(methods) = self {
            response.headers_mut().insert(http::header::ALLOW, HeaderValue::from_static(methods));
        } else if matches!(self, ApiError::Auth(AuthError::Unauthorized)) {
            response.headers_mut().insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The status every error with `code` is answered with.
fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidComponent | ErrorCode::InvalidModel | ErrorCode::UnknownImport | ErrorCode::BadRequest => {
            StatusCode::BAD_REQUEST
        }
        ErrorCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::QuotaExceeded | ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::FunctionError | ErrorCode::CompileTimeout | ErrorCode::BadRows | ErrorCode::InvalidData => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        // nginx's "client closed request": never sent, since nobody is listening.
        ErrorCode::ClientClosed => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        ErrorCode::LedgerUnavailable
        | ErrorCode::Overloaded
        | ErrorCode::BodiesBusy
        | ErrorCode::Unavailable
        | ErrorCode::CompileBusy
        | ErrorCode::CircuitOpen => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::ResponseTooLarge
        | ErrorCode::InvalidResponse
        | ErrorCode::MemoryLimit
        | ErrorCode::Trap
        | ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
