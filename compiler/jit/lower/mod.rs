//! Op → Cranelift lowering: one kernel function per op node, chosen by the node's kernel
//! plan (`crate::kernel_plan`), with every shape, stride and offset baked in as constants.
//! Loops run over exactly the elements of the verified shapes, so every access is in bounds
//! by construction (docs/testing.md says why, kernel by kernel). Inner loops over contiguous
//! memory use `f32x4` with a scalar remainder.
//!
//! One module per op family; this one dispatches on the op and the planned kernel.

pub mod attention;
pub mod channels;
pub mod conv;
pub mod dense;
pub mod elementwise;
pub mod int8;
pub mod int8_depthwise;
pub mod lstm;
pub mod movement;
pub mod norm;
pub mod pool;
pub mod sparse;
pub mod window;

use super::builder::KernelBuilder;
use super::memplan::Loc;
use crate::kernel_plan::{Kernel, KernelPlan, Prepack};
use crate::ops::{Op, Product};
use super::epilogue::{apply_in_place, Arg, Epilogue};

/// Emit the body of the kernel that `plan` chose for `op`.
pub fn lower(k: &mut KernelBuilder, plan: &KernelPlan, op: &Op, args: &[Arg], out: Arg, scratch: Option<Loc>) {
    let kernel = plan.kernel;
    if kernel == Kernel::Reference {
        if plan.prepack == Prepack::ReferenceNode {
            // The node's description is its one prepacked buffer (`jit::compile`).
            return super::reference::emit(k, k.prepacked[0]);
        }
        return super::reference::emit_runtime(k, op, args, out);
    }
    match op {
        Op::Fused(crate::ops::fused::Fused { anchor: Some(anchor), requantize: Some(rq), .. }) => int8::product_requantized(k, kernel, anchor, rq, args, out, scratch),
        Op::Fused(f) => {
            let n = f.anchor_operands(args.len());
            match &f.anchor {
                Some(anchor) => {
                    let epi = Epilogue::new(k, &f.steps, &args[n..], out.ty);
                    product(k, plan, anchor, &args[..n], out, scratch, &epi);
                }
                None => elementwise::apply_steps(k, f, args[0], &args[1..], out),
            }
        }
        Op::Conv2d(_) | Op::Dense(_) | Op::MatMul(_) => product(k, plan, &op.product().expect("a matrix product"), args, out, scratch, &Epilogue::none()),
        Op::Unary(u) => elementwise::unary(k, u, args, out),
        // The executable rounds a narrowed result after the kernel (`jit::compile`).
        Op::Cast(_) => elementwise::copy(k, args[0], out),
        Op::Binary(b) => elementwise::binary(k, b, args, out),
        Op::BatchNorm(bn) => norm::batch_norm(k, bn, args, out),
        Op::LayerNorm(ln) => norm::layer_norm(k, ln, args, out),
        Op::Softmax(s) => norm::softmax(k, s, args, out),
        Op::Lstm(l) => {
            let weights = match (plan.prepack, &k.prepacked[..]) {
                (Prepack::LstmWeights, &[wih, whh, bias]) => lstm::Weights::Packed([wih, whh, bias]),
                _ => lstm::Weights::Operands,
            };
            lstm::lstm(k, l.hidden, args, out, scratch.expect("lstm scratch is planned"), weights);
        }
        Op::Pool(p) => match kernel {
            Kernel::ChannelVector => channels::pool(k, p, args, out),
            // Max pooling carries int8 codes (`Codes::Moves`).
            _ if int8::is_integer(args[0].ty) => pool::max_pool_int8(k, p, args, out),
            _ => pool::pool(k, p, args, out),
        },
        Op::GlobalAvgPool(_) => match kernel {
            Kernel::ChannelVector => channels::global_avg_pool(k, args, out),
            _ => pool::global_avg_pool(k, args, out),
        },
        Op::ConvertLayout(_) => channels::convert_layout(k, args[0], out),
        Op::Transpose(t) => movement::transpose(k, t, args, out),
        Op::Concat(c) => movement::concat(k, c, args, out),
        Op::Slice(s) => movement::slice(k, s, args, out),
        Op::Attention(a) => match kernel {
            Kernel::Gemm => attention::attention_runtime(k, a, args, out, false),
            _ => attention::attention(k, a, args, out),
        },
        Op::Quantize(q) => int8::quantize(k, q.scale, args, out),
        Op::Dequantize(d) => int8::dequantize(k, &d.scales, args, out),
        Op::Requantize(r) => int8::requantize(k, &r.scales, r.out_scale, r.activation, args, out),
        Op::Flatten(_) | Op::Reshape(_) => unreachable!("views have no kernel"),
    }
}

/// A matrix product (the anchor of a fused op, or alone), with `epi` applied to its result:
/// inside the runtime GEMM's tile stores where it can, else in a pass after the product.
pub(crate) fn product(k: &mut KernelBuilder, plan: &KernelPlan, product: &Product, args: &[Arg], out: Arg, scratch: Option<Loc>, epi: &Epilogue) {
    match (product, plan.kernel) {
        (Product::Conv2d(c), Kernel::Gemm) => conv::conv2d_gemm(k, c, args, out, scratch, epi),
        (Product::Conv2d(c), Kernel::Direct) => {
            conv::conv2d(k, c, args, out);
            apply_in_place(k, out, epi);
        }
        (Product::Conv2d(c), Kernel::DepthwiseUnrolled) => {
            conv::conv2d_depthwise(k, c, args, out);
            apply_in_place(k, out, epi);
        }
        (Product::Conv2d(c), kernel @ (Kernel::VectorDepthwise | Kernel::NhwcGemm | Kernel::Nchw4cBlocked | Kernel::VectorDirect)) => channels::conv2d(k, kernel, c, args, out, epi),
        (Product::Dense(_), Kernel::Gemm) => dense::dense_gemm(k, args, out, epi),
        (Product::Conv2d(c), Kernel::Sparse) => sparse::conv2d(k, c, args, out, scratch, epi),
        (Product::Conv2d(c), kernel @ (Kernel::Winograd | Kernel::WinogradF2)) => conv::conv2d_winograd(k, kernel, c, args, out, scratch, epi),
        (Product::Conv2d(c), Kernel::DirectRows) => conv::conv2d_direct_rows(k, c, args, out, epi),
        (Product::Dense(_), Kernel::Sparse) => sparse::dense(k, args, out, scratch, epi),
        (Product::Dense(_), Kernel::Dot) if k.runtime.is_some() => dense::dense_gemv(k, args, out, epi),
        (Product::Dense(_), Kernel::Dot) => {
            dense::dense(k, args, out);
            apply_in_place(k, out, epi);
        }
        (Product::MatMul(_), Kernel::Gemm) => dense::matmul_gemm(k, args, out, epi),
        (p, Kernel::Int8Gemm) => int8::gemm(k, p, args, out, scratch),
        (Product::Conv2d(c), Kernel::Int8Depthwise) if k.runtime.is_some() => int8_depthwise::runtime(k, c, args, out, None),
        (Product::Conv2d(c), Kernel::Int8Depthwise) => int8_depthwise::depthwise(k, c, args, out),
        (Product::Conv2d(c), Kernel::Int8Dot) => int8::conv2d(k, c, args, out),
        (Product::Dense(_), Kernel::Int8Dot) => int8::dense(k, args, out),
        (Product::MatMul(_), Kernel::Int8Dot) => int8::matmul(k, args, out),
        (Product::MatMul(_), Kernel::RegisterTiles) => {
            dense::matmul(k, args, out, scratch.expect("matmul panel scratch is planned"));
            apply_in_place(k, out, epi);
        }
        (p, kernel) => unreachable!("`{kernel}` is not a kernel for {} (KernelPlan::new admits only available ones)", p.name()),
    }
}
