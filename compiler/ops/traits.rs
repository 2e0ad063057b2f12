//! The facts about an op that every backend and pass needs besides its shape rule and its
//! semantics: whether it is a view, what it does with int8 codes, whether it is elementwise,
//! which matrix product it is, and which activation. Each op family states them in its own
//! file (`traits()`), and [`Op::traits`](super::Op::traits) is the one exhaustive dispatch,
//! so backends ask instead of matching op variants with wildcard arms.

use super::{Conv2d, Dense, Init, MatMul, Op, OpResult};
use crate::ir::TensorType;
use nnc_runtime::{Activation, Tensor};

/// What an op does with int8 codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codes {
    /// It computes on floats only.
    Floats,
    /// It only moves or selects values, so int8 codes pass through it unchanged and exactly
    /// (flatten, reshape, max_pool).
    Moves,
    /// It multiplies int8 codes, accumulating in wrapping i32 (the matrix products).
    Multiplies,
    /// It converts between floats, codes and accumulators (quantize, dequantize, requantize).
    Converts,
}

/// See the module documentation.
#[derive(Clone, Debug, PartialEq)]
pub struct Traits {
    /// The result is operand 0's bytes under another shape: no kernel runs and no copy is
    /// made (reshape, flatten).
    pub view: bool,
    pub codes: Codes,
    /// Each result element is computed from the same element of every operand of the
    /// result's shape (and from broadcast elements of the others), with no other
    /// dependence, so the result may overwrite such an operand and any split of the index
    /// range computes it.
    pub elementwise: bool,
    /// The matrix product the op computes: itself, or a fused op's anchor.
    pub product: Option<Product>,
    /// The activation the op is (relu, relu6), which a product's epilogue or an activation
    /// unit can apply as it stores a result.
    pub activation: Option<Activation>,
}

impl Traits {
    /// A float op with no special property.
    pub const PLAIN: Traits = Traits { view: false, codes: Codes::Floats, elementwise: false, product: None, activation: None };
}

/// A matrix product: the ops the runtime GEMM, int8 arithmetic and the accelerator's array
/// compute, and the only ops that can anchor a fused op.
#[derive(Clone, Debug, PartialEq)]
pub enum Product {
    Conv2d(Conv2d),
    Dense(Dense),
    MatMul(MatMul),
}

impl Product {
    /// The product as an op of its own.
    pub fn op(&self) -> Op {
        match self {
            Product::Conv2d(c) => Op::Conv2d(c.clone()),
            Product::Dense(d) => Op::Dense(d.clone()),
            Product::MatMul(m) => Op::MatMul(m.clone()),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Product::Conv2d(_) => "conv2d",
            Product::Dense(_) => "dense",
            Product::MatMul(_) => "matmul",
        }
    }

    /// The result's axis that output channels run along, whose per-channel scales and biases
    /// apply: 1 for a convolution (NCHW), the last axis for dense and matmul.
    pub fn channel_axis(&self, result_rank: usize) -> usize {
        match self {
            Product::Conv2d(_) => 1,
            Product::Dense(_) | Product::MatMul(_) => result_rank - 1,
        }
    }

    /// Whether the second operand is a weight the product owns (dense and conv2d), rather
    /// than a computed value (matmul's right side may be either).
    pub fn has_weight_operand(&self) -> bool {
        match self {
            Product::Conv2d(_) | Product::Dense(_) => true,
            Product::MatMul(_) => false,
        }
    }

    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        self.op().infer(operands)
    }

    pub fn eval(&self, inputs: &[&Tensor], out: &TensorType) -> Tensor {
        self.op().eval(inputs, out)
    }

    pub fn attrs(&self) -> Vec<(&'static str, super::Const)> {
        self.op().attrs()
    }

    pub fn macs(&self, operands: &[&TensorType], out: &TensorType) -> u64 {
        self.op().macs(operands, out)
    }

    pub fn param_init(&self, index: usize, operands: &[&TensorType]) -> Option<Init> {
        self.op().param_init(index, operands)
    }
}
