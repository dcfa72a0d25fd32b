//! Per-request store data: the Ctx / View / ResourceTable split of wasmtime.
//!
//! A [`HostState`] is built for each request and dropped with its store, so
//! nothing of one request (memory, handles, output) is seen by the next.

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::outbound::OutboundPolicy;
use crate::metering::MemoryMeter;
use crate::nn::wasi::{NnCtx, WasiNnView};

/// Limits one request's instance runs under.
#[derive(Debug, Clone, Copy)]
pub struct InstanceLimits {
    /// Linear memory the instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// Host resources (streams, fields, ...) the instance may hold at once.
    pub max_resources: usize,
    /// Guest stdout plus stderr bytes kept for the log.
    pub output_bytes: usize,
}

/// The `T` of every `Store<T>`.
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    outbound: OutboundPolicy,
    nn: NnCtx,
    /// Where a streaming function's response goes; `None` for other calls.
    pub(super) response: Option<super::response::ResponseSink>,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) stdout: CapturedOutput,
    pub(crate) stderr: CapturedOutput,
}

impl HostState {
    /// Fresh state with no filesystem, environment or network access.
    pub fn new(limits: InstanceLimits, outbound: OutboundPolicy, nn: NnCtx) -> Self {
        let stdout = CapturedOutput::new(limits.output_bytes);
        let stderr = CapturedOutput::new(limits.output_bytes);
        // WasiCtxBuilder's defaults already grant nothing: no preopens, no
        // environment, no arguments, every socket address denied.
        let wasi = WasiCtxBuilder::new().stdout(stdout.clone()).stderr(stderr.clone()).build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(limits.max_resources);
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table,
            outbound,
            nn,
            response: None,
            limiter: MemoryLimiter { limit: limits.memory_bytes, meter: MemoryMeter::new(), hit_limit: false },
            stdout,
            stderr,
        }
    }
}

impl HostState {
    /// wasi-nn compute so far, in microseconds on CPU and on GPU.
    pub fn nn_compute(&self) -> (u64, u64) {
        self.nn.compute_totals()
    }

    /// The part of that compute run on the calling thread, so inside the
    /// guest call's own time.
    pub fn nn_inline(&self) -> std::time::Duration {
        self.nn.inline_total()
    }

    /// The wasi-nn view: its context and the shared resource table.
    pub fn nn(&mut self) -> WasiNnView<'_> {
        WasiNnView { ctx: &mut self.nn, table: &mut self.table }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.outbound }
    }
}

/// Caps linear memory and remembers whether the guest hit the cap, so a trap
/// that follows a refused `memory.grow` is reported as `memory_limit`.
pub struct MemoryLimiter {
    limit: usize,
    /// Memory size over time, for metering.
    pub meter: MemoryMeter,
    /// Whether a growth was refused.
    pub hit_limit: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit_limit = true;
            return Ok(false);
        }
        self.meter.resize(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far past any real
        // guest and keeps a hostile one from exhausting host memory.
        Ok(desired <= 1_000_000)
    }
}

/// Bounded capture of a guest output stream.
///
/// Writes past the bound are dropped silently rather than failing, because a
/// guest's `println!` panics on a write error and a chatty function should not
/// trap for it.
#[derive(Clone)]
pub struct CapturedOutput {
    buffer: Arc<Mutex<BytesMut>>,
    capacity: usize,
}

impl CapturedOutput {
    fn new(capacity: usize) -> Self {
        Self { buffer: Arc::new(Mutex::new(BytesMut::new())), capacity }
    }

    /// What the guest wrote, up to the capacity.
    pub fn contents(&self) -> Bytes {
        match self.buffer.lock() {
            Ok(buffer) => buffer.clone().freeze(),
            Err(poisoned) => poisoned.into_inner().clone().freeze(),
        }
    }

    fn append(&self, bytes: &[u8]) {
        let mut buffer = match self.buffer.lock() {
            Ok(buffer) => buffer,
            Err(poisoned) => poisoned.into_inner(),
        };
        let room = self.capacity.saturating_sub(buffer.len());
        buffer.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
