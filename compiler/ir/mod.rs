//! The graph IR: types, the graph itself, its text form, its verifier, and the graph written
//! back as `.nn` source.

mod graph;
pub mod parse;
pub mod print;
pub mod source;
mod types;
pub mod verify;

pub use graph::{Graph, Node, NodeId, NodeKind};
pub use types::{DType, Layout, ShapeDisplay, TensorType};
