//! nnc: a compiler for neural-network graphs.

pub mod diagnostics;
pub mod elaborate;
pub mod interp;
pub mod weights;
pub mod ir;
pub mod ops;
pub mod syntax;
