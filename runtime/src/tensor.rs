//! A dense, row-major (C order) tensor.

use crate::floats::Floats;
use crate::DType;
use std::fmt;

/// The largest tensor nnc will allocate, in bytes (4 GiB). Shapes are checked against it
/// before any allocation so that a model or file that claims a huge tensor gets an error,
/// not an out-of-memory abort.
pub const MAX_TENSOR_BYTES: u64 = 4 << 30;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TensorError {
    #[error("tensor of shape {shape:?} has {len} elements but its data has {data_len}")]
    LengthMismatch { shape: Vec<usize>, len: usize, data_len: usize },
    #[error("tensor of shape {0:?} is larger than the {limit} GiB limit", limit = MAX_TENSOR_BYTES >> 30)]
    TooLarge(Vec<usize>),
}

/// Number of elements of `shape`, or `None` if it overflows or exceeds [`MAX_TENSOR_BYTES`]
/// for elements of `elem_bytes` bytes.
pub fn checked_numel(shape: &[usize], elem_bytes: usize) -> Option<usize> {
    let n = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))?;
    let bytes = (n as u64).checked_mul(elem_bytes as u64)?;
    (bytes <= MAX_TENSOR_BYTES).then_some(n)
}

/// Tensor storage. Float dtypes (`f32`, `f16`, `bf16`) share `F32` storage; see [`DType`].
#[derive(Clone, PartialEq)]
pub enum Data {
    F32(Floats),
    I8(Vec<i8>),
    I32(Vec<i32>),
}

#[derive(Clone, PartialEq)]
pub struct Tensor {
    dtype: DType,
    shape: Vec<usize>,
    data: Data,
    nonzeros: NonzeroCount,
}

/// How many of a tensor's values are nonzero, counted the first time anyone asks: the
/// compiler's cost model asks for every weight in each pass that plans kernels, and counting
/// ResNet-18's 11.7 M weights took 7 ms each time. A tensor's values never change after it
/// is made, so the count stays right; it takes no part in equality.
#[derive(Clone, Default)]
struct NonzeroCount(std::sync::OnceLock<usize>);

impl PartialEq for NonzeroCount {
    fn eq(&self, _: &NonzeroCount) -> bool {
        true
    }
}

impl Tensor {
    /// A float tensor of dtype `dtype` (f32, f16 or bf16). Values are rounded to `dtype`.
    pub fn from_f32(dtype: DType, shape: Vec<usize>, mut data: Vec<f32>) -> Result<Tensor, TensorError> {
        debug_assert!(dtype.is_float());
        Self::check_len(&shape, data.len(), 4)?;
        if dtype != DType::F32 {
            data.iter_mut().for_each(|v| *v = dtype.round_f32(*v));
        }
        Ok(Tensor { dtype, shape, data: Data::F32(data.into()), nonzeros: NonzeroCount::default() })
    }

    /// An f32 tensor; panics if `data.len()` does not match `shape` (an internal invariant,
    /// never user input: user data goes through [`Tensor::from_f32`]).
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
        assert_eq!(shape.iter().product::<usize>(), data.len(), "tensor data does not match shape {shape:?}");
        Tensor { dtype: DType::F32, shape, data: Data::F32(data.into()), nonzeros: NonzeroCount::default() }
    }

    /// A float tensor of dtype `dtype` on storage the caller filled (values already rounded
    /// to `dtype`, as the JIT's results are); `None` if the lengths disagree.
    pub fn from_floats(dtype: DType, shape: Vec<usize>, data: Floats) -> Option<Tensor> {
        (dtype.is_float() && shape.iter().product::<usize>() == data.len()).then_some(Tensor { dtype, shape, data: Data::F32(data), nonzeros: NonzeroCount::default() })
    }

    pub fn from_i8(shape: Vec<usize>, data: Vec<i8>) -> Result<Tensor, TensorError> {
        Self::check_len(&shape, data.len(), 1)?;
        Ok(Tensor { dtype: DType::I8, shape, data: Data::I8(data), nonzeros: NonzeroCount::default() })
    }

    pub fn from_i32(shape: Vec<usize>, data: Vec<i32>) -> Result<Tensor, TensorError> {
        Self::check_len(&shape, data.len(), 4)?;
        Ok(Tensor { dtype: DType::I32, shape, data: Data::I32(data), nonzeros: NonzeroCount::default() })
    }

    /// `elem_bytes` is the storage size of one element (f16/bf16 are stored as f32).
    fn check_len(shape: &[usize], data_len: usize, elem_bytes: usize) -> Result<(), TensorError> {
        let len = checked_numel(shape, elem_bytes).ok_or_else(|| TensorError::TooLarge(shape.to_vec()))?;
        if len != data_len {
            return Err(TensorError::LengthMismatch { shape: shape.to_vec(), len, data_len });
        }
        Ok(())
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn data(&self) -> &Data {
        &self.data
    }

    /// How many values are not zero (−0.0 is zero; NaN is not), counted once per tensor.
    pub fn nonzeros(&self) -> usize {
        *self.nonzeros.0.get_or_init(|| match &self.data {
            // The bits without the sign are zero only for ±0.0. Summed in chunks as `u32`,
            // which vectorizes: 5 ms for 11.7 M values, against 7 by `filter(..).count()`.
            Data::F32(v) => v.chunks(64).map(|c| c.iter().map(|&x| (x.to_bits() << 1 != 0) as u32).sum::<u32>() as usize).sum(),
            Data::I8(v) => v.iter().filter(|&&x| x != 0).count(),
            Data::I32(v) => v.iter().filter(|&&x| x != 0).count(),
        })
    }

    /// The storage, taken out of the tensor.
    pub fn into_data(self) -> Data {
        self.data
    }

    /// The float values, or `None` for an integer tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            Data::I8(_) | Data::I32(_) => None,
        }
    }

    /// Every element converted to `f32` (exact for i8, rounded for large i32).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.to_vec(),
            Data::I8(v) => v.iter().map(|&x| x as f32).collect(),
            Data::I32(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor<{}{:?}>", self.dtype, self.shape)?;
        let preview: Vec<String> = self.to_f32_vec().iter().take(8).map(|v| format!("{v}")).collect();
        write!(f, "[{}{}]", preview.join(", "), if self.len() > 8 { ", ..." } else { "" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonzeros_count_everything_but_signed_zeros_once() {
        // Past one 64-value chunk, with a NaN, an infinity and a subnormal among the nonzeros.
        let mut values = vec![0.0f32; 150];
        for (i, v) in [(0, -0.0), (3, 1.0), (64, f32::NAN), (65, f32::NEG_INFINITY), (149, f32::from_bits(1)), (100, -2.5)] {
            values[i] = v;
        }
        let t = Tensor::f32(vec![3, 50], values);
        assert_eq!(t.nonzeros(), 5);
        assert_eq!(t.clone().nonzeros(), 5);
        // A counted tensor equals an uncounted one with the same values.
        let (counted, fresh) = (Tensor::f32(vec![2], vec![0.0, 1.0]), Tensor::f32(vec![2], vec![0.0, 1.0]));
        assert_eq!(counted.nonzeros(), 1);
        assert!(counted == fresh);
        assert_eq!(Tensor::from_i8(vec![4], vec![0, -1, 0, 7]).unwrap().nonzeros(), 2);
        assert_eq!(Tensor::from_i32(vec![2], vec![0, 0]).unwrap().nonzeros(), 0);
    }
}
