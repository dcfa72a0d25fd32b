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

use super::{GuestCall, record_instantiate};
use crate::engine::EntryPoint;
use crate::error::ApiError;
use crate::registry::Version;
use crate::server::App;
use crate::server::body::{Body, BoxError};

/// Calls a `wasi:http` function. `path_and_query` is what the guest sees as
/// its request path: the part of the URL below the function's route.
pub async fn call_http(
    app: &App,
    version: Arc<Version>,
    parts: http::request::Parts,
    path_and_query: &str,
    body: Bytes,
    request_id: &str,
) -> Result<http::Response<Body>, ApiError> {
    let EntryPoint::Http(pre) = &version.entry else {
        return Err(ApiError::Internal(anyhow::anyhow!("call_http on a non-http function")));
    };
    let pre = pre.clone();
    let request = guest_request(parts, path_and_query, body)?;
    let slot = Arc::clone(&version.admission).enter().await?;
    let mut call = GuestCall::new(&app.runtime, &app.config, Arc::clone(&version), request_id);
    let (sender, receiver) = oneshot::channel();
    let mut http = call.store.data_mut().http();
    let request = http.new_incoming_request(Scheme::Http, request)?;
    let outparam = http.new_response_outparam(sender)?;

    let guest = tokio::spawn(async move {
        let outcome = tokio::time::timeout(call.timeout, async {
            let started = Instant::now();
            let proxy = pre.instantiate_async(&mut call.store).await?;
            record_instantiate(started);
            proxy.wasi_http_incoming_handler().call_handle(&mut call.store, request, outparam).await
        })
        .await;
        let result = call.finish(outcome);
        drop(slot);
        result
    });

    let limit = app.config.limits.max_response_bytes;
    match receiver.await {
        Ok(Ok(response)) => Ok(response.map(|body| {
            let body = body.map_err(|code| BoxError::from(format!("the function's body failed: {code:?}")));
            Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX)).boxed_unsync()
        })),
        Ok(Err(code)) => Err(ApiError::Trap(format!("the function answered with error {code:?}"))),
        Err(_) => match guest.await {
            Ok(Err(err)) => Err(err),
            Ok(Ok(())) => Err(ApiError::Trap("the function returned without setting a response".into())),
            Err(join) => Err(ApiError::Internal(anyhow::anyhow!("the guest task failed: {join}"))),
        },
    }
}

fn guest_request(
    mut parts: http::request::Parts,
    path_and_query: &str,
    body: Bytes,
) -> Result<http::Request<Full<Bytes>>, ApiError> {
    let authority = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    parts.uri = http::Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
        .map_err(|err| ApiError::BadRequest(format!("cannot form the function's request URI: {err}")))?;
    Ok(http::Request::from_parts(parts, Full::new(body)))
}
