//! Kernels for the layouts that keep channels side by side, so that `f32x4` vectors run along
//! channels: channels-last (NHWC) and blocked NCHW4c (`[N, C/4, H, W, 4]`). Convolutions,
//! global average pooling and the `convert_layout` ops that `select-layouts` inserts.
//!
//! In both layouts a vector of four channels starting at channel `c` (any channel in NHWC, a
//! multiple of four in NCHW4c) of pixel `p` is the four floats at element `c·cs + p·ps` of the
//! image (`Channels`), so one kernel serves both:
//! - a depthwise convolution is vector multiply-adds with no shuffles or strided access;
//! - with microkernels, a dense NHWC convolution is a matrix product `out[pixels, filters] =
//!   patches[pixels, taps·C] · W[taps·C, filters]` whose patches are runs of C floats,
//!   gathered by the GEMM as it packs them;
//! - without them, a dense NCHW4c convolution keeps four filters in each vector and
//!   broadcasts one input channel at a time over a row of output pixels, the
//!   register-blocked direct convolution of Cranelift-only code.
//!
//! Weights stay row-major in the IR; the JIT repacks constant ones at compile time
//! ([`pack_weights`]) into the order these kernels read. A convolution whose weights are
//! computed at run time has no repacked copy and takes the scalar direct kernel.

use super::kernel::{Kernel, RuntimeFns, F32, F32X4, LANES};
use super::lower::{apply_in_place, conv_is_pointwise, conv_uses_gemm, conv_weight_index, Arg, Epilogue};
use crate::ir::{Layout, TensorType};
use crate::ops::{Conv2d, Pool, PoolKind};
use crate::target::Tile;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Type, Value};

/// Taps up to which the vector kernels unroll their window; larger windows take the direct
/// kernel.
pub const MAX_UNROLLED_TAPS: usize = 49;

/// Output pixels the depthwise kernel computes at once along a row: each weight vector it
/// loads serves four of them.
const DEPTHWISE_PIXELS: i64 = 4;

/// Output pixels the blocked kernel computes at once: six accumulators, a weight vector and a
/// broadcast input fit the 16 xmm registers with room to spare.
const BLOCKED_PIXELS: i64 = 6;

/// How the JIT runs a convolution in a channel-vector layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvKind {
    /// One filter per channel: vector multiply-adds along channels, the window unrolled.
    Depthwise,
    /// NHWC: a matrix product through the runtime GEMM, weights packed at compile time.
    Gemm,
    /// NCHW4c: four filters per vector, register-blocked over output pixels.
    Blocked,
    /// Scalar loops, for what the others do not cover.
    Direct,
}

pub fn conv_kind(c: &Conv2d, operands: &[&TensorType], ukernels: bool) -> ConvKind {
    let w = &operands[1].shape;
    let unrolled = w[2] * w[3] <= MAX_UNROLLED_TAPS;
    if c.groups > 1 {
        // The layout rule admits only depthwise convolutions with groups > 1.
        return if unrolled { ConvKind::Depthwise } else { ConvKind::Direct };
    }
    match operands[0].layout {
        Layout::Nhwc if ukernels && conv_uses_gemm(operands, true) => ConvKind::Gemm,
        Layout::Nchw4c if unrolled => ConvKind::Blocked,
        Layout::Nhwc | Layout::Nchw4c | Layout::RowMajor => ConvKind::Direct,
    }
}

/// The shape `[m, n, k]` of an NHWC convolution's matrix product.
pub fn gemm_shape(operands: &[&TensorType], out: &TensorType) -> [usize; 3] {
    let w = &operands[1].shape;
    [out.shape[2] * out.shape[3], w[0], w[1] * w[2] * w[3]]
}

/// Constant weights `[F, C/groups, kh, kw]` (row-major) in the order a kernel reads them:
/// `[kh·kw][C]` for a depthwise kernel (a tap's weights for consecutive channels side by
/// side), packed GEMM panels of `W[(ky·kw + kx)·C + c][f]` for the GEMM kernel, and
/// `[F/4][C][kh][kw][4]` for the blocked kernel (four filters' weights for one input channel
/// and tap side by side).
pub fn pack_weights(kind: ConvKind, w: &[f32], wshape: &[usize], tile: Tile) -> Option<Vec<f32>> {
    let [f, cg, kh, kw] = wshape[..] else { return None };
    let taps = kh * kw;
    match kind {
        ConvKind::Depthwise => {
            let mut out = vec![0.0; taps * f];
            for ch in 0..f {
                for t in 0..taps {
                    out[t * f + ch] = w[ch * taps + t];
                }
            }
            Some(out)
        }
        ConvKind::Gemm => {
            let k = cg * taps;
            // A transpose, by blocks of 16 filters: their 16 weight rows stay in cache while
            // each is read once, and each written row of B gets a whole cache line at a time.
            let mut b = vec![0.0; k * f];
            for block in (0..f).step_by(16) {
                let filters = block..(block + 16).min(f);
                for t in 0..taps {
                    for ch in 0..cg {
                        let row = (t * cg + ch) * f;
                        for oc in filters.clone() {
                            b[row + oc] = w[(oc * cg + ch) * taps + t];
                        }
                    }
                }
            }
            let blk = nnc_runtime::gemm::Blocking { kc: tile.kc, mc: tile.mc, nc: tile.nc };
            let mut packed = vec![0.0; nnc_runtime::gemm::packed_b_len(k, f, blk)];
            // SAFETY: `b` holds the `k × f` row-major matrix; `packed` has room for its packing.
            unsafe { nnc_runtime::gemm::pack_b_all(k, f, b.as_ptr(), f as isize, 1, blk, &mut packed) };
            Some(packed)
        }
        ConvKind::Blocked => {
            let mut out = vec![0.0; f * cg * taps];
            for oc in 0..f {
                for ch in 0..cg {
                    for t in 0..taps {
                        out[((oc / 4 * cg + ch) * taps + t) * 4 + oc % 4] = w[(oc * cg + ch) * taps + t];
                    }
                }
            }
            Some(out)
        }
        ConvKind::Direct => None,
    }
}

fn shape4(t: &TensorType) -> [i64; 4] {
    let [a, b, c, d] = t.shape[..] else { unreachable!("rank checked") };
    [a as i64, b as i64, c as i64, d as i64]
}

/// How a channel-vector layout addresses one image `[C, H, W]`: the vector of channels
/// `c..c+4` of pixel `p` (pixels counted row-major) starts at element `c·cs + p·ps`.
#[derive(Clone, Copy)]
struct Channels {
    cs: i64,
    ps: i64,
    /// Elements per image.
    image: i64,
    layout: Layout,
}

impl Channels {
    fn of(t: &TensorType) -> Channels {
        let [_, c, h, w] = shape4(t);
        let (cs, ps) = match t.layout {
            Layout::Nhwc => (1, c),
            Layout::Nchw4c => (h * w, 4),
            Layout::RowMajor => (h * w, 1),
        };
        Channels { cs, ps, image: c * h * w, layout: t.layout }
    }

    /// Element offset of any single channel `c` (not only a vector's first) of pixel 0.
    fn scalar(&self, k: &mut Kernel, c: Value) -> Value {
        match self.layout {
            Layout::Nhwc => c,
            Layout::RowMajor => k.b.ins().imul_imm_s(c, self.cs),
            // Block c/4 (each `cs·4` elements), lane c mod 4.
            Layout::Nchw4c => {
                let block = k.b.ins().ushr_imm_s(c, 2);
                let block = k.b.ins().imul_imm_s(block, self.cs * 4);
                let lane = k.b.ins().band_imm_s(c, 3);
                k.b.ins().iadd(block, lane)
            }
        }
    }
}

/// A convolution in a channel-vector layout, with `epi` applied to each result on its way to
/// memory.
pub fn conv2d(k: &mut Kernel, c: &Conv2d, args: &[Arg], out: Arg, epi: &Epilogue) {
    let kind = conv_kind(c, &[args[0].ty, args[1].ty], k.runtime.is_some());
    let packed = k.prepacked.first().copied();
    let win = Window { kernel: [args[1].ty.shape[2] as i64, args[1].ty.shape[3] as i64], stride: c.stride.map(|v| v as i64), dilation: c.dilation.map(|v| v as i64), padding: [c.padding[0] as i64, c.padding[1] as i64] };
    let weights = |k: &mut Kernel| match packed {
        Some(addr) => WeightSource::Packed(k.int(addr as i64)),
        None => WeightSource::Rows(k.ptr(args[1].loc)),
    };
    let bias = args.get(2).map(|b| k.ptr(b.loc));
    match (kind, packed, k.runtime) {
        (ConvKind::Depthwise, _, _) => {
            let w = weights(k);
            windowed(k, win, args[0], out, &Windowed::Depthwise { weights: w, bias }, epi);
        }
        (ConvKind::Blocked, Some(_), _) => {
            let w = weights(k);
            windowed(k, win, args[0], out, &Windowed::Blocked { weights: w, bias, filters: args[1].ty.shape[0] as i64 }, epi);
        }
        (ConvKind::Gemm, Some(w), Some(rt)) => gemm(k, rt, c, args, out, w, epi),
        _ => direct(k, c, args, out, epi),
    }
}

/// First and one-past-last output index whose every tap `i·s − p + t·d` (t < taps) lands in
/// `[0, len)`: the interior that needs no bounds checks.
fn interior(len: i64, out: i64, s: i64, p: i64, taps: i64, d: i64) -> (i64, i64) {
    let lo = (p + s - 1).div_euclid(s).clamp(0, out);
    let last_ok = len - 1 + p - (taps - 1) * d;
    let hi = if last_ok < 0 { 0 } else { (last_ok / s + 1).clamp(0, out) };
    (lo, hi.max(lo))
}

/// A sliding window: kernel, stride, dilation and top/left padding, rows then columns.
#[derive(Clone, Copy)]
struct Window {
    kernel: [i64; 2],
    stride: [i64; 2],
    dilation: [i64; 2],
    padding: [i64; 2],
}

/// What a windowed kernel computes for each tile of output pixels.
enum Windowed {
    Depthwise { weights: WeightSource, bias: Option<Value> },
    Blocked { weights: WeightSource, bias: Option<Value>, filters: i64 },
    Pool(PoolKind),
}

struct Geometry {
    inp: Channels,
    outp: Channels,
    /// Input channels.
    ch: i64,
    h: i64,
    w: i64,
    ow: i64,
    kh: i64,
    kw: i64,
    sh: i64,
    sw: i64,
    dh: i64,
    dw: i64,
    pt: i64,
    pl: i64,
}

/// A depthwise or blocked convolution, or a pooling: along each output row, tiles of pixels
/// in the interior (every weight vector loaded once for the whole tile) and single pixels with
/// clamped, masked taps at the borders.
fn windowed(k: &mut Kernel, win: Window, x: Arg, out: Arg, how: &Windowed, epi: &Epilogue) {
    let [n, ch, h, w] = shape4(x.ty);
    let [_, _, oh, ow] = shape4(out.ty);
    let [kh, kw] = win.kernel;
    let [sh, sw] = win.stride;
    let [dh, dw] = win.dilation;
    let [pt, pl] = win.padding;
    let (xp, o) = (k.ptr(x.loc), k.ptr(out.loc));
    let g = Geometry { inp: Channels::of(x.ty), outp: Channels::of(out.ty), ch, h, w, ow, kh, kw, sh, sw, dh, dw, pt, pl };
    let (y_lo, y_hi) = interior(h, oh, sh, pt, kh, dh);
    let (x_lo, x_hi) = interior(w, ow, sw, pl, kw, dw);
    let tile = if matches!(how, Windowed::Blocked { .. }) { BLOCKED_PIXELS } else { DEPTHWISE_PIXELS };
    // One output row of image `b`; `interior`: every tap of its pixels is inside vertically.
    let row = |k: &mut Kernel, b: Value, oy: Value, interior: bool| {
        let img_off = k.b.ins().imul_imm_s(b, g.inp.image);
        let img = k.elem(xp, img_off);
        // Results are addressed from the start of the whole output (not this image's), so
        // that the epilogue reads its extra operands at the same index.
        let out_img = k.b.ins().imul_imm_s(b, g.outp.image);
        let pixels = |k: &mut Kernel, ox: Value, count: i64, masked: bool| {
            let taps = TapAddresses::new(k, &g, img, oy, ox, count, masked);
            let out_pix = k.b.ins().imul_imm_s(oy, g.ow);
            let out_pix = k.b.ins().iadd(out_pix, ox);
            let out_pix = k.b.ins().imul_imm_s(out_pix, g.outp.ps);
            let out_base = k.b.ins().iadd(out_img, out_pix);
            let tile = PixelTile { taps, out: o, out_base, count };
            match how {
                Windowed::Depthwise { weights, bias } => depthwise_tile(k, &g, &tile, weights, *bias, epi),
                Windowed::Blocked { weights, bias, filters } => blocked_tile(k, &g, &tile, weights, *bias, *filters, epi),
                Windowed::Pool(kind) => pool_tile(k, &g, &tile, *kind),
            }
        };
        let masked = |k: &mut Kernel, lo: i64, hi: i64| k.for_const(lo, hi, |k, ox| pixels(k, ox, 1, true));
        if !interior {
            masked(k, 0, ow);
            return;
        }
        masked(k, 0, x_lo);
        let tiles = (x_hi - x_lo) / tile;
        k.for_const(0, tiles, |k, t| {
            let ox = k.b.ins().imul_imm_s(t, tile);
            let ox = k.b.ins().iadd_imm_s(ox, x_lo);
            pixels(k, ox, tile, false);
        });
        // The interior pixels left over, as one shorter tile.
        let rest = x_hi - x_lo - tiles * tile;
        if rest > 0 {
            let ox = k.int(x_lo + tiles * tile);
            pixels(k, ox, rest, false);
        }
        masked(k, x_hi, ow);
    };
    if k.task.is_none() {
        // Border and interior rows in loops of their own.
        k.for_const(0, n, |k, b| {
            k.for_const(0, y_lo, |k, oy| row(k, b, oy, false));
            k.for_const(y_lo, y_hi, |k, oy| row(k, b, oy, true));
            k.for_const(y_hi, oh, |k, oy| row(k, b, oy, false));
        });
        return;
    }
    // Split across tasks: the rows of all images as one range, each row told apart at run time.
    let (lo, hi) = k.split(0, n * oh, 1);
    k.for_range(lo, hi, 1, |k, r| {
        let b = k.b.ins().sdiv_imm_s(r, oh);
        let first_row = k.b.ins().imul_imm_s(b, oh);
        let oy = k.b.ins().isub(r, first_row);
        let top = k.b.ins().icmp_imm_s(IntCC::SignedGreaterThanOrEqual, oy, y_lo);
        let bottom = k.b.ins().icmp_imm_s(IntCC::SignedLessThan, oy, y_hi);
        let interior = k.b.ins().band(top, bottom);
        k.if_else(interior, |k| row(k, b, oy, true), |k| row(k, b, oy, false));
    });
}

/// A row of output pixels being computed: where their window taps are and where they go.
struct PixelTile {
    taps: TapAddresses,
    out: Value,
    /// Element of `out` holding channel 0 of the first pixel.
    out_base: Value,
    count: i64,
}

/// Where each tap of each pixel of a tile reads, as a pixel offset (in elements, to add to a
/// channel offset). Interior tiles address every tap at a constant offset from its window
/// row, so each load is one instruction; border pixels clamp each tap into the image and mask
/// what fell outside.
enum TapAddresses {
    /// Per window row, the address of the first pixel's first tap in that row.
    Rows(Vec<Value>),
    /// Per pixel and tap, the clamped pixel offset and whether the tap is inside.
    Clamped { img: Value, taps: Vec<Vec<(Value, Value)>> },
}

impl TapAddresses {
    fn new(k: &mut Kernel, g: &Geometry, img: Value, oy: Value, ox: Value, count: i64, masked: bool) -> TapAddresses {
        let iy0 = k.b.ins().imul_imm_s(oy, g.sh);
        let iy0 = k.b.ins().iadd_imm_s(iy0, -g.pt);
        let ix0 = k.b.ins().imul_imm_s(ox, g.sw);
        let ix0 = k.b.ins().iadd_imm_s(ix0, -g.pl);
        if !masked {
            let rows = (0..g.kh)
                .map(|ky| {
                    let iy = k.b.ins().iadd_imm_s(iy0, ky * g.dh);
                    let pix = k.b.ins().imul_imm_s(iy, g.w);
                    let pix = k.b.ins().iadd(pix, ix0);
                    let off = k.b.ins().imul_imm_s(pix, g.inp.ps);
                    k.elem(img, off)
                })
                .collect();
            return TapAddresses::Rows(rows);
        }
        let taps = (0..count)
            .map(|p| {
                let ixp = k.b.ins().iadd_imm_s(ix0, p * g.sw);
                let mut per_tap = Vec::new();
                for ky in 0..g.kh {
                    let iy = k.b.ins().iadd_imm_s(iy0, ky * g.dh);
                    let (y_in, iyc) = k.clamp_index(iy, g.h - 1);
                    for kx in 0..g.kw {
                        let ix = k.b.ins().iadd_imm_s(ixp, kx * g.dw);
                        let (x_in, ixc) = k.clamp_index(ix, g.w - 1);
                        let pix = k.b.ins().imul_imm_s(iyc, g.w);
                        let pix = k.b.ins().iadd(pix, ixc);
                        per_tap.push((k.b.ins().imul_imm_s(pix, g.inp.ps), k.b.ins().band(y_in, x_in)));
                    }
                }
                per_tap
            })
            .collect();
        TapAddresses::Clamped { img, taps }
    }

    /// Per window row, the row's address plus `chan_bytes` (loop-invariant within a channel
    /// step, so computed once per step).
    fn at_channel(&self, k: &mut Kernel, chan_bytes: Value) -> Vec<Value> {
        match self {
            TapAddresses::Rows(rows) => rows.iter().map(|&r| k.b.ins().iadd(r, chan_bytes)).collect(),
            TapAddresses::Clamped { img, .. } => vec![k.b.ins().iadd(*img, chan_bytes)],
        }
    }

    /// The input of tap `t` (`ky`, `kx`) for pixel `p`, as `ty` (`F32X4`: the channel vector;
    /// `F32`: one channel), from the addresses `at_channel` gave; `outside` where the tap is
    /// in the padding.
    #[allow(clippy::too_many_arguments)]
    fn load(&self, k: &mut Kernel, g: &Geometry, at: &[Value], ty: Type, p: i64, ky: i64, kx: i64, outside: f32) -> Value {
        match self {
            TapAddresses::Rows(_) => k.load_input_at(ty, at[ky as usize], (kx * g.dw + p * g.sw) * g.inp.ps),
            TapAddresses::Clamped { taps, .. } => {
                let (off, inside) = taps[p as usize][(ky * g.kw + kx) as usize];
                let v = k.load(ty, at[0], off);
                let fill = k.c(ty, outside);
                k.b.ins().select(inside, v, fill)
            }
        }
    }

    /// How many of pixel `p`'s taps are inside the image, as an `f32`.
    fn inside_count(&self, k: &mut Kernel, g: &Geometry, p: i64) -> Value {
        match self {
            TapAddresses::Rows(_) => k.c(F32, (g.kh * g.kw) as f32),
            TapAddresses::Clamped { taps, .. } => {
                let mut count = k.int(0);
                for &(_, inside) in &taps[p as usize] {
                    let one = k.b.ins().uextend(cranelift_codegen::ir::types::I64, inside);
                    count = k.b.ins().iadd(count, one);
                }
                k.b.ins().fcvt_from_sint(F32, count)
            }
        }
    }
}

enum WeightSource {
    /// Repacked at compile time ([`pack_weights`]).
    Packed(Value),
    /// The row-major `[F, C/groups, kh, kw]` weight.
    Rows(Value),
}

/// Depthwise tile: for each vector of channels, `count` accumulators over the window.
fn depthwise_tile(k: &mut Kernel, g: &Geometry, t: &PixelTile, weights: &WeightSource, bias: Option<Value>, epi: &Epilogue) {
    let taps = g.kh * g.kw;
    k.for_vectorized(g.ch, |k, ci, ty| {
        let in_chan = k.b.ins().imul_imm_s(ci, g.inp.cs * 4);
        let at = t.taps.at_channel(k, in_chan);
        let init = match bias {
            Some(bp) => k.load(ty, bp, ci),
            None => k.c(ty, 0.0),
        };
        let mut accs = vec![init; t.count as usize];
        for tap in 0..taps {
            // The weights of this tap for channels ci.. (layout `[tap][C]` when packed).
            let wv = match *weights {
                WeightSource::Packed(p) => {
                    let a = k.elem(p, ci);
                    k.load_input_at(ty, a, tap * g.ch)
                }
                WeightSource::Rows(p) => gather_lanes(k, ty, |k, l| {
                    let c = k.b.ins().iadd_imm_s(ci, l);
                    let i = k.b.ins().imul_imm_s(c, taps);
                    let i = k.b.ins().iadd_imm_s(i, tap);
                    k.load(F32, p, i)
                }),
            };
            for (p, acc) in accs.iter_mut().enumerate() {
                let xv = t.taps.load(k, g, &at, ty, p as i64, tap / g.kw, tap % g.kw, 0.0);
                *acc = mul_add(k, *acc, wv, xv);
            }
        }
        let out_chan = k.b.ins().imul_imm_s(ci, g.outp.cs);
        store_tile(k, g, t, accs, out_chan, ty, epi);
    });
}

/// Blocked (NCHW4c) tile: for each block of four filters, `count` accumulators; every input
/// channel of every tap is broadcast and multiplied by the four filters' weights.
fn blocked_tile(k: &mut Kernel, g: &Geometry, t: &PixelTile, weights: &WeightSource, bias: Option<Value>, filters: i64, epi: &Epilogue) {
    let WeightSource::Packed(wp) = *weights else { unreachable!("the blocked kernel runs only with repacked weights") };
    let taps = g.kh * g.kw;
    k.for_const(0, filters / 4, |k, fb| {
        let init = match bias {
            Some(bp) => {
                let at = k.b.ins().imul_imm_s(fb, 4);
                k.load(F32X4, bp, at)
            }
            None => k.c(F32X4, 0.0),
        };
        let accs: Vec<_> = (0..t.count).map(|_| k.var(F32X4, init)).collect();
        // Weights of filter block fb: `[C][kh][kw][4]`.
        let w_off = k.b.ins().imul_imm_s(fb, g.ch * taps * 4);
        let wblock = k.elem(wp, w_off);
        k.for_const(0, g.ch / 4, |k, cb| {
            let in_chan = k.b.ins().imul_imm_s(cb, 4 * g.inp.cs * 4);
            let at = t.taps.at_channel(k, in_chan);
            let w_cb = k.b.ins().imul_imm_s(cb, 4 * taps * 4);
            let w_cb = k.elem(wblock, w_cb);
            let mut cur: Vec<Value> = accs.iter().map(|&a| k.b.use_var(a)).collect();
            for lane in 0..4 {
                for tap in 0..taps {
                    let wv = k.load_input_at(F32X4, w_cb, (lane * taps + tap) * 4);
                    for (p, acc) in cur.iter_mut().enumerate() {
                        // Channel cb·4 + lane of the tap's pixel, broadcast to the 4 filters.
                        let xs = match &t.taps {
                            TapAddresses::Rows(_) => k.load_input_at(F32, at[(tap / g.kw) as usize], (tap % g.kw * g.dw + p as i64 * g.sw) * g.inp.ps + lane),
                            TapAddresses::Clamped { .. } => {
                                let lane_at: Vec<Value> = at.iter().map(|&a| k.b.ins().iadd_imm_s(a, lane * 4)).collect();
                                t.taps.load(k, g, &lane_at, F32, p as i64, tap / g.kw, tap % g.kw, 0.0)
                            }
                        };
                        let xv = k.b.ins().splat(F32X4, xs);
                        *acc = mul_add(k, *acc, wv, xv);
                    }
                }
            }
            for (var, v) in accs.iter().zip(cur) {
                k.b.def_var(*var, v);
            }
        });
        let out_chan = k.b.ins().imul_imm_s(fb, 4 * g.outp.cs);
        let done: Vec<Value> = accs.iter().map(|&a| k.b.use_var(a)).collect();
        store_tile(k, g, t, done, out_chan, F32X4, epi);
    });
}

/// Pooling tile: for each vector of channels, the maximum (NaN wins, as in the interpreter) or
/// the mean of the taps inside the image.
fn pool_tile(k: &mut Kernel, g: &Geometry, t: &PixelTile, kind: PoolKind) {
    let taps = g.kh * g.kw;
    let (neutral, outside) = match kind {
        PoolKind::Max => (f32::NEG_INFINITY, f32::NEG_INFINITY),
        PoolKind::Avg => (0.0, 0.0),
    };
    let scales: Vec<Value> = (0..t.count)
        .map(|p| {
            let n = t.taps.inside_count(k, g, p);
            let one = k.c(F32, 1.0);
            k.b.ins().fdiv(one, n)
        })
        .collect();
    k.for_vectorized(g.ch, |k, ci, ty| {
        let in_chan = k.b.ins().imul_imm_s(ci, g.inp.cs * 4);
        let at = t.taps.at_channel(k, in_chan);
        let mut accs = Vec::new();
        for (p, &scale) in scales.iter().enumerate() {
            let mut acc = k.c(ty, neutral);
            for tap in 0..taps {
                let xv = t.taps.load(k, g, &at, ty, p as i64, tap / g.kw, tap % g.kw, outside);
                acc = match kind {
                    PoolKind::Max => k.max_nan(acc, xv),
                    PoolKind::Avg => k.b.ins().fadd(acc, xv),
                };
            }
            if kind == PoolKind::Avg {
                let s = if ty == F32 { scale } else { k.b.ins().splat(ty, scale) };
                acc = k.b.ins().fmul(acc, s);
            }
            accs.push(acc);
        }
        let out_chan = k.b.ins().imul_imm_s(ci, g.outp.cs);
        store_tile(k, g, t, accs, out_chan, ty, &Epilogue::none());
    });
}

/// Max or average pooling in a channel-vector layout.
pub fn pool(k: &mut Kernel, p: &Pool, args: &[Arg], out: Arg) {
    let win = Window { kernel: p.kernel.map(|v| v as i64), stride: p.stride.map(|v| v as i64), dilation: [1, 1], padding: [p.padding[0] as i64, p.padding[1] as i64] };
    windowed(k, win, args[0], out, &Windowed::Pool(p.kind), &Epilogue::none());
}

/// `acc + w·x` as an add of a product rather than an FMA: Cranelift emits pure values
/// depth-first in operand order, so with the accumulator first a chain of these interleaves
/// with its loads, while `fma(w, x, acc)` would emit every load of the window before the
/// first FMA and spill.
fn mul_add(k: &mut Kernel, acc: Value, w: Value, x: Value) -> Value {
    let prod = k.b.ins().fmul(w, x);
    k.b.ins().fadd(acc, prod)
}

/// A vector whose lanes `f(l)` produces (or the scalar `f(0)`).
fn gather_lanes(k: &mut Kernel, ty: Type, mut f: impl FnMut(&mut Kernel, i64) -> Value) -> Value {
    let first = f(k, 0);
    if ty == F32 {
        return first;
    }
    let mut v = k.b.ins().splat(F32X4, first);
    for l in 1..LANES {
        let s = f(k, l);
        v = k.b.ins().insertlane(v, s, l as u8);
    }
    v
}

/// Store a tile's accumulators (channels at `out_chan` elements into each pixel), through the
/// epilogue.
fn store_tile(k: &mut Kernel, g: &Geometry, t: &PixelTile, accs: Vec<Value>, out_chan: Value, ty: Type, epi: &Epilogue) {
    let first = k.b.ins().iadd(t.out_base, out_chan);
    let at = k.elem(t.out, first);
    for (p, acc) in accs.into_iter().enumerate() {
        let step = p as i64 * g.outp.ps;
        let v = if epi.steps.is_empty() {
            acc
        } else {
            let idx = k.b.ins().iadd_imm_s(first, step);
            epi.apply(k, ty, acc, idx)
        };
        k.store_at(v, at, step);
    }
}

/// A dense NHWC convolution as one matrix product per image:
/// `out[P, F] = patches[P, kh·kw·C] · W[kh·kw·C, F]` (P = output pixels), with W packed at
/// compile time, the patches gathered from the image while the GEMM packs them (never
/// stored), and the bias (one per column) and `epi` applied by the GEMM. A 1×1, stride-1,
/// unpadded convolution multiplies the input itself.
fn gemm(k: &mut Kernel, rt: RuntimeFns, c: &Conv2d, args: &[Arg], out: Arg, packed_w: u64, epi: &Epilogue) {
    let [n, ch, h, w] = shape4(args[0].ty);
    let [m, f, kk] = gemm_shape(&[args[0].ty, args[1].ty], out.ty).map(|v| v as i64);
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
        let wp = k.int(packed_w as i64);
        let mut call = if pointwise {
            vec![k.int(m), k.int(f), k.int(kk), img, k.int(ch), k.int(1), wp, oimg, k.int(f), k.int(1), k.int(0)]
        } else {
            let mut call = vec![k.int(m), k.int(f), img];
            for v in [ch, h, w, kh, kw, c.stride[0] as i64, c.stride[1] as i64, c.dilation[0] as i64, c.dilation[1] as i64, c.padding[0] as i64, c.padding[1] as i64, ow] {
                call.push(k.int(v));
            }
            call.extend([wp, oimg, k.int(f), k.int(1)]);
            call
        };
        let [threads, kc, mc, nc] = k.gemm_tail();
        call.extend([threads, kc, mc, nc]);
        call.extend(k.tail_args(&tail));
        k.b.ins().call(if pointwise { rt.sgemm_packed_b } else { rt.sgemm_conv_nhwc }, &call);
    });
    if steps_left {
        apply_in_place(k, out, epi);
    }
}

/// Any convolution the layout rule admits, in any layout, with scalar loops: each output sums
/// its filter's taps over the channels of its group, padded taps masked to zero.
fn direct(k: &mut Kernel, c: &Conv2d, args: &[Arg], out: Arg, epi: &Epilogue) {
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

/// Global average pooling of an input in a channel-vector layout: each image's pixels summed
/// as vectors along channels into the result row, then scaled. The result `[N, C, 1, 1]` is
/// row-major.
pub fn global_avg_pool(k: &mut Kernel, args: &[Arg], out: Arg) {
    let [n, ch, h, w] = shape4(args[0].ty);
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
pub fn convert_layout(k: &mut Kernel, arg: Arg, out: Arg) {
    const BLOCK: i64 = 32;
    let [n, ch, h, w] = shape4(arg.ty);
    let hw = h * w;
    let (src, dst) = (Channels::of(arg.ty), Channels::of(out.ty));
    let (x, o) = (k.ptr(arg.loc), k.ptr(out.loc));
    let copy_block = |k: &mut Kernel, xi: Value, oi: Value, p0: Value, len: i64| {
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
    k.for_const(0, n, |k, b| {
        let img_off = k.b.ins().imul_imm_s(b, ch * hw);
        let (xi, oi) = (k.elem(x, img_off), k.elem(o, img_off));
        k.for_const(0, hw / BLOCK, |k, blk| {
            let p0 = k.b.ins().imul_imm_s(blk, BLOCK);
            copy_block(k, xi, oi, p0, BLOCK);
        });
        if hw % BLOCK > 0 {
            let p0 = k.int(hw / BLOCK * BLOCK);
            copy_block(k, xi, oi, p0, hw % BLOCK);
        }
    });
}
