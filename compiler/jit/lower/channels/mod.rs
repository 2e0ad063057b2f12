//! Kernels for the layouts that keep channels side by side, so that `f32x4` vectors run along
//! channels: channels-last (NHWC) and blocked NCHW4c (`[N, C/4, H, W, 4]`). Convolutions,
//! pooling, global average pooling and the `convert_layout` ops that `select-layouts` inserts.
//!
//! In both layouts a vector of four channels starting at channel `c` (any channel in NHWC, a
//! multiple of four in NCHW4c) of pixel `p` is the four floats at element `c·cs + p·ps` of the
//! image (`Channels`), so one kernel serves both:
//! - a depthwise convolution is vector multiply-adds with no shuffles or strided access
//!   ([`windowed`]);
//! - with microkernels, a dense NHWC convolution is a matrix product `out[pixels, filters] =
//!   patches[pixels, taps·C] · W[taps·C, filters]` whose patches are runs of C floats,
//!   gathered by the GEMM as it packs them ([`gemm`]);
//! - without them, a dense NCHW4c convolution keeps four filters in each vector and
//!   broadcasts one input channel at a time over a row of output pixels, the
//!   register-blocked direct convolution of Cranelift-only code ([`windowed`]).
//!
//! Weights stay row-major in the IR; `jit::prepack` repacks constant ones at compile time into
//! the order these kernels read. The kernel plan chooses among them; what none covers takes
//! the scalar direct kernel ([`gemm::direct`]).

pub mod addressing;
pub mod gemm;
pub mod windowed;

use addressing::{shape4, Channels};
use crate::ir::Layout;

use crate::jit::builder::{KernelBuilder, F32};
use crate::jit::epilogue::Arg;
use cranelift_codegen::ir::{InstBuilder, Value};




/// Max or average pooling in a channel-vector layout: NHWC f32 through the runtime's kernel
/// at the CPU's full vector width (`nnc_pool`, this task's share of the output rows) when
/// microkernels are on, otherwise generated `f32x4` windows.
pub fn pool(k: &mut KernelBuilder, p: &crate::ops::Pool, args: &[Arg], out: Arg) {
    let x = args[0];
    let nhwc_f32 = |ty: &crate::ir::TensorType| ty.layout == Layout::Nhwc && ty.dtype == nnc_runtime::DType::F32;
    if k.runtime.is_none() || !nhwc_f32(x.ty) || !nhwc_f32(out.ty) {
        return windowed::pool(k, p, args, out);
    }
    let [n, c, h, w] = shape4(x.ty);
    let [_, _, oh, ow] = shape4(out.ty);
    let (xp, o) = (k.ptr(x.loc), k.ptr(out.loc));
    let rows = k.split(0, n * oh, 1);
    let i = |v: usize| v as i64;
    k.pool_nhwc([n, c, h, w], [oh, ow], p.kernel.map(i), p.stride.map(i), [i(p.padding[0]), i(p.padding[1])], xp, o, rows, p.kind == crate::ops::PoolKind::Max);
}

/// Global average pooling of an input in a channel-vector layout: each image's pixels summed
/// as vectors along channels into the result row, then scaled. The result `[N, C, 1, 1]` is
/// row-major. NHWC f32 with microkernels on goes through the runtime's pooling (`nnc_pool`)
/// with the whole image as its window, at full vector width with the sums in registers (the
/// loop below keeps them in memory: a load, an add and a store per pixel and vector, 13.5 µs
/// for MobileNetV2's 7²×1280); both sum the pixels in order from zero and multiply by
/// `1/(h·w)`, so the bits are the same. The result `[N, C]` is the NHWC `[N, 1, 1, C]`.
pub fn global_avg_pool(k: &mut KernelBuilder, args: &[Arg], out: Arg) {
    let [n, ch, h, w] = shape4(args[0].ty);
    if k.runtime.is_some() && args[0].ty.layout == Layout::Nhwc && args[0].ty.dtype == nnc_runtime::DType::F32 {
        let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
        let rows = (k.int(0), k.int(n));
        k.pool_nhwc([n, ch, h, w], [1, 1], [h, w], [1, 1], [0, 0], x, o, rows, false);
        return;
    }
    let inp = Channels::of(args[0].ty);
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    let inv = 1.0 / (h * w) as f32;
    k.for_const(0, n, |k, b| {
        let row_off = k.b.ins().imul_imm_s(b, ch);
        let row = k.elem(o, row_off);
        k.for_vectorized(ch, |k, i, ty| {
            let z = k.c(ty, 0.0);
            k.store(z, row, i);
        });
        let img_off = k.b.ins().imul_imm_s(b, inp.image);
        let img = k.elem(x, img_off);
        k.for_const(0, h * w, |k, p| {
            let pix_off = k.b.ins().imul_imm_s(p, inp.ps);
            let pix = k.elem(img, pix_off);
            k.for_vectorized(ch, |k, i, ty| {
                let c_off = k.b.ins().imul_imm_s(i, inp.cs);
                let v = k.load(ty, pix, c_off);
                let cur = k.load(ty, row, i);
                let s = k.b.ins().fadd(cur, v);
                k.store(s, row, i);
            });
        });
        k.for_vectorized(ch, |k, i, ty| {
            let v = k.load(ty, row, i);
            let s = k.c(ty, inv);
            let r = k.b.ins().fmul(v, s);
            k.store(r, row, i);
        });
    });
}

/// A change of memory order between any two layouts: every element copied from its place in
/// one to its place in the other. The pixels go in blocks small enough that the block's
/// lines of both source and destination stay in L1 while every channel is copied, so neither
/// side's strided accesses miss.
pub fn convert_layout(k: &mut KernelBuilder, arg: Arg, out: Arg) {
    const BLOCK: i64 = 32;
    let [n, ch, h, w] = shape4(arg.ty);
    let hw = h * w;
    let (src, dst) = (Channels::of(arg.ty), Channels::of(out.ty));
    let (x, o) = (k.ptr(arg.loc), k.ptr(out.loc));
    // An RGB image into NHWC (every CNN's first conversion): the runtime moves sixteen pixels
    // per step instead of one float. Shares are multiples of 16 pixels.
    let f32s = arg.ty.dtype == nnc_runtime::DType::F32 && out.ty.dtype == nnc_runtime::DType::F32;
    if k.runtime.is_some() && f32s && ch == 3 && arg.ty.layout == Layout::RowMajor && out.ty.layout == Layout::Nhwc {
        let pixels = k.split(0, n * hw, 16);
        k.rgb_to_pixels(n, hw, x, o, pixels);
        return;
    }
    let copy_block = |k: &mut KernelBuilder, xi: Value, oi: Value, p0: Value, len: i64| {
        k.for_const(0, ch, |k, c| {
            let (s0, d0) = (src.scalar(k, c), dst.scalar(k, c));
            let sp = k.b.ins().imul_imm_s(p0, src.ps);
            let sp = k.b.ins().iadd(sp, s0);
            let dp = k.b.ins().imul_imm_s(p0, dst.ps);
            let dp = k.b.ins().iadd(dp, d0);
            let (sp, dp) = (k.elem(xi, sp), k.elem(oi, dp));
            for p in 0..len {
                let v = k.load_at(F32, sp, p * src.ps);
                k.store_at(v, dp, p * dst.ps);
            }
        });
    };
    // Blocks of pixels over all images (a split kernel takes a share of them); each image's
    // last block may be short.
    let per_image = (hw + BLOCK - 1) / BLOCK;
    let (lo, hi) = k.split(0, n * per_image, 1);
    k.for_range(lo, hi, 1, |k, unit| {
        let b = k.b.ins().udiv_imm_s(unit, per_image);
        let blk = k.b.ins().urem_imm_s(unit, per_image);
        let img_off = k.b.ins().imul_imm_s(b, ch * hw);
        let (xi, oi) = (k.elem(x, img_off), k.elem(o, img_off));
        let p0 = k.b.ins().imul_imm_s(blk, BLOCK);
        if hw % BLOCK == 0 {
            copy_block(k, xi, oi, p0, BLOCK);
        } else {
            let short = k.b.ins().icmp_imm_s(cranelift_codegen::ir::condcodes::IntCC::Equal, blk, per_image - 1);
            k.if_else(short, |k| copy_block(k, xi, oi, p0, hw % BLOCK), |k| copy_block(k, xi, oi, p0, BLOCK));
        }
    });
}

/// A convolution in a channel-vector layout by the planned `kernel`, with `epi` applied to
/// each result on its way to memory. Packed weights (`k.prepacked`) are there exactly when
/// the plan asked for them (`Prepack::ChannelWeights`).
pub fn conv2d(k: &mut KernelBuilder, kernel: crate::kernel_plan::Kernel, c: &crate::ops::Conv2d, args: &[Arg], out: Arg, epi: &crate::jit::epilogue::Epilogue) {
    use crate::kernel_plan::Kernel;
    use windowed::{WeightSource, Window, Windowed};
    let packed = k.prepacked.first().copied();
    let win = Window { kernel: [args[1].ty.shape[2] as i64, args[1].ty.shape[3] as i64], stride: c.stride.map(|v| v as i64), dilation: c.dilation.map(|v| v as i64), padding: [c.padding[0] as i64, c.padding[1] as i64] };
    let weights = |k: &mut KernelBuilder| match packed {
        Some(addr) => WeightSource::Packed(k.data_addr(addr)),
        None => WeightSource::Rows(k.ptr(args[1].loc)),
    };
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    match kernel {
        Kernel::VectorDepthwise => match packed {
            // The runtime's kernel runs at the CPU's full vector width; it takes NHWC with
            // weights packed tap-major, and an epilogue it can apply itself (a task must not
            // leave steps for a pass over the whole result).
            Some(addr) if k.runtime.is_some() && args[0].ty.layout == Layout::Nhwc && out.ty.layout == Layout::Nhwc && epi.runtime_form().is_some() => {
                depthwise_nhwc(k, win, args[0], out, addr, bias, epi);
            }
            _ => {
                let w = weights(k);
                windowed::windowed(k, win, args[0], out, &Windowed::Depthwise { weights: w, bias }, epi);
            }
        },
        Kernel::Nchw4cBlocked => {
            let w = weights(k);
            windowed::windowed(k, win, args[0], out, &Windowed::Blocked { weights: w, bias, filters: args[1].ty.shape[0] as i64 }, epi);
        }
        Kernel::NhwcGemm => {
            gemm::gemm(k, c, args, out, packed.expect("nhwc-gemm weights are packed"), epi);
        }
        _ => gemm::direct(k, c, args, out, epi),
    }
}

/// A depthwise convolution of NHWC values through the runtime's kernel (`nnc_depthwise`),
/// this task's share of the output rows (all of them on one thread).
fn depthwise_nhwc(k: &mut KernelBuilder, win: windowed::Window, x: Arg, out: Arg, weights: crate::jit::builder::DataAddr, bias: Option<cranelift_codegen::ir::Value>, epi: &crate::jit::epilogue::Epilogue) {
    let [n, c, h, w] = addressing::shape4(x.ty);
    let [_, _, oh, ow] = addressing::shape4(out.ty);
    let (xp, o) = (k.ptr(x.loc), k.ptr(out.loc));
    let zero = k.int(0);
    let (tail, left) = epi.gemm_tail(k, bias, false, zero);
    debug_assert!(!left, "only epilogues the runtime applies come here");
    let wp = k.data_addr(weights);
    let rows = k.split(0, n * oh, 1);
    k.depthwise_nhwc([n, c, h, w], [oh, ow], win.kernel, win.stride, win.dilation, win.padding, xp, wp, o, rows, &tail);
}

/// One convolution of a fused pair: its op (a convolution, alone or with one activation), its
/// operands (input, weights, bias), its result and its packed weights.
pub(crate) struct FusedConv<'a> {
    pub op: &'a crate::ops::Op,
    pub args: &'a [Arg<'a>],
    pub out: Arg<'a>,
    pub packed: crate::jit::builder::DataAddr,
}

impl FusedConv<'_> {
    fn conv_and_steps(&self) -> (&crate::ops::Conv2d, &[crate::ops::fused::Step]) {
        match self.op {
            crate::ops::Op::Conv2d(c) => (c, &[]),
            crate::ops::Op::Fused(crate::ops::fused::Fused { anchor: Some(crate::ops::Product::Conv2d(c)), steps, .. }) => (c, steps),
            _ => unreachable!("kernel_plan::fused_producers pairs convolutions only"),
        }
    }

    /// The bias and activation as a runtime tail (`fused_producers` admits no other step).
    fn tail(&self, k: &mut KernelBuilder) -> crate::jit::builder::GemmTail {
        let (_, steps) = self.conv_and_steps();
        let epi = crate::jit::epilogue::Epilogue::new(k, steps, &[], self.out.ty);
        let bias = self.args.get(2).map(|b| k.ptr(b.loc));
        let zero = k.int(0);
        let (tail, left) = epi.gemm_tail(k, bias, false, zero);
        debug_assert!(!left, "fused_producers admits only epilogues the runtime applies");
        tail
    }
}

/// An NHWC convolution through the GEMM (`producer`) and the NHWC depthwise convolution it
/// feeds (`depthwise`), in one runtime call (`nnc_conv_depthwise`, see
/// `kernel_plan::fused_producers`): the producer's buffer holds only the ring of rows the
/// windows need (`ring_floats` of room). `k.tile` is the producer's blocking, which its
/// packed weights follow.
pub(crate) fn conv_depthwise(k: &mut KernelBuilder, producer: &FusedConv, depthwise: &FusedConv, ring_floats: usize) {
    let (pconv, _) = producer.conv_and_steps();
    let (dconv, _) = depthwise.conv_and_steps();
    let i = |v: usize| v as i64;
    let [_, cin, h, w] = addressing::shape4(producer.args[0].ty);
    let wshape = &producer.args[1].ty.shape;
    let dims = addressing::shape4(producer.out.ty);
    let [_, _, oh, ow] = addressing::shape4(depthwise.out.ty);
    let window = [depthwise.args[1].ty.shape[2] as i64, depthwise.args[1].ty.shape[3] as i64];
    let (e_tail, d_tail) = (producer.tail(k), depthwise.tail(k));
    let (x, ring, out) = (k.ptr(producer.args[0].loc), k.ptr(producer.out.loc), k.ptr(depthwise.out.loc));
    let (packed_b, weights) = (k.data_addr(producer.packed), k.data_addr(depthwise.packed));
    let conv = crate::jit::runtime_calls::ProducerConv {
        input: x,
        chw: [cin, h, w],
        window: [i(wshape[2]), i(wshape[3])],
        stride: pconv.stride.map(i),
        dilation: pconv.dilation.map(i),
        pad: [i(pconv.padding[0]), i(pconv.padding[1])],
        packed_b,
    };
    k.conv_depthwise(conv, &e_tail, (ring, ring_floats as i64), dims, [oh, ow], window, dconv.stride.map(i), dconv.dilation.map(i), [i(dconv.padding[0]), i(dconv.padding[1])], weights, out, &d_tail);
}
