//! Inference through the standard `wasi:nn` interface.
//!
//! Load a model once per request, run it on named tensors, read the named
//! outputs:
//!
//! ```ignore
//! use muon_sdk::Tensor;
//! use muon_sdk::nn::Model;
//!
//! let model = Model::load("digits")?; // a model the tenant uploaded
//! let outputs = model.run(&[("x", Tensor::from_f32([1, 64], &pixels))])?;
//! let probabilities = outputs.get("probabilities").map(Tensor::to_f32);
//! ```
//!
//! Only functions that call into this module import `wasi:nn`: the component
//! tooling drops imports a module never uses.

mod error;
mod train;

pub use error::{ErrorCode, NnError};
pub use train::OPTIMIZER_STATE_PREFIX;

use crate::__bindings::nn::wasi::nn::{graph, inference, tensor as wit};
use crate::{NamedTensor, Tensor, TensorType};

/// How a model's bytes are encoded: `wasi:nn/graph.graph-encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// OpenVINO IR.
    Openvino,
    /// ONNX.
    Onnx,
    /// TensorFlow.
    Tensorflow,
    /// PyTorch.
    Pytorch,
    /// TensorFlow Lite.
    Tensorflowlite,
    /// GGML.
    Ggml,
    /// Let the host work it out from the bytes.
    Autodetect,
}

/// Where a model should run: `wasi:nn/graph.execution-target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// The CPU.
    Cpu,
    /// A GPU, where the host has one.
    Gpu,
    /// A TPU, where the host has one.
    Tpu,
}

/// A loaded model, ready to run.
///
/// Loading also creates the model's one `wasi:nn` execution context, which
/// every [`Model::run`] reuses: a model the host cannot run fails at load, and
/// running it again costs one `compute`, not a new context each time.
#[derive(Debug)]
pub struct Model {
    // Declared first so it is dropped before the graph it came from.
    context: inference::GraphExecutionContext,
    _graph: graph::Graph,
}

impl Model {
    /// The model the host knows as `name` (for muon, one the tenant uploaded
    /// with `PUT /v1/models/{name}`).
    pub fn load(name: &str) -> Result<Self, NnError> {
        Self::ready(graph::load_by_name(name)?)
    }

    /// A model from its encoded bytes, for example an ONNX file.
    pub fn from_bytes(bytes: &[u8], encoding: Encoding, target: Target) -> Result<Self, NnError> {
        // `load` takes the model in parts because some encodings (OpenVINO)
        // keep the graph and its weights apart; every other one is one part.
        Self::ready(graph::load(&[bytes.to_vec()], encoding.into(), target.into())?)
    }

    /// The graph with the execution context that every run reuses.
    fn ready(graph: graph::Graph) -> Result<Self, NnError> {
        Ok(Self { context: graph.init_execution_context()?, _graph: graph })
    }

    /// Runs the model on named inputs and returns its named outputs.
    pub fn run(&self, inputs: &[(&str, Tensor)]) -> Result<Outputs, NnError> {
        self.compute(inputs.iter().map(|(name, tensor)| (*name, tensor)))
    }

    /// Runs the model on borrowed named inputs: tensors are copied once,
    /// into the host's, whichever way they are held.
    fn compute<'a>(&self, inputs: impl Iterator<Item = (&'a str, &'a Tensor)>) -> Result<Outputs, NnError> {
        let inputs = inputs.map(|(name, tensor)| (name.to_owned(), to_wit(tensor))).collect();
        let outputs = self.context.compute(inputs)?;
        Ok(Outputs(outputs.into_iter().map(|(name, tensor)| NamedTensor::new(name, from_wit(&tensor))).collect()))
    }
}

/// The named tensors a model produced, in the order the host returned them.
#[derive(Debug, Clone, Default)]
pub struct Outputs(Vec<NamedTensor>);

impl Outputs {
    /// The output called `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        NamedTensor::find(&self.0, name)
    }

    /// The first output, for models with a single one.
    pub fn first(&self) -> Option<&Tensor> {
        self.0.first().map(|output| &output.tensor)
    }

    /// How many outputs there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The outputs one by one.
    pub fn iter(&self) -> std::slice::Iter<'_, NamedTensor> {
        self.0.iter()
    }

    /// The outputs as a vector.
    pub fn into_vec(self) -> Vec<NamedTensor> {
        self.0
    }
}

/// Outputs made by hand, to test the code that reads them.
impl From<Vec<NamedTensor>> for Outputs {
    fn from(outputs: Vec<NamedTensor>) -> Self {
        Self(outputs)
    }
}

impl IntoIterator for Outputs {
    type Item = NamedTensor;
    type IntoIter = std::vec::IntoIter<NamedTensor>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Outputs {
    type Item = &'a NamedTensor;
    type IntoIter = std::slice::Iter<'a, NamedTensor>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

fn to_wit(tensor: &Tensor) -> wit::Tensor {
    wit::Tensor::new(&tensor.dimensions, tensor.ty.into(), &tensor.data)
}

fn from_wit(tensor: &wit::Tensor) -> Tensor {
    Tensor { dimensions: tensor.dimensions(), ty: tensor.ty().into(), data: tensor.data() }
}

impl From<TensorType> for wit::TensorType {
    fn from(ty: TensorType) -> Self {
        match ty {
            TensorType::Fp16 => Self::Fp16,
            TensorType::Fp32 => Self::Fp32,
            TensorType::Fp64 => Self::Fp64,
            TensorType::Bf16 => Self::Bf16,
            TensorType::U8 => Self::U8,
            TensorType::I32 => Self::I32,
            TensorType::I64 => Self::I64,
        }
    }
}

impl From<wit::TensorType> for TensorType {
    fn from(ty: wit::TensorType) -> Self {
        match ty {
            wit::TensorType::Fp16 => Self::Fp16,
            wit::TensorType::Fp32 => Self::Fp32,
            wit::TensorType::Fp64 => Self::Fp64,
            wit::TensorType::Bf16 => Self::Bf16,
            wit::TensorType::U8 => Self::U8,
            wit::TensorType::I32 => Self::I32,
            wit::TensorType::I64 => Self::I64,
        }
    }
}

impl From<Encoding> for graph::GraphEncoding {
    fn from(encoding: Encoding) -> Self {
        match encoding {
            Encoding::Openvino => Self::Openvino,
            Encoding::Onnx => Self::Onnx,
            Encoding::Tensorflow => Self::Tensorflow,
            Encoding::Pytorch => Self::Pytorch,
            Encoding::Tensorflowlite => Self::Tensorflowlite,
            Encoding::Ggml => Self::Ggml,
            Encoding::Autodetect => Self::Autodetect,
        }
    }
}

impl From<Target> for graph::ExecutionTarget {
    fn from(target: Target) -> Self {
        match target {
            Target::Cpu => Self::Cpu,
            Target::Gpu => Self::Gpu,
            Target::Tpu => Self::Tpu,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_types_map_both_ways() {
        let all = [
            TensorType::Fp16,
            TensorType::Fp32,
            TensorType::Fp64,
            TensorType::Bf16,
            TensorType::U8,
            TensorType::I32,
            TensorType::I64,
        ];
        for ty in all {
            assert_eq!(TensorType::from(wit::TensorType::from(ty)), ty);
        }
    }

    #[test]
    fn outputs_are_found_by_name_and_in_order() {
        let outputs = Outputs::from(vec![
            NamedTensor::new("label", Tensor::from_i64([1], &[3])),
            NamedTensor::new("probabilities", Tensor::from_f32([1, 2], &[0.25, 0.75])),
        ]);
        assert_eq!(outputs.get("probabilities").map(Tensor::to_f32), Some(Ok(vec![0.25, 0.75])));
        assert!(outputs.get("missing").is_none());
        assert_eq!(outputs.first().map(Tensor::to_i64), Some(Ok(vec![3])));
        let names: Vec<&str> = outputs.iter().map(|output| output.name.as_str()).collect();
        assert_eq!(names, ["label", "probabilities"]);
        assert_eq!(outputs.into_vec().len(), 2);
    }
}
