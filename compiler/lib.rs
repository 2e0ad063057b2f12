//! nnc: a compiler for neural-network graphs.
//!
//! The pipeline: [`syntax`] parses `.nn` text, [`elaborate`] builds the typed [`ir::Graph`]
//! (every op defined once in [`ops`]), [`passes`] optimize it, and [`interp`] runs it as the
//! reference. [`driver`] strings the front end together; [`weights`] binds parameters.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod accel;
pub mod charts;
pub mod cli;
pub mod diagnostics;
pub mod driver;
pub mod elaborate;
pub mod explore;
pub mod interp;
pub mod ir;
pub mod jit;
pub mod kernel_plan;
pub mod onnx;
pub mod ops;
pub mod passes;
pub mod quantization_error;
pub mod summary;
pub mod syntax;
pub mod target;
pub mod testing;
pub mod weights;
