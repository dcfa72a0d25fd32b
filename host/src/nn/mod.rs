//! Inference: the wasi-nn host interface, models as shared objects, and the
//! backends that run them.
//!
//! A model is parsed and optimized once per host and backend ([`Inference`]
//! caches loaded models by digest), shared by every instance allowed to use
//! it, and computed on a bounded pool of threads off the async workers.

pub mod backend;
mod error;
mod models;
mod pool;
mod signature;
mod tensor;
pub mod wasi;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use backend::{Backend, BackendKind, Device, LoadedModel, OnnxRuntime, Tract};
pub use error::{ErrorCode, NnError};
pub use models::{ModelAccess, ModelOptions, ModelRecord, ModelStore};
use pool::ComputePool;
pub use signature::{Dim, Signature, TensorSpec, inspect_onnx};
pub use tensor::{ElementType, HostTensor};

/// Inference settings, resolved from the `[nn]` configuration.
#[derive(Debug, Clone)]
pub struct NnConfig {
    /// Inference threads (loads and computes run there).
    pub threads: usize,
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
}

/// Compute time of one request by device, added by the inference threads
/// that compute for it as each compute ends.
#[derive(Debug, Default)]
pub struct ComputeMeter {
    cpu_us: AtomicU64,
    gpu_us: AtomicU64,
}

impl ComputeMeter {
    fn add(&self, device: Device, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let counter = match device {
            Device::Cpu => &self.cpu_us,
            Device::Gpu => &self.gpu_us,
        };
        counter.fetch_add(micros, Ordering::Relaxed);
    }

    /// Microseconds of compute on CPU and on GPU so far.
    pub fn totals(&self) -> (u64, u64) {
        (self.cpu_us.load(Ordering::Relaxed), self.gpu_us.load(Ordering::Relaxed))
    }
}

/// A model ready to compute, as a wasi-nn `graph` holds it.
#[derive(Clone)]
pub struct Graph {
    pub model: Arc<dyn LoadedModel>,
    pub signature: Arc<Signature>,
}

type LoadKey = (String, BackendKind, Device);

/// A model to load: its digest, where to run it, and its signature.
pub struct ModelSpec {
    pub digest: String,
    pub backend: BackendKind,
    pub device: Device,
    pub signature: Arc<Signature>,
}

impl ModelSpec {
    fn key(&self) -> LoadKey {
        (self.digest.clone(), self.backend, self.device)
    }
}

/// Reads a model's bytes, on the inference pool, when it must be loaded.
pub type ModelBytes = Box<dyn FnOnce() -> Result<Arc<[u8]>, NnError> + Send>;

/// The backends, the loaded-model cache and the inference pool.
pub struct Inference {
    tract: Tract,
    onnxruntime: Option<OnnxRuntime>,
    onnxruntime_error: Option<String>,
    default_backend: BackendKind,
    loaded: DashMap<LoadKey, Arc<tokio::sync::OnceCell<Graph>>>,
    pool: ComputePool,
    config: NnConfig,
}

impl Inference {
    /// Starts the inference pool and loads ONNX Runtime if it can be found.
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
            None => (None, Some("libonnxruntime.so was not found; set MUON_ORT_DYLIB or [nn] onnxruntime_library".to_owned())),
        };
        let default_backend = match (config.default_backend, &onnxruntime) {
            (Some(BackendKind::OnnxRuntime), None) => {
                anyhow::bail!("the default backend is onnxruntime, but {}", onnxruntime_error.unwrap_or_default())
            }
            (Some(kind), _) => kind,
            (None, Some(_)) => BackendKind::OnnxRuntime,
            (None, None) => BackendKind::Tract,
        };
        let pool = ComputePool::start(config.threads)?;
        tracing::info!(threads = pool.threads(), default_backend = default_backend.as_str(), "inference pool started");
        Ok(Self { tract: Tract, onnxruntime, onnxruntime_error, default_backend, loaded: DashMap::new(), pool, config })
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

    /// The loaded model for `spec`, loading it on the inference pool the first
    /// time (concurrent first uses wait for one load). `bytes` is called only
    /// for that load.
    pub async fn load(self: &Arc<Self>, spec: ModelSpec, bytes: ModelBytes) -> Result<Graph, NnError> {
        let key = spec.key();
        let cell = Arc::clone(self.loaded.entry(key.clone()).or_default().value());
        let loaded = cell.get_or_try_init(|| self.load_now(spec, bytes)).await;
        if loaded.is_err() {
            // A failed load is not cached: the next use tries again.
            self.loaded.remove_if(&key, |_, cell| cell.get().is_none());
        }
        loaded.cloned()
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

    async fn load_now(self: &Arc<Self>, spec: ModelSpec, bytes: ModelBytes) -> Result<Graph, NnError> {
        let ModelSpec { digest, backend, device, signature } = spec;
        self.backend(backend)?;
        let inference = Arc::clone(self);
        let load_signature = Arc::clone(&signature);
        let started = Instant::now();
        let model = self
            .pool
            .run(move |_cancel| {
                let bytes = bytes()?;
                inference.backend(backend)?.load(&bytes, &load_signature, device)
            })
            .await??;
        tracing::info!(digest, backend = backend.as_str(), device = model.device().as_str(),
            load_ms = started.elapsed().as_millis() as u64, "model loaded");
        Ok(Graph { model, signature })
    }

    /// Forgets a loaded model (after its last catalog entry is deleted).
    pub fn unload(&self, digest: &str) {
        self.loaded.retain(|(loaded_digest, _, _), _| loaded_digest != digest);
    }

    /// Checks `inputs` against the graph's signature, then computes on the
    /// inference pool, adding the compute time to `meter`.
    pub async fn compute(
        &self,
        graph: &Graph,
        inputs: Vec<(String, HostTensor)>,
        meter: Arc<ComputeMeter>,
    ) -> Result<Vec<(String, HostTensor)>, NnError> {
        let ordered = bind_inputs(&graph.signature, inputs)?;
        let model = Arc::clone(&graph.model);
        let outputs = self
            .pool
            .run(move |cancel| {
                let started = Instant::now();
                let outputs = model.run(ordered, cancel);
                let elapsed = started.elapsed();
                meter.add(model.device(), elapsed);
                metrics::histogram!("muon_nn_compute_seconds", "device" => model.device().as_str()).record(elapsed.as_secs_f64());
                outputs
            })
            .await??;
        Ok(graph.signature.outputs.iter().map(|spec| spec.name.clone()).zip(outputs).collect())
    }

    /// Runs blocking work (model parsing) on the inference pool.
    pub async fn run_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, NnError> {
        self.pool.run(move |_cancel| work()).await
    }
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
            let position = inputs
                .iter()
                .position(|(name, _)| *name == spec.name)
                .ok_or_else(|| invalid(format!("input `{}` ({} {}) is missing", spec.name, spec.ty.as_str(), spec.shape_text())))?;
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
