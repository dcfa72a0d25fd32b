//! The response body type and bounded reading of request bodies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::{Body as _, Incoming};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;

/// Errors a response body can produce while streaming.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response muon sends.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// A JSON response with the given status.
pub fn json_response(status: StatusCode, value: &impl serde::Serialize) -> http::Response<Body> {
    match serde_json::to_vec(value) {
        Ok(json) => json_bytes_response(status, json),
        // Only a map with non-string keys fails, and no API type has one.
        Err(err) => {
            tracing::error!(%err, "cannot serialize a response");
            let body = r#"{"error":{"code":"internal","message":"internal error: cannot serialize the response"}}"#;
            json_bytes_response(StatusCode::INTERNAL_SERVER_ERROR, body)
        }
    }
}

/// A response whose body is JSON already serialized.
pub fn json_bytes_response(status: StatusCode, json: impl Into<Bytes>) -> http::Response<Body> {
    let mut response = http::Response::new(full(json));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}

/// Extra time a body gets per byte received: one second per MiB, so a large
/// upload on a steady link is not cut off while a trickle still is.
const BYTES_PER_EXTRA_SECOND: u64 = 1 << 20;
/// The first buffer of a body whose length is unknown or larger; it grows,
/// doubling, as bytes arrive, so memory follows what was actually sent.
const FIRST_BUFFER: usize = 16 << 10;

/// Reads request bodies within the host's limits: a size cap per body, a
/// deadline, and a budget of bytes that all bodies being received share.
///
/// A body is copied into one buffer as it arrives instead of being kept as
/// hyper's frames, which each pin a slice of a connection's read buffer: a
/// body sent a byte at a time cost about 4 KB per byte that way.
pub struct BodyReader {
    budget: Arc<Semaphore>,
    timeout: Duration,
}

impl BodyReader {
    /// A reader whose bodies hold at most `budget_bytes` together, each read
    /// within `timeout` (plus a second per MiB received).
    pub fn new(budget_bytes: u64, timeout: Duration) -> Self {
        let permits = usize::try_from(budget_bytes).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
        Self { budget: Arc::new(Semaphore::new(permits)), timeout }
    }

    /// Reads a whole request body of at most `limit` bytes.
    ///
    /// A declared `Content-Length` over the limit is refused before anything
    /// is read, and a chunked body as soon as it passes the limit. The bytes
    /// returned keep their share of the budget until the last copy is dropped.
    pub async fn read(&self, headers: &http::HeaderMap, mut body: Incoming, limit: u64) -> Result<Bytes, ApiError> {
        let declared = declared_length(headers, limit)?;
        if body.is_end_stream() {
            return Ok(Bytes::new());
        }
        let bound = usize::try_from(declared.unwrap_or(limit).min(limit)).unwrap_or(usize::MAX);
        let started = Instant::now();
        let mut buffer = Budgeted::default();
        while let Some(data) = self.next_chunk(&mut body, started, buffer.bytes.len() as u64, limit).await? {
            self.grow(&mut buffer, data.len(), bound)?;
            buffer.bytes.extend_from_slice(&data);
        }
        if buffer.bytes.is_empty() {
            return Ok(Bytes::new());
        }
        Ok(Bytes::from_owner(buffer))
    }

    /// Streams a request body of at most `limit` bytes into `file` and
    /// returns its length: for uploads too large to hold in memory
    /// (datasets). The limits are those of [`BodyReader::read`]; only one
    /// frame at a time is in memory, so the shared budget is not drawn on.
    pub async fn spool(
        &self,
        headers: &http::HeaderMap,
        mut body: Incoming,
        limit: u64,
        file: &mut tokio::fs::File,
    ) -> Result<u64, ApiError> {
        use tokio::io::AsyncWriteExt;
        declared_length(headers, limit)?;
        let started = Instant::now();
        let mut received = 0;
        while let Some(data) = self.next_chunk(&mut body, started, received, limit).await? {
            file.write_all(&data)
                .await
                .map_err(|err| ApiError::Internal(anyhow::anyhow!("cannot spool the upload: {err}")))?;
            received += data.len() as u64;
        }
        file.flush().await.map_err(|err| ApiError::Internal(anyhow::anyhow!("cannot spool the upload: {err}")))?;
        Ok(received)
    }

    /// The next data frame of `body`, of which `received` bytes came so far:
    /// `None` at its end; an error past `limit` or the read deadline.
    async fn next_chunk(
        &self,
        body: &mut Incoming,
        started: Instant,
        received: u64,
        limit: u64,
    ) -> Result<Option<Bytes>, ApiError> {
        loop {
            let deadline = started + self.timeout + Duration::from_millis(received * 1000 / BYTES_PER_EXTRA_SECOND);
            let frame = match tokio::time::timeout_at(deadline.into(), body.frame()).await {
                Err(_) => return Err(ApiError::BodyTimeout { timeout_ms: millis(self.timeout) }),
                Ok(None) => return Ok(None),
                Ok(Some(Err(err))) => {
                    return Err(ApiError::BadRequest(format!("could not read the request body: {err}")));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            // Trailers carry nothing a function reads.
            let Ok(data) = frame.into_data() else { continue };
            if received + data.len() as u64 > limit {
                return Err(ApiError::BodyTooLarge { limit });
            }
            return Ok(Some(data));
        }
    }

    /// Makes room for `more` bytes, doubling up to `bound`, with budget for
    /// the whole capacity; refuses at once when the budget is spent.
    fn grow(&self, buffer: &mut Budgeted, more: usize, bound: usize) -> Result<(), ApiError> {
        let needed = buffer.bytes.len().saturating_add(more);
        if needed <= buffer.budgeted {
            return Ok(());
        }
        let target = needed.max(buffer.budgeted.saturating_mul(2)).max(FIRST_BUFFER).min(bound).max(needed);
        let permit = u32::try_from(target - buffer.budgeted)
            .ok()
            .and_then(|permits| Arc::clone(&self.budget).try_acquire_many_owned(permits).ok())
            .ok_or(ApiError::BodiesBusy { retry_after_s: 1 })?;
        match &mut buffer.permit {
            Some(held) => held.merge(permit),
            None => buffer.permit = Some(permit),
        }
        buffer.budgeted = target;
        buffer.bytes.reserve_exact(target - buffer.bytes.len());
        Ok(())
    }
}

/// The body's declared `Content-Length`, refused at once when over `limit`.
fn declared_length(headers: &http::HeaderMap, limit: u64) -> Result<Option<u64>, ApiError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    Ok(declared)
}

/// A body's bytes with their share of the budget, released on drop.
#[derive(Default)]
struct Budgeted {
    bytes: Vec<u8>,
    budgeted: usize,
    permit: Option<OwnedSemaphorePermit>,
}

impl AsRef<[u8]> for Budgeted {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
