//! The one invoker: runs any function kind in a fresh instance, with an
//! input, a deadline and the caller's identity, and returns the output and
//! what the call used. It knows nothing of routes; the HTTP server, and later
//! the dataset pipeline and training jobs, call it the same way.
//!
//! Every kind goes through one guest-call sequence ([`Invoker::guest_call`]):
//! take a slot of the function's concurrency, build a store with the
//! version's limits, instantiate from the pre-linked component, call under
//! the deadline, measure, log what the guest printed, and judge the outcome.

mod error;
mod framing;
pub mod handler;
pub mod http;
mod service;
mod streamed;
pub mod typed;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::engine::{EntryPoint, HostState, InstanceLimits, NamedTensor, OutboundPolicy, RawRecord};
use crate::metering::{Measurement, timed};
use crate::nn::ModelStore;
use crate::nn::wasi::NnCtx;
use crate::registry::{Overloaded, Version};

pub use crate::engine::bindings::training::exports::muon::function::train::{Evaluation, StepOutput, StepsOutput};
pub use error::InvokeError;
pub use streamed::{Finished, SentBody, Streamed};

/// What the invoker needs from the configuration: the limits every instance runs under.
#[derive(Debug, Clone)]
pub struct InvokeSettings {
    /// Host resources (streams, fields, ...) an instance may hold at once.
    pub max_guest_resources: usize,
    /// Guest stdout plus stderr bytes kept for the log.
    pub guest_output_bytes: usize,
    /// Whether guests may reach private and loopback addresses.
    pub allow_private_outbound: bool,
    /// Largest response or output a function may return, in bytes.
    pub max_response_bytes: u64,
}

/// Who asked for a call, for the logs: the request or job it serves.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The request id (or job and trial id) the call belongs to.
    pub work_id: &'a str,
    /// Where the guest's output goes besides the host's log (a training
    /// trial's own log).
    pub log: Option<&'a GuestLog>,
}

/// The last bytes guests printed over many calls, per stream.
#[derive(Debug)]
pub struct GuestLog {
    limit: usize,
    streams: std::sync::Mutex<[Vec<u8>; 2]>,
}

impl GuestLog {
    /// A log keeping the last `limit` bytes of stdout and of stderr, after `stdout` and `stderr`.
    pub fn new(limit: usize, stdout: &str, stderr: &str) -> Self {
        let log = Self { limit, streams: std::sync::Mutex::new([Vec::new(), Vec::new()]) };
        log.append(0, stdout.as_bytes());
        log.append(1, stderr.as_bytes());
        log
    }

    /// The kept stdout and stderr, as text.
    pub fn contents(&self) -> (String, String) {
        match self.streams.lock() {
            Ok(streams) => {
                (String::from_utf8_lossy(&streams[0]).into_owned(), String::from_utf8_lossy(&streams[1]).into_owned())
            }
            Err(_) => (String::new(), String::new()),
        }
    }

    fn append(&self, stream: usize, bytes: &[u8]) {
        let Ok(mut streams) = self.streams.lock() else { return };
        let Some(kept) = streams.get_mut(stream) else { return };
        kept.extend_from_slice(bytes);
        if kept.len() > self.limit {
            let mut cut = kept.len() - self.limit;
            // Cut at a character boundary, so the tail stays valid text.
            while cut < kept.len() && (kept[cut] & 0xC0) == 0x80 {
                cut += 1;
            }
            kept.drain(..cut);
        }
    }
}

/// What a function is called with; each kind takes its own.
pub enum Input {
    /// A handler or streaming handler function: the request record (body
    /// already read).
    Handler(crate::engine::Request),
    /// A `wasi:http` function: the request with its body already read.
    Http(::http::Request<http_body_util::Full<Bytes>>),
    /// A preprocessor: one raw record.
    Preprocess(RawRecord),
    /// A training step's `init`, with its configuration.
    TrainInit {
        /// The configuration as text (JSON, typically).
        config: String,
    },
    /// A training step's `step`.
    TrainStep {
        /// The current parameters.
        parameters: Vec<NamedTensor>,
        /// One batch of training data.
        batch: Vec<NamedTensor>,
        /// Hyper-parameters by name.
        hyper: Vec<(String, f64)>,
    },
    /// A training step's `steps`: several batches in one call.
    TrainSteps {
        /// The current parameters.
        parameters: Vec<NamedTensor>,
        /// The batches, trained on in order.
        batches: Vec<Vec<NamedTensor>>,
        /// Hyper-parameters by name.
        hyper: Vec<(String, f64)>,
    },
    /// A training step's `evaluate`.
    TrainEvaluate {
        /// The parameters evaluated.
        parameters: Vec<NamedTensor>,
        /// One batch of held-out data.
        batch: Vec<NamedTensor>,
    },
}

/// What a function returned.
pub enum Output {
    /// A whole HTTP response whose framing the host owns (handler, and a
    /// streaming function that had ended before its head went out).
    Http(::http::Response<Bytes>),
    /// A response the guest is still writing (streaming handler and
    /// `wasi:http`); its call ends, and is settled, when the stream does.
    Stream(Streamed),
    /// A preprocessor's tensors.
    Tensors(Vec<NamedTensor>),
    /// A training step's initial parameters.
    Parameters(Vec<NamedTensor>),
    /// A training step's new parameters, loss and metrics.
    Step(StepOutput),
    /// A training step's parameters after several batches, and each loss.
    Steps(StepsOutput),
    /// A training step's figures on held-out data.
    Evaluation(Evaluation),
}

/// Runs functions: owns the loaded models and the limits every instance
/// gets; each version's entry point carries the engine it was compiled for.
/// Cloning is cheap; a streamed call's guest task owns a clone.
#[derive(Clone)]
pub struct Invoker {
    models: Arc<ModelStore>,
    settings: InvokeSettings,
}

impl Invoker {
    /// An invoker over `models`.
    pub fn new(models: Arc<ModelStore>, settings: InvokeSettings) -> Self {
        Self { models, settings }
    }

    /// The largest response or output a function may return, in bytes.
    pub fn max_output_bytes(&self) -> u64 {
        self.settings.max_response_bytes
    }

    /// Runs `version` with `input` under `deadline` (the version's own when
    /// `None`). The measurement is what the guest used, whatever the outcome.
    pub async fn run(
        &self,
        version: &Arc<Version>,
        input: Input,
        deadline: Option<Duration>,
        caller: Caller<'_>,
    ) -> (Result<Output, InvokeError>, Measurement) {
        let deadline = deadline.unwrap_or(Duration::from_millis(version.limits.timeout_ms));
        match (&version.entry, input) {
            (EntryPoint::Handler(pre), Input::Handler(request)) => {
                let (result, used) = self
                    .guest_call(version, deadline, caller, async |store| {
                        let instance = instantiate(pre.instantiate_async(&mut *store)).await?;
                        instance.muon_function_handle().call_handle(store, &request).await
                    })
                    .await;
                let limit = self.settings.max_response_bytes;
                (result.and_then(|response| handler::framed(response, limit, &version.label)).map(Output::Http), used)
            }
            (EntryPoint::Streaming(pre), Input::Handler(request)) => {
                streamed::run_handler(self, version, pre, request, deadline, caller).await
            }
            (EntryPoint::Http(pre), Input::Http(request)) => {
                http::run(self, version, pre, request, deadline, caller).await
            }
            (EntryPoint::HttpService(pre), Input::Http(request)) => {
                service::run(self, version, pre, request, deadline, caller).await
            }
            (EntryPoint::Preprocessor(pre), Input::Preprocess(record)) => {
                let (result, used) = self
                    .guest_call(version, deadline, caller, async |store| {
                        let instance = instantiate(pre.instantiate_async(&mut *store)).await?;
                        instance.muon_function_preprocess().call_preprocess(store, &record).await
                    })
                    .await;
                (result.and_then(guest_result).map(Output::Tensors), used)
            }
            (EntryPoint::TrainingStep(pre), Input::TrainInit { config }) => {
                let (result, used) = self
                    .guest_call(version, deadline, caller, async |store| {
                        let instance = instantiate(pre.instantiate_async(&mut *store)).await?;
                        instance.muon_function_train().call_init(store, &config).await
                    })
                    .await;
                (result.and_then(guest_result).map(Output::Parameters), used)
            }
            (EntryPoint::TrainingStep(pre), Input::TrainStep { parameters, batch, hyper }) => {
                let (result, used) = self
                    .guest_call(version, deadline, caller, async |store| {
                        let instance = instantiate(pre.instantiate_async(&mut *store)).await?;
                        instance.muon_function_train().call_step(store, &parameters, &batch, &hyper).await
                    })
                    .await;
                (result.and_then(guest_result).map(Output::Step), used)
            }
            (EntryPoint::TrainingStep(pre), Input::TrainSteps { parameters, batches, hyper }) => {
                let (result, used) = self
                    .guest_call(version, deadline, caller, async |store| {
                        let instance = instantiate(pre.instantiate_async(&mut *store)).await?;
                        instance.muon_function_train().call_steps(store, &parameters, &batches, &hyper).await
                    })
                    .await;
                (result.and_then(guest_result).map(Output::Steps), used)
            }
            (EntryPoint::TrainingStep(pre), Input::TrainEvaluate { parameters, batch }) => {
                let (result, used) = self
                    .guest_call(version, deadline, caller, async |store| {
                        let instance = instantiate(pre.instantiate_async(&mut *store)).await?;
                        instance.muon_function_train().call_evaluate(store, &parameters, &batch).await
                    })
                    .await;
                (result.and_then(guest_result).map(Output::Evaluation), used)
            }
            (entry, _) => (Err(wrong_input(version, entry)), Measurement::default()),
        }
    }

    /// The guest-call sequence, written once: a concurrency slot, a fresh
    /// store with the version's limits, `call` under the deadline, then the
    /// measurement, the guest's output in the log, and the outcome judged.
    async fn guest_call<T>(
        &self,
        version: &Arc<Version>,
        deadline: Duration,
        caller: Caller<'_>,
        call: impl AsyncFnOnce(&mut Store<HostState>) -> wasmtime::Result<T>,
    ) -> (Result<T, InvokeError>, Measurement) {
        let _slot = match Arc::clone(&version.admission).enter().await {
            Ok(slot) => slot,
            Err(Overloaded { retry_after_s }) => {
                return (Err(InvokeError::Overloaded { retry_after_s }), Measurement::default());
            }
        };
        let _in_flight = version.metrics.instance_running();
        let mut store = self.store(version, deadline);
        let (outcome, cpu) = timed(tokio::time::timeout(deadline, call(&mut store))).await;
        let used = measurement(&store, cpu);
        log_output(&store, version, caller);
        let timeout = || InvokeError::Timeout { timeout_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX) };
        let result = match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(classify(&store, version, &err).unwrap_or_else(timeout)),
            Err(_) => Err(timeout()),
        };
        (result, used)
    }

    /// A fresh store for `version` with its memory, resource and time limits.
    fn store(&self, version: &Version, deadline: Duration) -> Store<HostState> {
        let settings = &self.settings;
        let limits = InstanceLimits {
            memory_bytes: (version.limits.memory_mb as usize) << 20,
            max_resources: settings.max_guest_resources,
            output_bytes: settings.guest_output_bytes,
        };
        let outbound = OutboundPolicy::new(Arc::clone(&version.allowed_hosts), settings.allow_private_outbound);
        let nn = NnCtx::new(
            Arc::clone(&self.models),
            Arc::clone(&version.nn_scope),
            u64::from(version.limits.memory_mb) << 20,
        );
        let mut store = Store::new(version.entry.engine(), HostState::new(limits, outbound, nn));
        store.limiter(|state| &mut state.limiter);
        let deadline = Instant::now() + deadline;
        // Every epoch tick the guest yields to the executor, so a spinning
        // guest cannot starve other requests on its worker thread; past the
        // deadline it is interrupted. A guest blocked in a host call is
        // stopped by the async timeout around the call instead.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline { UpdateDeadline::Interrupt } else { UpdateDeadline::Yield(1) })
        });
        store
    }
}

/// What the guest used, given the CPU time of its call.
fn measurement(store: &Store<HostState>, cpu: Duration) -> Measurement {
    let state = store.data();
    let (nn_cpu_us, nn_gpu_us) = state.nn_compute();
    Measurement {
        // A compute run on the calling thread is metered as compute only.
        cpu: cpu.saturating_sub(state.nn_inline()),
        peak_memory_bytes: state.limiter.meter.peak(),
        memory_byte_ms: state.limiter.meter.byte_ms(),
        nn_cpu_us,
        nn_gpu_us,
    }
}

/// Why a guest call failed; `None` for an interrupt at the deadline.
fn classify(store: &Store<HostState>, version: &Version, err: &wasmtime::Error) -> Option<InvokeError> {
    let state = store.data();
    if state.limiter.hit_limit {
        return Some(InvokeError::MemoryLimit { limit_mb: version.limits.memory_mb });
    }
    Some(match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => return None,
        Some(Trap::StackOverflow) => {
            InvokeError::Trap("stack overflow: the function recursed deeper than its wasm stack limit".to_owned())
        }
        Some(trap) => InvokeError::Trap(with_guest_message(&trap.to_string(), &state.stderr.contents())),
        None => InvokeError::Trap(with_guest_message(&format!("{err:#}"), &state.stderr.contents())),
    })
}

fn log_output(store: &Store<HostState>, version: &Version, caller: Caller<'_>) {
    let state = store.data();
    for (index, (stream, output)) in
        [("stdout", state.stdout.contents()), ("stderr", state.stderr.contents())].into_iter().enumerate()
    {
        if let Some(log) = caller.log {
            log.append(index, &output);
        }
        if !output.is_empty() {
            tracing::info!(
                request_id = %caller.work_id,
                function = %version.label,
                stream,
                output = %String::from_utf8_lossy(&output).trim_end(),
                "guest output"
            );
        }
    }
}

/// Instantiates, recording how long it took.
async fn instantiate<T>(instantiating: impl Future<Output = wasmtime::Result<T>>) -> wasmtime::Result<T> {
    // Looked up once: the macro hashes the key into the registry on every call.
    static INSTANTIATE: std::sync::LazyLock<metrics::Histogram> =
        std::sync::LazyLock::new(|| metrics::histogram!("muon_instantiate_seconds"));
    let started = Instant::now();
    let instance = instantiating.await?;
    INSTANTIATE.record(started.elapsed().as_secs_f64());
    Ok(instance)
}

/// A function's own `err(string)` result: the call worked, the input did not.
fn guest_result<T>(result: Result<T, String>) -> Result<T, InvokeError> {
    result.map_err(InvokeError::Rejected)
}

fn wrong_input(version: &Version, entry: &EntryPoint) -> InvokeError {
    let name = &version.record.name;
    match entry {
        EntryPoint::Handler(_) | EntryPoint::Streaming(_) | EntryPoint::Http(_) | EntryPoint::HttpService(_) => {
            InvokeError::BadInput(format!("`{name}` is an HTTP function; call it at /fn/{}", version.label))
        }
        EntryPoint::Preprocessor(_) | EntryPoint::TrainingStep(_) => InvokeError::BadInput(format!(
            "`{name}` is a {} function; call it with POST /v1/functions/{name}/invoke",
            entry.kind().as_str()
        )),
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
