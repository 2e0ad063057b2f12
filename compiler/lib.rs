#![deny(unsafe_op_in_unsafe_fn)]
//! nnc: a compiler for neural-network graphs.
//!
#![deny(unsafe_op_in_unsafe_fn)]
//! The pipeline: [`syntax`] parses `.nn` text, [`elaborate`] builds the typed [`ir::Graph`]
#![deny(unsafe_op_in_unsafe_fn)]
//! (every op defined once in [`ops`]), [`passes`] optimize it, and [`interp`] runs it as the
#![deny(unsafe_op_in_unsafe_fn)]
//! reference. [`driver`] strings the front end together; [`weights`] binds parameters.

pub mod accel;
pub mod cli;
pub mod diagnostics;
pub mod driver;
pub mod elaborate;
pub mod interp;
pub mod ir;
pub mod jit;
pub mod kernel_plan;
pub mod ops;
pub mod passes;
pub mod summary;
pub mod syntax;
pub mod target;
pub mod testing;
pub mod weights;
