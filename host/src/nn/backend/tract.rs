//! tract: pure Rust ONNX inference, the backend every build has.
//!
//! One optimized plan per model is shared by all threads; each run spawns its
//! own state from it, so runs never wait for each other. Cancellation is
//! checked between nodes.

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::{EvalContext, eval};

use super::{Backend, Cancel, Device, LoadedModel, RunBudget};
use crate::nn::error::{ErrorCode, NnError};
use crate::nn::signature::Signature;
use crate::nn::tensor::{ElementType, HostTensor};

/// The tract backend.
pub struct Tract;

impl Backend for Tract {
    fn load(&self, bytes: &[u8], _signature: &Signature, device: Device) -> Result<Arc<dyn LoadedModel>, NnError> {
        if device == Device::Gpu {
            return Err(NnError::new(
                ErrorCode::UnsupportedOperation,
                "the tract backend runs on CPU only; upload the model with backend=onnxruntime for GPU",
            ));
        }
        let plan = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .and_then(|model| model.into_optimized())
            .and_then(|model| model.into_runnable())
            .map_err(|err| NnError::new(ErrorCode::InvalidEncoding, format!("tract cannot load the model: {err:#}")))?;
        Ok(Arc::new(TractModel { plan }))
    }
}

struct TractModel {
    plan: Arc<TypedSimplePlan>,
}

impl LoadedModel for TractModel {
    fn device(&self) -> Device {
        Device::Cpu
    }

    fn run(&self, inputs: Vec<HostTensor>, budget: RunBudget, cancel: &Cancel) -> Result<Vec<HostTensor>, NnError> {
        let inputs = inputs.iter().map(to_tract).collect::<Result<TVec<TValue>, _>>()?;
        let mut state = self.plan.spawn().map_err(|err| NnError::runtime("tract cannot start a run", err))?;
        let outputs = state
            .run_plan_with_eval(inputs, |ctx: &EvalContext, op_state, node, node_inputs| {
                if cancel.is_cancelled() {
                    anyhow::bail!(Cancelled);
                }
                eval(ctx, op_state, node, node_inputs)
            })
            .map_err(|err| {
                if err.downcast_ref::<Cancelled>().is_some() {
                    NnError::new(ErrorCode::Timeout, "the compute was stopped at the request's deadline")
                } else {
                    NnError::runtime("tract inference failed", format!("{err:#}"))
                }
            })?;
        super::check_output_bytes(
            outputs.iter().map(|value| value.as_bytes().len() as u128).sum(),
            budget.max_output_bytes,
        )?;
        outputs.iter().map(from_tract).collect()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
struct Cancelled;

fn to_tract(tensor: &HostTensor) -> Result<TValue, NnError> {
    let datum_type = match tensor.ty {
        ElementType::Fp16 => DatumType::F16,
        ElementType::Fp32 => DatumType::F32,
        ElementType::Fp64 => DatumType::F64,
        ElementType::U8 => DatumType::U8,
        ElementType::I32 => DatumType::I32,
        ElementType::I64 => DatumType::I64,
        ElementType::Bf16 => {
            return Err(NnError::new(ErrorCode::UnsupportedOperation, "the tract backend has no bf16 tensors"));
        }
    };
    let shape: Vec<usize> = tensor.dimensions.iter().map(|&d| d as usize).collect();
    // SAFETY: every element type above is plain old data, and tract checks
    // that the byte length matches the shape before it copies.
    let value = unsafe { Tensor::from_raw_dt(datum_type, &shape, &tensor.data) }
        .map_err(|err| NnError::new(ErrorCode::InvalidArgument, format!("{err:#}")))?;
    Ok(value.into_tvalue())
}

fn from_tract(value: &TValue) -> Result<HostTensor, NnError> {
    let ty = match value.datum_type() {
        DatumType::F16 => ElementType::Fp16,
        DatumType::F32 => ElementType::Fp32,
        DatumType::F64 => ElementType::Fp64,
        DatumType::U8 => ElementType::U8,
        DatumType::I32 => ElementType::I32,
        DatumType::I64 => ElementType::I64,
        other => {
            return Err(NnError::new(
                ErrorCode::UnsupportedOperation,
                format!("the model produced {other:?} elements, which wasi-nn tensors cannot hold"),
            ));
        }
    };
    let dimensions = value
        .shape()
        .iter()
        .map(|&d| u32::try_from(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| NnError::new(ErrorCode::TooLarge, "an output dimension exceeds u32"))?;
    Ok(HostTensor { dimensions, ty, data: value.as_bytes().to_vec() })
}
