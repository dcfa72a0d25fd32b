//! ONNX Runtime through the `ort` crate, with `libonnxruntime` loaded at run
//! time so that a build never links or downloads it.
//!
//! An ONNX Runtime session runs one inference at a time (`run` takes `&mut`),
//! so each model keeps a pool of sessions, created as concurrency asks for
//! them, up to the configured number. A deadline terminates a running
//! inference through its run options.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use ort::environment::Environment;
use ort::session::{RunOptions, Session, SessionInputValue};
use ort::value::{Tensor, TensorElementType, TensorRef, ValueType};

use super::{Backend, Cancel, Device, LoadedModel, RunBudget};
use crate::nn::error::{ErrorCode, NnError};
use crate::nn::signature::Signature;
use crate::nn::tensor::{ElementType, HostTensor};

/// The ONNX Runtime backend, present when the library could be loaded.
pub struct OnnxRuntime {
    environment: Environment,
    sessions_per_model: usize,
    intra_op_threads: usize,
    gpu_fallback_to_cpu: bool,
}

impl OnnxRuntime {
    /// Loads `libonnxruntime` from `library` and creates the environment.
    pub fn load(
        library: &Path,
        sessions_per_model: usize,
        intra_op_threads: usize,
        gpu_fallback_to_cpu: bool,
    ) -> anyhow::Result<Self> {
        let environment = ort::init_from(library)
            .map_err(|err| anyhow::anyhow!("cannot load {}: {err}", library.display()))?
            .with_name("muon")
            .build()
            .map_err(|err| anyhow::anyhow!("cannot start ONNX Runtime from {}: {err}", library.display()))?;
        Ok(Self { environment, sessions_per_model: sessions_per_model.max(1), intra_op_threads, gpu_fallback_to_cpu })
    }

    fn session(&self, bytes: &[u8], device: Device) -> Result<Session, NnError> {
        let failed = |err: &dyn std::fmt::Display| NnError::runtime("ONNX Runtime cannot create a session", err);
        let builder = Session::builder(&self.environment).map_err(|err| failed(&err))?;
        let builder = builder.with_intra_threads(self.intra_op_threads).map_err(|err| failed(&err))?;
        let mut builder = builder.with_inter_threads(1).map_err(|err| failed(&err))?;
        if device == Device::Gpu {
            builder = builder.with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()]).map_err(
                |err| {
                    NnError::new(
                        ErrorCode::UnsupportedOperation,
                        format!("the CUDA execution provider is not available: {err}"),
                    )
                },
            )?;
        }
        builder.commit_from_memory(bytes).map_err(|err| {
            NnError::new(ErrorCode::InvalidEncoding, format!("ONNX Runtime cannot load the model: {err}"))
        })
    }
}

impl Backend for OnnxRuntime {
    fn load(&self, bytes: &[u8], signature: &Signature, device: Device) -> Result<Arc<dyn LoadedModel>, NnError> {
        let (first, device) = match self.session(bytes, device) {
            Ok(session) => (session, device),
            Err(err) if device == Device::Gpu && self.gpu_fallback_to_cpu => {
                tracing::warn!(error = %err, "GPU unavailable; this model runs on CPU (gpu_fallback_to_cpu is set)");
                (self.session(bytes, Device::Cpu)?, Device::Cpu)
            }
            Err(err) => return Err(err),
        };
        let spare = (1..self.sessions_per_model).map(|_| self.session(bytes, device).and_then(PooledSession::new));
        let mut idle = spare.collect::<Result<Vec<_>, _>>()?;
        idle.push(PooledSession::new(first)?);
        Ok(Arc::new(OrtModel {
            idle: Mutex::new(idle),
            returned: Condvar::new(),
            input_names: signature.inputs.iter().map(|spec| spec.name.clone()).collect(),
            device,
        }))
    }
}

struct OrtModel {
    idle: Mutex<Vec<PooledSession>>,
    returned: Condvar,
    input_names: Vec<String>,
    device: Device,
}

/// A session with the run options its runs use, made once: a deadline
/// terminates a run through them.
struct PooledSession {
    session: Session,
    /// For a run known to make little: the arena keeps its memory.
    keeping: Arc<RunOptions>,
    /// For any other run: the arena gives its memory back at the end, or
    /// one large run would keep its peak for the life of the session.
    shrinking: Arc<RunOptions>,
}

/// A run whose tensors take at most this much in all leaves the arena as it
/// is, since handing memory back and taking it again costs a small run
/// (a training step of a small model) a twentieth of its time.
const KEPT_RUN_BYTES: u64 = 16 << 20;

impl PooledSession {
    fn new(session: Session) -> Result<Self, NnError> {
        let failed = |err: ort::Error| NnError::runtime("ONNX Runtime run options", err);
        let keeping = RunOptions::new().map_err(failed)?;
        let mut shrinking = RunOptions::new().map_err(failed)?;
        shrinking.set("memory.enable_memory_arena_shrinkage", "cpu:0").map_err(failed)?;
        Ok(Self { session, keeping: Arc::new(keeping), shrinking: Arc::new(shrinking) })
    }
}

impl OrtModel {
    fn checkout(&self) -> Result<PooledSession, NnError> {
        let poisoned = |_| NnError::new(ErrorCode::RuntimeError, "the session pool is unusable after a crash");
        let mut idle = self.idle.lock().map_err(poisoned)?;
        loop {
            if let Some(session) = idle.pop() {
                return Ok(session);
            }
            idle = self.returned.wait(idle).map_err(poisoned)?;
        }
    }

    fn give_back(&self, session: PooledSession) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(session);
            self.returned.notify_one();
        }
    }
}

impl LoadedModel for OrtModel {
    fn device(&self) -> Device {
        self.device
    }

    fn run(&self, inputs: Vec<HostTensor>, budget: RunBudget, cancel: &Cancel) -> Result<Vec<HostTensor>, NnError> {
        let values = self
            .input_names
            .iter()
            .zip(&inputs)
            .map(|(name, tensor)| Ok((name.as_str(), input_value(tensor)?)))
            .collect::<Result<Vec<(&str, SessionInputValue<'_>)>, NnError>>()?;
        let mut pooled = self.checkout()?;
        let small = budget.made_bytes.is_some_and(|bytes| bytes <= KEPT_RUN_BYTES);
        let options = if small { &pooled.keeping } else { &pooled.shrinking };
        let terminate = Arc::clone(options);
        cancel.set_hook(Some(Box::new(move || {
            let _ = terminate.terminate();
        })));
        let result = pooled
            .session
            .run_with_options(values, options)
            .map_err(|err| {
                if cancel.is_cancelled() {
                    NnError::new(ErrorCode::Timeout, "the compute was stopped at the request's deadline")
                } else {
                    NnError::runtime("ONNX Runtime inference failed", err)
                }
            })
            .and_then(|outputs| {
                let total = outputs.values().map(|value| output_bytes(&value)).sum();
                super::check_output_bytes(total, budget.max_output_bytes)?;
                outputs.values().map(from_ort).collect()
            });
        cancel.set_hook(None);
        if cancel.is_cancelled() {
            // The next run on these options must not find them terminated.
            let _ = options.unterminate();
        }
        self.give_back(pooled);
        result
    }
}

// wasi-nn's tensor bytes are little-endian; on a little-endian host they are
// the elements' own bytes, which lets a tensor reach ONNX Runtime without a
// copy (or in one copy, when its bytes are not aligned for its elements),
// and come back in one copy, instead of a conversion per element.
const _: () = assert!(cfg!(target_endian = "little"), "muon's tensor conversions assume a little-endian host");

/// `tensor` as a run's input: a view of its bytes where they are aligned
/// for its elements (as the allocator's are), else a copy.
fn input_value(tensor: &HostTensor) -> Result<SessionInputValue<'_>, NnError> {
    fn typed<T>(shape: Vec<i64>, data: &[u8]) -> Result<SessionInputValue<'_>, NnError>
    where
        T: ort::value::PrimitiveTensorElementType + bytemuck::Pod + std::fmt::Debug + 'static,
    {
        let invalid = |err: ort::Error| NnError::new(ErrorCode::InvalidArgument, err.to_string());
        match bytemuck::try_cast_slice::<u8, T>(data) {
            Ok(elements) => Ok(TensorRef::from_array_view((shape, elements)).map_err(invalid)?.into()),
            Err(_) => {
                // A vector of `T`, not of bytes, so that it is aligned for `T`.
                let mut values = vec![T::zeroed(); data.len() / size_of::<T>()];
                let whole = data.get(..values.len() * size_of::<T>()).unwrap_or_default();
                bytemuck::cast_slice_mut::<T, u8>(&mut values).copy_from_slice(whole);
                Ok(Tensor::from_array((shape, values)).map_err(invalid)?.into())
            }
        }
    }
    let shape: Vec<i64> = tensor.dimensions.iter().map(|&d| i64::from(d)).collect();
    match tensor.ty {
        ElementType::Fp32 => typed::<f32>(shape, &tensor.data),
        ElementType::Fp64 => typed::<f64>(shape, &tensor.data),
        ElementType::U8 => typed::<u8>(shape, &tensor.data),
        ElementType::I32 => typed::<i32>(shape, &tensor.data),
        ElementType::I64 => typed::<i64>(shape, &tensor.data),
        ElementType::Fp16 => typed::<half::f16>(shape, &tensor.data),
        ElementType::Bf16 => typed::<half::bf16>(shape, &tensor.data),
    }
}

/// The bytes a tensor output holds, from its shape and element type.
fn output_bytes(value: &ort::value::DynValueRef<'_>) -> u128 {
    let ValueType::Tensor { ty, shape, .. } = value.dtype() else { return 0 };
    let elements = shape.iter().fold(1u128, |n, &d| n.saturating_mul(u128::try_from(d).unwrap_or(0)));
    elements.saturating_mul(ty.byte_size(1).map_or(8, |size| size as u128))
}

fn from_ort(value: ort::value::DynValueRef<'_>) -> Result<HostTensor, NnError> {
    let failed = |err: ort::Error| NnError::runtime("cannot read an ONNX Runtime output", err);
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return Err(NnError::new(ErrorCode::UnsupportedOperation, "the model produced a non-tensor output"));
    };
    fn bytes<T: ort::value::PrimitiveTensorElementType + bytemuck::Pod>(
        value: &ort::value::DynValueRef<'_>,
    ) -> Result<(Vec<u32>, Vec<u8>), ort::Error> {
        let (shape, data) = value.try_extract_tensor::<T>()?;
        let dimensions = shape.iter().map(|&d| u32::try_from(d).unwrap_or(u32::MAX)).collect();
        Ok((dimensions, bytemuck::cast_slice::<T, u8>(data).to_vec()))
    }
    let (element, (dimensions, data)) = match ty {
        TensorElementType::Float32 => (ElementType::Fp32, bytes::<f32>(&value).map_err(failed)?),
        TensorElementType::Float64 => (ElementType::Fp64, bytes::<f64>(&value).map_err(failed)?),
        TensorElementType::Uint8 => (ElementType::U8, bytes::<u8>(&value).map_err(failed)?),
        TensorElementType::Int32 => (ElementType::I32, bytes::<i32>(&value).map_err(failed)?),
        TensorElementType::Int64 => (ElementType::I64, bytes::<i64>(&value).map_err(failed)?),
        TensorElementType::Float16 => (ElementType::Fp16, bytes::<half::f16>(&value).map_err(failed)?),
        TensorElementType::Bfloat16 => (ElementType::Bf16, bytes::<half::bf16>(&value).map_err(failed)?),
        other => {
            return Err(NnError::new(
                ErrorCode::UnsupportedOperation,
                format!("the model produced {other:?} elements, which this backend does not return"),
            ));
        }
    };
    Ok(HostTensor { dimensions, ty: element, data })
}
