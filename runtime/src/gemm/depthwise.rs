//! Depthwise convolutions of NHWC images at the CPU's full vector width (AVX-512: 16 channels
//! per vector, AVX2: 8), with the bias, a residual and ReLU/ReLU6 applied before each vector
//! is stored. Generated code, limited to 128-bit vectors, ran these at a quarter of the width.
//!
//! Each output pixel's channels are one run of vectors; a vector sums its taps' products in
//! tap order (row by row, left to right), starting from the bias, so every thread count and
//! every tiling gives the same bits. Interior pixels (every tap inside the image) are computed
//! four at a time, so each weight vector loaded serves four pixels; border pixels skip the
//! taps that fall in the padding.

use super::Epilogue;

/// One depthwise convolution: `out[b, oy, ox, ch] = bias[ch] + Σ_{ky,kx}
/// x[b, oy·sh − pt + ky·dh, ox·sw − pl + kx·dw, ch] · wt[ky·kw + kx][ch]`, taps in the padding
/// left out, all tensors NHWC (channels innermost), weights tap-major.
#[derive(Clone, Copy, Debug)]
pub struct Depthwise {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
    pub pt: usize,
    pub pl: usize,
    pub oh: usize,
    pub ow: usize,
}

/// Output pixels an interior step computes.
const PIXELS: usize = 4;

/// The most bytes of input window rows one chunk of interior pixels reads (see `rows_for`):
/// well inside a 32 KiB L1.
const L1_WINDOW_BYTES: usize = 16 << 10;

impl Depthwise {
    /// First and one-past-last output index along one axis whose every tap is inside
    /// `[0, len)`.
    fn interior(len: usize, out: usize, s: usize, p: usize, taps: usize, d: usize) -> (usize, usize) {
        let lo = p.div_ceil(s).min(out);
        let reach = (taps - 1) * d;
        let hi = if len + p < reach + 1 { 0 } else { ((len + p - reach - 1) / s + 1).min(out) };
        (lo, hi.max(lo))
    }
}

/// Output rows `lo..hi` of the convolution `g` (rows counted over all images, so threads
/// split by handing out disjoint ranges), with the best kernel for this CPU.
///
/// # Safety
/// `x` holds `n·h·w·c` floats, `wt` `kh·kw·c`, `out` (writable, not overlapping the others)
/// `n·oh·ow·c`; the epilogue's bias holds `c` floats and its residual `n·oh·ow·c`, and it
/// is not per-row; `oh`, `ow` are the convolution's output sizes for these sizes; strides
/// and dilations are at least 1, `kh`, `kw` at least 1, and `lo ≤ hi ≤ n·oh`.
pub unsafe fn depthwise(g: Depthwise, lo: usize, hi: usize, x: *const f32, wt: *const f32, out: *mut f32, ep: Epilogue) {
    let row = g.w * g.c;
    // SAFETY: the caller's contract: every row of every image is in `x` (the lines' first
    // row may lie in the padding, before the image, and is then never read).
    unsafe { dispatch(g, lo, hi, &|b, oy| ImageLines { first: x.wrapping_add(b * g.h * row + oy * g.sh * row).wrapping_sub(g.pt * row), step: g.dh * row }, wt, out, ep) }
}

/// The most window rows of a convolution whose input rows come from a ring.
pub const MAX_RING_WINDOW: usize = 8;

/// Output row `r` of [`depthwise`] with its window's input rows wherever `lines` says:
/// `lines[ky]` is the start (`w·c` floats) of the input row of tap row `ky`, for the tap
/// rows inside the image (a fused kernel keeps only the rows a window needs, in a ring).
///
/// # Safety
/// As [`depthwise`] for one row, with `lines` instead of `x`; `g.kh ≤ MAX_RING_WINDOW`.
pub unsafe fn depthwise_row_from_lines(g: Depthwise, r: usize, lines: [*const f32; MAX_RING_WINDOW], wt: *const f32, out: *mut f32, ep: Epilogue) {
    // SAFETY: the caller's contract.
    unsafe { dispatch(g, r, r + 1, &|_, _| RingLines(lines), wt, out, ep) }
}

/// Where the input rows of an output row's window start, by tap row `ky` (valid only for
/// tap rows inside the image).
trait Lines: Copy {
    fn line(&self, ky: usize) -> *const f32;
}

/// The rows of a whole image: `first + ky·step`.
#[derive(Clone, Copy)]
struct ImageLines {
    first: *const f32,
    step: usize,
}

impl Lines for ImageLines {
    #[inline(always)]
    fn line(&self, ky: usize) -> *const f32 {
        self.first.wrapping_add(ky * self.step)
    }
}

/// Rows anywhere, one pointer per tap row.
#[derive(Clone, Copy)]
struct RingLines([*const f32; MAX_RING_WINDOW]);

impl Lines for RingLines {
    #[inline(always)]
    fn line(&self, ky: usize) -> *const f32 {
        self.0[ky]
    }
}

/// Rows `lo..hi` with the best kernel for this CPU, each row's window rows from `lines(b,
/// oy)`.
///
/// # Safety
/// As [`depthwise`], with the lines valid where the image is.
unsafe fn dispatch<L: Lines>(g: Depthwise, lo: usize, hi: usize, lines: &dyn Fn(usize, usize) -> L, wt: *const f32, out: *mut f32, ep: Epilogue) {
    // SAFETY: the caller's contract; each kernel runs only where its features exist.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return x86::rows_avx512(g, lo, hi, lines, wt, out, ep);
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return x86::rows_avx2(g, lo, hi, lines, wt, out, ep);
            }
        }
        rows_portable(g, lo, hi, lines, wt, out, ep)
    }
}

/// The sum for one output element, taps in order: the definition every kernel follows.
///
/// # Safety
/// As [`depthwise`], for an output element of `g`, `lines` its row's.
#[inline(always)]
unsafe fn element(g: &Depthwise, lines: &impl Lines, wt: *const f32, oy: usize, ox: usize, ch: usize, init: f32) -> f32 {
    let mut acc = init;
    for ky in 0..g.kh {
        if (oy * g.sh + ky * g.dh).checked_sub(g.pt).is_none_or(|iy| iy >= g.h) {
            continue;
        }
        let row = lines.line(ky);
        for kx in 0..g.kw {
            let Some(ix) = (ox * g.sw + kx * g.dw).checked_sub(g.pl).filter(|&ix| ix < g.w) else { continue };
            // SAFETY: (iy, ix, ch) is inside the image and (ky, kx, ch) inside the weights.
            unsafe { acc = (*row.add(ix * g.c + ch)).mul_add(*wt.add((ky * g.kw + kx) * g.c + ch), acc) };
        }
    }
    acc
}

/// Plain Rust, for CPUs without AVX2.
///
/// # Safety
/// As [`dispatch`].
unsafe fn rows_portable<L: Lines>(g: Depthwise, lo: usize, hi: usize, lines: &dyn Fn(usize, usize) -> L, wt: *const f32, out: *mut f32, ep: Epilogue) {
    // SAFETY: the caller's contract.
    unsafe {
        for r in lo..hi {
            let (b, oy) = (r / g.oh, r % g.oh);
            let lines = lines(b, oy);
            for ox in 0..g.ow {
                let o = ((b * g.oh + oy) * g.ow + ox) * g.c;
                for ch in 0..g.c {
                    let init = if ep.bias.is_null() { 0.0 } else { *ep.bias.add(ch) };
                    *out.add(o + ch) = element(&g, &lines, wt, oy, ox, ch, init);
                }
                let res = if ep.residual.is_null() { ep.residual } else { ep.residual.add(o) };
                Epilogue { bias: std::ptr::null(), residual: res, ..ep }.apply(out.add(o), 0, 0, 1, g.c, g.c as isize, 1);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::simd::Lanes;
    use super::{Depthwise, Epilogue, Lines, L1_WINDOW_BYTES, PIXELS};
    use crate::Activation;

    /// # Safety
    /// As [`super::depthwise`]; the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn rows_avx512<L: Lines>(g: Depthwise, lo: usize, hi: usize, x: &dyn Fn(usize, usize) -> L, wt: *const f32, out: *mut f32, ep: Epilogue) {
        // SAFETY: forwarded contract; this function has the feature `rows` needs.
        unsafe { rows::<__m512, L>(g, lo, hi, x, wt, out, ep) }
    }

    /// # Safety
    /// As [`super::depthwise`]; the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rows_avx2<L: Lines>(g: Depthwise, lo: usize, hi: usize, x: &dyn Fn(usize, usize) -> L, wt: *const f32, out: *mut f32, ep: Epilogue) {
        // SAFETY: forwarded contract; this function has the features `rows` needs.
        unsafe { rows::<__m256, L>(g, lo, hi, x, wt, out, ep) }
    }

    /// Output rows `lo..hi`, specialised for the common window sizes so their tap loops
    /// unroll.
    ///
    /// # Safety
    /// As [`super::depthwise`]; the CPU has `V`'s unit.
    #[inline(always)]
    unsafe fn rows<V: Lanes, L: Lines>(g: Depthwise, lo: usize, hi: usize, x: &dyn Fn(usize, usize) -> L, wt: *const f32, out: *mut f32, ep: Epilogue) {
        // SAFETY: forwarded contract.
        unsafe {
            // With the horizontal stride and dilation known, neighbouring pixels' taps that
            // read the same input vector are one load.
            match (g.kh, g.kw, g.sw, g.dw) {
                (3, 3, 1, 1) => rows_for::<V, L, 3, 3, 1, 1>(&g, lo, hi, x, wt, out, &ep),
                (3, 3, 2, 1) => rows_for::<V, L, 3, 3, 2, 1>(&g, lo, hi, x, wt, out, &ep),
                (3, 3, ..) => rows_for::<V, L, 3, 3, 0, 0>(&g, lo, hi, x, wt, out, &ep),
                (5, 5, 1, 1) => rows_for::<V, L, 5, 5, 1, 1>(&g, lo, hi, x, wt, out, &ep),
                (5, 5, 2, 1) => rows_for::<V, L, 5, 5, 2, 1>(&g, lo, hi, x, wt, out, &ep),
                _ => rows_for::<V, L, 0, 0, 0, 0>(&g, lo, hi, x, wt, out, &ep),
            }
        }
    }

    /// One output row: its window's input rows, where its pixels go, the residual's row (or
    /// null).
    struct Row<L> {
        lines: L,
        out_row: *mut f32,
        res_row: *const f32,
        oy: usize,
    }

    /// The vector of channels `cb..` of `row`: its lanes and its initial value (the bias).
    ///
    /// # Safety
    /// As [`rows`]; `cb < c`.
    #[inline(always)]
    unsafe fn row_vector<V: Lanes, L>(g: &Depthwise, ep: &Epilogue, row: &Row<L>, cb: usize) -> RowVector<V> {
        let lanes = (g.c - cb).min(V::W);
        // SAFETY: the bias holds `c` floats.
        let init = if ep.bias.is_null() { unsafe { V::zero() } } else { unsafe { V::load_n(ep.bias.add(cb), lanes) } };
        RowVector { out_row: row.out_row, res_row: row.res_row, cb, lanes, init, act: ep.act, gelu: ep.gelu }
    }

    /// Output pixels `from..to` of `row`, every channel: only the taps inside the image, in
    /// order (the same sum as the interior's with the padding's taps left out).
    ///
    /// # Safety
    /// As [`rows`], for pixels of the row.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn border<V: Lanes, L: Lines>(g: &Depthwise, kh: usize, kw: usize, wt: *const f32, ep: &Epilogue, row: &Row<L>, from: usize, to: usize) {
        let (ky_lo, ky_hi) = taps_inside(row.oy * g.sh, g.pt, g.h, kh, g.dh);
        for ox in from..to {
            // The window's columns inside the image, found once per pixel rather than per tap
            // and channel vector (that checked path cost five times the interior's per pixel).
            let (kx_lo, kx_hi) = taps_inside(ox * g.sw, g.pl, g.w, kw, g.dw);
            let taps = Taps { ky: ky_lo..ky_hi, kx: kx_lo..kx_hi, kw, ox };
            // Four channel vectors at a time: four independent sums keep the FMA unit busy
            // (one pixel's single sum waited on each FMA's latency).
            let mut cb = 0;
            while cb + 4 * V::W <= g.c {
                // SAFETY: forwarded contract; the four vectors are whole channels of the image.
                unsafe { border_pixel::<V, L, 4>(g, wt, ep, row, &taps, cb) };
                cb += 4 * V::W;
            }
            while cb < g.c {
                // SAFETY: as above, `cb < c`.
                unsafe { border_pixel::<V, L, 1>(g, wt, ep, row, &taps, cb) };
                cb += V::W;
            }
        }
    }

    /// The taps of a border pixel `ox` that lie inside the image, and the window's width.
    struct Taps {
        ky: std::ops::Range<usize>,
        kx: std::ops::Range<usize>,
        kw: usize,
        ox: usize,
    }

    /// `NV` consecutive channel vectors of border pixel `taps.ox` from channel `cb` (with
    /// `NV > 1`, all of them whole).
    ///
    /// # Safety
    /// As [`rows`], for a pixel of the row; `cb < c`, and `cb + NV·W ≤ c` when `NV > 1`.
    #[inline(always)]
    unsafe fn border_pixel<V: Lanes, L: Lines, const NV: usize>(g: &Depthwise, wt: *const f32, ep: &Epilogue, row: &Row<L>, taps: &Taps, cb: usize) {
        // SAFETY (whole body): every tap read is inside the image (the ranges), each vector
        // covers `lanes` channels from its start.
        unsafe {
            let rv: [RowVector<V>; NV] = std::array::from_fn(|v| row_vector::<V, L>(g, ep, row, cb + v * V::W));
            let mut acc: [V; NV] = std::array::from_fn(|v| rv[v].init);
            for ky in taps.ky.clone() {
                let line = row.lines.line(ky);
                for kx in taps.kx.clone() {
                    let ix = taps.ox * g.sw + kx * g.dw - g.pl;
                    let xp = line.add(ix * g.c + cb);
                    let wp = wt.add((ky * taps.kw + kx) * g.c + cb);
                    for v in 0..NV {
                        acc[v] = V::fma(V::load_n(xp.add(v * V::W), rv[v].lanes), V::load_n(wp.add(v * V::W), rv[v].lanes), acc[v]);
                    }
                }
            }
            for v in 0..NV {
                finish(g, &rv[v], taps.ox, acc[v]);
            }
        }
    }

    /// The taps `lo..hi` of a window starting at `start − pad` (in input coordinates, `taps`
    /// of them `d` apart) that land inside `[0, len)`.
    #[inline(always)]
    fn taps_inside(start: usize, pad: usize, len: usize, taps: usize, d: usize) -> (usize, usize) {
        let lo = if start >= pad { 0 } else { (pad - start).div_ceil(d) }.min(taps);
        // Taps with `start + t·d − pad ≤ len − 1`.
        let hi = if len + pad <= start { 0 } else { ((len - 1 + pad - start) / d + 1).min(taps) };
        (lo, hi.max(lo))
    }

    /// One vector of channels `cb..cb+lanes` of an output row: where its pixels start, the residual's row (or null), and the activation.
    #[derive(Clone, Copy)]
    struct RowVector<V> {
        out_row: *mut f32,
        res_row: *const f32,
        cb: usize,
        lanes: usize,
        init: V,
        act: Activation,
        gelu: bool,
    }

    /// Residual, activation and store of output pixel `ox`'s vector. (Helpers are functions,
    /// not closures: closures do not inherit the caller's target features, and their vector
    /// operations would not inline.)
    ///
    /// # Safety
    /// As [`rows`], for a pixel of the row.
    #[inline(always)]
    unsafe fn finish<V: Lanes>(g: &Depthwise, r: &RowVector<V>, ox: usize, acc: V) {
        // SAFETY: the caller's contract.
        unsafe {
            let o = ox * g.c + r.cb;
            let mut v = acc;
            if !r.res_row.is_null() {
                v = V::add(v, V::load_n(r.res_row.add(o), r.lanes));
            }
            V::activate(v, r.act, r.gelu).store_n(r.out_row.add(o), r.lanes);
        }
    }

    /// `P` interior pixels from `ox` of one whole channel vector of `row`, its weights `wv`
    /// in registers; window rows outside `ky` (the vertical padding) left out.
    ///
    /// # Safety
    /// As [`rows`], for interior pixels of the row; `rv` is a whole vector.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn pixels_of_vector<V: Lanes, L: Lines, const KH: usize, const KW: usize, const P: usize>(g: &Depthwise, row: &Row<L>, rv: &RowVector<V>, wv: &[[V; KW]; KH], ox: usize, sw: usize, dw: usize, (ky_lo, ky_hi): (usize, usize)) {
        let c = g.c;
        let ix0 = ox * sw - g.pl;
        let mut acc = [rv.init; P];
        // SAFETY (whole body): interior pixels' taps are inside the image; the vector is whole.
        unsafe {
            for (ky, wrow) in wv.iter().enumerate() {
                if ky < ky_lo || ky >= ky_hi {
                    continue;
                }
                let in_row = row.lines.line(ky).add(ix0 * c + rv.cb);
                for (kx, &w) in wrow.iter().enumerate() {
                    let tap = in_row.add(kx * dw * c);
                    for (p, a) in acc.iter_mut().enumerate() {
                        *a = V::fma(V::load(tap.add(p * sw * c)), w, *a);
                    }
                }
            }
            for (p, a) in acc.into_iter().enumerate() {
                finish(g, rv, ox + p, a);
            }
        }
    }

    /// Interior pixels `x_lo..x_hi` of a row, for a 3×3 window with horizontal stride `SW` and
    /// dilation 1, `c` a whole number of vectors (MobileNet's layers), window rows outside
    /// `ky` (the vertical padding) left out; and the row's first and last pixels too when
    /// exactly one column of their window lies in the padding. Each channel vector's nine
    /// weights and bias stay in registers while its pixels go by eight (four with sixteen
    /// vector registers), and each input vector is loaded once for all the taps that read
    /// it. The same sums in the same order as [`pixels_of_vector`] and [`border`] (taps in
    /// the padding left out), whose loops kept the weights on the stack and tested the
    /// window's rows at every tap (MobileNetV2's 112²×32 layer: 112 → 95 µs). Returns the
    /// pixels it computed, `from..to`.
    ///
    /// # Safety
    /// As [`rows`], for interior pixels of a row; `x_lo < x_hi`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn interior_3x3<V: Lanes, L: Lines, const SW: usize, const ACT: u8>(g: &Depthwise, row: &Row<L>, wt: *const f32, x_lo: usize, x_hi: usize, ep: &Epilogue, ky: (usize, usize)) -> (usize, usize) {
        let c = g.c;
        let lines = [row.lines.line(0), row.lines.line(1), row.lines.line(2)];
        // The edge pixels this path takes: the first when only its window's first column is
        // in the padding, the last when only its last one is.
        let left = x_lo == 1 && g.pl == 1;
        let last_end = (g.ow - 1) * SW + 3;
        let right = x_hi + 1 == g.ow && (g.ow - 1) * SW >= g.pl && last_end - g.pl == g.w + 1;
        // Chunks of pixels whose window rows fit in L1, every channel vector of one chunk
        // before the next: a vector's pass over a whole row reads one cache line per pixel
        // and tap row, 32–96 KB per row at MobileNet's sizes, from L2 each time.
        let step = if V::W >= 16 { 8 } else { 4 };
        let chunk = (L1_WINDOW_BYTES / (3 * SW * c * 4)).max(step) / step * step;
        // SAFETY (whole body): the caller's contract; vectors are whole; the edge pixels'
        // columns in the padding are never read.
        unsafe {
            for x0 in (x_lo..x_hi).step_by(chunk) {
                let x1 = (x0 + chunk).min(x_hi);
                for cb in (0..c).step_by(V::W) {
                    let rv = row_vector::<V, L>(g, ep, row, cb);
                    let w: [V; 9] = std::array::from_fn(|t| V::load(wt.add(t * c + cb)));
                    if left && x0 == x_lo {
                        pixels_3x3::<V, SW, 1, ACT, true, false>(g, &rv, &lines, &w, 0, ky);
                    }
                    let mut ox = x0;
                    if V::W >= 16 {
                        while ox + 8 <= x1 {
                            pixels_3x3::<V, SW, 8, ACT, false, false>(g, &rv, &lines, &w, ox, ky);
                            ox += 8;
                        }
                    }
                    while ox + 4 <= x1 {
                        pixels_3x3::<V, SW, 4, ACT, false, false>(g, &rv, &lines, &w, ox, ky);
                        ox += 4;
                    }
                    while ox < x1 {
                        pixels_3x3::<V, SW, 1, ACT, false, false>(g, &rv, &lines, &w, ox, ky);
                        ox += 1;
                    }
                    if right && x1 == x_hi {
                        pixels_3x3::<V, SW, 1, ACT, false, true>(g, &rv, &lines, &w, x_hi, ky);
                    }
                }
            }
        }
        (if left { 0 } else { x_lo }, if right { g.ow } else { x_hi })
    }

    /// `P` pixels from `ox` of [`interior_3x3`]: input columns in order, each added to the
    /// pixels whose window holds it, so every sum still takes its taps left to right; window
    /// rows outside `ky` left out, and with `SKIP_FIRST` (`SKIP_LAST`) the first (last)
    /// column, which lies in the padding.
    ///
    /// # Safety
    /// As [`interior_3x3`], for pixels `ox..ox + P` whose window columns, but the skipped
    /// ones, and rows in `ky` are inside the image.
    #[inline(always)]
    unsafe fn pixels_3x3<V: Lanes, const SW: usize, const P: usize, const ACT: u8, const SKIP_FIRST: bool, const SKIP_LAST: bool>(g: &Depthwise, rv: &RowVector<V>, lines: &[*const f32; 3], w: &[V; 9], ox: usize, (ky_lo, ky_hi): (usize, usize)) {
        let c = g.c;
        // (One column before the image for a skipped first column: never read.)
        let ix0 = (ox * SW).wrapping_sub(g.pl);
        let mut acc = [rv.init; P];
        // SAFETY (whole body): the caller's contract.
        unsafe {
            for (ky, &line) in lines.iter().enumerate() {
                if ky < ky_lo || ky >= ky_hi {
                    continue;
                }
                let taps = [w[ky * 3], w[ky * 3 + 1], w[ky * 3 + 2]];
                let (base, mut at) = (line.add(rv.cb), ix0.wrapping_mul(c));
                // Written out, not a loop: LLVM left the loop rolled, with the accumulators
                // in memory.
                column::<V, SW, P, 0, SKIP_FIRST, SKIP_LAST>(base, &mut at, c, &taps, &mut acc);
                column::<V, SW, P, 1, SKIP_FIRST, SKIP_LAST>(base, &mut at, c, &taps, &mut acc);
                column::<V, SW, P, 2, SKIP_FIRST, SKIP_LAST>(base, &mut at, c, &taps, &mut acc);
                column::<V, SW, P, 3, SKIP_FIRST, SKIP_LAST>(base, &mut at, c, &taps, &mut acc);
                column::<V, SW, P, 4, SKIP_FIRST, SKIP_LAST>(base, &mut at, c, &taps, &mut acc);
                column::<V, SW, P, 5, SKIP_FIRST, SKIP_LAST>(base, &mut at, c, &taps, &mut acc);
                column::<V, SW, P, 6, SKIP_FIRST, SKIP_LAST>(base, &mut at, c, &taps, &mut acc);
                column::<V, SW, P, 7, SKIP_FIRST, SKIP_LAST>(base, &mut at, c, &taps, &mut acc);
                column::<V, SW, P, 8, SKIP_FIRST, SKIP_LAST>(base, &mut at, c, &taps, &mut acc);
                column::<V, SW, P, 9, SKIP_FIRST, SKIP_LAST>(base, &mut at, c, &taps, &mut acc);
                column::<V, SW, P, 10, SKIP_FIRST, SKIP_LAST>(base, &mut at, c, &taps, &mut acc);
                column::<V, SW, P, 11, SKIP_FIRST, SKIP_LAST>(base, &mut at, c, &taps, &mut acc);
                column::<V, SW, P, 12, SKIP_FIRST, SKIP_LAST>(base, &mut at, c, &taps, &mut acc);
                column::<V, SW, P, 13, SKIP_FIRST, SKIP_LAST>(base, &mut at, c, &taps, &mut acc);
                column::<V, SW, P, 14, SKIP_FIRST, SKIP_LAST>(base, &mut at, c, &taps, &mut acc);
                column::<V, SW, P, 15, SKIP_FIRST, SKIP_LAST>(base, &mut at, c, &taps, &mut acc);
                column::<V, SW, P, 16, SKIP_FIRST, SKIP_LAST>(base, &mut at, c, &taps, &mut acc);
            }
            // `finish` with the activation known (`ACT`: none, ReLU, ReLU6), so the stores
            // are straight-line code.
            let mut o = ox * c + rv.cb;
            for mut v in acc {
                if !rv.res_row.is_null() {
                    v = V::add(v, V::load(rv.res_row.add(o)));
                }
                v = match ACT {
                    1 => V::relu(v),
                    2 => V::relu6(v),
                    _ => v,
                };
                v.store(rv.out_row.add(o));
                o = opaque(o + c);
            }
        }
    }

    /// Input column `I` of a window row (at `base + at`, then `at` steps one pixel on, each
    /// step through [`opaque`]: LLVM otherwise kept a pointer per column and pixel, spilled
    /// them and reloaded every address from the stack), added with tap `kx` to the pixel
    /// whose window holds it there: the pixels' sums still take their taps left to right.
    /// The first (last) column is skipped, not read, with `SKIP_FIRST` (`SKIP_LAST`).
    ///
    /// # Safety
    /// As [`pixels_3x3`]: columns `0..(P − 1)·SW + 3`, but the skipped ones, are inside the
    /// row.
    #[inline(always)]
    unsafe fn column<V: Lanes, const SW: usize, const P: usize, const I: usize, const SKIP_FIRST: bool, const SKIP_LAST: bool>(base: *const f32, at: &mut usize, c: usize, taps: &[V; 3], acc: &mut [V; P]) {
        let columns = (P - 1) * SW + 3;
        if I >= columns {
            return;
        }
        if !(SKIP_FIRST && I == 0 || SKIP_LAST && I == columns - 1) {
            // SAFETY: the caller's contract.
            let x = unsafe { V::load(base.add(*at)) };
            for (kx, &tap) in taps.iter().enumerate() {
                let from = I.wrapping_sub(kx);
                if I >= kx && from.is_multiple_of(SW) && from / SW < P {
                    // SAFETY: the vector unit is the caller's.
                    acc[from / SW] = unsafe { V::fma(x, tap, acc[from / SW]) };
                }
            }
        }
        *at = opaque(at.wrapping_add(c));
    }

    /// `v`, with its origin hidden from the optimiser (no instruction).
    #[inline(always)]
    fn opaque(mut v: usize) -> usize {
        // SAFETY: an empty template; the register comes back unchanged.
        unsafe { std::arch::asm!("/* {0} */", inout(reg) v, options(pure, nomem, nostack, preserves_flags)) };
        v
    }

    /// [`rows`] for a `KH × KW` window, horizontal stride `SW` and dilation `DW` (0: `g`'s
    /// own values).
    ///
    /// # Safety
    /// As [`rows`], with each constant either 0 or `g`'s value.
    #[inline(always)]
    unsafe fn rows_for<V: Lanes, L: Lines, const KH: usize, const KW: usize, const SW: usize, const DW: usize>(g: &Depthwise, lo: usize, hi: usize, lines_of: &dyn Fn(usize, usize) -> L, wt: *const f32, out: *mut f32, ep: &Epilogue) {
        let (kh, kw) = if KH == 0 { (g.kh, g.kw) } else { (KH, KW) };
        let (sw, dw) = if SW == 0 { (g.sw, g.dw) } else { (SW, DW) };
        let c = g.c;
        let (x_lo, x_hi) = Depthwise::interior(g.w, g.ow, g.sw, g.pl, kw, g.dw);
        // SAFETY (whole body): every address is an element the caller's contract covers:
        // input taps are inside the image (interior pixels by construction, border ones
        // checked), vectors cover only `lanes` channels from `cb`.
        unsafe {
            for r in lo..hi {
                let (b, oy) = (r / g.oh, r % g.oh);
                let row = Row { lines: lines_of(b, oy), out_row: out.add((b * g.oh + oy) * g.ow * c), res_row: if ep.residual.is_null() { ep.residual } else { ep.residual.add((b * g.oh + oy) * g.ow * c) }, oy };
                // Interior columns, PIXELS at a time: each weight vector serves all of them.
                // Channels innermost, so the taps' reads walk each pixel's channels in order.
                // Window rows in the vertical padding are left out (top and bottom rows).
                let top = oy * g.sh;
                let (ky_lo, ky_hi) = taps_inside(top, g.pt, g.h, kh, g.dh);
                if KH == 3 && KW == 3 && DW == 1 && SW != 0 && x_lo < x_hi && c.is_multiple_of(V::W) && !ep.gelu {
                    let ky = (ky_lo, ky_hi);
                    let (from, to) = match ep.act {
                        Activation::None => interior_3x3::<V, L, SW, 0>(g, &row, wt, x_lo, x_hi, ep, ky),
                        Activation::Relu => interior_3x3::<V, L, SW, 1>(g, &row, wt, x_lo, x_hi, ep, ky),
                        Activation::Relu6 => interior_3x3::<V, L, SW, 2>(g, &row, wt, x_lo, x_hi, ep, ky),
                    };
                    border::<V, L>(g, kh, kw, wt, ep, &row, 0, from);
                    border::<V, L>(g, kh, kw, wt, ep, &row, to, g.ow);
                    continue;
                }
                border::<V, L>(g, kh, kw, wt, ep, &row, 0, x_lo);
                let groups = (x_hi - x_lo) / PIXELS;
                // With the window's size known, whole channel vectors go the other way round
                // within a chunk of pixels: a vector's weights loaded once into registers for
                // the chunk, then its pixels four at a time (reloading the weights for every
                // four pixels made loads outnumber FMAs). A chunk's window rows stay within
                // [`L1_WINDOW_BYTES`], so the passes over its channel vectors reread them from
                // L1 (whole rows, 129 KiB at 112 pixels × 96 channels, came from L2 and made
                // the stride-2 layer slower). The same sums in the same order.
                let mut first_cb = 0;
                let chunk = L1_WINDOW_BYTES / (kh * sw * PIXELS * c * 4);
                // Chunks of one group measured slower than the loop below (120 → 150 µs at
                // 112²×96, stride 2), which they only reorder.
                if KH != 0 && SW == 1 && chunk >= 2 {
                    let whole = c / V::W * V::W;
                    for chunk0 in (0..groups).step_by(chunk) {
                        for cb in (0..whole).step_by(V::W) {
                            let rv = row_vector::<V, L>(g, ep, &row, cb);
                            let wv: [[V; KW]; KH] = std::array::from_fn(|ky| std::array::from_fn(|kx| V::load(wt.add((ky * KW + kx) * c + cb))));
                            // (Eight pixels per step measured slower: 26 → 29 µs at 56²×32.)
                            for group in chunk0..(chunk0 + chunk).min(groups) {
                                pixels_of_vector::<V, L, KH, KW, PIXELS>(g, &row, &rv, &wv, x_lo + group * PIXELS, sw, dw, (ky_lo, ky_hi));
                            }
                        }
                    }
                    first_cb = whole;
                }
                let mut ox = x_lo;
                while ox + PIXELS <= x_hi {
                    let ix0 = ox * sw - g.pl;
                    for cb in (first_cb..c).step_by(V::W) {
                        let rv = row_vector::<V, L>(g, ep, &row, cb);
                        let mut acc = [rv.init; PIXELS];
                        for ky in 0..kh {
                            if ky < ky_lo || ky >= ky_hi {
                                continue;
                            }
                            let in_row = row.lines.line(ky).add(ix0 * c + cb);
                            for kx in 0..kw {
                                let wv = V::load_n(wt.add((ky * kw + kx) * c + cb), rv.lanes);
                                let tap = in_row.add(kx * dw * c);
                                for (p, a) in acc.iter_mut().enumerate() {
                                    *a = V::fma(V::load_n(tap.add(p * sw * c), rv.lanes), wv, *a);
                                }
                            }
                        }
                        for (p, a) in acc.into_iter().enumerate() {
                            finish(g, &rv, ox + p, a);
                        }
                    }
                    ox += PIXELS;
                }
                border::<V, L>(g, kh, kw, wt, ep, &row, ox, g.ow);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Activation;

    /// Every kernel against [`element`] (the scalar definition), bit for bit: odd channel
    /// counts (vector tails), strides, dilations, asymmetric windows, padding wider than
    /// the image, a residual and each activation, one and two threads.
    #[test]
    fn matches_the_scalar_definition() {
        let cases = [
            // n, c, h, w, kh, kw, sh, sw, dh, dw, pt, pl
            (1, 32, 9, 11, 3, 3, 1, 1, 1, 1, 1, 1),
            (2, 19, 8, 7, 3, 3, 2, 2, 1, 1, 1, 1),
            (1, 40, 12, 13, 5, 5, 1, 2, 1, 1, 2, 2),
            (1, 7, 6, 6, 3, 2, 1, 1, 2, 2, 0, 1),
            (1, 17, 3, 4, 3, 3, 1, 1, 1, 1, 3, 3),
            (1, 96, 20, 20, 3, 3, 2, 2, 1, 1, 0, 0),
            (1, 80, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1),
            // Whole vectors, 3×3: the register-blocked interior, over several L1 chunks of
            // pixels with groups of eight, four and single pixels at their ends.
            (1, 96, 5, 31, 3, 3, 1, 1, 1, 1, 1, 1),
            (2, 48, 7, 37, 3, 3, 2, 2, 1, 1, 1, 1),
            // The same path's edge pixels (one window column in the padding) and its top and
            // bottom rows: 14² and 7² images, stride 2 on even and odd widths, padding on
            // one side only, an image three pixels wide.
            (1, 64, 14, 14, 3, 3, 1, 1, 1, 1, 1, 1),
            (2, 32, 14, 14, 3, 3, 2, 2, 1, 1, 1, 1),
            (1, 32, 9, 15, 3, 3, 2, 2, 1, 1, 1, 1),
            (1, 16, 6, 9, 3, 3, 1, 1, 1, 1, 0, 1),
            (1, 16, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1),
            (1, 48, 4, 12, 3, 3, 1, 1, 1, 1, 2, 2),
        ];
        for (n, c, h, w, kh, kw, sh, sw, dh, dw, pt, pl) in cases {
            let oh = (h + 2 * pt - dh * (kh - 1) - 1) / sh + 1;
            let ow = (w + 2 * pl - dw * (kw - 1) - 1) / sw + 1;
            let g = Depthwise { n, c, h, w, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow };
            let x: Vec<f32> = (0..n * h * w * c).map(|i| ((i * 7 % 23) as f32 - 11.0) / 5.0).collect();
            let wt: Vec<f32> = (0..kh * kw * c).map(|i| ((i * 5 % 13) as f32 - 6.0) / 7.0).collect();
            let bias: Vec<f32> = (0..c).map(|i| (i % 5) as f32 * 0.25 - 0.5).collect();
            let residual: Vec<f32> = (0..n * oh * ow * c).map(|i| (i % 9) as f32 * 0.5 - 2.0).collect();
            for (act, with_residual) in [(Activation::None, false), (Activation::Relu6, true), (Activation::Relu, false)] {
                let mut want = vec![0.0f32; n * oh * ow * c];
                let image = |b: usize, oy: usize| ImageLines { first: x.as_ptr().wrapping_add((b * h + oy * sh) * w * c).wrapping_sub(pt * w * c), step: dh * w * c };
                for b in 0..n {
                    for oy in 0..oh {
                        let lines = image(b, oy);
                        for ox in 0..ow {
                            for ch in 0..c {
                                let o = ((b * oh + oy) * ow + ox) * c + ch;
                                let v = unsafe { element(&g, &lines, wt.as_ptr(), oy, ox, ch, bias[ch]) };
                                want[o] = act.apply(if with_residual { v + residual[o] } else { v });
                            }
                        }
                    }
                }
                let ep = Epilogue { bias: bias.as_ptr(), bias_per_row: false, residual: if with_residual { residual.as_ptr() } else { std::ptr::null() }, act, gelu: false };
                // All rows at once, and in two shares as two threads would run them.
                let half = (n * oh).div_ceil(2);
                for shares in [vec![(0, n * oh)], vec![(0, half), (half, n * oh)]] {
                    let mut got = vec![f32::NAN; want.len()];
                    for (lo, hi) in &shares {
                        unsafe { depthwise(g, *lo, *hi, x.as_ptr(), wt.as_ptr(), got.as_mut_ptr(), ep) };
                    }
                    if let Some(i) = (0..want.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
                        let (pix, ch) = (i / c, i % c);
                        panic!("{g:?} {act:?} residual {with_residual}, rows {shares:?}: pixel ({}, {}) channel {ch}: {} vs {}", pix / ow, pix % ow, got[i], want[i]);
                    }
                    let mut portable = vec![f32::NAN; want.len()];
                    unsafe { rows_portable(g, 0, n * oh, &image, wt.as_ptr(), portable.as_mut_ptr(), ep) };
                    assert!(portable.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{g:?} portable");
                    // The AVX2 kernel too, where the CPU has it (dispatch picks AVX-512 first).
                    #[cfg(target_arch = "x86_64")]
                    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                        let mut narrow = vec![f32::NAN; want.len()];
                        unsafe { x86::rows_avx2(g, 0, n * oh, &image, wt.as_ptr(), narrow.as_mut_ptr(), ep) };
                        assert!(narrow.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{g:?} avx2");
                    }
                }
            }
        }
    }
}
