//! Streamed responses: the head goes to the client as soon as the guest
//! gives it, and the body as the guest writes it, while the guest keeps
//! running in a task of its own under its limits.
//!
//! Both streaming kinds (the `streaming-handler` world and `wasi:http`) go
//! through [`respond`]: wait for the head or the guest's end, check the
//! head, and hand back the response with a [`SentBody`] around the guest's
//! body and the rest of the call as a future to spawn. The body counts the
//! bytes hyper takes (the bytes out), stops the guest past the response cap
//! or when the client goes (hyper drops the body), and cuts the body off
//! instead of ending it when the guest failed after the head was sent.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame};
use tokio::sync::{Notify, oneshot};
use wasmtime::Store;

use super::{Caller, InvokeError, Invoker, Output, handler, instantiate};
use crate::engine::bindings::streaming::StreamingHandlerPre;
use crate::engine::{Head, HostState, Request, response_channel};
use crate::metering::Measurement;
use crate::registry::Version;

/// How long the settling of a call waits, after the guest ended, for the
/// client to take the chunks still buffered; then the call is settled with
/// the bytes sent so far.
const TAIL_GRACE: Duration = Duration::from_secs(30);

/// Errors a streamed body ends with, for hyper to cut the response off.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A guest call as [`Invoker::guest_call`](super::Invoker) returns it.
type GuestEnd = (Result<(), InvokeError>, Measurement);

/// A running guest call, owned so it can move to a task of its own.
pub(super) type Guest = Pin<Box<dyn Future<Output = GuestEnd> + Send>>;

/// A response being streamed, and the rest of its call.
pub struct Streamed {
    /// The head, and the body as the guest writes it.
    pub response: http::Response<SentBody>,
    /// Runs the guest to its end, then waits for the client to take the
    /// rest of the body; spawn it, and settle the call with what it returns.
    /// Dropping it stops the guest.
    pub finished: Pin<Box<dyn Future<Output = Finished> + Send>>,
}

/// How a streamed call ended.
pub struct Finished {
    /// Success, or why the guest failed or was stopped.
    pub result: Result<(), InvokeError>,
    /// What the guest used.
    pub used: Measurement,
    /// Body bytes handed to the connection.
    pub bytes_out: u64,
}

/// Why the host stopped a guest that was streaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The client went away before the body ended.
    ClientGone,
    /// The body passed the response cap.
    TooLarge,
    /// The head was refused; the call already has its answer.
    Refused,
}

/// Tells a running guest call that the host wants it stopped, and why.
#[derive(Default)]
pub(super) struct Stopper {
    reason: Mutex<Option<Stop>>,
    notify: Notify,
}

impl Stopper {
    fn stop(&self, why: Stop) {
        let Ok(mut reason) = self.reason.lock() else { return };
        // The first reason is the cause; what follows is its consequence.
        if reason.is_none() {
            *reason = Some(why);
            self.notify.notify_one();
        }
    }

    fn reason(&self) -> Option<Stop> {
        self.reason.lock().ok().and_then(|reason| *reason)
    }

    fn error(&self, limit: u64) -> Option<InvokeError> {
        match self.reason()? {
            Stop::ClientGone => Some(InvokeError::ClientGone),
            Stop::TooLarge => Some(InvokeError::ResponseTooLarge { limit }),
            Stop::Refused => None,
        }
    }

    /// Runs `call` until it ends or the host stops it. A stopped call is an
    /// error here; the stop's reason replaces it in [`respond`].
    pub(super) async fn run<T>(&self, call: impl Future<Output = wasmtime::Result<T>>) -> wasmtime::Result<T> {
        let stopped = async {
            while self.reason().is_none() {
                self.notify.notified().await;
            }
        };
        tokio::select! {
            result = call => result,
            () = stopped => Err(wasmtime::Error::msg("stopped by the host")),
        }
    }
}

/// A guest call for [`owned_call`]: given the call's fresh store, it
/// instantiates and runs the guest.
pub(super) type OwnedCall = Box<
    dyn for<'a> FnOnce(&'a mut Store<HostState>) -> Pin<Box<dyn Future<Output = wasmtime::Result<()>> + Send + 'a>>
        + Send,
>;

/// The guest call of `version` as a future that owns what it needs, so it
/// can go on in a task of its own while the response streams.
pub(super) fn owned_call(
    invoker: &Invoker,
    version: &Arc<Version>,
    deadline: Duration,
    caller: Caller<'_>,
    call: OwnedCall,
) -> Guest {
    let (invoker, version) = (invoker.clone(), Arc::clone(version));
    let work_id = caller.work_id.to_owned();
    Box::pin(async move {
        let caller = Caller { work_id: &work_id, log: None };
        invoker.guest_call(&version, deadline, caller, async |store| call(store).await).await
    })
}

/// Runs a `streaming-handler` function: the guest writes its response
/// through `muon:function/response-stream` (`engine/response.rs`).
pub(super) async fn run_handler(
    invoker: &Invoker,
    version: &Arc<Version>,
    pre: &StreamingHandlerPre<HostState>,
    request: Request,
    deadline: Duration,
    caller: Caller<'_>,
) -> (Result<Output, InvokeError>, Measurement) {
    let (sink, head, body) = response_channel();
    let stopper = Arc::new(Stopper::default());
    let guest = owned_call(invoker, version, deadline, caller, {
        let (pre, stopper) = (pre.clone(), Arc::clone(&stopper));
        Box::new(move |store| {
            Box::pin(async move {
                store.data_mut().stream_response(sink);
                let instance = instantiate(pre.instantiate_async(&mut *store)).await?;
                stopper.run(instance.muon_function_stream_handle().call_handle(store, &request)).await
            })
        })
    });
    let label = version.label.clone();
    respond(guest, head, stopper, invoker.max_output_bytes(), move |given: Option<Head>| {
        let Head { status, headers } = given.unwrap_or(Head { status: 200, headers: Vec::new() });
        Ok(handler::head(status, headers, &label)?.map(|()| body))
    })
    .await
}

/// Waits for the guest's response head (or its end), checks it with
/// `build`, and returns the response streaming the guest's body. A guest
/// that fails before its head, or whose head `build` refuses, gets an
/// ordinary error answer; so does one that had already ended (it answered
/// whole, often in one poll), whose body is all buffered: it is sent whole,
/// with a `content-length`, as from the `handler` world.
pub(super) async fn respond<H, B>(
    mut guest: Guest,
    mut head: oneshot::Receiver<H>,
    stopper: Arc<Stopper>,
    limit: u64,
    build: impl FnOnce(Option<H>) -> Result<http::Response<B>, InvokeError>,
) -> (Result<Output, InvokeError>, Measurement)
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let early = tokio::select! {
        biased;
        given = &mut head => Err(given.ok()),
        ended = &mut guest => Ok(ended),
    };
    let (given, ended) = match early {
        Err(Some(given)) => (Some(given), None),
        // No head and still running: the guest dropped its way to answer.
        Err(None) => (None, Some((&mut guest).await)),
        Ok(ended) => (head.try_recv().ok(), Some(ended)),
    };
    let Some((result, used)) = ended else {
        return match build(given) {
            Ok(response) => (Ok(Output::Stream(streamed(guest, response, stopper, limit))), Measurement::default()),
            Err(err) => {
                stopper.stop(Stop::Refused);
                let (_, used) = guest.await;
                (Err(err), used)
            }
        };
    };
    let whole = match result {
        Ok(()) => match build(given) {
            Ok(response) => collect(response, limit).await.map(Output::Http),
            Err(err) => Err(err),
        },
        Err(err) => Err(err),
    };
    (whole, used)
}

/// The body of a guest that has ended, read whole (it is all buffered).
async fn collect<B>(response: http::Response<B>, limit: u64) -> Result<http::Response<Bytes>, InvokeError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let (parts, body) = response.into_parts();
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, cap).collect().await {
        Ok(body) => Ok(http::Response::from_parts(parts, body.to_bytes())),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(InvokeError::ResponseTooLarge { limit }),
        Err(err) => Err(InvokeError::Trap(format!("the function's response body failed: {err}"))),
    }
}

fn streamed<B>(guest: Guest, response: http::Response<B>, stopper: Arc<Stopper>, limit: u64) -> Streamed
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let sent = Arc::new(AtomicU64::new(0));
    let (verdict_tx, verdict) = oneshot::channel();
    let (done, done_rx) = oneshot::channel::<()>();
    let response = response.map(|inner| SentBody {
        inner: Box::pin(inner.map_err(Into::into)),
        inner_ended: false,
        ended: false,
        sent: Arc::clone(&sent),
        limit,
        stopper: Arc::clone(&stopper),
        verdict,
        done: Some(done),
    });
    let finished = async move {
        let (result, used) = guest.await;
        let result = stopper.error(limit).map_or(result, Err);
        // The body ends cleanly only if the call succeeded.
        verdict_tx.send(result.is_ok()).ok();
        drop(tokio::time::timeout(TAIL_GRACE, done_rx).await);
        // A client gone before it had the whole body did not get the answer.
        let result = result.and_then(|()| stopper.error(limit).map_or(Ok(()), Err));
        Finished { result, used, bytes_out: sent.load(Ordering::Relaxed) }
    };
    Streamed { response, finished: Box::pin(finished) }
}

/// A streamed function's body as hyper reads it (see the module's docs).
pub struct SentBody {
    inner: Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send>>,
    inner_ended: bool,
    ended: bool,
    sent: Arc<AtomicU64>,
    limit: u64,
    stopper: Arc<Stopper>,
    verdict: oneshot::Receiver<bool>,
    done: Option<oneshot::Sender<()>>,
}

impl SentBody {
    fn end(&mut self, last: Option<Result<Frame<Bytes>, BoxError>>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.ended = true;
        self.done.take();
        Poll::Ready(last)
    }
}

impl Body for SentBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if !this.inner_ended {
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let len = frame.data_ref().map_or(0, |data| data.remaining() as u64);
                    let total = this.sent.load(Ordering::Relaxed).saturating_add(len);
                    if total > this.limit {
                        this.stopper.stop(Stop::TooLarge);
                        let err = InvokeError::ResponseTooLarge { limit: this.limit };
                        return this.end(Some(Err(err.into())));
                    }
                    this.sent.store(total, Ordering::Relaxed);
                    return Poll::Ready(Some(Ok(frame)));
                }
                Some(Err(err)) => return this.end(Some(Err(err))),
                None => this.inner_ended = true,
            }
        }
        match ready!(Pin::new(&mut this.verdict).poll(cx)) {
            Ok(true) => this.end(None),
            _ => this.end(Some(Err("the function failed after its response began; the body is cut off".into()))),
        }
    }
}

impl Drop for SentBody {
    fn drop(&mut self) {
        if !self.ended {
            self.stopper.stop(Stop::ClientGone);
        }
    }
}
