//! Every operator, defined once.
//!
//! `Op` is a closed enum. For each op, its module holds the whole definition: how a call's
//! arguments become the op ([`CallArgs`] → attributes, with validation), its shape rule
//! (`infer`), its reference semantics (`eval`, used by the interpreter and therefore the oracle
//! for every backend), its cost (`macs`) and how random weights for its parameters are drawn.
//! No `match` on `Op` has a wildcard arm, so adding a variant makes the compiler list every
//! place that must learn about it.

pub mod call;
mod cast;
mod conv;
mod dense;
mod elementwise;
pub mod fused;
pub mod layout;
mod lstm;
mod norm;
mod pool;
pub mod quant;
mod softmax;
mod structural;
mod table;
pub mod traits;

pub use call::{CallArgs, Const, OpError, OpResult, Operand};
pub use conv::Conv2d;
pub use dense::{Dense, MatMul};
pub use layout::ConvertLayout;
pub use elementwise::{broadcast_shapes, Binary, BinaryKind, Unary, UnaryKind};
pub use lstm::Lstm;
pub use norm::{BatchNorm, LayerNorm};
pub use pool::{GlobalAvgPool, Pool, PoolKind};
pub use cast::Cast;
pub use quant::{Dequantize, Quantize, Requantize};
pub use softmax::{Attention, Softmax};
pub use structural::{Concat, Flatten, Reshape, Slice, Transpose};
pub use table::{positional_attrs, IR_ONLY_OP_NAMES, OP_NAMES};
pub use traits::{Codes, Product, Traits};

use crate::ir::TensorType;
use nnc_runtime::tensor::checked_numel;
use nnc_runtime::{DType, Tensor};

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Conv2d(Conv2d),
    Dense(Dense),
    MatMul(MatMul),
    BatchNorm(BatchNorm),
    LayerNorm(LayerNorm),
    Lstm(Lstm),
    Unary(Unary),
    Binary(Binary),
    Softmax(Softmax),
    Pool(Pool),
    GlobalAvgPool(GlobalAvgPool),
    Flatten(Flatten),
    Reshape(Reshape),
    Transpose(Transpose),
    Concat(Concat),
    Slice(Slice),
    Attention(Attention),
    /// Made by the `fuse-epilogues` pass, never written in sources.
    Fused(fused::Fused),
    /// Made by the `select-layouts` pass, never written in sources.
    ConvertLayout(ConvertLayout),
    /// Made by the `quantize-int8` pass, never written in sources.
    Quantize(Quantize),
    Dequantize(Dequantize),
    Requantize(Requantize),
    /// Made by the `quantize-bf16` pass, never written in sources.
    Cast(Cast),
}

/// A parameter that a layer call creates because the call passed no weight tensors
/// (`conv2d(x, filters=6, kernel=5)` creates `weight` and `bias`).
#[derive(Clone, Debug, PartialEq)]
pub struct ImplicitParam {
    /// The field name: the parameter is called `<prefix>.<field>`.
    pub field: &'static str,
    pub ty: TensorType,
}

/// What a call builds: the op, plus parameters to create and append to the operands.
pub struct Built {
    pub op: Op,
    pub implicit: Vec<ImplicitParam>,
}

impl Built {
    fn plain(op: Op) -> OpResult<Built> {
        Ok(Built { op, implicit: Vec::new() })
    }
}

/// How `--random-weights` draws a parameter, decided by the op that consumes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// N(0, 2/fan_in): He initialization for weights followed by ReLU-like activations.
    HeNormal { fan_in: usize },
    /// U(-1/√fan_in, 1/√fan_in): PyTorch's default for biases and LSTM weights.
    UniformFanIn { fan_in: usize },
    /// Batch-norm statistics and affine parameters drawn around their trained values.
    BnWeight,
    BnBias,
    BnMean,
    BnVar,
    /// Layer-norm scale near 1 and shift near 0.
    LnWeight,
    LnBias,
}

impl Op {
    /// The name the op is called by, in sources and IR text.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv2d(_) => "conv2d",
            Op::Dense(_) => "dense",
            Op::MatMul(_) => "matmul",
            Op::BatchNorm(_) => "batch_norm",
            Op::LayerNorm(_) => "layer_norm",
            Op::Lstm(_) => "lstm",
            Op::Unary(u) => u.kind.name(),
            Op::Binary(b) => b.kind.name(),
            Op::Softmax(_) => "softmax",
            Op::Pool(p) => p.kind.name(),
            Op::GlobalAvgPool(_) => "global_avg_pool",
            Op::Flatten(_) => "flatten",
            Op::Reshape(_) => "reshape",
            Op::Transpose(_) => "transpose",
            Op::Concat(_) => "concat",
            Op::Slice(_) => "slice",
            Op::Attention(_) => "attention",
            Op::Fused(_) => "fused",
            Op::ConvertLayout(_) => "convert_layout",
            Op::Quantize(_) => "quantize",
            Op::Dequantize(_) => "dequantize",
            Op::Requantize(_) => "requantize",
            Op::Cast(_) => "cast",
        }
    }

    /// The name with a fused op's parts (`conv2d+add+relu`), for profiles and tables.
    pub fn label(&self) -> String {
        match self {
            Op::Fused(f) => f.label(),
            Op::Conv2d(_)
            | Op::Dense(_)
            | Op::MatMul(_)
            | Op::BatchNorm(_)
            | Op::LayerNorm(_)
            | Op::Lstm(_)
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Softmax(_)
            | Op::Pool(_)
            | Op::GlobalAvgPool(_)
            | Op::Flatten(_)
            | Op::Reshape(_)
            | Op::Transpose(_)
            | Op::Concat(_)
            | Op::Slice(_)
            | Op::Attention(_)
            | Op::ConvertLayout(_)
            | Op::Quantize(_)
            | Op::Dequantize(_)
            | Op::Requantize(_)
            | Op::Cast(_) => self.name().to_string(),
        }
    }

    /// What backends and passes need to know about the op: see [`Traits`].
    pub fn traits(&self) -> Traits {
        match self {
            Op::Conv2d(o) => o.traits(),
            Op::Dense(o) => o.traits(),
            Op::MatMul(o) => o.traits(),
            Op::BatchNorm(o) => o.traits(),
            Op::LayerNorm(o) => o.traits(),
            Op::Lstm(o) => o.traits(),
            Op::Unary(o) => o.traits(),
            Op::Binary(o) => o.traits(),
            Op::Softmax(o) => o.traits(),
            Op::Pool(o) => o.traits(),
            Op::GlobalAvgPool(o) => o.traits(),
            Op::Flatten(o) => o.traits(),
            Op::Reshape(o) => o.traits(),
            Op::Transpose(o) => o.traits(),
            Op::Concat(o) => o.traits(),
            Op::Slice(o) => o.traits(),
            Op::Attention(o) => o.traits(),
            Op::Fused(o) => o.traits(),
            Op::ConvertLayout(o) => o.traits(),
            Op::Quantize(o) => o.traits(),
            Op::Dequantize(o) => o.traits(),
            Op::Requantize(o) => o.traits(),
            Op::Cast(o) => o.traits(),
        }
    }

    /// The matrix product the op computes (itself, or a fused op's anchor), if any.
    pub fn product(&self) -> Option<Product> {
        self.traits().product
    }

    /// The result type for operands of these types, or why they are invalid.
    pub fn infer(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        let ty = self.infer_shape(operands)?;
        let layout = layout::result_layout(self, operands, &ty.shape)?;
        Ok(ty.with_layout(layout))
    }

    /// Dtype and shape (row-major) by each op's shape rule.
    fn infer_shape(&self, operands: &[&TensorType]) -> OpResult<TensorType> {
        match self {
            Op::Conv2d(o) => o.infer(operands),
            Op::Dense(o) => o.infer(operands),
            Op::MatMul(o) => o.infer(operands),
            Op::BatchNorm(o) => o.infer(operands),
            Op::LayerNorm(o) => o.infer(operands),
            Op::Lstm(o) => o.infer(operands),
            Op::Unary(o) => o.infer(operands),
            Op::Binary(o) => o.infer(operands),
            Op::Softmax(o) => o.infer(operands),
            Op::Pool(o) => o.infer(operands),
            Op::GlobalAvgPool(o) => o.infer(operands),
            Op::Flatten(o) => o.infer(operands),
            Op::Reshape(o) => o.infer(operands),
            Op::Transpose(o) => o.infer(operands),
            Op::Concat(o) => o.infer(operands),
            Op::Slice(o) => o.infer(operands),
            Op::Attention(o) => o.infer(operands),
            Op::Fused(o) => o.infer(operands),
            Op::ConvertLayout(o) => o.infer(operands),
            Op::Quantize(o) => o.infer(operands),
            Op::Dequantize(o) => o.infer(operands),
            Op::Requantize(o) => o.infer(operands),
            Op::Cast(o) => o.infer(operands),
        }
    }

    /// Reference semantics: the output for these inputs (already type-checked).
    pub fn eval(&self, inputs: &[&Tensor], out: &TensorType) -> Tensor {
        // Values are logical: a change of memory order leaves them as they are.
        if let Op::ConvertLayout(_) = self {
            return inputs[0].clone();
        }
        match self.traits().codes {
            Codes::Converts => return self.eval_conversion(inputs[0]),
            Codes::Multiplies if inputs[0].dtype() == DType::I8 => return self.eval_int(inputs, out),
            // Codes through ops that only move or select them: exact in f32.
            Codes::Moves if inputs[0].dtype() == DType::I8 => {
                let wide = Tensor::f32(inputs[0].shape().to_vec(), inputs[0].to_f32_vec());
                let v = self.eval(&[&wide], &TensorType::new(DType::F32, out.shape.clone()));
                return Tensor::from_i8(out.shape.clone(), v.to_f32_vec().iter().map(|&x| x as i8).collect()).expect("same shape");
            }
            Codes::Multiplies | Codes::Moves | Codes::Floats => {}
        }
        if let Op::Fused(fused::Fused { anchor: Some(anchor), requantize: Some(rq), .. }) = self {
            let acc = anchor.eval(inputs, &TensorType::new(DType::I32, out.shape.clone()));
            return rq.eval(&acc);
        }
        if let Op::Fused(f) = self {
            let n = f.anchor_operands(inputs.len());
            // The group computes in f32 and rounds once, at the end, to a narrow result dtype.
            let wide = TensorType::new(DType::F32, out.shape.clone());
            let mut data = match &f.anchor {
                Some(anchor) => anchor.eval(&inputs[..n], &wide).as_f32().expect("float result").to_vec(),
                None => inputs[0].as_f32().expect("float operand").to_vec(),
            };
            let extras: Vec<&[f32]> = inputs[n..].iter().map(|t| t.as_f32().expect("float operand")).collect();
            f.apply_steps(&mut data, &extras);
            return Tensor::from_f32(out.dtype, out.shape.clone(), data).expect("shape unchanged");
        }
        let x: Vec<&[f32]> = inputs.iter().map(|t| t.as_f32().expect("type checking admits only float operands")).collect();
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        let data = match self {
            Op::Conv2d(o) => o.eval(&x, &shapes, &out.shape),
            Op::Dense(o) => o.eval(&x, &shapes, &out.shape),
            Op::MatMul(o) => o.eval(&x, &shapes, &out.shape),
            Op::BatchNorm(o) => o.eval(&x, &shapes, &out.shape),
            Op::LayerNorm(o) => o.eval(&x, &shapes, &out.shape),
            Op::Lstm(o) => o.eval(&x, &shapes, &out.shape),
            Op::Unary(o) => o.eval(&x, &shapes, &out.shape),
            Op::Binary(o) => o.eval(&x, &shapes, &out.shape),
            Op::Softmax(o) => o.eval(&x, &shapes, &out.shape),
            Op::Pool(o) => o.eval(&x, &shapes, &out.shape),
            Op::GlobalAvgPool(o) => o.eval(&x, &shapes, &out.shape),
            Op::Flatten(o) => o.eval(&x, &shapes, &out.shape),
            Op::Reshape(o) => o.eval(&x, &shapes, &out.shape),
            Op::Transpose(o) => o.eval(&x, &shapes, &out.shape),
            Op::Concat(o) => o.eval(&x, &shapes, &out.shape),
            Op::Slice(o) => o.eval(&x, &shapes, &out.shape),
            Op::Attention(o) => o.eval(&x, &shapes, &out.shape),
            Op::Cast(o) => o.eval(&x, &shapes, &out.shape),
            Op::Fused(_) | Op::ConvertLayout(_) | Op::Quantize(_) | Op::Dequantize(_) | Op::Requantize(_) => unreachable!("handled above"),
        };
        Tensor::from_f32(out.dtype, out.shape.clone(), data).expect("an op's output matches its inferred shape")
    }

    /// `quantize`, `dequantize` or `requantize` of one tensor.
    fn eval_conversion(&self, x: &Tensor) -> Tensor {
        if let Op::Quantize(q) = self {
            q.eval(x)
        } else if let Op::Dequantize(q) = self {
            q.eval(x)
        } else if let Op::Requantize(q) = self {
            q.eval(x)
        } else {
            unreachable!("`{}` declares Codes::Converts but is no conversion", self.name())
        }
    }

    /// An int8 matrix product: i8 codes, i32 bias, wrapping i32 accumulation.
    fn eval_int(&self, inputs: &[&Tensor], out: &TensorType) -> Tensor {
        let wide: Vec<Vec<std::num::Wrapping<i32>>> = inputs.iter().map(|t| quant::widen(t)).collect();
        let x: Vec<&[std::num::Wrapping<i32>]> = wide.iter().map(|v| v.as_slice()).collect();
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        let acc = match self.product().expect("only matrix products multiply int8 codes") {
            Product::Conv2d(o) => o.eval(&x, &shapes, &out.shape),
            Product::Dense(o) => o.eval_int(&x, &shapes),
            Product::MatMul(o) => o.eval_int(&x, &shapes),
        };
        Tensor::from_i32(out.shape.clone(), acc.into_iter().map(|w| w.0).collect()).expect("an op's output matches its inferred shape")
    }

    /// Canonical attributes, in a fixed order. Building the op again from its operands and
    /// these attributes gives an equal op: that is what makes IR text parse back.
    pub fn attrs(&self) -> Vec<(&'static str, Const)> {
        match self {
            Op::Conv2d(o) => o.attrs(),
            Op::Dense(_) | Op::MatMul(_) | Op::GlobalAvgPool(_) | Op::Flatten(_) => Vec::new(),
            Op::BatchNorm(o) => o.attrs(),
            Op::LayerNorm(o) => o.attrs(),
            Op::Lstm(o) => o.attrs(),
            Op::Unary(o) => o.attrs(),
            Op::Binary(_) => Vec::new(),
            Op::Softmax(o) => o.attrs(),
            Op::Pool(o) => o.attrs(),
            Op::Reshape(o) => o.attrs(),
            Op::Transpose(o) => o.attrs(),
            Op::Concat(o) => o.attrs(),
            Op::Slice(o) => o.attrs(),
            Op::Attention(o) => o.attrs(),
            Op::Fused(o) => o.attrs(),
            Op::ConvertLayout(o) => o.attrs(),
            Op::Quantize(o) => o.attrs(),
            Op::Dequantize(o) => o.attrs(),
            Op::Requantize(o) => o.attrs(),
            Op::Cast(o) => o.attrs(),
        }
    }

    /// Multiply-accumulates performed, the unit of work every report counts.
    pub fn macs(&self, operands: &[&TensorType], out: &TensorType) -> u64 {
        match self {
            Op::Conv2d(o) => o.macs(operands, out),
            Op::Dense(o) => o.macs(operands, out),
            Op::MatMul(o) => o.macs(operands, out),
            Op::Lstm(o) => o.macs(operands, out),
            Op::Attention(o) => o.macs(operands, out),
            Op::Fused(f) => f.anchor.as_ref().map_or(0, |a| a.macs(&operands[..f.anchor_operands(operands.len())], out)),
            Op::BatchNorm(_)
            | Op::LayerNorm(_)
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Softmax(_)
            | Op::Pool(_)
            | Op::GlobalAvgPool(_)
            | Op::Flatten(_)
            | Op::Reshape(_)
            | Op::Transpose(_)
            | Op::Concat(_)
            | Op::Slice(_)
            | Op::ConvertLayout(_)
            | Op::Quantize(_)
            | Op::Dequantize(_)
            | Op::Requantize(_)
            | Op::Cast(_) => 0,
        }
    }

    /// How to draw a random value for the parameter in operand slot `index`, if this op gives
    /// that slot a meaning (a weight, a bias, a statistic).
    pub fn param_init(&self, index: usize, operands: &[&TensorType]) -> Option<Init> {
        match self {
            Op::Conv2d(_) => {
                let w = operands.get(1)?;
                let fan_in = w.shape[1..].iter().product();
                match index {
                    1 => Some(Init::HeNormal { fan_in }),
                    2 => Some(Init::UniformFanIn { fan_in }),
                    _ => None,
                }
            }
            Op::Dense(_) => {
                let fan_in = *operands.get(1)?.shape.get(1)?;
                match index {
                    1 => Some(Init::HeNormal { fan_in }),
                    2 => Some(Init::UniformFanIn { fan_in }),
                    _ => None,
                }
            }
            Op::BatchNorm(_) => [None, Some(Init::BnWeight), Some(Init::BnBias), Some(Init::BnMean), Some(Init::BnVar)].get(index).copied().flatten(),
            Op::LayerNorm(_) => [None, Some(Init::LnWeight), Some(Init::LnBias)].get(index).copied().flatten(),
            Op::Lstm(_) => {
                let hidden = *operands.get(2)?.shape.get(1)?;
                (index >= 1).then_some(Init::UniformFanIn { fan_in: hidden })
            }
            Op::Fused(f) => {
                let n = f.anchor_operands(operands.len());
                f.anchor.as_ref().filter(|_| index < n).and_then(|a| a.param_init(index, &operands[..n]))
            }
            Op::MatMul(_)
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Softmax(_)
            | Op::Pool(_)
            | Op::GlobalAvgPool(_)
            | Op::Flatten(_)
            | Op::Reshape(_)
            | Op::Transpose(_)
            | Op::Concat(_)
            | Op::Slice(_)
            | Op::Attention(_)
            | Op::ConvertLayout(_)
            | Op::Quantize(_)
            | Op::Dequantize(_)
            | Op::Requantize(_)
            | Op::Cast(_) => None,
        }
    }
}

/// A result type, refused if it would exceed the tensor size limit.
pub fn checked_type(op: &str, dtype: DType, shape: Vec<usize>) -> OpResult<TensorType> {
    if checked_numel(&shape, dtype.size_bytes()).is_none() {
        return Err(OpError::new(format!(
            "{op}: the result of shape {} would be larger than the {} GiB tensor limit",
            crate::ir::ShapeDisplay(&shape),
            nnc_runtime::MAX_TENSOR_BYTES >> 30
        )));
    }
    Ok(TensorType::new(dtype, shape))
}

/// All operands must be float tensors of one dtype; returns it.
pub fn common_float(op: &str, operands: &[&TensorType]) -> OpResult<DType> {
    let first = operands[0].dtype;
    for t in operands {
        if !t.dtype.is_float() {
            return Err(OpError::new(format!("{op} works on float tensors, but got a tensor of dtype {}", t.dtype))
                .help("integer tensors come from `--quantize int8`; declare inputs and params as f32"));
        }
        if t.dtype != first {
            return Err(OpError::new(format!("{op}: operands mix {} and {}", first, t.dtype)).help("give all operands the same dtype"));
        }
    }
    Ok(first)
}

/// Float operands of one dtype, or int8 codes: ops that only move or select values
/// (`flatten`, `reshape`, `max_pool`) keep codes as they are.
pub fn float_or_codes(op: &str, operands: &[&TensorType]) -> OpResult<DType> {
    if operands.len() == 1 && operands[0].dtype == DType::I8 {
        return Ok(DType::I8);
    }
    common_float(op, operands)
}

/// Operand `i` must have exactly `shape`.
pub fn expect_shape(op: &str, what: &str, got: &TensorType, shape: &[usize]) -> OpResult<()> {
    if got.shape != shape {
        return Err(OpError::new(format!(
            "{op}: {what} must have shape {}, but has shape {}",
            crate::ir::ShapeDisplay(shape),
            crate::ir::ShapeDisplay(&got.shape)
        )));
    }
    Ok(())
}

/// Resolve a possibly negative axis against a rank.
pub fn normalize_axis(op: &str, axis: i64, rank: usize) -> OpResult<usize> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(OpError::new(format!("{op}: axis {axis} is out of range for a rank-{rank} tensor (valid: {} to {})", -r, r - 1)));
    }
    Ok(if axis < 0 { (axis + r) as usize } else { axis as usize })
}

/// Row-major strides of a shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name of the table builds an op of that name (IR text prints `Op::name` and reads
    /// it back through the table, so the two must agree), and names are unique.
    #[test]
    fn every_name_builds_the_op_of_that_name() {
        let all: Vec<&str> = OP_NAMES.iter().chain(IR_ONLY_OP_NAMES).copied().collect();
        let unique: std::collections::BTreeSet<&str> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len(), "a name is listed twice");
        // Every source op, then the IR-only ones that passes make (fusion and layouts for the
        // CPU, quantization), printed and read back.
        let source = "model all {
            input x: f32[1, 4, 6, 6]
            input s: f32[3, 1, 4]
            a = conv2d(x, filters=4, kernel=3, padding=1)
            b = relu6(relu(batch_norm(a)))
            c = max_pool(avg_pool(b, kernel=1), kernel=2)
            d = add(sub(mul(div(c, 2.0), c), c), neg(abs(sqrt(exp(c)))))
            e = clip(leaky_relu(silu(gelu(tanh(sigmoid(d))))), min=-1, max=1)
            f = global_avg_pool(e)
            g = reshape(flatten(f), [1, 4])
            h0 = dense(g, units=4)
            h1 = dense(relu(h0), units=4)
            h = layer_norm(h1)
            i = softmax(transpose(matmul(h, transpose(h)), perm=[1, 0]))
            j = concat(i, slice(i, axis=1, start=0, end=1), axis=1)
            k = attention(s, s, s)
            output y = j
            output z = lstm(k, hidden=2)
        }";
        let graph = crate::driver::build_graph(&crate::driver::Source::from_string("all.nn", source), None, &Default::default()).expect("compiles");
        let mut bound = graph.clone();
        crate::weights::bind_weights(&mut bound, crate::weights::random_weights(&graph, 1), "random").expect("binds");
        let mut float = bound.clone();
        let target = crate::target::CpuTarget::reference();
        crate::passes::optimize(&mut float, 2, Some(&target), true, &mut |_, _| {}).expect("optimizes");
        let mut int8 = bound.clone();
        let calibration = crate::passes::Calibration::new(vec![crate::testing::differential::random_inputs(&bound, 1)]);
        crate::passes::optimize_with(&mut int8, 2, &crate::passes::PassContext { cpu: None, quantize: Some(&calibration), bf16: false, prune: None }, true, &mut |_, _| {}).expect("quantizes");
        // At -O1 nothing fuses the requantizes into their products.
        let mut int8_unfused = bound.clone();
        crate::passes::optimize_with(&mut int8_unfused, 1, &crate::passes::PassContext { cpu: None, quantize: Some(&calibration), bf16: false, prune: None }, true, &mut |_, _| {}).expect("quantizes");
        let mut bf16 = bound.clone();
        crate::passes::optimize_with(&mut bf16, 2, &crate::passes::PassContext { cpu: Some(&target), quantize: None, bf16: true, prune: None }, true, &mut |_, _| {}).expect("mixed precision");
        let irs: Vec<String> = [&graph, &float, &int8, &int8_unfused, &bf16].iter().map(|g| crate::ir::print::print_graph(g)).collect();
        for name in &all {
            assert!(irs.iter().any(|ir| ir.contains(&format!(" = {name}("))), "no `{name}` in\n{}", irs.join("\n"));
        }
        // Weights print abbreviated, so only the unbound graph reads back.
        let back = crate::ir::parse::parse_graph(&irs[0]).expect("parses");
        assert_eq!(crate::ir::print::print_graph(&back), irs[0]);
        for g in [&graph, &float, &int8, &int8_unfused, &bf16] {
            for id in g.node_ids() {
                if let Some(op) = g.node(id).op() {
                    assert!(all.contains(&op.name()), "`{}` is not in the op table", op.name());
                }
            }
        }
        assert_eq!(positional_attrs("reshape"), &["shape"]);
        assert!(positional_attrs("fused").is_empty());
    }

    /// A fused op's steps are spelled as the ops they come from (plus `rsub`, `rdiv`), found
    /// through the op table: every attribute-free unary op and the four arithmetic ops.
    #[test]
    fn fused_steps_are_named_as_their_ops() {
        let steps: Vec<&str> = OP_NAMES.iter().copied().filter(|n| fused::Step::from_name(n).is_some()).collect();
        for name in &steps {
            assert_eq!(fused::Step::from_name(name).unwrap().name(), *name);
        }
        assert_eq!(steps, ["relu", "relu6", "sigmoid", "tanh", "gelu", "silu", "exp", "sqrt", "abs", "neg", "add", "sub", "mul", "div"]);
        assert_eq!(fused::Step::from_name("rsub").unwrap().name(), "rsub");
        assert!(fused::Step::from_name("leaky_relu").is_none() && fused::Step::from_name("conv2d").is_none());
    }
}
