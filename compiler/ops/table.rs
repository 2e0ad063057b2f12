//! The op table: every op name once, with how a call builds it.

use super::{fused, Attention, BatchNorm, Binary, BinaryKind, Built, Cast, CallArgs, Concat, Conv2d, ConvertLayout, Dense, Dequantize, Flatten, GlobalAvgPool, LayerNorm, Lstm, MatMul, Op, OpResult, Pool, PoolKind, Quantize, Requantize, Reshape, Slice, Softmax, Transpose, Unary, UnaryKind};

/// Declares every op name once: how a call to it builds the op, which constants it takes
/// positionally (`reshape(x, [2, -1])`), and whether sources may call it or only IR text
/// (ops that passes make). From this one table come [`OP_NAMES`], [`IR_ONLY_OP_NAMES`],
/// [`Op::build`] and [`positional_attrs`], so a new op cannot be half-registered; the test
/// `every_name_builds_the_op_of_that_name` checks each entry against [`Op::name`].
macro_rules! op_table {
    (
        source { $($name:literal => $build:expr $(, positional $pos:expr)?;)* }
        ir_only { $($ir_name:literal => $ir_build:expr;)* }
    ) => {
        /// Names callable in `.nn` sources, for "unknown op" suggestions.
        pub const OP_NAMES: &[&str] = &[$($name),*];

        /// Ops only passes make; IR text may name them, `.nn` sources may not.
        pub const IR_ONLY_OP_NAMES: &[&str] = &[$($ir_name),*];

        /// Op attributes a call may pass positionally after its tensors, in order.
        pub fn positional_attrs(name: &str) -> &'static [&'static str] {
            match name {
                $($name => op_table!(@positional $($pos)?),)*
                _ => &[],
            }
        }

        impl Op {
            /// Build the op that a call to `name` denotes; `None` if no op has that name.
            pub fn build(name: &str, args: &mut CallArgs) -> Option<OpResult<Built>> {
                let build: fn(&mut CallArgs) -> OpResult<Built> = match name {
                    $($name => $build,)*
                    $($ir_name => $ir_build,)*
                    _ => return None,
                };
                Some(build(args))
            }
        }
    };
    (@positional $pos:expr) => { $pos };
    (@positional) => { &[] };
}

op_table! {
    source {
        "conv2d" => Conv2d::build;
        "dense" => Dense::build;
        "batch_norm" => BatchNorm::build;
        "layer_norm" => LayerNorm::build;
        "lstm" => Lstm::build;
        "relu" => |a| Unary::build(UnaryKind::Relu, a);
        "relu6" => |a| Unary::build(UnaryKind::Relu6, a);
        "sigmoid" => |a| Unary::build(UnaryKind::Sigmoid, a);
        "tanh" => |a| Unary::build(UnaryKind::Tanh, a);
        "gelu" => |a| Unary::build(UnaryKind::Gelu, a);
        "silu" => |a| Unary::build(UnaryKind::Silu, a);
        "exp" => |a| Unary::build(UnaryKind::Exp, a);
        "sqrt" => |a| Unary::build(UnaryKind::Sqrt, a);
        "abs" => |a| Unary::build(UnaryKind::Abs, a);
        "neg" => |a| Unary::build(UnaryKind::Neg, a);
        "leaky_relu" => |a| Unary::build(UnaryKind::LeakyRelu { alpha: 0.01 }, a);
        "clip" => |a| Unary::build(UnaryKind::Clip { min: f64::NEG_INFINITY, max: f64::INFINITY }, a);
        "add" => |a| Binary::build(BinaryKind::Add, a);
        "sub" => |a| Binary::build(BinaryKind::Sub, a);
        "mul" => |a| Binary::build(BinaryKind::Mul, a);
        "div" => |a| Binary::build(BinaryKind::Div, a);
        "matmul" => MatMul::build;
        "softmax" => Softmax::build;
        "max_pool" => |a| Pool::build(PoolKind::Max, a);
        "avg_pool" => |a| Pool::build(PoolKind::Avg, a);
        "global_avg_pool" => GlobalAvgPool::build;
        "flatten" => Flatten::build;
        "reshape" => Reshape::build, positional &["shape"];
        "transpose" => Transpose::build, positional &["perm"];
        "concat" => Concat::build;
        "slice" => Slice::build;
        "attention" => Attention::build;
    }
    ir_only {
        "fused" => fused::Fused::build;
        "convert_layout" => ConvertLayout::build;
        "quantize" => Quantize::build;
        "dequantize" => Dequantize::build;
        "requantize" => Requantize::build;
        "cast" => Cast::build;
    }
}

