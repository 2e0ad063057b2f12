//! Products with pruned weights through the runtime's sparse kernels
//! (`nnc_runtime::gemm::sparse`): the weights were compressed at compile time
//! (`Prepack::SparseRows`), so only their nonzeros are multiplied.

use crate::ir::TensorType;
use crate::jit::builder::KernelBuilder;
use crate::jit::epilogue::{apply_in_place, numel, Arg, Epilogue};
use crate::jit::memplan::Loc;
use crate::kernel_plan::conv_is_pointwise;
use crate::ops::Conv2d;
use cranelift_codegen::ir::InstBuilder;

/// An ungrouped row-major convolution, image by image: `out[F, P] = W[F, K] · patches[K, P]`
/// with the patches unfolded into `scratch` (or the input planes themselves when pointwise);
/// bias, residual and activation in the runtime's epilogue where it can take them.
pub(crate) fn conv2d(k: &mut KernelBuilder, c: &Conv2d, args: &[Arg], out: Arg, scratch: Option<Loc>, epi: &Epilogue) {
    let [n, ch, h, w] = dims(args[0].ty);
    let [f, cg, kh, kw] = dims(args[1].ty);
    debug_assert_eq!(c.groups, 1, "the plan gives only ungrouped convolutions the sparse kernel");
    let (oh, ow) = (out.ty.shape[2] as i64, out.ty.shape[3] as i64);
    let p = oh * ow;
    let pointwise = conv_is_pointwise(c, &[args[0].ty, args[1].ty]);
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    let col = scratch.map(|s| k.ptr(s));
    let weights = k.prepacked[0];
    let mut steps_left = false;
    k.for_const(0, n, |k, b| {
        let img_off = k.b.ins().imul_imm_s(b, ch * h * w);
        let img = k.elem(x, img_off);
        let patches = if pointwise {
            img
        } else {
            let col = col.expect("im2col scratch is planned");
            let i = |v: usize| v as i64;
            k.im2col(img, [cg, h, w], [kh, kw], c.stride.map(i), c.dilation.map(i), [i(c.padding[0]), i(c.padding[1])], [oh, ow], col);
            col
        };
        let c_off = k.b.ins().imul_imm_s(b, f * p);
        let og = k.elem(o, c_off);
        let (tail, left) = epi.gemm_tail(k, bias, true, c_off);
        steps_left = left;
        let a = k.data_addr(weights);
        k.sparse_gemm([f, cg * kh * kw, p], a, (patches, p, 1), (og, p, 1), None, &tail);
    });
    if steps_left {
        apply_in_place(k, out, epi);
    }
}

/// `out[rows, units] = x[rows, features] · Wᵀ + bias`, computed as its transpose
/// `outᵀ = W · xᵀ` so that the sparse weights are A: the runtime reads x and writes out
/// through transposed strides (gathering, or transposing through `scratch`).
pub(crate) fn dense(k: &mut KernelBuilder, args: &[Arg], out: Arg, scratch: Option<Loc>, epi: &Epilogue) {
    let (units, features) = (args[1].ty.shape[0] as i64, args[1].ty.shape[1] as i64);
    let rows = numel(args[0].ty) / features;
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    let zero = k.int(0);
    let (tail, steps_left) = epi.gemm_tail(k, bias, true, zero);
    let a = k.data_addr(k.prepacked[0]);
    let scratch = scratch.map(|s| k.ptr(s));
    k.sparse_gemm([units, features, rows], a, (x, 1, features), (o, 1, units), scratch, &tail);
    if steps_left {
        apply_in_place(k, out, epi);
    }
}

fn dims(t: &TensorType) -> [i64; 4] {
    t.shape[..].try_into().map(|a: [usize; 4]| a.map(|v| v as i64)).expect("rank checked")
}
