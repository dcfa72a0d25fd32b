//! The standard `wasi:http/proxy` world, as `wasmtime serve` and Spin run it.
//!
//! The guest runs in its own task: it may send the response head first and
//! keep streaming the body, all within its deadline.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::oneshot;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use super::{GuestCall, framing, record_instantiate};
use crate::engine::EntryPoint;
use crate::error::ApiError;
use crate::metering::Measurement;
use crate::registry::Version;
use crate::server::App;
use crate::server::body::{self, Body};

/// Calls a `wasi:http` function. `path_and_query` is what the guest sees as
/// its request path: the part of the URL below the function's route.
///
/// The response body is collected (up to the response cap) before it is
/// returned, so the request's usage is known, and written to the ledger,
/// before the client sees a byte of it.
pub async fn call_http(
    app: &App,
    version: Arc<Version>,
    parts: http::request::Parts,
    path_and_query: &str,
    body: Bytes,
    request_id: &str,
    usage: &mut Measurement,
) -> Result<http::Response<Body>, ApiError> {
    let EntryPoint::Http(pre) = &version.entry else {
        return Err(ApiError::Internal(anyhow::anyhow!("call_http on a non-http function")));
    };
    let pre = pre.clone();
    let request = guest_request(parts, path_and_query, body)?;
    let slot = Arc::clone(&version.admission).enter().await?;
    let mut call = GuestCall::new(app, Arc::clone(&version), request_id);
    let (sender, receiver) = oneshot::channel();
    let mut http = call.store.data_mut().http();
    let request = http.new_incoming_request(Scheme::Http, request)?;
    let outparam = http.new_response_outparam(sender)?;

    // The guest and the reading of its response run side by side in this
    // task: the guest sends the response head, then streams the body while it
    // is read here. (A task of its own would cost a spawn and a cross-task
    // wake per request.)
    let guest = async move {
        let outcome = call
            .guard()
            .run(async {
                let started = Instant::now();
                let proxy = pre.instantiate_async(&mut call.store).await?;
                record_instantiate(started);
                proxy.wasi_http_incoming_handler().call_handle(&mut call.store, request, outparam).await
            })
            .await;
        let mut measured = Measurement::default();
        let result = call.finish(outcome, &mut measured);
        // Dropping the store drops the response outparam too, so a guest that
        // never answered ends the wait below instead of hanging it.
        drop(call);
        (result, measured)
    };
    let limit = app.config.limits.max_response_bytes;
    let label = version.label.as_str();
    let response = async {
        let response = match receiver.await {
            Ok(Ok(response)) => response,
            Ok(Err(code)) => return Err(ApiError::Trap(format!("the function answered with error {code:?}"))),
            Err(_) => return Err(ApiError::Trap("the function returned without setting a response".into())),
        };
        let (mut parts, body) = response.into_parts();
        framing::final_status(parts.status.as_u16())?;
        framing::drop_host_owned(&mut parts.headers, label);
        let cap = usize::try_from(limit).unwrap_or(usize::MAX);
        match Limited::new(body, cap).collect().await {
            Ok(body) => Ok(http::Response::from_parts(parts, body::full(body.to_bytes()))),
            Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(ApiError::ResponseTooLarge { limit }),
            Err(err) => Err(ApiError::Trap(format!("the function's response body failed: {err}"))),
        }
    };
    let ((guest_result, measured), collected) = tokio::join!(guest, response);
    drop(slot);
    *usage = measured;
    // A guest error (trap, timeout, memory) explains a missing or cut-off
    // response better than the response side does.
    match (collected, guest_result) {
        (Ok(response), Ok(())) => Ok(response),
        (_, Err(err)) | (Err(err), Ok(())) => Err(err),
    }
}

fn guest_request(
    mut parts: http::request::Parts,
    path_and_query: &str,
    body: Bytes,
) -> Result<http::Request<Full<Bytes>>, ApiError> {
    let authority =
        parts.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost").to_owned();
    parts.uri = http::Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
        .map_err(|err| ApiError::BadRequest(format!("cannot form the function's request URI: {err}")))?;
    Ok(http::Request::from_parts(parts, Full::new(body)))
}
