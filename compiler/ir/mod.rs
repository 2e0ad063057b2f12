//! The graph IR: types, the graph itself, its text form and its verifier.

mod graph;
pub mod parse;
pub mod print;
mod types;
pub mod verify;

pub use graph::{Graph, Node, NodeId, NodeKind};
pub use types::{DType, Layout, ShapeDisplay, TensorType};
