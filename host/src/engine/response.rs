//! The host side of `muon:function/response-stream`: a streaming function's
//! head goes out through a one-shot channel and its body through a small
//! bounded channel that hyper reads from. The invoker makes both ends
//! (`invoke::streamed`) and judges what arrives; this file only moves bytes.

use bytes::Bytes;
use http_body_util::channel::{Channel, Sender};
use tokio::sync::oneshot;

use super::HostState;
use super::bindings::streaming::muon::function::response_stream::Host;

/// Body chunks buffered between the guest and the client: a guest blocks in
/// `write` once this many are waiting, so a slow reader holds at most this
/// many chunks of a function's output in the host.
const CHUNKS_BUFFERED: usize = 4;

/// A streaming function's response head, as the guest gave it.
#[derive(Debug)]
pub struct Head {
    /// The status, not yet checked.
    pub status: u16,
    /// The headers, not yet checked.
    pub headers: Vec<(String, String)>,
}

/// Where a streaming call's `start` and `write` go.
pub struct ResponseSink {
    head: Option<oneshot::Sender<Head>>,
    body: Sender<Bytes>,
}

/// A new sink, the receiver of its head, and the body hyper reads.
pub fn response_channel() -> (ResponseSink, oneshot::Receiver<Head>, Channel<Bytes>) {
    let (head, head_rx) = oneshot::channel();
    let (body, channel) = Channel::new(CHUNKS_BUFFERED);
    (ResponseSink { head: Some(head), body }, head_rx, channel)
}

impl ResponseSink {
    fn start(&mut self, head: Head) -> wasmtime::Result<()> {
        let sender = self.head.take().ok_or_else(|| wasmtime::Error::msg("`start` was called twice"))?;
        // The receiver is gone only when the invoker stopped waiting for the
        // head, which means it is stopping this call.
        sender.send(head).map_err(|_| wasmtime::Error::msg("the response is no longer wanted"))
    }

    async fn write(&mut self, chunk: Vec<u8>) -> wasmtime::Result<()> {
        if self.head.is_some() {
            self.start(Head { status: 200, headers: Vec::new() })?;
        }
        if chunk.is_empty() {
            // An empty data frame would end a chunked body early on the wire.
            return Ok(());
        }
        self.body.send_data(Bytes::from(chunk)).await.map_err(|_| wasmtime::Error::msg("the client has gone"))
    }
}

impl HostState {
    /// Makes this call a streaming one, sending its response through `sink`.
    pub fn stream_response(&mut self, sink: ResponseSink) {
        self.response = Some(sink);
    }

    fn sink(&mut self) -> wasmtime::Result<&mut ResponseSink> {
        self.response.as_mut().ok_or_else(|| wasmtime::Error::msg("this function is not called as a streaming handler"))
    }
}

impl Host for HostState {
    async fn start(&mut self, status: u16, headers: Vec<(String, String)>) -> wasmtime::Result<()> {
        self.sink()?.start(Head { status, headers })
    }

    async fn write(&mut self, chunk: Vec<u8>) -> wasmtime::Result<()> {
        self.sink()?.write(chunk).await
    }
}
