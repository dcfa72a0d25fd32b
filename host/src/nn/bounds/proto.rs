//! Facts read from the ONNX protobuf (initializers, constants, attributes)
//! and from the guest's input tensors.

use std::collections::HashMap;

use tract_onnx::pb;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;

use super::{Fact, Node, SMALL};
use crate::nn::tensor::{ElementType, HostTensor};

pub(super) fn build_node(node: &pb::NodeProto, inputs: Vec<Option<usize>>, outputs: Vec<Option<usize>>) -> Node {
    let mut ints = HashMap::new();
    let mut tensor = None;
    for attribute in &node.attribute {
        match AttributeType::try_from(attribute.r#type) {
            Ok(AttributeType::Int) => {
                ints.insert(attribute.name.clone(), vec![attribute.i]);
            }
            Ok(AttributeType::Ints) => {
                ints.insert(attribute.name.clone(), attribute.ints.clone());
            }
            _ => {}
        }
    }
    if node.domain.is_empty() || node.domain == "ai.onnx" {
        tensor = match node.op_type.as_str() {
            "Constant" => constant_fact(&node.attribute),
            "ConstantOfShape" => {
                node.attribute.iter().find(|a| a.name == "value").and_then(|a| a.t.as_ref()).map(tensor_fact)
            }
            _ => None,
        };
    }
    let op = if node.domain.is_empty() || node.domain == "ai.onnx" {
        node.op_type.clone()
    } else {
        format!("{}.{}", node.domain, node.op_type)
    };
    Node { name: node.name.clone(), op, inputs, outputs, ints, tensor }
}

pub(super) fn element_bytes(dtype: i32) -> u128 {
    match DataType::try_from(dtype) {
        Ok(DataType::Uint8 | DataType::Int8 | DataType::Bool) => 1,
        Ok(DataType::Uint16 | DataType::Int16 | DataType::Float16 | DataType::Bfloat16) => 2,
        Ok(DataType::Double | DataType::Int64 | DataType::Uint64 | DataType::Complex64) => 8,
        Ok(DataType::Complex128) => 16,
        _ => 4,
    }
}

pub(super) fn dims_of(dims: &[i64]) -> Vec<u64> {
    dims.iter().map(|&d| u64::try_from(d).unwrap_or(0)).collect()
}

pub(super) fn tensor_fact(tensor: &pb::TensorProto) -> Fact {
    let shape = dims_of(&tensor.dims);
    let mut fact = Fact::with_shape(shape, tensor.data_type);
    if fact.elements().is_some_and(|n| n <= u128::from(SMALL)) {
        fact.value = tensor_values(tensor);
    }
    fact
}

pub(super) fn sparse_fact(sparse: &pb::SparseTensorProto) -> Fact {
    Fact::with_shape(dims_of(&sparse.dims), sparse.values.as_ref().map_or(0, |v| v.data_type))
}

fn tensor_values(tensor: &pb::TensorProto) -> Option<Vec<f64>> {
    let dtype = DataType::try_from(tensor.data_type).ok()?;
    let raw = &tensor.raw_data;
    let values: Vec<f64> = match dtype {
        DataType::Int64 if raw.is_empty() => tensor.int64_data.iter().map(|&v| v as f64).collect(),
        DataType::Int64 => {
            raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f64).collect()
        }
        DataType::Int32 if raw.is_empty() => tensor.int32_data.iter().map(|&v| f64::from(v)).collect(),
        DataType::Int32 => {
            raw.chunks_exact(4).map(|c| f64::from(i32::from_le_bytes(c.try_into().unwrap_or([0; 4])))).collect()
        }
        DataType::Float if raw.is_empty() => tensor.float_data.iter().map(|&v| f64::from(v)).collect(),
        DataType::Float => {
            raw.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap_or([0; 4])))).collect()
        }
        DataType::Double if raw.is_empty() => tensor.double_data.clone(),
        DataType::Double => raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect(),
        _ => return None,
    };
    let expected: u64 = tensor.dims.iter().map(|&d| u64::try_from(d).unwrap_or(0)).product();
    (values.len() as u64 == expected).then_some(values)
}

fn constant_fact(attributes: &[pb::AttributeProto]) -> Option<Fact> {
    let attribute = attributes.first()?;
    let int64 = DataType::Int64 as i32;
    let float = DataType::Float as i32;
    Some(match attribute.name.as_str() {
        "value" => tensor_fact(attribute.t.as_ref()?),
        "sparse_value" => sparse_fact(attribute.sparse_tensor.as_ref()?),
        "value_int" => {
            Fact { shape: Some(vec![]), value: Some(vec![attribute.i as f64]), dtype: int64, from_input: false }
        }
        "value_ints" => Fact::with_value(attribute.ints.iter().map(|&v| v as f64).collect(), int64),
        "value_float" => {
            Fact { shape: Some(vec![]), value: Some(vec![f64::from(attribute.f)]), dtype: float, from_input: false }
        }
        "value_floats" => Fact::with_value(attribute.floats.iter().map(|&v| f64::from(v)).collect(), float),
        "value_string" => Fact::with_shape(vec![], DataType::String as i32),
        "value_strings" => Fact::with_shape(vec![attribute.strings.len() as u64], DataType::String as i32),
        _ => return None,
    })
}

/// What is known of a guest's input from its type and dimensions alone.
pub(super) fn shape_fact(tensor: &HostTensor) -> Fact {
    Fact {
        shape: Some(tensor.dimensions.iter().map(|&d| u64::from(d)).collect()),
        value: None,
        dtype: tensor.ty.onnx_data_type(),
        from_input: true,
    }
}

/// What is known of a guest's input: its type and dimensions, and the
/// values of a small one.
pub(super) fn input_fact(tensor: &HostTensor) -> Fact {
    let count: u64 = tensor.dimensions.iter().map(|&d| u64::from(d)).product();
    let chunks = |n: usize| tensor.data.chunks_exact(n);
    let value = (count <= SMALL).then(|| match tensor.ty {
        ElementType::I64 => {
            Some(chunks(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f64).collect())
        }
        ElementType::I32 => {
            Some(chunks(4).map(|c| f64::from(i32::from_le_bytes(c.try_into().unwrap_or([0; 4])))).collect())
        }
        ElementType::Fp32 => {
            Some(chunks(4).map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap_or([0; 4])))).collect())
        }
        ElementType::Fp64 => Some(chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect()),
        _ => None,
    });
    Fact { value: value.flatten(), ..shape_fact(tensor) }
}
