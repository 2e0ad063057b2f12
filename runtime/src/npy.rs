//! NumPy `.npy` files, through the `npyz` crate.
//!
//! Reading validates what a file claims before trusting it: the element count is computed with
//! checked arithmetic, capped at [`MAX_TENSOR_BYTES`], and compared with the bytes actually
//! present, so a truncated or lying header is an error instead of a huge allocation.

use crate::tensor::{checked_numel, MAX_TENSOR_BYTES};
use crate::{DType, Tensor};
use npyz::{TypeChar, WriterBuilder};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is not a valid .npy file: {reason}")]
    Malformed { path: String, reason: String },
    #[error("{path} holds {dtype} data; {wanted}")]
    UnsupportedDType { path: String, dtype: String, wanted: String },
    #[error("{path} is stored in Fortran order; save it in C order (numpy.ascontiguousarray)")]
    FortranOrder { path: String },
    #[error("{path}: the array of shape {shape:?} is larger than the {limit} GiB limit", limit = MAX_TENSOR_BYTES >> 30)]
    TooLarge { path: String, shape: Vec<u64> },
}

/// A tensor read from a `.npy` file, and whether it was converted from `f64`.
pub struct NpyArray {
    pub tensor: Tensor,
    pub converted_from_f64: bool,
}

/// Read a little-endian, C-order `f32` or `f64` array as an f32 tensor.
pub fn read_npy(path: &Path) -> Result<NpyArray, NpyError> {
    let p = path.display().to_string();
    let bytes = crate::read_regular_file(path).map_err(|source| NpyError::Io { path: p.clone(), source })?;
    read_npy_bytes(&bytes, &p)
}

/// [`read_npy`] on bytes already in memory; `name` is used in messages.
pub fn read_npy_bytes(bytes: &[u8], name: &str) -> Result<NpyArray, NpyError> {
    let malformed = |reason: String| NpyError::Malformed { path: name.to_string(), reason };
    let (file, shape, ts) = validated(bytes, name, "nnc reads f32 (and f64, converted) arrays", |ts| ts.type_char() == TypeChar::Float && matches!(ts.size_field(), 4 | 8))?;
    let is_f64 = ts.size_field() == 8;
    let data: Vec<f32> = if is_f64 {
        let v: Vec<f64> = file.into_vec().map_err(|e| malformed(e.to_string()))?;
        v.into_iter().map(|x| x as f32).collect()
    } else {
        file.into_vec().map_err(|e| malformed(e.to_string()))?
    };
    let tensor = Tensor::from_f32(DType::F32, shape, data).map_err(|e| malformed(e.to_string()))?;
    Ok(NpyArray { tensor, converted_from_f64: is_f64 })
}

/// Read a little-endian, C-order array of integers (signed or unsigned, 1 to 8 bytes), such
/// as class labels, with its shape.
pub fn read_npy_integers(path: &Path) -> Result<(Vec<usize>, Vec<i64>), NpyError> {
    let p = path.display().to_string();
    let bytes = crate::read_regular_file(path).map_err(|source| NpyError::Io { path: p.clone(), source })?;
    read_npy_integers_bytes(&bytes, &p)
}

/// [`read_npy_integers`] on bytes already in memory; `name` is used in messages.
pub fn read_npy_integers_bytes(bytes: &[u8], name: &str) -> Result<(Vec<usize>, Vec<i64>), NpyError> {
    let malformed = |reason: String| NpyError::Malformed { path: name.to_string(), reason };
    let integer = |ts: &npyz::TypeStr| matches!((ts.type_char(), ts.size_field()), (TypeChar::Int, 1 | 2 | 4 | 8) | (TypeChar::Uint, 1 | 2 | 4 | 8));
    let (file, shape, ts) = validated(bytes, name, "expected integers (e.g. int64 class labels)", integer)?;
    let unsigned_too_large = |v: u64| i64::try_from(v).map_err(|_| malformed(format!("value {v} does not fit in i64")));
    let values: Vec<i64> = match (ts.type_char(), ts.size_field()) {
        (TypeChar::Int, 1) => file.into_vec::<i8>().map_err(|e| malformed(e.to_string()))?.into_iter().map(i64::from).collect(),
        (TypeChar::Int, 2) => file.into_vec::<i16>().map_err(|e| malformed(e.to_string()))?.into_iter().map(i64::from).collect(),
        (TypeChar::Int, 4) => file.into_vec::<i32>().map_err(|e| malformed(e.to_string()))?.into_iter().map(i64::from).collect(),
        (TypeChar::Int, _) => file.into_vec::<i64>().map_err(|e| malformed(e.to_string()))?,
        (_, 1) => file.into_vec::<u8>().map_err(|e| malformed(e.to_string()))?.into_iter().map(i64::from).collect(),
        (_, 2) => file.into_vec::<u16>().map_err(|e| malformed(e.to_string()))?.into_iter().map(i64::from).collect(),
        (_, 4) => file.into_vec::<u32>().map_err(|e| malformed(e.to_string()))?.into_iter().map(i64::from).collect(),
        (_, _) => file.into_vec::<u64>().map_err(|e| malformed(e.to_string()))?.into_iter().map(unsigned_too_large).collect::<Result<_, _>>()?,
    };
    Ok((shape, values))
}

/// Parses and checks a header before any data is trusted: bounded nesting, C order,
/// little-endian, an element type `accept`s, a shape within [`MAX_TENSOR_BYTES`], and
/// exactly as many data bytes as the shape promises (npyz would otherwise pre-allocate from
/// the header's count before discovering the file is short). `wanted` says what is
/// accepted, for the error.
fn validated<'a>(bytes: &'a [u8], name: &str, wanted: &str, accept: impl Fn(&npyz::TypeStr) -> bool) -> Result<(npyz::NpyFile<&'a [u8]>, Vec<usize>, npyz::TypeStr), NpyError> {
    let malformed = |reason: String| NpyError::Malformed { path: name.to_string(), reason };
    check_header_nesting(bytes).map_err(malformed)?;
    let file = npyz::NpyFile::new(bytes).map_err(|e| malformed(e.to_string()))?;
    if file.order() == npyz::Order::Fortran {
        return Err(NpyError::FortranOrder { path: name.to_string() });
    }
    let ts = match file.dtype() {
        npyz::DType::Plain(ts) if accept(&ts) => ts,
        other => return Err(NpyError::UnsupportedDType { path: name.to_string(), dtype: other.descr(), wanted: wanted.to_string() }),
    };
    if ts.endianness() == npyz::Endianness::Big && ts.size_field() > 1 {
        return Err(malformed("big-endian data; nnc reads little-endian arrays".into()));
    }
    let elem = ts.size_field() as usize;
    let shape64 = file.shape().to_vec();
    let too_large = || NpyError::TooLarge { path: name.to_string(), shape: shape64.clone() };
    let shape: Vec<usize> = shape64.iter().map(|&d| usize::try_from(d).map_err(|_| too_large())).collect::<Result<_, _>>()?;
    let n = checked_numel(&shape, elem).ok_or_else(too_large)?;
    let data_len = file.into_inner().len();
    if data_len != n * elem {
        return Err(malformed(format!(
            "the header promises {} bytes of data for shape {shape:?} but the file holds {data_len}",
            n * elem
        )));
    }
    let file = npyz::NpyFile::new(bytes).map_err(|e| malformed(e.to_string()))?;
    Ok((file, shape, ts))
}

/// Deepest bracket nesting accepted in a header. A plain array's header nests two deep (the
/// dict and the shape tuple); structured dtypes, which nnc refuses anyway, nest a little more.
const MAX_HEADER_NESTING: usize = 6;

/// Refuse headers whose brackets nest deeper than [`MAX_HEADER_NESTING`] before npyz parses
/// them: its Python-literal parser backtracks exponentially in the nesting depth (found by
/// fuzzing: a 200-byte header of nested `{` took over 20 s), and no input may hang nnc.
/// Only the bracket structure is looked at; npyz still reads the header.
fn check_header_nesting(bytes: &[u8]) -> Result<(), String> {
    // Magic (6 bytes), version (2), then the header length: u16 in version 1, u32 after.
    let (len, start) = match bytes.get(6) {
        Some(1) if bytes.len() >= 10 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        Some(2 | 3) if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        _ => return Ok(()), // npyz reports what is wrong with the preamble
    };
    let header = &bytes[start.min(bytes.len())..start.saturating_add(len).min(bytes.len())];
    let mut depth = 0usize;
    for &b in header {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_HEADER_NESTING {
                    return Err(format!("its header nests brackets more than {MAX_HEADER_NESTING} deep (a plain array's header nests 2)"));
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Write a tensor as a little-endian, C-order `f32` array.
pub fn write_npy(path: &Path, tensor: &Tensor) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let shape: Vec<u64> = tensor.shape().iter().map(|&d| d as u64).collect();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(std::io::BufWriter::new(file))
        .begin_nd()?;
    writer.extend(tensor.to_f32_vec())?;
    writer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy_bytes(header_dict: &str, data: &[u8]) -> Vec<u8> {
        let mut h = header_dict.to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn round_trip() {
        let dir = tempdir();
        let path = dir.join("t.npy");
        let t = Tensor::f32(vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, -6.5]);
        write_npy(&path, &t).unwrap();
        let back = read_npy(&path).unwrap();
        assert_eq!(back.tensor, t);
        assert!(!back.converted_from_f64);
    }

    #[test]
    fn f64_is_converted() {
        let data: Vec<u8> = [1.5f64, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let b = npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", &data);
        let a = read_npy_bytes(&b, "x").unwrap();
        assert!(a.converted_from_f64);
        assert_eq!(a.tensor.as_f32().unwrap(), &[1.5, -2.0]);
    }

    #[test]
    fn lying_header_is_an_error() {
        let b = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }", &[0; 8]);
        assert!(matches!(read_npy_bytes(&b, "x"), Err(NpyError::TooLarge { .. })));
        let b = npy_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", &[0; 8]);
        assert!(matches!(read_npy_bytes(&b, "x"), Err(NpyError::Malformed { .. })));
        let b = npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }", &[0; 8]);
        assert!(matches!(read_npy_bytes(&b, "x"), Err(NpyError::UnsupportedDType { .. })));
        assert!(read_npy_bytes(b"\x93NUMPY", "x").is_err());
        assert!(read_npy_bytes(b"", "x").is_err());
    }

    fn tempdir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("nnc-npy-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
