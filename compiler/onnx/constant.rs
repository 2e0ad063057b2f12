//! Tensors known while importing: initializers, `Constant` nodes, and what the importer
//! folds from them (shape subgraphs such as `Shape → Gather → Concat → Reshape`). Floats are
//! kept as f32 (the model's type), integers as i64 (ONNX shapes and indices).

use super::proto::{data_type, TensorProto};

/// Elements are capped so that a lying header cannot make the importer allocate without end.
const MAX_ELEMENTS: usize = 1 << 31;

#[derive(Clone, Debug, PartialEq)]
pub enum Elements {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConstTensor {
    pub shape: Vec<usize>,
    pub data: Elements,
    /// The ONNX element type it was read as (`int8` and `uint8` zero points decide how
    /// `QuantizeLinear` saturates); computed tensors are `float` or `int64`.
    pub onnx_type: i32,
}

impl ConstTensor {
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> ConstTensor {
        ConstTensor { shape, data: Elements::F32(data), onnx_type: data_type::FLOAT }
    }

    pub fn i64(shape: Vec<usize>, data: Vec<i64>) -> ConstTensor {
        ConstTensor { shape, data: Elements::I64(data), onnx_type: data_type::INT64 }
    }

    pub fn len(&self) -> usize {
        match &self.data {
            Elements::F32(v) => v.len(),
            Elements::I64(v) => v.len(),
        }
    }

    /// Every element as f64 (exact for f32 and for integers below 2^53).
    pub fn values(&self) -> Vec<f64> {
        match &self.data {
            Elements::F32(v) => v.iter().map(|&x| x as f64).collect(),
            Elements::I64(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// Every element as i64 (floats truncated), for shapes, axes and indices.
    pub fn ints(&self) -> Vec<i64> {
        match &self.data {
            Elements::F32(v) => v.iter().map(|&x| x as i64).collect(),
            Elements::I64(v) => v.clone(),
        }
    }

    pub fn is_float(&self) -> bool {
        matches!(self.data, Elements::F32(_))
    }

    /// The same kind of elements as `self`, from f64 values.
    pub fn like(&self, shape: Vec<usize>, values: Vec<f64>) -> ConstTensor {
        match self.data {
            Elements::F32(_) => ConstTensor::f32(shape, values.into_iter().map(|v| v as f32).collect()),
            Elements::I64(_) => ConstTensor::i64(shape, values.into_iter().map(|v| v as i64).collect()),
        }
    }

    /// The single value of a one-element tensor.
    pub fn scalar(&self) -> Option<f64> {
        (self.len() == 1).then(|| self.values()[0])
    }

    pub fn to_tensor(&self) -> nnc_runtime::Tensor {
        let data = match &self.data {
            Elements::F32(v) => v.clone(),
            Elements::I64(v) => v.iter().map(|&x| x as f32).collect(),
        };
        nnc_runtime::Tensor::f32(self.shape.clone(), data)
    }

    /// Elements gathered by `index(out_position) -> in_position` into `shape`.
    pub fn gather(&self, shape: Vec<usize>, index: impl Fn(usize) -> usize) -> ConstTensor {
        let n: usize = shape.iter().product();
        match &self.data {
            Elements::F32(v) => ConstTensor::f32(shape, (0..n).map(|i| v[index(i)]).collect()),
            Elements::I64(v) => ConstTensor::i64(shape, (0..n).map(|i| v[index(i)]).collect()),
        }
    }
}

/// Row-major strides of `shape`.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Decode an initializer or attribute tensor.
pub fn decode(t: &TensorProto) -> Result<ConstTensor, String> {
    let name = t.name.as_deref().unwrap_or("(unnamed)");
    if !t.external_data.is_empty() || t.data_location == Some(1) {
        return Err(format!("tensor `{name}` keeps its data in an external file, which nnc does not read; save the model with its weights inside (onnx.save(model, path, save_as_external_data=False))"));
    }
    let mut shape = Vec::with_capacity(t.dims.len());
    // The product of the nonzero sizes is bounded too, so that strides of an empty tensor
    // cannot overflow.
    let (mut n, mut nonzero): (usize, usize) = (1, 1);
    for &d in &t.dims {
        let d = usize::try_from(d).map_err(|_| format!("tensor `{name}` has a negative dimension {d}"))?;
        let too_large = || format!("tensor `{name}` is too large ({:?})", t.dims);
        n = n.checked_mul(d).filter(|&n| n <= MAX_ELEMENTS).ok_or_else(too_large)?;
        nonzero = nonzero.checked_mul(d.max(1)).filter(|&n| n <= MAX_ELEMENTS).ok_or_else(too_large)?;
        shape.push(d);
    }
    let dtype = t.data_type.unwrap_or(0);
    decode_elements(t, name, shape, n, dtype).map(|c| ConstTensor { onnx_type: dtype, ..c })
}

fn decode_elements(t: &TensorProto, name: &str, shape: Vec<usize>, n: usize, dtype: i32) -> Result<ConstTensor, String> {
    let raw = t.raw_data.as_deref();
    let count = |got: usize| if got == n { Ok(()) } else { Err(format!("tensor `{name}` of shape {:?} holds {got} values, not {n}", t.dims)) };
    let from_raw = |width: usize| -> Result<Vec<&[u8]>, String> {
        let raw = raw.expect("checked by the caller");
        if raw.len() != n * width {
            return Err(format!("tensor `{name}` of shape {:?} has {} bytes of data, not {}", t.dims, raw.len(), n * width));
        }
        Ok(raw.chunks_exact(width).collect())
    };
    Ok(match dtype {
        data_type::FLOAT => {
            let v: Vec<f32> = if raw.is_some() { from_raw(4)?.iter().map(|b| f32::from_le_bytes((*b).try_into().expect("4 bytes"))).collect() } else { t.float_data.clone() };
            count(v.len())?;
            ConstTensor::f32(shape, v)
        }
        data_type::DOUBLE => {
            let v: Vec<f32> = if raw.is_some() { from_raw(8)?.iter().map(|b| f64::from_le_bytes((*b).try_into().expect("8 bytes")) as f32).collect() } else { t.double_data.iter().map(|&x| x as f32).collect() };
            count(v.len())?;
            ConstTensor::f32(shape, v)
        }
        data_type::FLOAT16 => {
            let bits: Vec<u16> = if raw.is_some() { from_raw(2)?.iter().map(|b| u16::from_le_bytes((*b).try_into().expect("2 bytes"))).collect() } else { t.int32_data.iter().map(|&x| x as u16).collect() };
            count(bits.len())?;
            ConstTensor::f32(shape, bits.into_iter().map(|b| half::f16::from_bits(b).to_f32()).collect())
        }
        data_type::INT64 => {
            let v: Vec<i64> = if raw.is_some() { from_raw(8)?.iter().map(|b| i64::from_le_bytes((*b).try_into().expect("8 bytes"))).collect() } else { t.int64_data.clone() };
            count(v.len())?;
            ConstTensor::i64(shape, v)
        }
        data_type::INT32 => {
            let v: Vec<i64> = if raw.is_some() { from_raw(4)?.iter().map(|b| i32::from_le_bytes((*b).try_into().expect("4 bytes")) as i64).collect() } else { t.int32_data.iter().map(|&x| x as i64).collect() };
            count(v.len())?;
            ConstTensor::i64(shape, v)
        }
        data_type::INT8 | data_type::UINT8 | data_type::BOOL => {
            let v: Vec<i64> = if raw.is_some() {
                from_raw(1)?.iter().map(|b| if dtype == data_type::INT8 { b[0] as i8 as i64 } else { b[0] as i64 }).collect()
            } else {
                t.int32_data.iter().map(|&x| x as i64).collect()
            };
            count(v.len())?;
            ConstTensor::i64(shape, v)
        }
        other => return Err(format!("tensor `{name}` is {}, which nnc does not import", data_type::name(other))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proto(dims: Vec<i64>, data_type: i32) -> TensorProto {
        TensorProto { dims, data_type: Some(data_type), name: Some("t".into()), ..Default::default() }
    }

    #[test]
    fn raw_and_typed_fields_decode_alike() {
        let mut raw = proto(vec![2], data_type::FLOAT);
        raw.raw_data = Some([1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect());
        let mut typed = proto(vec![2], data_type::FLOAT);
        typed.float_data = vec![1.5, -2.0];
        assert_eq!(decode(&raw).unwrap(), decode(&typed).unwrap());
        let mut ints = proto(vec![3], data_type::INT64);
        ints.raw_data = Some([1i64, -1, 7].iter().flat_map(|v| v.to_le_bytes()).collect());
        assert_eq!(decode(&ints).unwrap(), ConstTensor::i64(vec![3], vec![1, -1, 7]));
        let mut i8s = proto(vec![2], data_type::INT8);
        i8s.raw_data = Some(vec![0xff, 3]);
        assert_eq!(decode(&i8s).unwrap().ints(), [-1, 3]);
    }

    #[test]
    fn lying_sizes_and_external_data_are_errors() {
        let mut short = proto(vec![4], data_type::FLOAT);
        short.raw_data = Some(vec![0; 8]);
        assert!(decode(&short).unwrap_err().contains("8 bytes"));
        let huge = proto(vec![1 << 40, 1 << 40], data_type::FLOAT);
        assert!(decode(&huge).unwrap_err().contains("too large"));
        let negative = proto(vec![-1], data_type::FLOAT);
        assert!(decode(&negative).unwrap_err().contains("negative"));
        let mut external = proto(vec![1], data_type::FLOAT);
        external.data_location = Some(1);
        assert!(decode(&external).unwrap_err().contains("external file"));
        assert!(decode(&proto(vec![1], 8)).unwrap_err().contains("string"));
    }
}
