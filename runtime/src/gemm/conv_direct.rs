//! A direct convolution of row-major (NCHW) images with few input channels, stride 1: each
//! output row computed as vectors along `x`, several filters at once, their sums in
//! registers over every tap. Through the GEMM such a layer is mostly overhead: with one
//! input channel and a 5×5 window (LeNet-5's first layer) the reduction is 25 long, so the
//! im2col copy costs as much as the product and six filters fill three quarters of each
//! 8-row register tile. Here a tap costs a vector load per `W` outputs and one
//! multiply-add per filter, and nothing is copied but the image, once, into zero-padded
//! rows (so that every load is a whole vector inside the buffer).

use super::Epilogue;

/// One image's geometry: `c` channels of `h × w` in, `f` filters of `kh × kw` (dilation
/// `dh`, `dw`) with `pt` rows and `pl` columns of zero padding before the image, `oh × ow`
/// out; stride 1.
#[derive(Clone, Copy, Debug)]
pub struct DirectConv {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub f: usize,
    pub kh: usize,
    pub kw: usize,
    pub dh: usize,
    pub dw: usize,
    pub pt: usize,
    pub pl: usize,
    pub oh: usize,
    pub ow: usize,
}

/// Floats per vector of the kernel this CPU runs (the rows are computed in blocks of one or
/// two vectors).
pub fn lanes() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return 16;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return 8;
        }
    }
    1
}

/// Products below this many multiply-adds run on one thread.
const MIN_PARALLEL_MACS: usize = 1 << 21;

impl DirectConv {
    fn macs(&self) -> usize {
        self.f * self.oh * self.ow * self.c * self.kh * self.kw
    }

    /// Padded rows (per channel) that output rows `y0..y1` read.
    fn padded_rows(&self, y0: usize, y1: usize) -> usize {
        y1 - y0 + (self.kh - 1) * self.dh
    }

    /// Floats in one padded row when the kernel reads `block` outputs at a time: every block
    /// of a row (the last one whole), shifted by any tap.
    fn padded_width(&self, block: usize) -> usize {
        self.ow.next_multiple_of(block) + (self.kw - 1) * self.dw
    }
}

/// `out[f, oh, ow] = Σ x[c, oy + ky·dh − pt, ox + kx·dw − pl] · wt[f, c, ky, kx]` (zero
/// outside the image), the sum over `c`, `ky`, `kx` in that order, then the epilogue (bias
/// per filter, residual shaped like `out`, activation), on up to `threads` threads. Every
/// output is computed by the same operations whatever the thread count.
///
/// # Safety
/// `x` holds `c·h·w` floats, `wt` `f·c·kh·kw`, `out` (writable, overlapping neither) `f·oh·ow`;
/// the epilogue's bias, if any, is per filter (`bias_per_row`);
/// `oh + (kh − 1)·dh ≤ pt + h + (padding below)` and likewise for columns, i.e. the geometry
/// is a convolution's (every window inside the padded image); `kh`, `kw`, `dh`, `dw` ≥ 1;
/// the epilogue's bias holds `f` floats and its residual `f·oh·ow`.
pub unsafe fn conv_direct(threads: usize, g: DirectConv, x: *const f32, wt: *const f32, out: *mut f32, ep: Epilogue) {
    if g.f == 0 || g.oh == 0 || g.ow == 0 {
        return;
    }
    let threads = if g.macs() < MIN_PARALLEL_MACS { 1 } else { threads.clamp(1, g.oh) };
    // SAFETY: tasks read x and wt and write disjoint rows of every filter's plane of out.
    let shared = unsafe { crate::pool::Shared::new((x, wt, out, ep)) };
    crate::pool::parallel_tasks(threads, threads, &|t| {
        let (x, wt, out, ep) = shared.get();
        let (y0, y1) = (g.oh * t / threads, g.oh * (t + 1) / threads);
        if y0 < y1 {
            // SAFETY: the caller's contract, for rows y0..y1.
            unsafe { rows(g, y0, y1, x, wt, out, ep) };
        }
    });
}

/// Output rows `y0..y1` with the best kernel for this CPU.
///
/// # Safety
/// As [`conv_direct`], for rows inside the output.
unsafe fn rows(g: DirectConv, y0: usize, y1: usize, x: *const f32, wt: *const f32, out: *mut f32, ep: Epilogue) {
    // The kernels take the buffer rather than borrow it themselves: a closure inside a
    // function with target features does not inherit them.
    PADDED.with(|pad| {
        let pad = &mut *pad.borrow_mut();
        // SAFETY: the caller's contract; each kernel runs only where its features exist.
        unsafe {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    return x86::rows_avx512(g, y0, y1, x, wt, out, ep, pad);
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    return x86::rows_avx2(g, y0, y1, x, wt, out, ep, pad);
                }
            }
            rows_portable(g, y0, y1, x, wt, out, ep, pad)
        }
    })
}

/// Input rows `y0..y1 + (kh − 1)·dh` of every channel, in the padded coordinates, copied
/// into `pad` (`c` planes of `padded_rows × width` floats) with zeros outside the image.
///
/// # Safety
/// As [`conv_direct`]; `width ≥ padded_width` of the block the caller reads.
unsafe fn fill_padded(g: &DirectConv, y0: usize, y1: usize, x: *const f32, width: usize, pad: &mut Vec<f32>) {
    let prows = g.padded_rows(y0, y1);
    pad.clear();
    pad.resize(g.c * prows * width, 0.0);
    for ci in 0..g.c {
        for r in 0..prows {
            // Padded row y0 + r is image row y0 + r − pt.
            let Some(iy) = (y0 + r).checked_sub(g.pt).filter(|&iy| iy < g.h) else { continue };
            let cols = g.w.min(width.saturating_sub(g.pl));
            let dst = &mut pad[(ci * prows + r) * width + g.pl..][..cols];
            // SAFETY: row iy of channel ci is inside the image.
            dst.copy_from_slice(unsafe { std::slice::from_raw_parts(x.add((ci * g.h + iy) * g.w), cols) });
        }
    }
}

thread_local! {
    /// Each thread's padded rows.
    static PADDED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Plain Rust, for CPUs without AVX2: the same sums in the same order.
///
/// # Safety
/// As [`rows`].
#[allow(clippy::too_many_arguments)]
unsafe fn rows_portable(g: DirectConv, y0: usize, y1: usize, x: *const f32, wt: *const f32, out: *mut f32, ep: Epilogue, pad: &mut Vec<f32>) {
    let width = g.padded_width(1);
    let prows = g.padded_rows(y0, y1);
    let taps = g.kh * g.kw;
    {
        // SAFETY (whole body): the caller's contract; padded reads stay inside the rows
        // filled for y0..y1, writes inside rows y0..y1 of out.
        unsafe {
            fill_padded(&g, y0, y1, x, width, pad);
            for fi in 0..g.f {
                for y in y0..y1 {
                    for ox in 0..g.ow {
                        let mut acc = 0.0f32;
                        for ci in 0..g.c {
                            for ky in 0..g.kh {
                                let row = &pad[(ci * prows + y - y0 + ky * g.dh) * width..];
                                for kx in 0..g.kw {
                                    acc = row[ox + kx * g.dw].mul_add(*wt.add((fi * g.c + ci) * taps + ky * g.kw + kx), acc);
                                }
                            }
                        }
                        *out.add((fi * g.oh + y) * g.ow + ox) = acc;
                    }
                }
            }
            if !ep.is_none() {
                let plane = g.oh * g.ow;
                ep.apply(out.add(y0 * g.ow), 0, y0 * g.ow, g.f, (y1 - y0) * g.ow, plane as isize, 1);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::simd::Lanes;
    use super::{DirectConv, Epilogue};

    /// # Safety
    /// As [`super::rows`]; the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn rows_avx512(g: DirectConv, y0: usize, y1: usize, x: *const f32, wt: *const f32, out: *mut f32, ep: Epilogue, pad: &mut Vec<f32>) {
        // 24 accumulators of the 32 registers (filters × vectors along x).
        // SAFETY: forwarded; this function has the feature the kernel needs.
        unsafe { rows::<__m512>(g, y0, y1, x, wt, out, ep, pad, 24) }
    }

    /// # Safety
    /// As [`super::rows`]; the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn rows_avx2(g: DirectConv, y0: usize, y1: usize, x: *const f32, wt: *const f32, out: *mut f32, ep: Epilogue, pad: &mut Vec<f32>) {
        // 12 accumulators of the 16 registers.
        // SAFETY: forwarded; this function has the features the kernel needs.
        unsafe { rows::<__m256>(g, y0, y1, x, wt, out, ep, pad, 12) }
    }

    /// Rows `y0..y1`: blocks of `XV` vectors along each row (two where the row is wider than
    /// one), filters in groups of as many as `registers` accumulators allow, spread evenly.
    ///
    /// # Safety
    /// As [`super::rows`]; the CPU has `V`'s unit.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn rows<V: Lanes>(g: DirectConv, y0: usize, y1: usize, x: *const f32, wt: *const f32, out: *mut f32, ep: Epilogue, pad: &mut Vec<f32>, registers: usize) {
        let xv = if g.ow > V::W { 2 } else { 1 };
        let block = xv * V::W;
        let width = g.padded_width(block);
        // (At most twelve filters a tile: the kernels instantiated below.)
        let most = (registers / xv).min(12);
        let groups = g.f.div_ceil(most);
        {
            // SAFETY (whole body): the caller's contract; `fill_padded` made every row the
            // tiles read `width` floats long, enough for a whole block at every tap.
            unsafe {
                super::fill_padded(&g, y0, y1, x, width, pad);
                let p = Padded { base: pad.as_ptr(), prows: g.padded_rows(y0, y1), width, y0 };
                for grp in 0..groups {
                    let (f0, f1) = (g.f * grp / groups, g.f * (grp + 1) / groups);
                    for y in y0..y1 {
                        for x0 in (0..g.ow).step_by(block) {
                            macro_rules! tile {
                                ($($fb:literal)*) => {
                                    match (f1 - f0, xv) {
                                        $(($fb, 1) => tile::<V, $fb, 1>(&g, &p, wt, out, &ep, f0, y, x0),)*
                                        $(($fb, 2) => tile::<V, $fb, 2>(&g, &p, wt, out, &ep, f0, y, x0),)*
                                        (fb, xv) => unreachable!("{fb} filters × {xv} vectors exceed the registers"),
                                    }
                                };
                            }
                            tile!(1 2 3 4 5 6 7 8 9 10 11 12);
                        }
                    }
                }
            }
        }
    }

    /// A thread's padded rows: `prows` rows of `width` floats per channel, the first being
    /// padded row `y0` (output row `y0`'s first tap row).
    struct Padded {
        base: *const f32,
        prows: usize,
        width: usize,
        y0: usize,
    }

    /// Filters `f0..f0 + FB` at outputs `x0..x0 + XV·W` (those inside the row) of row `y`,
    /// the epilogue applied in registers (in the scalar epilogue's order: bias, residual,
    /// activation; the same bits).
    ///
    /// # Safety
    /// As [`rows`], for a tile inside the output; `FB·XV` accumulators fit the registers;
    /// the epilogue's bias is per filter.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<V: Lanes, const FB: usize, const XV: usize>(g: &DirectConv, p: &Padded, wt: *const f32, out: *mut f32, ep: &Epilogue, f0: usize, y: usize, x0: usize) {
        // SAFETY (whole body): loads stay inside the padded rows (`padded_width`), weight
        // reads inside filters f0..f0 + FB, stores inside row y of those filters' planes.
        unsafe {
            let mut acc = [[V::zero(); XV]; FB];
            let taps = g.kh * g.kw;
            for ci in 0..g.c {
                for ky in 0..g.kh {
                    let row = p.base.add((ci * p.prows + y - p.y0 + ky * g.dh) * p.width + x0);
                    let w = wt.add((f0 * g.c + ci) * taps + ky * g.kw);
                    for kx in 0..g.kw {
                        let mut xs = [V::zero(); XV];
                        for (v, xsv) in xs.iter_mut().enumerate() {
                            *xsv = V::load(row.add(kx * g.dw + v * V::W));
                        }
                        for (fi, a) in acc.iter_mut().enumerate() {
                            let wv = V::splat(*w.add(fi * g.c * taps + kx));
                            for v in 0..XV {
                                a[v] = V::fma(wv, xs[v], a[v]);
                            }
                        }
                    }
                }
            }
            let plane = g.oh * g.ow;
            for (fi, a) in acc.iter().enumerate() {
                let at = (f0 + fi) * plane + y * g.ow + x0;
                let bias = (!ep.bias.is_null()).then(|| V::splat(*ep.bias.add(f0 + fi)));
                for (v, &av) in a.iter().enumerate() {
                    let lanes = (g.ow - x0).saturating_sub(v * V::W).min(V::W);
                    if lanes == 0 {
                        continue;
                    }
                    let mut r = av;
                    if let Some(b) = bias {
                        r = V::add(r, b);
                    }
                    if !ep.residual.is_null() {
                        r = V::add(r, V::load_n(ep.residual.add(at + v * V::W), lanes));
                    }
                    V::activate(r, ep.act, ep.gelu).store_n(out.add(at + v * V::W), lanes);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against an f64 reference: one and several channels, square and oblong windows,
    /// dilation, padding on any side (or none), rows shorter and longer than a vector, filter
    /// counts that leave uneven groups, with and without the epilogue; every thread count
    /// gives the same bits.
    #[test]
    fn matches_f64_convolution() {
        // (c, h, w, f, kh, kw, dh, dw, [pt, pl, pb, pr])
        let cases = [
            (1, 28, 28, 6, 5, 5, 1, 1, [2, 2, 2, 2]),
            (1, 9, 40, 13, 3, 3, 1, 1, [1, 1, 1, 1]),
            (3, 11, 17, 25, 3, 2, 2, 1, [0, 3, 2, 0]),
            (2, 5, 5, 1, 1, 1, 1, 1, [0, 0, 0, 0]),
            (1, 7, 33, 4, 2, 4, 1, 3, [1, 0, 0, 2]),
            (4, 70, 70, 8, 3, 3, 1, 1, [1, 1, 1, 1]),
        ];
        for (c, h, w, f, kh, kw, dh, dw, [pt, pl, pb, pr]) in cases {
            let oh = h + pt + pb - (kh - 1) * dh;
            let ow = w + pl + pr - (kw - 1) * dw;
            let g = DirectConv { c, h, w, f, kh, kw, dh, dw, pt, pl, oh, ow };
            let x: Vec<f32> = (0..c * h * w).map(|i| ((i * 7 % 23) as f32 - 11.0) / 7.0).collect();
            let wt: Vec<f32> = (0..f * c * kh * kw).map(|i| ((i * 5 % 19) as f32 - 9.0) / 6.0).collect();
            let bias: Vec<f32> = (0..f).map(|i| i as f32 / 4.0 - 1.0).collect();
            let residual: Vec<f32> = (0..f * oh * ow).map(|i| ((i * 3 % 11) as f32 - 5.0) / 3.0).collect();
            for with_ep in [false, true] {
                let ep = if with_ep { Epilogue { bias: bias.as_ptr(), bias_per_row: true, residual: residual.as_ptr(), act: crate::Activation::Relu, gelu: false } } else { Epilogue::NONE };
                let mut one = vec![f32::NAN; f * oh * ow];
                unsafe { conv_direct(1, g, x.as_ptr(), wt.as_ptr(), one.as_mut_ptr(), ep) };
                for fi in 0..f {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut want = 0.0f64;
                            for ci in 0..c {
                                for ky in 0..kh {
                                    for kx in 0..kw {
                                        let (iy, ix) = ((oy + ky * dh) as isize - pt as isize, (ox + kx * dw) as isize - pl as isize);
                                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                            want += x[(ci * h + iy as usize) * w + ix as usize] as f64 * wt[((fi * c + ci) * kh + ky) * kw + kx] as f64;
                                        }
                                    }
                                }
                            }
                            if with_ep {
                                want = (want + bias[fi] as f64 + residual[(fi * oh + oy) * ow + ox] as f64).max(0.0);
                            }
                            let got = one[(fi * oh + oy) * ow + ox] as f64;
                            assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "{g:?} ({fi}, {oy}, {ox}): {got} vs {want}");
                        }
                    }
                }
                // Rows split among threads (forced: these products are below the threshold).
                let mut split = vec![f32::NAN; one.len()];
                for (y0, y1) in [(0, oh / 3), (oh / 3, oh)] {
                    if y0 < y1 {
                        unsafe { rows(g, y0, y1, x.as_ptr(), wt.as_ptr(), split.as_mut_ptr(), ep) };
                    }
                }
                assert_eq!(one.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), split.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{g:?}");
                let mut two = vec![f32::NAN; one.len()];
                unsafe { conv_direct(2, g, x.as_ptr(), wt.as_ptr(), two.as_mut_ptr(), ep) };
                assert_eq!(one.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), two.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{g:?}");
            }
        }
    }

    /// The AVX2 kernel, where the CPU has it (dispatch picks AVX-512 first), against the one
    /// dispatch picks: the same operations per output, so the same bits.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_kernel_matches_the_dispatched_one() {
        if !(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")) {
            return;
        }
        for g in [DirectConv { c: 1, h: 28, w: 28, f: 6, kh: 5, kw: 5, dh: 1, dw: 1, pt: 2, pl: 2, oh: 28, ow: 28 }, DirectConv { c: 3, h: 9, w: 7, f: 14, kh: 3, kw: 3, dh: 2, dw: 1, pt: 1, pl: 1, oh: 7, ow: 7 }] {
            let x: Vec<f32> = (0..g.c * g.h * g.w).map(|i| ((i * 7 % 23) as f32 - 11.0) / 7.0).collect();
            let wt: Vec<f32> = (0..g.f * g.c * g.kh * g.kw).map(|i| ((i * 5 % 19) as f32 - 9.0) / 6.0).collect();
            let bias: Vec<f32> = (0..g.f).map(|i| i as f32 / 4.0 - 1.0).collect();
            let ep = Epilogue { bias: bias.as_ptr(), bias_per_row: true, act: crate::Activation::Relu6, ..Epilogue::NONE };
            let mut want = vec![f32::NAN; g.f * g.oh * g.ow];
            let mut got = want.clone();
            unsafe { conv_direct(1, g, x.as_ptr(), wt.as_ptr(), want.as_mut_ptr(), ep) };
            unsafe { x86::rows_avx2(g, 0, g.oh, x.as_ptr(), wt.as_ptr(), got.as_mut_ptr(), ep, &mut Vec::new()) };
            assert_eq!(got, want, "{g:?}");
        }
    }

    /// The portable kernel, which CPUs without AVX2 run, against the vector one, with and
    /// without an epilogue (the scalar one against the vector one in registers).
    #[test]
    fn portable_kernel_matches_the_vector_one() {
        let g = DirectConv { c: 2, h: 13, w: 21, f: 7, kh: 3, kw: 5, dh: 1, dw: 1, pt: 1, pl: 2, oh: 13, ow: 21 };
        let x: Vec<f32> = (0..g.c * g.h * g.w).map(|i| ((i * 7 % 23) as f32 - 11.0) / 7.0).collect();
        let wt: Vec<f32> = (0..g.f * g.c * g.kh * g.kw).map(|i| ((i * 5 % 19) as f32 - 9.0) / 6.0).collect();
        let bias: Vec<f32> = (0..g.f).map(|i| i as f32 / 4.0 - 1.0).collect();
        let residual: Vec<f32> = (0..g.f * g.oh * g.ow).map(|i| ((i * 3 % 11) as f32 - 5.0) / 3.0).collect();
        let gelu = Epilogue { bias: bias.as_ptr(), bias_per_row: true, residual: residual.as_ptr(), act: crate::Activation::None, gelu: true };
        let relu6 = Epilogue { bias: bias.as_ptr(), bias_per_row: true, act: crate::Activation::Relu6, ..Epilogue::NONE };
        for ep in [Epilogue::NONE, gelu, relu6] {
            let mut vector = vec![f32::NAN; g.f * g.oh * g.ow];
            let mut portable = vector.clone();
            unsafe { conv_direct(1, g, x.as_ptr(), wt.as_ptr(), vector.as_mut_ptr(), ep) };
            unsafe { rows_portable(g, 0, g.oh, x.as_ptr(), wt.as_ptr(), portable.as_mut_ptr(), ep, &mut Vec::new()) };
            // Both sum every output's taps in the same order with fused multiply-adds.
            assert_eq!(vector, portable, "{ep:?}");
        }
    }
}
