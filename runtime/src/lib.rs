//! The nnc runtime: tensors and the file formats they travel in.
//!
//! This crate is what an application links to feed a compiled model: a [`Tensor`] type with
//! a [`DType`], `.npy` reading and writing ([`npy`]) and safetensors weight files
//! ([`weights`]). It knows nothing about the `.nn` language or the graph IR.

pub mod dtype;
pub mod npy;
pub mod tensor;
pub mod weights;

pub use dtype::DType;
pub use tensor::{Tensor, TensorError, MAX_TENSOR_BYTES};
