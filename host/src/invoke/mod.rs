//! Running one request in a fresh instance: admission, a new store with the
//! function's limits, instantiate from the pre-linked component, call, and
//! turn whatever happened into a response or a typed error.

mod framing;
mod handler;
mod http;
pub mod typed;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Store, Trap, UpdateDeadline};

pub use handler::call_handler;
pub use http::call_http;

use crate::engine::{HostState, InstanceLimits, OutboundPolicy};
use crate::error::ApiError;
use crate::metering::{Measurement, timed};
use crate::nn::wasi::NnCtx;
use crate::registry::Version;
use crate::server::App;
use crate::telemetry::InFlight;

/// One guest invocation: its store and what is needed to judge its outcome.
pub(crate) struct GuestCall {
    pub store: Store<HostState>,
    version: Arc<Version>,
    request_id: String,
    timeout: Duration,
    _in_flight: InFlight,
}

/// A guest call's outcome under its deadline, and the CPU time it used.
pub(crate) type Guarded<T> = (Result<T, tokio::time::error::Elapsed>, Duration);

/// The deadline of a guest call, taken apart from the `GuestCall` so the
/// call's future can borrow the store.
pub(crate) struct CallGuard {
    timeout: Duration,
}

impl CallGuard {
    /// Runs `call` under the deadline, timing the polls that run the guest.
    pub async fn run<F: Future>(self, call: F) -> Guarded<F::Output> {
        timed(tokio::time::timeout(self.timeout, call)).await
    }
}

impl GuestCall {
    /// A fresh store for `version` with its memory, resource and time limits.
    pub fn new(app: &App, version: Arc<Version>, request_id: &str) -> Self {
        let config = &app.config;
        let limits = InstanceLimits {
            memory_bytes: (version.limits.memory_mb as usize) << 20,
            max_resources: config.max_guest_resources,
            output_bytes: config.guest_output_bytes,
        };
        let outbound = OutboundPolicy::new(Arc::clone(&version.allowed_hosts), config.allow_private_outbound);
        let nn = NnCtx::new(
            Arc::clone(&app.models),
            Arc::clone(&version.nn_scope),
            u64::from(version.limits.memory_mb) << 20,
        );
        let mut store = Store::new(app.runtime.engine(), HostState::new(limits, outbound, nn));
        store.limiter(|state| &mut state.limiter);
        let timeout = Duration::from_millis(version.limits.timeout_ms);
        let deadline = Instant::now() + timeout;
        // Every epoch tick the guest yields to the executor, so a spinning
        // guest cannot starve other requests on its worker thread; past the
        // deadline it is interrupted. A guest blocked in a host call is
        // stopped by the async timeout around the call instead.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline { UpdateDeadline::Interrupt } else { UpdateDeadline::Yield(1) })
        });
        let in_flight = version.metrics.instance_running();
        Self { store, version, request_id: request_id.to_owned(), timeout, _in_flight: in_flight }
    }

    /// The guard to run this call's guest code under.
    pub fn guard(&self) -> CallGuard {
        CallGuard { timeout: self.timeout }
    }

    /// What the guest used, given the CPU time of its call.
    fn measurement(&self, cpu: Duration) -> Measurement {
        let meter = &self.store.data().limiter.meter;
        let (nn_cpu_us, nn_gpu_us) = self.store.data().nn_compute();
        Measurement { cpu, peak_memory_bytes: meter.peak(), memory_byte_ms: meter.byte_ms(), nn_cpu_us, nn_gpu_us }
    }

    /// Judges the outcome of a call made under [`GuestCall::guard`], records
    /// what the guest used into `usage`, and logs what the guest printed.
    pub fn finish<T>(
        &self,
        (outcome, cpu): Guarded<wasmtime::Result<T>>,
        usage: &mut Measurement,
    ) -> Result<T, ApiError> {
        *usage = self.measurement(cpu);
        self.log_output();
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(self.classify(&err)),
            Err(_) => Err(ApiError::Timeout { timeout_ms: self.version.limits.timeout_ms }),
        }
    }

    fn classify(&self, err: &wasmtime::Error) -> ApiError {
        let state = self.store.data();
        if state.limiter.hit_limit {
            return ApiError::MemoryLimit { limit_mb: self.version.limits.memory_mb };
        }
        match err.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => ApiError::Timeout { timeout_ms: self.version.limits.timeout_ms },
            Some(Trap::StackOverflow) => {
                ApiError::Trap("stack overflow: the function recursed deeper than its wasm stack limit".to_owned())
            }
            Some(trap) => ApiError::Trap(with_guest_message(&trap.to_string(), &state.stderr.contents())),
            None => ApiError::Trap(with_guest_message(&format!("{err:#}"), &state.stderr.contents())),
        }
    }

    fn log_output(&self) {
        let state = self.store.data();
        for (stream, output) in [("stdout", state.stdout.contents()), ("stderr", state.stderr.contents())] {
            if !output.is_empty() {
                tracing::info!(
                    request_id = %self.request_id,
                    function = %self.version.label,
                    stream,
                    output = %String::from_utf8_lossy(&output).trim_end(),
                    "guest output"
                );
            }
        }
    }
}

/// Adds what the guest last printed to stderr (a Rust panic message, typically)
/// to a trap message, leaving out Rust's backtrace hint.
fn with_guest_message(trap: &str, stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> =
        text.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with("note: run with")).collect();
    match lines.len() {
        0 => trap.to_owned(),
        n => format!("{trap}; guest stderr: {}", lines[n.saturating_sub(2)..].join(" ")),
    }
}

/// Records instantiation time.
pub(crate) fn record_instantiate(started: Instant) {
    // Looked up once: the macro hashes the key into the registry on every call.
    static INSTANTIATE: std::sync::LazyLock<metrics::Histogram> =
        std::sync::LazyLock::new(|| metrics::histogram!("muon_instantiate_seconds"));
    INSTANTIATE.record(started.elapsed().as_secs_f64());
}
