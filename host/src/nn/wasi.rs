//! The `wasi:nn@0.2.0-rc-2024-10-28` host interface (the version wasmtime
//! implements), over muon's model catalog and inference pool.
//!
//! `load-by-name` resolves only the calling function's allowed models of its
//! own tenant; `compute` checks every input against the model's signature
//! before any work, then runs on the inference pool. Failures are wasi-nn
//! `error` resources with a code and a message, never traps.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use super::backend::Device;
use super::error::{ErrorCode, NnError};
use super::signature::inspect_onnx;
use super::tensor::{ElementType, HostTensor};
use super::{Caller, ComputeMeter, Graph, ModelAccess, ModelSpec, ModelStore};

mod generated {
    wasmtime::component::bindgen!({
        world: "wasi:nn/ml",
        path: "../wit/deps/wasi-nn",
        with: {
            "wasi:nn/graph.graph": crate::nn::Graph,
            "wasi:nn/tensor.tensor": crate::nn::HostTensor,
            "wasi:nn/inference.graph-execution-context": crate::nn::wasi::ExecutionContext,
            "wasi:nn/errors.error": crate::nn::NnError,
        },
        imports: {
            "wasi:nn/graph.load": async | trappable,
            "wasi:nn/graph.load-by-name": async | trappable,
            "wasi:nn/inference.[method]graph-execution-context.compute": async | trappable,
            default: trappable,
        },
    });
}

use generated::wasi::nn::{errors, graph, inference, tensor};

/// A graph bound for inference (the `graph-execution-context` resource).
pub struct ExecutionContext {
    graph: Graph,
}

/// Which models an instance may load, and where its compute time goes.
#[derive(Clone)]
pub struct NnScope {
    /// The function's tenant: `load-by-name` looks only there.
    pub tenant: Arc<str>,
    /// The function's allowed models.
    pub access: ModelAccess,
}

/// Per-instance wasi-nn state.
pub struct NnCtx {
    models: Arc<ModelStore>,
    scope: Arc<NnScope>,
    caller: Caller,
    /// Made at the first compute, so requests without inference allocate nothing.
    meter: Option<Arc<ComputeMeter>>,
}

impl NnCtx {
    /// State for one instance of a function with `scope`, whose tensors must
    /// fit in `memory_limit` bytes (the function's memory limit).
    pub fn new(models: Arc<ModelStore>, scope: Arc<NnScope>, memory_limit: u64) -> Self {
        let caller = Caller { tenant: Arc::clone(&scope.tenant), memory_limit };
        Self { models, scope, caller, meter: None }
    }

    /// Microseconds of compute on CPU and on GPU so far.
    pub fn compute_totals(&self) -> (u64, u64) {
        self.meter.as_ref().map_or((0, 0), |meter| meter.totals())
    }

    /// Compute so far that ran on the calling thread.
    pub fn inline_total(&self) -> std::time::Duration {
        self.meter.as_ref().map_or(std::time::Duration::ZERO, |meter| meter.inline_total())
    }
}

/// The wasi-nn view of a store's data: its context and resource table.
pub struct WasiNnView<'a> {
    /// The call's models, limits and compute meter.
    pub ctx: &'a mut NnCtx,
    /// Where the guest's graphs, contexts and tensors live as resources.
    pub table: &'a mut ResourceTable,
}

struct HasNn;

impl HasData for HasNn {
    type Data<'a> = WasiNnView<'a>;
}

/// Adds wasi-nn to `linker`; `view` borrows it out of the store's data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> WasiNnView<'_>,
) -> wasmtime::Result<()> {
    graph::add_to_linker::<T, HasNn>(linker, view)?;
    tensor::add_to_linker::<T, HasNn>(linker, view)?;
    inference::add_to_linker::<T, HasNn>(linker, view)?;
    errors::add_to_linker::<T, HasNn>(linker, view)?;
    Ok(())
}

type NnResult<T> = wasmtime::Result<Result<T, Resource<NnError>>>;

impl WasiNnView<'_> {
    /// Turns an outcome into what the guest sees: a value or an error resource.
    fn answer<T>(&mut self, outcome: Result<T, NnError>) -> NnResult<T> {
        match outcome {
            Ok(value) => Ok(Ok(value)),
            Err(err) => {
                tracing::debug!(code = err.code.as_str(), message = %err.message, "wasi-nn error returned to the guest");
                Ok(Err(self.table.push(err)?))
            }
        }
    }

    async fn load_bytes(
        &mut self,
        builders: Vec<Vec<u8>>,
        encoding: graph::GraphEncoding,
        target: graph::ExecutionTarget,
    ) -> Result<Graph, NnError> {
        if !matches!(encoding, graph::GraphEncoding::Onnx | graph::GraphEncoding::Autodetect) {
            return Err(NnError::new(
                ErrorCode::InvalidEncoding,
                format!("muon serves ONNX models; encoding {encoding:?} is not supported"),
            ));
        }
        let device = match target {
            graph::ExecutionTarget::Cpu => Device::Cpu,
            graph::ExecutionTarget::Gpu => Device::Gpu,
            graph::ExecutionTarget::Tpu => {
                return Err(NnError::new(ErrorCode::UnsupportedOperation, "muon has no TPU backend"));
            }
        };
        let [bytes] = <[Vec<u8>; 1]>::try_from(builders).map_err(|parts| {
            NnError::new(ErrorCode::InvalidArgument, format!("an ONNX model is one builder, got {}", parts.len()))
        })?;
        let inference = Arc::clone(self.ctx.models.inference());
        let limit = inference.config().max_load_bytes;
        if bytes.len() as u64 > limit {
            return Err(NnError::new(
                ErrorCode::TooLarge,
                format!(
                    "the model is {} bytes; `load` takes at most {limit}; upload it with PUT /v1/models/NAME and use load-by-name",
                    bytes.len()
                ),
            ));
        }
        let backend = inference.choose_backend(None)?;
        let digest = hex::encode(Sha256::digest(&bytes));
        let bytes: Arc<[u8]> = Arc::from(bytes);
        let parse_bytes = Arc::clone(&bytes);
        let tenant = Arc::clone(&self.ctx.scope.tenant);
        let signature = Arc::new(inference.run_blocking(&tenant, move || inspect_onnx(&parse_bytes)).await??);
        inference
            .load_transient(ModelSpec { tenant, digest, backend, device, signature }, Box::new(move || Ok(bytes)))
            .await
    }
}

impl graph::Host for WasiNnView<'_> {
    async fn load(
        &mut self,
        builders: Vec<graph::GraphBuilder>,
        encoding: graph::GraphEncoding,
        target: graph::ExecutionTarget,
    ) -> NnResult<Resource<Graph>> {
        let outcome = self.load_bytes(builders, encoding, target).await;
        let graph = match outcome {
            Ok(graph) => graph,
            Err(err) => return self.answer(Err(err)),
        };
        Ok(Ok(self.table.push(graph)?))
    }

    async fn load_by_name(&mut self, name: String) -> NnResult<Resource<Graph>> {
        let scope = Arc::clone(&self.ctx.scope);
        match self.ctx.models.graph(&scope.tenant, &name, &scope.access).await {
            Ok(graph) => Ok(Ok(self.table.push(graph)?)),
            Err(err) => self.answer(Err(err)),
        }
    }
}

impl graph::HostGraph for WasiNnView<'_> {
    fn init_execution_context(&mut self, graph: Resource<Graph>) -> NnResult<Resource<ExecutionContext>> {
        let graph = self.table.get(&graph)?.clone();
        Ok(Ok(self.table.push(ExecutionContext { graph })?))
    }

    fn drop(&mut self, graph: Resource<Graph>) -> wasmtime::Result<()> {
        self.table.delete(graph)?;
        Ok(())
    }
}

impl inference::Host for WasiNnView<'_> {}

impl inference::HostGraphExecutionContext for WasiNnView<'_> {
    async fn compute(
        &mut self,
        context: Resource<ExecutionContext>,
        inputs: Vec<inference::NamedTensor>,
    ) -> NnResult<Vec<inference::NamedTensor>> {
        let graph = self.table.get(&context)?.graph.clone();
        // The guest hands its tensors over (`own<tensor>`): take them out of the table.
        let mut tensors = Vec::with_capacity(inputs.len());
        for (name, tensor) in inputs {
            tensors.push((name, self.table.delete(tensor)?));
        }
        let meter = Arc::clone(self.ctx.meter.get_or_insert_default());
        let outcome = self.ctx.models.compute(&graph, tensors, &self.ctx.caller, meter).await;
        let outputs = match outcome {
            Ok(outputs) => outputs,
            Err(err) => return self.answer(Err(err)),
        };
        let mut named = Vec::with_capacity(outputs.len());
        for (name, tensor) in outputs {
            named.push((name, self.table.push(tensor)?));
        }
        Ok(Ok(named))
    }

    fn drop(&mut self, context: Resource<ExecutionContext>) -> wasmtime::Result<()> {
        self.table.delete(context)?;
        Ok(())
    }
}

impl tensor::Host for WasiNnView<'_> {}

impl tensor::HostTensor for WasiNnView<'_> {
    fn new(
        &mut self,
        dimensions: Vec<u32>,
        ty: tensor::TensorType,
        data: Vec<u8>,
    ) -> wasmtime::Result<Resource<HostTensor>> {
        // Checked at compute, against the model's signature: the constructor
        // cannot return an error.
        Ok(self.table.push(HostTensor { dimensions, ty: element_type(ty), data })?)
    }

    fn dimensions(&mut self, tensor: Resource<HostTensor>) -> wasmtime::Result<Vec<u32>> {
        Ok(self.table.get(&tensor)?.dimensions.clone())
    }

    fn ty(&mut self, tensor: Resource<HostTensor>) -> wasmtime::Result<tensor::TensorType> {
        Ok(tensor_type(self.table.get(&tensor)?.ty))
    }

    fn data(&mut self, tensor: Resource<HostTensor>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&tensor)?.data.clone())
    }

    fn drop(&mut self, tensor: Resource<HostTensor>) -> wasmtime::Result<()> {
        self.table.delete(tensor)?;
        Ok(())
    }
}

impl errors::Host for WasiNnView<'_> {}

impl errors::HostError for WasiNnView<'_> {
    fn code(&mut self, error: Resource<NnError>) -> wasmtime::Result<errors::ErrorCode> {
        Ok(match self.table.get(&error)?.code {
            ErrorCode::InvalidArgument => errors::ErrorCode::InvalidArgument,
            ErrorCode::InvalidEncoding => errors::ErrorCode::InvalidEncoding,
            ErrorCode::Timeout => errors::ErrorCode::Timeout,
            ErrorCode::RuntimeError => errors::ErrorCode::RuntimeError,
            ErrorCode::UnsupportedOperation => errors::ErrorCode::UnsupportedOperation,
            ErrorCode::TooLarge => errors::ErrorCode::TooLarge,
            ErrorCode::NotFound => errors::ErrorCode::NotFound,
            ErrorCode::Security => errors::ErrorCode::Security,
        })
    }

    fn data(&mut self, error: Resource<NnError>) -> wasmtime::Result<String> {
        Ok(self.table.get(&error)?.message.clone())
    }

    fn drop(&mut self, error: Resource<NnError>) -> wasmtime::Result<()> {
        self.table.delete(error)?;
        Ok(())
    }
}

fn element_type(ty: tensor::TensorType) -> ElementType {
    match ty {
        tensor::TensorType::Fp16 => ElementType::Fp16,
        tensor::TensorType::Fp32 => ElementType::Fp32,
        tensor::TensorType::Fp64 => ElementType::Fp64,
        tensor::TensorType::Bf16 => ElementType::Bf16,
        tensor::TensorType::U8 => ElementType::U8,
        tensor::TensorType::I32 => ElementType::I32,
        tensor::TensorType::I64 => ElementType::I64,
    }
}

fn tensor_type(ty: ElementType) -> tensor::TensorType {
    match ty {
        ElementType::Fp16 => tensor::TensorType::Fp16,
        ElementType::Fp32 => tensor::TensorType::Fp32,
        ElementType::Fp64 => tensor::TensorType::Fp64,
        ElementType::Bf16 => tensor::TensorType::Bf16,
        ElementType::U8 => tensor::TensorType::U8,
        ElementType::I32 => tensor::TensorType::I32,
        ElementType::I64 => tensor::TensorType::I64,
    }
}
