//! Conversions between tensors (wasi-nn layout) and Rust slices.

use crate::{NamedTensor, Tensor, TensorType};

/// Why a tensor could not be read as the asked type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TensorError {
    /// The tensor holds another element type.
    WrongType {
        /// The type the caller asked for.
        expected: TensorType,
        /// The type the tensor holds.
        actual: TensorType,
    },
    /// The byte length does not match the dimensions.
    WrongLength {
        /// How many elements the dimensions promise.
        elements: usize,
        /// How many bytes the tensor holds.
        bytes: usize,
    },
}

impl std::fmt::Display for TensorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::WrongType { expected, actual } => {
                write!(f, "expected a tensor of {expected:?} but it holds {actual:?}")
            }
            Self::WrongLength { elements, bytes } => {
                write!(f, "the dimensions hold {elements} elements but the data is {bytes} bytes")
            }
        }
    }
}

impl std::error::Error for TensorError {}

impl Tensor {
    /// An `fp32` tensor.
    pub fn from_f32(dimensions: impl Into<Vec<u32>>, values: &[f32]) -> Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self { dimensions: dimensions.into(), ty: TensorType::Fp32, data }
    }

    /// An `i64` tensor.
    pub fn from_i64(dimensions: impl Into<Vec<u32>>, values: &[i64]) -> Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self { dimensions: dimensions.into(), ty: TensorType::I64, data }
    }

    /// Number of elements the dimensions describe.
    pub fn element_count(&self) -> usize {
        self.dimensions.iter().map(|&d| d as usize).product()
    }

    /// The elements of an `fp32` tensor.
    pub fn to_f32(&self) -> Result<Vec<f32>, TensorError> {
        self.check(TensorType::Fp32, 4)?;
        Ok(self.data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }

    /// The elements of an `i64` tensor.
    pub fn to_i64(&self) -> Result<Vec<i64>, TensorError> {
        self.check(TensorType::I64, 8)?;
        Ok(self
            .data
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect())
    }

    fn check(&self, expected: TensorType, size: usize) -> Result<(), TensorError> {
        if self.ty != expected {
            return Err(TensorError::WrongType { expected, actual: self.ty });
        }
        let elements = self.element_count();
        if elements.checked_mul(size) != Some(self.data.len()) {
            return Err(TensorError::WrongLength { elements, bytes: self.data.len() });
        }
        Ok(())
    }
}

impl NamedTensor {
    /// A tensor with a name.
    pub fn new(name: impl Into<String>, tensor: Tensor) -> Self {
        Self { name: name.into(), tensor }
    }

    /// The tensor called `name` in `tensors`.
    pub fn find<'a>(tensors: &'a [NamedTensor], name: &str) -> Option<&'a Tensor> {
        tensors.iter().find(|t| t.name == name).map(|t| &t.tensor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_and_i64_round_trip() {
        let t = Tensor::from_f32([2, 2], &[1.0, -2.0, 0.5, 4.0]);
        assert_eq!(t.to_f32(), Ok(vec![1.0, -2.0, 0.5, 4.0]));
        let i = Tensor::from_i64([3], &[7, -1, i64::MAX]);
        assert_eq!(i.to_i64(), Ok(vec![7, -1, i64::MAX]));
    }

    #[test]
    fn mismatches_are_errors() {
        let t = Tensor::from_f32([2], &[1.0, 2.0]);
        assert!(matches!(t.to_i64(), Err(TensorError::WrongType { .. })));
        let short = Tensor { dimensions: vec![3], ty: TensorType::Fp32, data: vec![0; 8] };
        assert_eq!(short.to_f32(), Err(TensorError::WrongLength { elements: 3, bytes: 8 }));
    }
}
