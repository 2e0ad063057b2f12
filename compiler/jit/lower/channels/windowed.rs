//! The windowed engine of the channel-vector layouts: depthwise convolutions, blocked NCHW4c
//! convolutions and pooling, over an interior whose every tap is inside the image (constant
//! offsets from the window row) and a border whose taps are clamped and masked.

use crate::jit::builder::{KernelBuilder, F32, F32X4, LANES};
use crate::jit::epilogue::Epilogue;
use crate::jit::epilogue::Arg;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Type, Value};
use super::addressing::{shape4, Channels};
use crate::ops::{Pool, PoolKind};

/// Output pixels the depthwise kernel computes at once along a row: each weight vector it
/// loads serves four of them.
pub(crate) const DEPTHWISE_PIXELS: i64 = 4;

/// Output pixels the blocked kernel computes at once: six accumulators, a weight vector and a
/// broadcast input fit the 16 xmm registers with room to spare.
pub(crate) const BLOCKED_PIXELS: i64 = 6;

/// First and one-past-last output index whose every tap `i·s − p + t·d` (t < taps) lands in
/// `[0, len)`: the interior that needs no bounds checks.
pub(crate) fn interior(len: i64, out: i64, s: i64, p: i64, taps: i64, d: i64) -> (i64, i64) {
    let lo = (p + s - 1).div_euclid(s).clamp(0, out);
    let last_ok = len - 1 + p - (taps - 1) * d;
    let hi = if last_ok < 0 { 0 } else { (last_ok / s + 1).clamp(0, out) };
    (lo, hi.max(lo))
}

/// A sliding window: kernel, stride, dilation and top/left padding, rows then columns.
#[derive(Clone, Copy)]
pub(crate) struct Window {
    pub(crate) kernel: [i64; 2],
    pub(crate) stride: [i64; 2],
    pub(crate) dilation: [i64; 2],
    pub(crate) padding: [i64; 2],
}

/// What a windowed kernel computes for each tile of output pixels.
pub(crate) enum Windowed {
    Depthwise { weights: WeightSource, bias: Option<Value> },
    Blocked { weights: WeightSource, bias: Option<Value>, filters: i64 },
    Pool(PoolKind),
}

pub(crate) struct Geometry {
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
pub(crate) fn windowed(k: &mut KernelBuilder, win: Window, x: Arg, out: Arg, how: &Windowed, epi: &Epilogue) {
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
    let row = |k: &mut KernelBuilder, b: Value, oy: Value, interior: bool| {
        let img_off = k.b.ins().imul_imm_s(b, g.inp.image);
        let img = k.elem(xp, img_off);
        // Results are addressed from the start of the whole output (not this image's), so
        // that the epilogue reads its extra operands at the same index.
        let out_img = k.b.ins().imul_imm_s(b, g.outp.image);
        let pixels = |k: &mut KernelBuilder, ox: Value, count: i64, masked: bool| {
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
        let masked = |k: &mut KernelBuilder, lo: i64, hi: i64| k.for_const(lo, hi, |k, ox| pixels(k, ox, 1, true));
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
pub(crate) struct PixelTile {
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
pub(crate) enum TapAddresses {
    /// Per window row, the address of the first pixel's first tap in that row.
    Rows(Vec<Value>),
    /// Per pixel and tap, the clamped pixel offset and whether the tap is inside.
    Clamped { img: Value, taps: Vec<Vec<(Value, Value)>> },
}

impl TapAddresses {
    fn new(k: &mut KernelBuilder, g: &Geometry, img: Value, oy: Value, ox: Value, count: i64, masked: bool) -> TapAddresses {
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
    fn at_channel(&self, k: &mut KernelBuilder, chan_bytes: Value) -> Vec<Value> {
        match self {
            TapAddresses::Rows(rows) => rows.iter().map(|&r| k.b.ins().iadd(r, chan_bytes)).collect(),
            TapAddresses::Clamped { img, .. } => vec![k.b.ins().iadd(*img, chan_bytes)],
        }
    }

    /// The input of tap `t` (`ky`, `kx`) for pixel `p`, as `ty` (`F32X4`: the channel vector;
    /// `F32`: one channel), from the addresses `at_channel` gave; `outside` where the tap is
    /// in the padding.
    #[allow(clippy::too_many_arguments)]
    fn load(&self, k: &mut KernelBuilder, g: &Geometry, at: &[Value], ty: Type, p: i64, ky: i64, kx: i64, outside: f32) -> Value {
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
    fn inside_count(&self, k: &mut KernelBuilder, g: &Geometry, p: i64) -> Value {
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

pub(crate) enum WeightSource {
    /// Repacked at compile time ([`pack_weights`]).
    Packed(Value),
    /// The row-major `[F, C/groups, kh, kw]` weight.
    Rows(Value),
}

/// Depthwise tile: for each vector of channels, `count` accumulators over the window.
pub(crate) fn depthwise_tile(k: &mut KernelBuilder, g: &Geometry, t: &PixelTile, weights: &WeightSource, bias: Option<Value>, epi: &Epilogue) {
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
pub(crate) fn blocked_tile(k: &mut KernelBuilder, g: &Geometry, t: &PixelTile, weights: &WeightSource, bias: Option<Value>, filters: i64, epi: &Epilogue) {
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
pub(crate) fn pool_tile(k: &mut KernelBuilder, g: &Geometry, t: &PixelTile, kind: PoolKind) {
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
pub fn pool(k: &mut KernelBuilder, p: &Pool, args: &[Arg], out: Arg) {
    let win = Window { kernel: p.kernel.map(|v| v as i64), stride: p.stride.map(|v| v as i64), dilation: [1, 1], padding: [p.padding[0] as i64, p.padding[1] as i64] };
    windowed(k, win, args[0], out, &Windowed::Pool(p.kind), &Epilogue::none());
}

/// `acc + w·x` as an add of a product rather than an FMA: Cranelift emits pure values
/// depth-first in operand order, so with the accumulator first a chain of these interleaves
/// with its loads, while `fma(w, x, acc)` would emit every load of the window before the
/// first FMA and spill.
pub(crate) fn mul_add(k: &mut KernelBuilder, acc: Value, w: Value, x: Value) -> Value {
    let prod = k.b.ins().fmul(w, x);
    k.b.ins().fadd(acc, prod)
}

/// A vector whose lanes `f(l)` produces (or the scalar `f(0)`).
pub(crate) fn gather_lanes(k: &mut KernelBuilder, ty: Type, mut f: impl FnMut(&mut KernelBuilder, i64) -> Value) -> Value {
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
pub(crate) fn store_tile(k: &mut KernelBuilder, g: &Geometry, t: &PixelTile, accs: Vec<Value>, out_chan: Value, ty: Type, epi: &Epilogue) {
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
