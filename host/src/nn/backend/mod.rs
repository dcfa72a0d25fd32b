//! Inference backends behind one small trait: a backend loads model bytes
//! into a [`LoadedModel`] that many threads may run at once.

mod onnxruntime;
mod tract;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

pub use onnxruntime::OnnxRuntime;
pub use tract::Tract;

use super::error::{ErrorCode, NnError};
use super::signature::Signature;
use super::tensor::HostTensor;

/// Which backend serves a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// tract: pure Rust, always built in.
    Tract,
    /// ONNX Runtime, loaded from `libonnxruntime` at run time.
    #[serde(rename = "onnxruntime")]
    OnnxRuntime,
}

impl BackendKind {
    /// The name used in the API and the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tract => "tract",
            Self::OnnxRuntime => "onnxruntime",
        }
    }

    /// Parses an API or catalog name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "tract" => Some(Self::Tract),
            "onnxruntime" | "ort" => Some(Self::OnnxRuntime),
            _ => None,
        }
    }
}

/// Where a model's compute runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// The host's CPUs, on the inference threads.
    Cpu,
    /// A CUDA GPU through ONNX Runtime.
    Gpu,
}

impl Device {
    /// The name used in the API and the catalog (`cpu`, `gpu`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Gpu => "gpu",
        }
    }

    /// Parses an API or catalog name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "cpu" => Some(Self::Cpu),
            "gpu" => Some(Self::Gpu),
            _ => None,
        }
    }
}

/// A backend that turns model bytes into a runnable model.
pub trait Backend: Send + Sync {
    /// Parses and optimizes `bytes` for `device`. Blocking and CPU-heavy:
    /// called on a load thread.
    fn load(&self, bytes: &[u8], signature: &Signature, device: Device) -> Result<Arc<dyn LoadedModel>, NnError>;
}

/// A loaded model, shared by every instance that may use it.
pub trait LoadedModel: Send + Sync {
    /// Where its compute runs.
    fn device(&self) -> Device;

    /// Runs one inference on checked `inputs` (in signature order) and
    /// returns every output in signature order, refusing outputs of more
    /// than the budget's `max_output_bytes` in all before copying them.
    /// Blocking; stops early, with a `timeout` error, once `cancel` is set.
    fn run(&self, inputs: Vec<HostTensor>, budget: RunBudget, cancel: &Cancel) -> Result<Vec<HostTensor>, NnError>;
}

/// What one run may use, as far as the host knows before it starts.
#[derive(Debug, Clone, Copy)]
pub struct RunBudget {
    /// Most bytes the outputs may take in all: the caller's memory limit.
    pub max_output_bytes: u64,
    /// The bytes of every tensor the run makes, added up, when the model's
    /// bounds could tell: a backend may keep that much memory for its next
    /// run instead of handing it back.
    pub made_bytes: Option<u64>,
}

impl RunBudget {
    /// A run that may return `max_output_bytes` and whose other tensors
    /// are not known.
    pub fn outputs(max_output_bytes: u64) -> Self {
        Self { max_output_bytes, made_bytes: None }
    }
}

/// Refuses outputs of `total` bytes when the caller may hold only `limit`.
pub(crate) fn check_output_bytes(total: u128, limit: u64) -> Result<(), NnError> {
    if total > u128::from(limit) {
        return Err(NnError::new(
            ErrorCode::TooLarge,
            format!(
                "the model's outputs are {total} bytes, more than the function's memory limit of {limit} bytes; \
                 give smaller inputs or deploy the function with a larger memory_mb"
            ),
        ));
    }
    Ok(())
}

/// A flag a compute checks to stop when its request is gone, with an optional
/// hook (ONNX Runtime's `terminate`) that interrupts a running kernel.
#[derive(Default)]
pub struct Cancel {
    cancelled: AtomicBool,
    hook: std::sync::Mutex<Option<Box<dyn Fn() + Send>>>,
}

impl Cancel {
    /// Whether the compute should stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Stops the compute: sets the flag and calls the hook, if any.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
        if let Ok(hook) = self.hook.lock()
            && let Some(hook) = hook.as_ref()
        {
            hook();
        }
    }

    /// Installs `hook` for the duration of a run; it is called at once if
    /// the compute was already cancelled.
    pub fn set_hook(&self, hook: Option<Box<dyn Fn() + Send>>) {
        if let Ok(mut slot) = self.hook.lock() {
            *slot = hook;
            if self.is_cancelled()
                && let Some(hook) = slot.as_ref()
            {
                hook();
            }
        }
    }
}
