//! The standard `wasi:http/proxy` world, as `wasmtime serve` and Spin run it.
//!
//! The guest may send the response head first and keep streaming the body,
//! all within its deadline; the body is read here while the guest runs.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use tokio::sync::oneshot;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use super::InvokeError;
use super::{Caller, Invoker, Output, framing, instantiate};
use crate::engine::HostState;
use crate::metering::Measurement;
use crate::registry::Version;

/// The request a `wasi:http` function sees: `path_and_query` is the part of
/// the URL below the function's route.
pub fn request(
    mut parts: http::request::Parts,
    path_and_query: &str,
    body: Bytes,
) -> Result<http::Request<Full<Bytes>>, InvokeError> {
    let authority =
        parts.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost").to_owned();
    parts.uri = http::Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
        .map_err(|err| InvokeError::BadInput(format!("cannot form the function's request URI: {err}")))?;
    Ok(http::Request::from_parts(parts, Full::new(body)))
}

/// Runs a `wasi:http` function. The response body is collected (up to the
/// response cap) before it is returned, so the call's usage is known, and
/// written to the ledger, before the client sees a byte of it.
pub(super) async fn run(
    invoker: &Invoker,
    version: &Arc<Version>,
    pre: &ProxyPre<HostState>,
    request: http::Request<Full<Bytes>>,
    deadline: Duration,
    caller: Caller<'_>,
) -> (Result<Output, InvokeError>, Measurement) {
    let (sender, receiver) = oneshot::channel();
    // The guest and the reading of its response run side by side in this
    // task: the guest sends the response head, then streams the body while it
    // is read here. (A task of its own would cost a spawn and a cross-task
    // wake per request.) The store, and with it the response outparam, is
    // dropped when the guest returns, so a guest that never answered ends the
    // wait below instead of hanging it.
    let guest = invoker.guest_call(version, deadline, caller, async |store| {
        let mut http = store.data_mut().http();
        let request = http.new_incoming_request(Scheme::Http, request)?;
        let outparam = http.new_response_outparam(sender)?;
        let proxy = instantiate(pre.instantiate_async(&mut *store)).await?;
        proxy.wasi_http_incoming_handler().call_handle(store, request, outparam).await
    });
    let response = collect(receiver, invoker.max_output_bytes(), &version.label);
    let ((guest_result, used), collected) = tokio::join!(guest, response);
    // A guest error (trap, timeout, memory) explains a missing or cut-off
    // response better than the response side does.
    let result = match (collected, guest_result) {
        (Ok(response), Ok(())) => Ok(Output::Http(response)),
        (_, Err(err)) | (Err(err), Ok(())) => Err(err),
    };
    (result, used)
}

type Answer = Result<
    http::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>,
    wasmtime_wasi_http::p2::bindings::http::types::ErrorCode,
>;

/// Reads the response the guest sends, head and body, up to `limit` bytes.
async fn collect(
    receiver: oneshot::Receiver<Answer>,
    limit: u64,
    label: &str,
) -> Result<http::Response<Bytes>, InvokeError> {
    let response = match receiver.await {
        Ok(Ok(response)) => response,
        Ok(Err(code)) => return Err(InvokeError::Trap(format!("the function answered with error {code:?}"))),
        Err(_) => return Err(InvokeError::Trap("the function returned without setting a response".into())),
    };
    let (mut parts, body) = response.into_parts();
    framing::final_status(parts.status.as_u16())?;
    framing::drop_host_owned(&mut parts.headers, label);
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, cap).collect().await {
        Ok(body) => Ok(http::Response::from_parts(parts, body.to_bytes())),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(InvokeError::ResponseTooLarge { limit }),
        Err(err) => Err(InvokeError::Trap(format!("the function's response body failed: {err}"))),
    }
}
