//! Inference: the wasi-nn host interface, models as shared objects, and the
//! backends that run them.
//!
//! A model is parsed and optimized once per host and backend ([`Inference`]
//! caches loaded models by digest), shared by every instance allowed to use
//! it, and computed on a bounded pool of threads off the async workers.
//! Loads run on a pool of their own, so a slow load never holds up a
//! compute; both pools are shared fairly between tenants ([`pool`]), and
//! every load and compute is sized first ([`bounds`]), so that no model can
//! make the host allocate more than the caller may.

pub mod backend;
mod batch;
mod bounds;
mod error;
mod health;
mod models;
mod pool;
mod signature;
pub mod template;
mod tensor;
pub mod wasi;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use backend::{Backend, BackendKind, Cancel, Device, LoadedModel, OnnxRuntime, RunBudget, Tract};
use batch::Hold;
pub use batch::{BatchCounts, Batching, DEFAULT_BATCH_WAIT_US};
use bounds::{LoadLimits, ModelBounds};
pub use error::{ErrorCode, NnError};
pub use health::Unloadable;
pub use models::{ModelAccess, ModelError, ModelOptions, ModelRecord, ModelStore};
use pool::ComputePool;
pub use signature::{Dim, Signature, TensorSpec, inspect_onnx};
pub use tensor::{ElementType, HostTensor};
pub use watch::{FeatureTally, ModelWatch, Tally};

/// Inference settings, resolved from the `[nn]` configuration.
#[derive(Debug, Clone)]
pub struct NnConfig {
    /// Inference threads (computes run there).
    pub threads: usize,
    /// Most inference threads one tenant holds at once.
    pub tenant_threads: usize,
    /// Threads that load models, apart from the inference threads.
    pub load_threads: usize,
    /// How long a model may take to load.
    pub load_timeout: Duration,
    /// Most nodes in a model's graph.
    pub max_nodes: usize,
    /// Largest tensor constant folding may make when a model loads, in bytes.
    pub max_fold_bytes: u64,
    /// Largest tensor any function may hold: the largest memory limit a
    /// function may be deployed with, in bytes.
    pub max_tensor_bytes: u64,
    /// ONNX Runtime sessions per model: how many requests compute on one model at once.
    pub sessions_per_model: usize,
    /// Threads one ONNX Runtime session uses for one inference.
    pub intra_op_threads: usize,
    /// Where `libonnxruntime` is; `None` searches beside the binary.
    pub onnxruntime_library: Option<PathBuf>,
    /// The backend of a model uploaded without one; `None` picks ONNX Runtime when it loaded, else tract.
    pub default_backend: Option<BackendKind>,
    /// Serve `target=gpu` models on CPU when no GPU is usable, with a warning, instead of refusing them.
    pub gpu_fallback_to_cpu: bool,
    /// Largest model upload, in bytes.
    pub max_model_bytes: u64,
    /// Largest model a guest may pass to wasi-nn `load`, in bytes.
    pub max_load_bytes: u64,
    /// A model whose last compute took at most this long runs the next one
    /// on the same dimensions on the calling thread instead of the
    /// inference pool ([`ComputePace`]); zero sends every compute to the pool.
    pub inline_compute: Duration,
}

/// Compute time of one request by device, added by the inference threads
/// that compute for it as each compute ends; and how much of it ran on the
/// calling thread, which the request's own time already holds.
#[derive(Debug, Default)]
pub struct ComputeMeter {
    cpu_us: AtomicU64,
    gpu_us: AtomicU64,
    inline_us: AtomicU64,
}

impl ComputeMeter {
    fn add(&self, device: Device, elapsed: Duration) {
        self.add_us(device, u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    fn add_us(&self, device: Device, micros: u64) {
        let counter = match device {
            Device::Cpu => &self.cpu_us,
            Device::Gpu => &self.gpu_us,
        };
        counter.fetch_add(micros, Ordering::Relaxed);
    }

    /// Adds microseconds of compute measured elsewhere (one model's compute).
    fn add_micros(&self, cpu_us: u64, gpu_us: u64) {
        self.cpu_us.fetch_add(cpu_us, Ordering::Relaxed);
        self.gpu_us.fetch_add(gpu_us, Ordering::Relaxed);
    }

    /// Compute so far that ran on the calling thread.
    pub fn inline_total(&self) -> Duration {
        Duration::from_micros(self.inline_us.load(Ordering::Relaxed))
    }

    /// Microseconds of compute on CPU and on GPU so far.
    pub fn totals(&self) -> (u64, u64) {
        (self.cpu_us.load(Ordering::Relaxed), self.gpu_us.load(Ordering::Relaxed))
    }
}

/// A model ready to compute, as a wasi-nn `graph` holds it.
#[derive(Clone)]
pub struct Graph {
    /// The loaded model, shared by every function that uses it.
    pub model: Arc<dyn LoadedModel>,
    /// Its inputs and outputs, to check a guest's tensors before compute.
    pub signature: Arc<Signature>,
    bounds: Arc<ModelBounds>,
    /// The catalog version it was loaded for (by name), whose statistics
    /// and repair its computes feed; `None` for bytes a guest loaded.
    watch: Option<Arc<ModelWatch>>,
    /// The hold on that version's batcher, when its computes are batched.
    batcher: Option<Arc<Hold>>,
    /// How quick its computes are, to run quick ones where they are called.
    pace: Arc<ComputePace>,
}

type LoadKey = (String, BackendKind, Device);

/// A model to load: its digest, where to run it, its signature, and the
/// tenant whose turn on the load threads it takes.
pub struct ModelSpec {
    /// The tenant whose turn on the load threads the load takes.
    pub tenant: Arc<str>,
    /// SHA-256 of the bytes: loads of the same model are shared by it.
    pub digest: String,
    /// The inference backend to load it into.
    pub backend: BackendKind,
    /// Where its compute runs.
    pub device: Device,
    /// Its inputs and outputs, read at upload.
    pub signature: Arc<Signature>,
}

impl ModelSpec {
    fn key(&self) -> LoadKey {
        (self.digest.clone(), self.backend, self.device)
    }
}

/// Reads a model's bytes, on a load thread, when it must be loaded.
pub type ModelBytes = Box<dyn FnOnce() -> Result<Arc<[u8]>, NnError> + Send>;

/// The backends, the loaded-model cache, the inference threads and the load threads.
pub struct Inference {
    tract: Tract,
    onnxruntime: Option<OnnxRuntime>,
    onnxruntime_error: Option<String>,
    default_backend: BackendKind,
    loaded: DashMap<LoadKey, Arc<tokio::sync::OnceCell<Graph>>>,
    pool: ComputePool,
    loads: ComputePool,
    config: NnConfig,
}

impl Inference {
    /// Starts the inference and load threads and loads ONNX Runtime if it can be found.
    pub fn start(config: NnConfig) -> anyhow::Result<Self> {
        let (onnxruntime, onnxruntime_error) = match find_onnxruntime(config.onnxruntime_library.as_ref()) {
            Some(library) => match OnnxRuntime::load(
                &library,
                config.sessions_per_model,
                config.intra_op_threads,
                config.gpu_fallback_to_cpu,
            ) {
                Ok(runtime) => {
                    tracing::info!(library = %library.display(), "ONNX Runtime backend loaded");
                    (Some(runtime), None)
                }
                Err(err) => {
                    tracing::warn!(error = format!("{err:#}"), "ONNX Runtime backend unavailable");
                    (None, Some(format!("{err:#}")))
                }
            },
            None => (
                None,
                Some("libonnxruntime.so was not found; set MUON_ORT_DYLIB or [nn] onnxruntime_library".to_owned()),
            ),
        };
        let default_backend = match (config.default_backend, &onnxruntime) {
            (Some(BackendKind::OnnxRuntime), None) => {
                anyhow::bail!("the default backend is onnxruntime, but {}", onnxruntime_error.unwrap_or_default())
            }
            (Some(kind), _) => kind,
            (None, Some(_)) => BackendKind::OnnxRuntime,
            (None, None) => BackendKind::Tract,
        };
        let pool = ComputePool::start("muon-nn", config.threads, config.tenant_threads)?;
        let loads = ComputePool::start("muon-nn-load", config.load_threads, config.load_threads.div_ceil(2))?;
        tracing::info!(
            threads = pool.threads(),
            tenant_threads = config.tenant_threads,
            load_threads = loads.threads(),
            default_backend = default_backend.as_str(),
            "inference pools started"
        );
        Ok(Self {
            tract: Tract,
            onnxruntime,
            onnxruntime_error,
            default_backend,
            loaded: DashMap::new(),
            pool,
            loads,
            config,
        })
    }

    /// The settings this service runs with.
    pub fn config(&self) -> &NnConfig {
        &self.config
    }

    /// The backend a model asking for `requested` gets.
    pub fn choose_backend(&self, requested: Option<BackendKind>) -> Result<BackendKind, NnError> {
        let kind = requested.unwrap_or(self.default_backend);
        self.backend(kind).map(|_| kind)
    }

    fn backend(&self, kind: BackendKind) -> Result<&dyn Backend, NnError> {
        match (kind, &self.onnxruntime) {
            (BackendKind::Tract, _) => Ok(&self.tract),
            (BackendKind::OnnxRuntime, Some(runtime)) => Ok(runtime),
            (BackendKind::OnnxRuntime, None) => Err(NnError::new(
                ErrorCode::UnsupportedOperation,
                format!(
                    "the onnxruntime backend is not available on this host: {}",
                    self.onnxruntime_error.as_deref().unwrap_or("unknown reason")
                ),
            )),
        }
    }

    /// The loaded model for `spec`, loading it on the load threads the first
    /// time (concurrent first uses wait for one load). `bytes` is called only
    /// for that load.
    pub async fn load(self: &Arc<Self>, spec: ModelSpec, bytes: ModelBytes) -> Result<Graph, NnError> {
        self.load_reporting(spec, bytes).await.map(|(graph, _)| graph)
    }

    /// [`Inference::load`], also saying whether this call loaded the model
    /// (rather than finding it loaded).
    pub async fn load_reporting(
        self: &Arc<Self>,
        spec: ModelSpec,
        bytes: ModelBytes,
    ) -> Result<(Graph, bool), NnError> {
        let key = spec.key();
        let cell = Arc::clone(self.loaded.entry(key.clone()).or_default().value());
        let fresh = AtomicBool::new(false);
        let loaded = cell
            .get_or_try_init(|| {
                fresh.store(true, Ordering::Relaxed);
                self.load_now(spec, bytes)
            })
            .await;
        if loaded.is_err() {
            // A failed load is not cached: the next use tries again.
            self.loaded.remove_if(&key, |_, cell| cell.get().is_none());
        }
        loaded.map(|graph| (graph.clone(), fresh.load(Ordering::Relaxed)))
    }

    /// Loads the model for `spec` again from `bytes`, replacing the loaded
    /// one for later uses (what uses the old one keeps it until it is done).
    pub async fn reload(self: &Arc<Self>, spec: ModelSpec, bytes: ModelBytes) -> Result<Graph, NnError> {
        let key = spec.key();
        let graph = self.load_now(spec, bytes).await?;
        self.loaded.insert(key, Arc::new(tokio::sync::OnceCell::new_with(Some(graph.clone()))));
        Ok(graph)
    }

    /// Like [`Inference::load`], but a model not loaded already is not kept:
    /// for bytes a guest passes to wasi-nn `load`, so that guests cannot fill
    /// the host's memory with models. Uploaded models are the ones to share.
    pub async fn load_transient(self: &Arc<Self>, spec: ModelSpec, bytes: ModelBytes) -> Result<Graph, NnError> {
        if let Some(graph) = self.loaded.get(&spec.key()).and_then(|cell| cell.get().cloned()) {
            return Ok(graph);
        }
        self.load_now(spec, bytes).await
    }

    /// Sizes the model's tensors, then loads it into its backend, on the
    /// load threads and under the load timeout. A load that runs past the
    /// timeout is answered with an error at once; its thread finishes the
    /// work (no backend can stop a load), on the tenant's share of the load
    /// threads only.
    async fn load_now(self: &Arc<Self>, spec: ModelSpec, bytes: ModelBytes) -> Result<Graph, NnError> {
        let ModelSpec { tenant, digest, backend, device, signature } = spec;
        self.backend(backend)?;
        let inference = Arc::clone(self);
        let load_signature = Arc::clone(&signature);
        let limits = LoadLimits {
            max_nodes: self.config.max_nodes,
            max_fold_bytes: self.config.max_fold_bytes,
            max_tensor_bytes: self.config.max_tensor_bytes,
        };
        let started = Instant::now();
        let load = self.loads.run(&tenant, move |_cancel| {
            let bytes = bytes()?;
            let bounds = ModelBounds::analyse(&bytes, &load_signature, limits)?;
            let model = inference.backend(backend)?.load(&bytes, &load_signature, device)?;
            Ok::<_, NnError>((model, bounds))
        });
        let (model, bounds) = tokio::time::timeout(self.config.load_timeout, load).await.map_err(|_| {
            NnError::new(
                ErrorCode::Timeout,
                format!(
                    "the model did not load within {} ms (nn load_timeout_ms)",
                    self.config.load_timeout.as_millis()
                ),
            )
        })???;
        tracing::info!(
            digest,
            backend = backend.as_str(),
            device = model.device().as_str(),
            load_ms = started.elapsed().as_millis() as u64,
            "model loaded"
        );
        let pace = Arc::default();
        Ok(Graph { model, signature, bounds: Arc::new(bounds), watch: None, batcher: None, pace })
    }

    /// Forgets a loaded model (after its last catalog entry is deleted).
    pub fn unload(&self, digest: &str) {
        self.loaded.retain(|(loaded_digest, _, _), _| loaded_digest != digest);
    }

    /// Checks `inputs` against the graph's signature and every tensor the
    /// compute would make against the caller's memory limit, then computes
    /// (in a batch, when the model batches and the inputs may join one),
    /// adding the compute time to `meter`. A compute runs on the inference
    /// pool in the caller's turn, unless it is known to be quick
    /// ([`ComputePace`]): then it runs on the calling thread, which saves
    /// the two thread switches that would cost more than the compute.
    pub async fn compute(
        &self,
        graph: &Graph,
        inputs: Vec<(String, HostTensor)>,
        caller: &Caller,
        meter: Arc<ComputeMeter>,
    ) -> Result<Vec<(String, HostTensor)>, NnError> {
        let ordered = bind_inputs(&graph.signature, inputs)?;
        let size = graph.bounds.check_run(&ordered, caller.memory_limit)?;
        let model = Arc::clone(&graph.model);
        let batch = graph.batcher.as_ref().map(|hold| hold.batcher()).and_then(|b| Some((b, b.rows_of(&ordered)?)));
        let outputs = match batch {
            Some((batcher, rows)) => batcher.compute(model, ordered, rows, caller, meter).await?,
            None => {
                // Only a compute whose work the dimensions fix is paced.
                let shapes = size.fixed.then(|| shapes_key(&ordered));
                let inline = shapes.is_some_and(|key| graph.pace.is_quick(key, self.config.inline_compute));
                let pace = Arc::clone(&graph.pace);
                let spent = move |device, elapsed: Duration| {
                    meter.add(device, elapsed);
                    if inline {
                        meter
                            .inline_us
                            .fetch_add(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
                    }
                    pace.record(shapes, elapsed);
                };
                let budget = RunBudget { max_output_bytes: caller.memory_limit, made_bytes: size.made_bytes };
                if inline {
                    timed_run(model.as_ref(), ordered, budget, &Cancel::default(), spent)?
                } else {
                    self.run_timed(&caller.tenant, model, ordered, budget, spent).await?
                }
            }
        };
        Ok(graph.signature.outputs.iter().map(|spec| spec.name.clone()).zip(outputs).collect())
    }

    /// Runs checked `inputs` on `model` on the inference pool in `tenant`'s
    /// turn, within `budget`. `spent` is told the
    /// device and the compute time as the compute ends, on the inference
    /// thread, even if the caller has gone by then.
    async fn run_timed(
        &self,
        tenant: &str,
        model: Arc<dyn LoadedModel>,
        inputs: Vec<HostTensor>,
        budget: RunBudget,
        spent: impl FnOnce(Device, Duration) + Send + 'static,
    ) -> Result<Vec<HostTensor>, NnError> {
        self.pool.run(tenant, move |cancel| timed_run(model.as_ref(), inputs, budget, cancel, spent)).await?
    }

    /// Runs blocking work (model parsing) on the load threads, in `tenant`'s
    /// turn.
    pub async fn run_blocking<T: Send + 'static>(
        &self,
        tenant: &str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, NnError> {
        self.loads.run(tenant, move |_cancel| work()).await
    }
}

/// Runs `inputs` on `model` where it is called, telling `spent` the device
/// and the compute time.
fn timed_run(
    model: &dyn LoadedModel,
    inputs: Vec<HostTensor>,
    budget: RunBudget,
    cancel: &Cancel,
    spent: impl FnOnce(Device, Duration),
) -> Result<Vec<HostTensor>, NnError> {
    let started = Instant::now();
    let outputs = model.run(inputs, budget, cancel);
    let elapsed = started.elapsed();
    spent(model.device(), elapsed);
    metrics::histogram!("muon_nn_compute_seconds", "device" => model.device().as_str()).record(elapsed.as_secs_f64());
    outputs
}

/// A model's last computes: the inputs' dimensions, and how long each took.
///
/// A compute on the same dimensions as one of the last few, which took at
/// most [`NnConfig::inline_compute`], is quick: it runs on the calling
/// thread. A few, not one, because a training loop alternates between its
/// full batches and a smaller last one. Only graphs whose work the
/// dimensions fix are paced (no control flow, custom operators or
/// value-dependent sizes: [`ModelBounds::check_run`]), so a quick compute
/// stays quick whatever the values. It overruns a deadline by no more than
/// that (nothing can stop it there), and holds an async worker no longer
/// than a guest does between two epoch ticks; one that turns out slower
/// sends the next on those dimensions to the pool.
#[derive(Debug, Default)]
struct ComputePace {
    /// Recent computes' dimensions (hashed) and microseconds, oldest first;
    /// emptied by one whose work they do not fix.
    recent: std::sync::Mutex<Vec<(u64, u64)>>,
}

/// How many dimensions a model's pace remembers.
const PACED_SHAPES: usize = 4;

impl ComputePace {
    fn is_quick(&self, shapes: u64, limit: Duration) -> bool {
        let limit = u64::try_from(limit.as_micros()).unwrap_or(0);
        limit > 0
            && self
                .recent
                .lock()
                .is_ok_and(|recent| recent.iter().any(|&(seen, micros)| seen == shapes && micros <= limit))
    }

    fn record(&self, shapes: Option<u64>, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let Ok(mut recent) = self.recent.lock() else { return };
        let Some(shapes) = shapes else {
            recent.clear();
            return;
        };
        recent.retain(|&(seen, _)| seen != shapes);
        if recent.len() >= PACED_SHAPES {
            recent.remove(0);
        }
        recent.push((shapes, micros));
    }
}

/// The inputs' element types and dimensions, hashed.
fn shapes_key(inputs: &[HostTensor]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for tensor in inputs {
        (tensor.ty, &tensor.dimensions).hash(&mut hasher);
    }
    hasher.finish()
}

/// Who a compute is for: the tenant whose turn it takes on the inference
/// threads, and the memory limit its tensors must fit.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The tenant whose turn on the inference threads the compute takes.
    pub tenant: Arc<str>,
    /// The calling function's memory limit, in bytes.
    pub memory_limit: u64,
}

/// Orders named inputs as the model declares them and checks each one.
fn bind_inputs(signature: &Signature, mut inputs: Vec<(String, HostTensor)>) -> Result<Vec<HostTensor>, NnError> {
    let invalid = |message: String| NnError::new(ErrorCode::InvalidArgument, message);
    let expected: Vec<&str> = signature.inputs.iter().map(|spec| spec.name.as_str()).collect();
    if let Some((unknown, _)) = inputs.iter().find(|(name, _)| !expected.contains(&name.as_str())) {
        return Err(invalid(format!("the model has no input `{unknown}`; its inputs are {expected:?}")));
    }
    signature
        .inputs
        .iter()
        .map(|spec| {
            let position = inputs.iter().position(|(name, _)| *name == spec.name).ok_or_else(|| {
                invalid(format!("input `{}` ({} {}) is missing", spec.name, spec.ty.as_str(), spec.shape_text()))
            })?;
            let (_, tensor) = inputs.swap_remove(position);
            tensor.check_against(spec)?;
            Ok(tensor)
        })
        .collect()
}

/// `libonnxruntime`: the configured path (or `MUON_ORT_DYLIB`), else beside
/// the binary, else where `scripts/onnxruntime.sh` puts it in the build tree.
fn find_onnxruntime(configured: Option<&PathBuf>) -> Option<PathBuf> {
    if let Some(path) = configured {
        return Some(path.clone());
    }
    let exe_dir = std::env::current_exe().ok()?.parent()?.to_path_buf();
    [exe_dir.join("libonnxruntime.so"), exe_dir.join("../onnxruntime/libonnxruntime.so")]
        .into_iter()
        .find(|path| path.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(dimensions: Vec<u32>) -> HostTensor {
        let bytes = dimensions.iter().product::<u32>() as usize * 4;
        HostTensor { dimensions, ty: ElementType::Fp32, data: vec![0; bytes] }
    }

    #[test]
    fn only_a_quick_compute_on_dimensions_seen_lately_is_quick() {
        let limit = Duration::from_micros(200);
        let pace = ComputePace::default();
        let batch = shapes_key(&[tensor(vec![32, 64]), tensor(vec![64, 10])]);
        assert!(!pace.is_quick(batch, limit), "unknown until a compute has run");
        pace.record(Some(batch), Duration::from_micros(80));
        assert!(pace.is_quick(batch, limit));
        assert!(!pace.is_quick(batch, Duration::ZERO), "a zero limit sends every compute to the pool");
        let last_batch = shapes_key(&[tensor(vec![17, 64]), tensor(vec![64, 10])]);
        assert!(!pace.is_quick(last_batch, limit), "other dimensions are other work");
        pace.record(Some(last_batch), Duration::from_micros(30));
        assert!(pace.is_quick(batch, limit) && pace.is_quick(last_batch, limit), "a loop's two shapes are both known");
        pace.record(Some(batch), Duration::from_micros(900));
        assert!(!pace.is_quick(batch, limit), "a slow compute sends the next to the pool");
        pace.record(Some(batch), Duration::from_micros(80));
        for rows in 1..=PACED_SHAPES as u32 {
            pace.record(Some(shapes_key(&[tensor(vec![rows, 3])])), Duration::from_micros(10));
        }
        assert!(!pace.is_quick(batch, limit), "only the last few dimensions are remembered");
        pace.record(Some(batch), Duration::from_micros(80));
        pace.record(None, Duration::from_micros(80));
        assert!(!pace.is_quick(batch, limit), "a compute whose work its dimensions do not fix forgets the pace");
    }
}
