//! Tensors as the host holds them, and the checks every input passes before a
//! backend sees it.

use serde::{Deserialize, Serialize};

use super::error::{ErrorCode, NnError};
use super::signature::{Dim, TensorSpec};

/// Element types of wasi-nn tensors (the `tensor-type` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ElementType {
    /// IEEE 754 half precision.
    Fp16,
    /// IEEE 754 single precision.
    Fp32,
    /// IEEE 754 double precision.
    Fp64,
    /// bfloat16: single precision's exponent with a 7-bit mantissa.
    Bf16,
    /// Unsigned bytes (images, typically).
    U8,
    /// 32-bit signed integers.
    I32,
    /// 64-bit signed integers (token ids, typically).
    I64,
}

impl ElementType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::Fp16 | Self::Bf16 => 2,
            Self::Fp32 | Self::I32 => 4,
            Self::Fp64 | Self::I64 => 8,
        }
    }

    /// The ONNX `TensorProto.DataType` of the same elements.
    pub(crate) fn onnx_data_type(self) -> i32 {
        use tract_onnx::pb::tensor_proto::DataType;
        (match self {
            Self::Fp16 => DataType::Float16,
            Self::Fp32 => DataType::Float,
            Self::Fp64 => DataType::Double,
            Self::Bf16 => DataType::Bfloat16,
            Self::U8 => DataType::Uint8,
            Self::I32 => DataType::Int32,
            Self::I64 => DataType::Int64,
        }) as i32
    }

    /// The name used in JSON and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fp16 => "fp16",
            Self::Fp32 => "fp32",
            Self::Fp64 => "fp64",
            Self::Bf16 => "bf16",
            Self::U8 => "u8",
            Self::I32 => "i32",
            Self::I64 => "i64",
        }
    }
}

/// A tensor in wasi-nn's layout: dimensions, element type, little-endian bytes.
#[derive(Debug, Clone)]
pub struct HostTensor {
    /// The shape, outermost first.
    pub dimensions: Vec<u32>,
    /// The type of each element of `data`.
    pub ty: ElementType,
    /// The elements, row-major, little-endian.
    pub data: Vec<u8>,
}

impl HostTensor {
    /// Checks that the data holds exactly product(dimensions) elements, with
    /// checked arithmetic so that no dimensions overflow into a small size.
    pub fn check_length(&self, name: &str) -> Result<(), NnError> {
        let expected =
            self.dimensions.iter().try_fold(self.ty.size(), |bytes, &dim| bytes.checked_mul(dim as usize)).ok_or_else(
                || {
                    NnError::new(
                        ErrorCode::InvalidArgument,
                        format!(
                            "tensor `{name}`: dimensions {:?} of {} overflow the address space",
                            self.dimensions,
                            self.ty.as_str()
                        ),
                    )
                },
            )?;
        if expected != self.data.len() {
            return Err(NnError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "tensor `{name}`: dimensions {:?} of {} need {expected} bytes, but the data is {} bytes",
                    self.dimensions,
                    self.ty.as_str(),
                    self.data.len()
                ),
            ));
        }
        Ok(())
    }

    /// Checks the tensor against the model input it is bound to: element
    /// type, rank, and every fixed dimension.
    pub fn check_against(&self, spec: &TensorSpec) -> Result<(), NnError> {
        self.check_length(&spec.name)?;
        let invalid = |message: String| NnError::new(ErrorCode::InvalidArgument, message);
        if self.ty != spec.ty {
            return Err(invalid(format!(
                "input `{}` expects {} elements, got {}",
                spec.name,
                spec.ty.as_str(),
                self.ty.as_str()
            )));
        }
        if self.dimensions.len() != spec.shape.len() {
            return Err(invalid(format!(
                "input `{}` expects rank {} (shape {}), got rank {} (dimensions {:?})",
                spec.name,
                spec.shape.len(),
                spec.shape_text(),
                self.dimensions.len(),
                self.dimensions
            )));
        }
        let fits = self.dimensions.iter().zip(&spec.shape).all(|(&actual, expected)| match expected {
            Dim::Fixed(fixed) => u64::from(actual) == *fixed,
            Dim::Symbol(_) => actual > 0,
        });
        if !fits {
            return Err(invalid(format!(
                "input `{}` expects shape {}, got dimensions {:?}",
                spec.name,
                spec.shape_text(),
                self.dimensions
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TensorSpec {
        TensorSpec {
            name: "x".into(),
            ty: ElementType::Fp32,
            shape: vec![super::Dim::Symbol("N".into()), super::Dim::Fixed(4)],
        }
    }

    fn tensor(dimensions: Vec<u32>, ty: ElementType, bytes: usize) -> HostTensor {
        HostTensor { dimensions, ty, data: vec![0; bytes] }
    }

    #[test]
    fn a_matching_tensor_passes() {
        assert!(tensor(vec![3, 4], ElementType::Fp32, 48).check_against(&spec()).is_ok());
    }

    #[test]
    fn each_mismatch_is_an_invalid_argument_naming_expected_and_actual() {
        let cases = [
            (tensor(vec![1, 4], ElementType::Fp32, 15), "need 16 bytes, but the data is 15"),
            (tensor(vec![u32::MAX, u32::MAX, u32::MAX], ElementType::Fp32, 0), "overflow"),
            (tensor(vec![1, 4], ElementType::I64, 32), "expects fp32 elements, got i64"),
            (tensor(vec![4], ElementType::Fp32, 16), "expects rank 2"),
            (tensor(vec![1, 5], ElementType::Fp32, 20), "expects shape [N, 4], got dimensions [1, 5]"),
        ];
        for (tensor, message) in cases {
            let err = tensor.check_against(&spec()).err();
            assert!(
                err.as_ref().is_some_and(|e| e.code == ErrorCode::InvalidArgument && e.message.contains(message)),
                "{err:?} should say {message}"
            );
        }
    }
}
