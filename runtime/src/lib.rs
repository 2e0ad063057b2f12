#![deny(unsafe_op_in_unsafe_fn)]
//! The nnc runtime: tensors and the file formats they travel in.
//!
//! This crate is what an application links to feed a compiled model: a [`Tensor`] type with
//! a [`DType`], `.npy` reading and writing ([`npy`]) and safetensors weight files
//! ([`weights`]). It knows nothing about the `.nn` language or the graph IR.

pub mod activation;
pub mod cpu;
pub mod dtype;
pub mod floats;
pub mod gemm;
#[cfg(feature = "files")]
pub mod npy;
pub mod pool;
pub mod quant;
pub mod reference;
pub mod tensor;
#[cfg(feature = "files")]
pub mod weights;

pub use activation::Activation;
pub use dtype::DType;

/// Read a whole file, refusing anything but a regular file (a FIFO would block forever and
/// `/dev/zero` never ends).
pub fn read_regular_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
    }
    std::fs::read(path)
}
pub use tensor::{Tensor, TensorError, MAX_TENSOR_BYTES};
