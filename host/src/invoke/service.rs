//! The `wasi:http/service` world of WASI 0.3, as Spin SDK 7's
//! `#[http_service]` and `wasmtime serve` run it: `handle` is an async export
//! that returns the response, whose body the guest may go on writing from a
//! task of its own after `handle` has returned.
//!
//! The guest runs in the store's concurrent event loop, which is what moves
//! the body's bytes; the loop is kept running until the client has the whole
//! body (or is gone), then the call ends. Everything else is the `wasi:http`
//! 0.2 path's (`http.rs`, `streamed.rs`): the deadline covers the whole call,
//! a client that goes stops the guest, and the body counts against the cap.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p3::bindings::ServicePre;
use wasmtime_wasi_http::p3::bindings::http::types::ErrorCode;

use super::http::checked;
use super::streamed::{Stopper, owned_call, respond};
use super::{Caller, InvokeError, Invoker, Output, instantiate};
use crate::engine::HostState;
use crate::metering::Measurement;
use crate::registry::Version;

/// The guest's body as wasmtime-wasi-http gives it.
type GuestBody = UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// What `handle` gave: the response, or the error code the guest chose.
type Answer = Result<http::Response<BodyRead>, ErrorCode>;

/// Runs a WASI 0.3 `wasi:http` function.
pub(super) async fn run(
    invoker: &Invoker,
    version: &Arc<Version>,
    pre: &ServicePre<HostState>,
    request: http::Request<Full<Bytes>>,
    deadline: Duration,
    caller: Caller<'_>,
) -> (Result<Output, InvokeError>, Measurement) {
    let (sender, receiver) = oneshot::channel::<Answer>();
    let stopper = Arc::new(Stopper::default());
    let guest = owned_call(invoker, version, deadline, caller, {
        let (pre, stopper) = (pre.clone(), Arc::clone(&stopper));
        Box::new(move |store| {
            Box::pin(async move {
                let (request, request_io) =
                    wasmtime_wasi_http::p3::Request::from_http(store.data_mut().http().hooks, request);
                let service = instantiate(pre.instantiate_async(&mut *store)).await?;
                let serve = store.run_concurrent(async move |accessor| {
                    let response = match service.handle(accessor, request).await? {
                        Ok(response) => response,
                        Err(code) => {
                            sender.send(Err(code)).ok();
                            return wasmtime::Result::Ok(());
                        }
                    };
                    let response = accessor.with(|mut store| response.into_http(&mut store, request_io))?;
                    let (read, finished) = BodyRead::new();
                    sender.send(Ok(response.map(|body| read.around(body)))).ok();
                    // The body's bytes move only while the event loop runs.
                    finished.await.ok();
                    Ok(())
                });
                stopper.run(async { serve.await? }).await
            })
        })
    });
    let label = version.label.clone();
    respond(guest, receiver, stopper, invoker.max_output_bytes(), move |answer| checked(answer, &label)).await
}

/// The guest's body, telling the call when it has been read to its end or
/// dropped (the client went), so the call can leave the event loop.
pub(super) struct BodyRead {
    inner: Option<GuestBody>,
    finished: Option<oneshot::Sender<()>>,
}

impl BodyRead {
    fn new() -> (Self, oneshot::Receiver<()>) {
        let (finished, rx) = oneshot::channel();
        (Self { inner: None, finished: Some(finished) }, rx)
    }

    fn around(mut self, body: GuestBody) -> Self {
        self.inner = Some(body);
        self
    }
}

impl Body for BodyRead {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let Some(inner) = self.inner.as_mut() else { return Poll::Ready(None) };
        let polled = Pin::new(inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.finished.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
