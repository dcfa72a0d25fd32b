//! The standard `wasi:http/proxy` world, as `wasmtime serve` and Spin run it.
//!
//! The guest may send the response head first and keep streaming the body,
//! all within its deadline; the client gets the body as it comes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::sync::oneshot;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

use super::streamed::{Stopper, owned_call, respond};
use super::{Caller, InvokeError, Invoker, Output, framing, instantiate};
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

/// Runs a `wasi:http` function. The response goes to the client as the
/// guest writes it (`streamed.rs`): the guest sends the head, then streams
/// the body through wasmtime-wasi-http's bounded pipe, so a slow reader
/// makes the guest wait rather than the host buffer.
pub(super) async fn run(
    invoker: &Invoker,
    version: &Arc<Version>,
    pre: &ProxyPre<HostState>,
    request: http::Request<Full<Bytes>>,
    deadline: Duration,
    caller: Caller<'_>,
) -> (Result<Output, InvokeError>, Measurement) {
    let (sender, receiver) = oneshot::channel();
    let stopper = Arc::new(Stopper::default());
    // The store, and with it the response outparam, is dropped when the
    // guest returns, so a guest that never answered ends the wait for the
    // head instead of hanging it.
    let guest = owned_call(invoker, version, deadline, caller, {
        let (pre, stopper) = (pre.clone(), Arc::clone(&stopper));
        Box::new(move |store| {
            Box::pin(async move {
                let mut http = store.data_mut().http();
                let request = http.new_incoming_request(Scheme::Http, request)?;
                let outparam = http.new_response_outparam(sender)?;
                let proxy = instantiate(pre.instantiate_async(&mut *store)).await?;
                stopper.run(proxy.wasi_http_incoming_handler().call_handle(store, request, outparam)).await
            })
        })
    });
    let label = version.label.clone();
    respond(guest, receiver, stopper, invoker.max_output_bytes(), move |answer| checked(answer, &label)).await
}

/// Checks the response head a `wasi:http` guest gave (of either WASI
/// version), or says why there is none.
pub(super) fn checked<B, E: std::fmt::Debug>(
    answer: Option<Result<http::Response<B>, E>>,
    label: &str,
) -> Result<http::Response<B>, InvokeError> {
    match answer {
        Some(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            framing::final_status(parts.status.as_u16())?;
            framing::drop_host_owned(&mut parts.headers, label);
            Ok(http::Response::from_parts(parts, body))
        }
        Some(Err(code)) => Err(InvokeError::Trap(format!("the function answered with error {code:?}"))),
        None => Err(InvokeError::Trap("the function returned without setting a response".into())),
    }
}
