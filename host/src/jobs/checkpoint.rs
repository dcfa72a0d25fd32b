//! A trial's parameters as stored between steps and across restarts: the
//! safetensors format, with the parameters' order (which a guest may rely
//! on) kept in its metadata.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::engine::{NamedTensor, Tensor, TensorType};

/// The metadata key holding the parameters' names in order, `\n`-separated.
const ORDER: &str = "muon.order";

/// `parameters` as safetensors bytes.
pub fn encode(parameters: &[NamedTensor]) -> anyhow::Result<Vec<u8>> {
    let mut views = Vec::with_capacity(parameters.len());
    for parameter in parameters {
        let shape = parameter.tensor.dimensions.iter().map(|&d| d as usize).collect();
        let view = TensorView::new(dtype(parameter.tensor.ty), shape, &parameter.tensor.data)
            .map_err(|err| anyhow::anyhow!("parameter `{}` cannot be stored: {err}", parameter.name))?;
        views.push((parameter.name.as_str(), view));
    }
    let order = parameters.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join("\n");
    let metadata = HashMap::from([(ORDER.to_owned(), order)]);
    Ok(safetensors::serialize(views, Some(metadata))?)
}

/// The parameters stored by [`encode`], in their order.
pub fn decode(bytes: &[u8]) -> anyhow::Result<Vec<NamedTensor>> {
    let (_, metadata) = SafeTensors::read_metadata(bytes)?;
    let tensors = SafeTensors::deserialize(bytes)?;
    let order = metadata.metadata().as_ref().and_then(|m| m.get(ORDER)).cloned().unwrap_or_default();
    let mut parameters = Vec::new();
    for name in order.split('\n').filter(|n| !n.is_empty()) {
        let view = tensors.tensor(name)?;
        let dimensions = view.shape().iter().map(|&d| u32::try_from(d)).collect::<Result<Vec<_>, _>>()?;
        parameters.push(NamedTensor {
            name: name.to_owned(),
            tensor: Tensor { dimensions, ty: tensor_type(view.dtype())?, data: view.data().to_vec() },
        });
    }
    Ok(parameters)
}

fn dtype(ty: TensorType) -> Dtype {
    match ty {
        TensorType::Fp16 => Dtype::F16,
        TensorType::Fp32 => Dtype::F32,
        TensorType::Fp64 => Dtype::F64,
        TensorType::Bf16 => Dtype::BF16,
        TensorType::U8 => Dtype::U8,
        TensorType::I32 => Dtype::I32,
        TensorType::I64 => Dtype::I64,
    }
}

fn tensor_type(dtype: Dtype) -> anyhow::Result<TensorType> {
    Ok(match dtype {
        Dtype::F16 => TensorType::Fp16,
        Dtype::F32 => TensorType::Fp32,
        Dtype::F64 => TensorType::Fp64,
        Dtype::BF16 => TensorType::Bf16,
        Dtype::U8 => TensorType::U8,
        Dtype::I32 => TensorType::I32,
        Dtype::I64 => TensorType::I64,
        other => anyhow::bail!("a checkpoint holds a {other:?} tensor, which no training step returns"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_come_back_the_same_and_in_order() -> anyhow::Result<()> {
        let parameters = vec![
            NamedTensor {
                name: "w".to_owned(),
                tensor: Tensor { dimensions: vec![2, 2], ty: TensorType::Fp32, data: vec![1; 16] },
            },
            NamedTensor {
                name: "b".to_owned(),
                tensor: Tensor { dimensions: vec![2], ty: TensorType::I64, data: vec![7; 16] },
            },
            NamedTensor {
                name: "a".to_owned(),
                tensor: Tensor { dimensions: vec![], ty: TensorType::U8, data: vec![3] },
            },
        ];
        let back = decode(&encode(&parameters)?)?;
        assert_eq!(back.len(), 3);
        for (a, b) in parameters.iter().zip(&back) {
            assert_eq!(
                (&a.name, &a.tensor.dimensions, a.tensor.ty, &a.tensor.data),
                (&b.name, &b.tensor.dimensions, b.tensor.ty, &b.tensor.data)
            );
        }
        Ok(())
    }

    #[test]
    fn a_torn_checkpoint_is_an_error() {
        assert!(decode(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":").is_err());
    }
}
