//! What a model takes and returns, read from the ONNX protobuf before any
//! backend sees it, and the checks that refuse unsafe models at upload.

use serde::{Deserialize, Serialize};
use tract_onnx::pb;
use tract_onnx::prelude::Framework as _;

use super::error::{ErrorCode, NnError};
use super::tensor::ElementType;

/// One dimension of a model input or output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    /// A fixed size.
    Fixed(u64),
    /// A size chosen per call (a batch dimension, typically), by its name.
    Symbol(String),
}

/// A named input or output with its element type and shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// The graph's name for it: a guest's inputs are matched by name, and
    /// outputs come back under it.
    pub name: String,
    /// The element type a guest's tensor must have.
    #[serde(rename = "type")]
    pub ty: ElementType,
    /// The dimensions; symbolic ones take any size.
    pub shape: Vec<Dim>,
}

impl TensorSpec {
    /// The shape as `[N, 64]`.
    pub fn shape_text(&self) -> String {
        let dims: Vec<String> = self
            .shape
            .iter()
            .map(|dim| match dim {
                Dim::Fixed(size) => size.to_string(),
                Dim::Symbol(name) => name.clone(),
            })
            .collect();
        format!("[{}]", dims.join(", "))
    }
}

/// A model's inputs and outputs, in graph order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// What a guest must pass.
    pub inputs: Vec<TensorSpec>,
    /// What the model computes.
    pub outputs: Vec<TensorSpec>,
}

/// Parses ONNX bytes, refuses external data, and reads the signature.
pub fn inspect_onnx(bytes: &[u8]) -> Result<Signature, NnError> {
    let proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|err| NnError::new(ErrorCode::InvalidEncoding, format!("not a valid ONNX model: {err:#}")))?;
    let graph =
        proto.graph.as_ref().ok_or_else(|| NnError::new(ErrorCode::InvalidEncoding, "the ONNX model has no graph"))?;
    refuse_external_data(graph)?;
    let initialized: std::collections::HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs = graph
        .input
        .iter()
        .filter(|input| !initialized.contains(input.name.as_str()))
        .map(tensor_spec)
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = graph.output.iter().map(tensor_spec).collect::<Result<Vec<_>, _>>()?;
    if inputs.is_empty() || outputs.is_empty() {
        return Err(NnError::new(ErrorCode::InvalidEncoding, "the ONNX graph has no inputs or no outputs"));
    }
    Ok(Signature { inputs, outputs })
}

/// Weights stored beside the model file would be read from wherever the
/// path points (`../../etc/...` included); an upload is one file, so every
/// external reference is refused.
fn refuse_external_data(graph: &pb::GraphProto) -> Result<(), NnError> {
    let external = |tensor: &pb::TensorProto| -> Result<(), NnError> {
        if tensor.data_location == Some(pb::tensor_proto::DataLocation::External as i32)
            || !tensor.external_data.is_empty()
        {
            let location = tensor.external_data.iter().find(|e| e.key == "location").map_or("?", |e| e.value.as_str());
            return Err(NnError::new(
                ErrorCode::Security,
                format!(
                    "tensor `{}` refers to external data at `{location}`, outside the uploaded model; \
                     save the model with its weights inside (onnx.save(model, path, save_as_external_data=False))",
                    tensor.name
                ),
            ));
        }
        Ok(())
    };
    graph.initializer.iter().try_for_each(external)?;
    for node in &graph.node {
        for attribute in &node.attribute {
            attribute.t.iter().chain(&attribute.tensors).try_for_each(external)?;
            attribute.g.iter().chain(&attribute.graphs).try_for_each(refuse_external_data)?;
        }
    }
    Ok(())
}

fn tensor_spec(value: &pb::ValueInfoProto) -> Result<TensorSpec, NnError> {
    let unsupported = |what: String| {
        NnError::new(ErrorCode::UnsupportedOperation, format!("model input or output `{}`: {what}", value.name))
    };
    let Some(pb::type_proto::Value::TensorType(tensor)) = value.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(unsupported("only tensor inputs and outputs are supported".into()));
    };
    use pb::tensor_proto::DataType;
    let ty = match DataType::try_from(tensor.elem_type) {
        Ok(DataType::Float) => ElementType::Fp32,
        Ok(DataType::Double) => ElementType::Fp64,
        Ok(DataType::Float16) => ElementType::Fp16,
        Ok(DataType::Bfloat16) => ElementType::Bf16,
        Ok(DataType::Uint8) => ElementType::U8,
        Ok(DataType::Int32) => ElementType::I32,
        Ok(DataType::Int64) => ElementType::I64,
        other => return Err(unsupported(format!("element type {other:?} has no wasi-nn tensor-type"))),
    };
    let shape = tensor
        .shape
        .iter()
        .flat_map(|shape| &shape.dim)
        .enumerate()
        .map(|(axis, dim)| match &dim.value {
            Some(pb::tensor_shape_proto::dimension::Value::DimValue(size)) if *size >= 0 => Dim::Fixed(*size as u64),
            Some(pb::tensor_shape_proto::dimension::Value::DimParam(name)) if !name.is_empty() => {
                Dim::Symbol(name.clone())
            }
            _ => Dim::Symbol(format!("d{axis}")),
        })
        .collect();
    Ok(TensorSpec { name: value.name.clone(), ty, shape })
}
