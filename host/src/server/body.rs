//! The response body type and bounded reading of request bodies.

use bytes::Bytes;
use http::{StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, combinators::UnsyncBoxBody};
use hyper::body::Incoming;

use crate::error::ApiError;

/// Errors a response body can produce while streaming.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response muon sends.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// A JSON response with the given status.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> http::Response<Body> {
    json_bytes_response(status, value.to_string())
}

/// A response whose body is JSON already serialized.
pub fn json_bytes_response(status: StatusCode, json: impl Into<Bytes>) -> http::Response<Body> {
    let mut response = http::Response::new(full(json));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}

/// Reads a whole request body of at most `limit` bytes.
///
/// A declared `Content-Length` over the limit is refused before anything is
/// read; a chunked body is cut off as soon as it passes the limit, so memory
/// stays bounded either way.
pub async fn read_limited(
    headers: &http::HeaderMap,
    body: Incoming,
    limit: u64,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, cap).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::BodyTooLarge { limit })
        }
        Err(err) => Err(ApiError::BadRequest(format!("could not read the request body: {err}"))),
    }
}
