//! Weight files: safetensors, keyed by parameter name.

use crate::{DType, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is not a valid safetensors file: {reason}")]
    Malformed { path: String, reason: String },
}

/// The tensors of a safetensors file, by name (sorted, so iteration order is stable).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WeightsFile {
    pub tensors: BTreeMap<String, Tensor>,
    /// Tensors of dtypes nnc does not load (e.g. PyTorch's int64 `num_batches_tracked`), with
    /// their dtype: harmless unless a parameter needs one.
    pub unsupported: BTreeMap<String, String>,
}

/// Read a safetensors file.
pub fn read_safetensors(path: &Path) -> Result<WeightsFile, WeightsError> {
    let p = path.display().to_string();
    let bytes = crate::read_regular_file(path).map_err(|source| WeightsError::Io { path: p.clone(), source })?;
    parse_safetensors(&bytes, &p)
}

/// [`read_safetensors`] on bytes already in memory; `name` is used in messages.
pub fn parse_safetensors(bytes: &[u8], path: &str) -> Result<WeightsFile, WeightsError> {
    use safetensors::Dtype as S;
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| WeightsError::Malformed { path: path.to_string(), reason: e.to_string() })?;
    let mut out = WeightsFile::default();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let raw = view.data();
        let malformed = |e: crate::TensorError| WeightsError::Malformed { path: path.to_string(), reason: format!("`{name}`: {e}") };
        let tensor = match view.dtype() {
            S::F32 => Tensor::from_f32(DType::F32, shape, raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
            S::F16 => Tensor::from_f32(DType::F16, shape, raw.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
            S::BF16 => Tensor::from_f32(DType::BF16, shape, raw.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
            S::I8 => Tensor::from_i8(shape, raw.iter().map(|&b| b as i8).collect()),
            S::I32 => Tensor::from_i32(shape, raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
            other => {
                out.unsupported.insert(name, format!("{other:?}"));
                continue;
            }
        }
        .map_err(malformed)?;
        out.tensors.insert(name, tensor);
    }
    Ok(out)
}

/// Write f32/f16/bf16/i8/i32 tensors as a safetensors file (used for `--random-weights`
/// exports and tests).
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, Tensor>) -> Result<(), WeightsError> {
    use safetensors::Dtype as S;
    let io_err = |e: safetensors::SafeTensorError| WeightsError::Malformed { path: path.display().to_string(), reason: e.to_string() };
    let mut buffers: Vec<(String, S, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in tensors {
        let (dtype, bytes): (S, Vec<u8>) = match (t.dtype(), t.data()) {
            (DType::F32, crate::tensor::Data::F32(v)) => (S::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            (DType::F16, crate::tensor::Data::F32(v)) => (S::F16, v.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect()),
            (DType::BF16, crate::tensor::Data::F32(v)) => (S::BF16, v.iter().flat_map(|x| half::bf16::from_f32(*x).to_le_bytes()).collect()),
            (DType::I8, crate::tensor::Data::I8(v)) => (S::I8, v.iter().map(|&x| x as u8).collect()),
            (DType::I32, crate::tensor::Data::I32(v)) => (S::I32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            (d, _) => unreachable!("tensor storage does not match its dtype {d}"),
        };
        buffers.push((name.clone(), dtype, t.shape().to_vec(), bytes));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = buffers
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).map_err(io_err)?)))
        .collect::<Result<_, WeightsError>>()?;
    safetensors::serialize_to_file(views, None, path).map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let dir = std::env::temp_dir().join(format!("nnc-st-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.safetensors");
        let mut m = BTreeMap::new();
        m.insert("a.weight".to_string(), Tensor::f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]));
        m.insert("b".to_string(), Tensor::from_f32(DType::BF16, vec![1], vec![0.5]).unwrap());
        write_safetensors(&path, &m).unwrap();
        assert_eq!(read_safetensors(&path).unwrap().tensors, m);
        assert!(parse_safetensors(b"", "x").is_err());
        assert!(parse_safetensors(&[255; 16], "x").is_err());
        let mut lying = 8u64.to_le_bytes().to_vec();
        lying.extend_from_slice(b"{\"a\":{}}");
        assert!(parse_safetensors(&lying, "x").is_err());
    }
}
