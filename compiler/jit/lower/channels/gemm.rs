//! Dense channel-vector convolutions without a window engine: NHWC through the runtime GEMM
//! (patches gathered while packing, weights packed at compile time), and scalar direct loops
//! for what no other kernel covers.

use crate::jit::builder::{GemmOperand, KernelBuilder, F32};
use crate::jit::epilogue::{apply_in_place, Epilogue};
use crate::jit::epilogue::Arg;
use cranelift_codegen::ir::InstBuilder;
use super::addressing::{shape4, Channels};
use crate::jit::lower::conv::conv_weight_index;
use crate::kernel_plan::conv_is_pointwise;
use crate::ops::Conv2d;

/// A dense NHWC convolution as one matrix product per image:
/// `out[P, F] = patches[P, kh·kw·C] · W[kh·kw·C, F]` (P = output pixels), with W packed at
/// compile time, the patches gathered from the image while the GEMM packs them (never
/// stored), and the bias (one per column) and `epi` applied by the GEMM. A 1×1, stride-1,
/// unpadded convolution multiplies the input itself.
pub(crate) fn gemm(k: &mut KernelBuilder, c: &Conv2d, args: &[Arg], out: Arg, packed_w: crate::jit::builder::DataAddr, epi: &Epilogue) {
    let [n, ch, h, w] = shape4(args[0].ty);
    let ws = &args[1].ty.shape;
    let [m, f, kk] = [out.ty.shape[2] * out.ty.shape[3], ws[0], ws[1] * ws[2] * ws[3]].map(|v| v as i64);
    let [_, _, kh, kw] = shape4(args[1].ty);
    let ow = out.ty.shape[3] as i64;
    let pointwise = conv_is_pointwise(c, &[args[0].ty, args[1].ty]);
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    let mut steps_left = false;
    k.for_const(0, n, |k, b| {
        let img_off = k.b.ins().imul_imm_s(b, h * w * ch);
        let img = k.elem(x, img_off);
        let out_off = k.b.ins().imul_imm_s(b, m * f);
        let oimg = k.elem(o, out_off);
        let (tail, left) = epi.gemm_tail(k, bias, false, out_off);
        steps_left = left;
        let wp = k.data_addr(packed_w);
        if pointwise {
            k.gemm([m, f, kk], GemmOperand::Strided(img, ch, 1), GemmOperand::Packed(wp), (oimg, f, 1), false, &tail);
        } else {
            let i = |v: usize| v as i64;
            k.conv_nhwc([m, f], img, [ch, h, w], [kh, kw], c.stride.map(i), c.dilation.map(i), [i(c.padding[0]), i(c.padding[1])], ow, wp, (oimg, f, 1), &tail);
        }
    });
    if steps_left {
        apply_in_place(k, out, epi);
    }
}

/// Any convolution the layout rule admits, in any layout, with scalar loops: each output sums
/// its filter's taps over the channels of its group, padded taps masked to zero.
pub(crate) fn direct(k: &mut KernelBuilder, c: &Conv2d, args: &[Arg], out: Arg, epi: &Epilogue) {
    let [n, _, h, w] = shape4(args[0].ty);
    let [f, cg, kh, kw] = shape4(args[1].ty);
    let [_, _, oh, ow] = shape4(out.ty);
    let (inp, outp) = (Channels::of(args[0].ty), Channels::of(out.ty));
    let fg = f / c.groups as i64;
    let [sh, sw] = c.stride.map(|v| v as i64);
    let [dh, dw] = c.dilation.map(|v| v as i64);
    let (pt, pl) = (c.padding[0] as i64, c.padding[1] as i64);
    let (x, wt, o) = (k.ptr(args[0].loc), k.ptr(args[1].loc), k.ptr(out.loc));
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    k.for_const(0, n, |k, b| {
        let img_off = k.b.ins().imul_imm_s(b, inp.image);
        let img = k.elem(x, img_off);
        let out_img = k.b.ins().imul_imm_s(b, outp.image);
        k.for_const(0, oh * ow, |k, pix| {
            let ox = k.b.ins().srem_imm_s(pix, ow);
            let oy = k.b.ins().sdiv_imm_s(pix, ow);
            let iy0 = k.b.ins().imul_imm_s(oy, sh);
            let iy0 = k.b.ins().iadd_imm_s(iy0, -pt);
            let ix0 = k.b.ins().imul_imm_s(ox, sw);
            let ix0 = k.b.ins().iadd_imm_s(ix0, -pl);
            k.for_const(0, f, |k, oc| {
                let init = match bias {
                    Some(bp) => k.load(F32, bp, oc),
                    None => k.c(F32, 0.0),
                };
                let acc = k.var(F32, init);
                let group = k.b.ins().sdiv_imm_s(oc, fg);
                let ch0 = k.b.ins().imul_imm_s(group, cg);
                k.for_const(0, kh, |k, ky| {
                    let kyd = k.b.ins().imul_imm_s(ky, dh);
                    let iy = k.b.ins().iadd(iy0, kyd);
                    let (y_in, iyc) = k.clamp_index(iy, h - 1);
                    k.for_const(0, kw, |k, kx| {
                        let kxd = k.b.ins().imul_imm_s(kx, dw);
                        let ix = k.b.ins().iadd(ix0, kxd);
                        let (x_in, ixc) = k.clamp_index(ix, w - 1);
                        let inside = k.b.ins().band(y_in, x_in);
                        let pixel = k.b.ins().imul_imm_s(iyc, w);
                        let pixel = k.b.ins().iadd(pixel, ixc);
                        let pixel = k.b.ins().imul_imm_s(pixel, inp.ps);
                        k.for_const(0, cg, |k, ci| {
                            let chan = k.b.ins().iadd(ch0, ci);
                            let chan = inp.scalar(k, chan);
                            let xi = k.b.ins().iadd(pixel, chan);
                            let xv = k.load(F32, img, xi);
                            let zero = k.c(F32, 0.0);
                            let xv = k.b.ins().select(inside, xv, zero);
                            let wi = conv_weight_index(k, [oc, ci, ky, kx], [cg, kh, kw]);
                            let wv = k.load(F32, wt, wi);
                            let cur = k.b.use_var(acc);
                            let next = k.fma(wv, xv, cur);
                            k.b.def_var(acc, next);
                        });
                    });
                });
                let out_pix = k.b.ins().imul_imm_s(pix, outp.ps);
                let chan = outp.scalar(k, oc);
                let oi = k.b.ins().iadd(out_pix, chan);
                let oi = k.b.ins().iadd(oi, out_img);
                let v = k.b.use_var(acc);
                let v = epi.apply(k, F32, v, oi);
                k.store(v, o, oi);
            });
        });
    });
}
