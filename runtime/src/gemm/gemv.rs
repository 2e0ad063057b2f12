//! Dense layers on a few rows (batch 1 and the like) as dot products at the CPU's full
//! vector width: `out[r, u] = act(bias[u] + Σ_p x[r, p]·w[u, p] (+ residual[r, u]))`, the
//! weights row-major `[units, features]` as the layer stores them, or (constant weights,
//! packed at compile time by [`pack_blocked`]) in [`WeightLayout::Blocked`] order. Such a
//! layer is bound by streaming its weights, so the kernel reads each weight once, four units
//! at a time (each load of `x` serves four rows of weights), and threads split the units in
//! tasks (see `pool::parallel_tasks`).
//!
//! The blocked order exists for weights that come from memory: four row-major rows are four
//! short streams (5 KiB each at 1280 features), which the hardware prefetchers follow
//! poorly; the blocked weights are one sequential stream. Streaming MobileNetV2's 5 MB
//! classifier from memory took 290–307 µs row by row and 185–201 µs blocked (a C test on a
//! Zen 4 VM, caches flushed; 97 vs 92 µs from L3).
//!
//! A unit's sum runs over `features` in one fixed order (two vector accumulators, then the
//! lanes), whatever the thread count.
//!
//! [`accumulate_rows`] is the transposed form an LSTM step needs: `out = bias + Σ v[p]·w[p, ..]`
//! over weights stored feature-major, each `w[p, ..]` a contiguous row of outputs, with a
//! block of outputs in vector registers for the whole sum.

use super::Epilogue;
use crate::pool::Shared;

/// Dense layers below this many multiply-adds run on one thread.
const MIN_PARALLEL_MACS: usize = 1 << 16;

/// Units computed together.
const UNITS: usize = 4;

/// Features of one unit kept together in the blocked order: a multiple of every kernel's two
/// vectors (AVX-512: 2 × 16, AVX2: 2 × 8), so no vector load crosses a run.
const RUN: usize = 32;

/// How the weights `[units, features]` are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightLayout {
    /// Row-major, as the layer stores them.
    RowMajor,
    /// Blocks of [`UNITS`] units (the last padded with zero units), each block
    /// `UNITS·features` floats: for each run of up to [`RUN`] features `p0..p0+len`, the run
    /// of unit 0, then unit 1, …; unit `i`'s feature `p` at `p0·UNITS + i·len + (p − p0)`.
    Blocked,
}

/// Floats of [`pack_blocked`]'s result.
pub fn blocked_len(units: usize, features: usize) -> usize {
    units.div_ceil(UNITS) * UNITS * features
}

/// Row-major weights `w` (`units·features` floats) in [`WeightLayout::Blocked`] order.
pub fn pack_blocked(units: usize, features: usize, w: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0f32; blocked_len(units, features)];
    for u in 0..units {
        let (block, i) = (u / UNITS, u % UNITS);
        for p0 in (0..features).step_by(RUN) {
            let len = RUN.min(features - p0);
            let at = block * UNITS * features + p0 * UNITS + i * len;
            out[at..at + len].copy_from_slice(&w[u * features + p0..u * features + p0 + len]);
        }
    }
    out
}

/// The product, on up to `threads` threads.
///
/// # Safety
/// `x` holds `rows·features` floats, `w` `units·features` (`blocked_len` if blocked) in
/// `layout`, `out` (writable, overlapping neither) `rows·units`; the epilogue's bias (per
/// column) holds `units` floats and its residual `rows·units`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemv(threads: usize, rows: usize, units: usize, features: usize, x: *const f32, w: *const f32, layout: WeightLayout, out: *mut f32, ep: Epilogue) {
    let blocks = units.div_ceil(UNITS);
    let threads = if rows * units * features < MIN_PARALLEL_MACS { 1 } else { threads.clamp(1, blocks.max(1)) };
    // Several tasks per thread, so that a core slowed by another process hands part of its
    // share to the other (see `pool::parallel_tasks`).
    let tasks = (threads * crate::pool::TASKS_PER_THREAD).min(blocks).max(threads);
    let per = blocks.div_ceil(tasks) * UNITS;
    // SAFETY: tasks read x, w and the epilogue's operands and write disjoint columns of out.
    let shared = unsafe { Shared::new((x, w, out, ep)) };
    crate::pool::parallel_tasks(threads, tasks, &|t| {
        let (lo, hi) = ((t * per).min(units), ((t + 1) * per).min(units));
        let (x, w, out, ep) = shared.get();
        // SAFETY: the caller's contract; tasks write disjoint columns.
        unsafe { columns(rows, units, features, lo, hi, x, Weights { w, layout, features }, out, ep) };
    });
}

/// Where the weights are and how they are stored.
#[derive(Clone, Copy)]
struct Weights {
    w: *const f32,
    layout: WeightLayout,
    features: usize,
}

impl Weights {
    /// The weights of unit `u0 + i` from feature `p` on, for the block of `n` real units
    /// from `u0` (a multiple of [`UNITS`]); valid up to the end of `p`'s run when blocked. A
    /// short block's missing units reread its last one row-major, and are zeros blocked.
    #[inline(always)]
    fn at(&self, u0: usize, i: usize, n: usize, p: usize) -> *const f32 {
        match self.layout {
            WeightLayout::RowMajor => self.w.wrapping_add((u0 + i.min(n - 1)) * self.features + p),
            WeightLayout::Blocked => {
                let p0 = p / RUN * RUN;
                let len = RUN.min(self.features - p0);
                self.w.wrapping_add(u0 * self.features + p0 * UNITS + i * len + (p - p0))
            }
        }
    }
}

/// Units `lo..hi` of every row, with the best kernel for this CPU.
///
/// # Safety
/// As [`gemv`], with `lo ≤ hi ≤ units` and `lo` a multiple of [`UNITS`].
#[allow(clippy::too_many_arguments)]
unsafe fn columns(rows: usize, units: usize, features: usize, lo: usize, hi: usize, x: *const f32, w: Weights, out: *mut f32, ep: Epilogue) {
    // SAFETY: the caller's contract; each kernel runs only where its features exist.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return x86::columns_avx512(rows, units, features, lo, hi, x, w, out, ep);
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return x86::columns_avx2(rows, units, features, lo, hi, x, w, out, ep);
            }
        }
        for r in 0..rows {
            for u in lo..hi {
                let block = u / UNITS * UNITS;
                let mut s = 0.0f32;
                for p in 0..features {
                    s = (*x.add(r * features + p)).mul_add(*w.at(block, u - block, UNITS, p), s);
                }
                *out.add(r * units + u) = s;
            }
            let o = out.add(r * units + lo);
            ep.shifted(r, lo, units as isize, 1).apply(o, 0, 0, 1, hi - lo, units as isize, 1);
        }
    }
}

/// One term of [`accumulate_rows`]: `len` values `v` and the weights `w[p][0..m]` they scale.
#[derive(Clone, Copy)]
pub struct Term {
    pub v: *const f32,
    pub w: *const f32,
    pub len: usize,
}

/// `out[j] = bias[j] + Σ_terms Σ_p v[p]·w[p·m + j]` for `j < m`, each output summed bias
/// first, then the terms' products in order.
///
/// # Safety
/// `bias` and `out` (writable) hold `m` floats; each term's `v` holds `len` floats and `w`
/// `len·m`.
pub unsafe fn accumulate_rows(m: usize, bias: *const f32, terms: &[Term], out: *mut f32) {
    // SAFETY: the caller's contract; each kernel runs only where its features exist.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return x86::accumulate_rows_avx512(m, bias, terms, out);
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return x86::accumulate_rows_avx2(m, bias, terms, out);
            }
        }
        for j in 0..m {
            let mut s = *bias.add(j);
            for t in terms {
                for p in 0..t.len {
                    s = (*t.v.add(p)).mul_add(*t.w.add(p * m + j), s);
                }
            }
            *out.add(j) = s;
        }
    }
}

/// One LSTM cell update from its gate pre-activations `gates = [i, f, g, o]` (each `h`
/// wide): `c ← σ(f)·c + σ(i)·tanh(g)`, `out = σ(o)·tanh(c)`, with generated code's sigmoid
/// and tanh.
///
/// # Safety
/// `gates` holds `4h` floats, `cell` (writable) and `out` (writable) `h` each.
pub unsafe fn lstm_cell(h: usize, gates: *const f32, cell: *mut f32, out: *mut f32) {
    // SAFETY: the caller's contract; each kernel runs only where its features exist.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return x86::lstm_cell_avx512(h, gates, cell, out);
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return x86::lstm_cell_avx2(h, gates, cell, out);
            }
        }
        let sigmoid = |x: f32| 1.0 / (1.0 + (-x).exp());
        let tanh = |x: f32| sigmoid(2.0 * x).mul_add(2.0, -1.0);
        for j in 0..h {
            let g = |k: usize| *gates.add(k * h + j);
            let c = sigmoid(g(1)).mul_add(*cell.add(j), sigmoid(g(0)) * tanh(g(2)));
            *cell.add(j) = c;
            *out.add(j) = sigmoid(g(3)) * tanh(c);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::simd::Lanes;
    use super::{Epilogue, Term, Weights, UNITS};

    /// # Safety
    /// As [`super::lstm_cell`]; the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn lstm_cell_avx512(h: usize, gates: *const f32, cell: *mut f32, out: *mut f32) {
        // SAFETY: forwarded contract; this function has the feature `cell_update` needs.
        unsafe { cell_update::<__m512>(h, gates, cell, out) }
    }

    /// # Safety
    /// As [`super::lstm_cell`]; the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn lstm_cell_avx2(h: usize, gates: *const f32, cell: *mut f32, out: *mut f32) {
        // SAFETY: forwarded contract; this function has the features `cell_update` needs.
        unsafe { cell_update::<__m256>(h, gates, cell, out) }
    }

    /// # Safety
    /// As [`super::lstm_cell`]; the CPU has `V`'s unit.
    #[inline(always)]
    unsafe fn cell_update<V: Lanes>(h: usize, gates: *const f32, cell: *mut f32, out: *mut f32) {
        // SAFETY (whole body): vectors cover only the `lanes` units left from `j`.
        unsafe {
            let mut j = 0;
            while j < h {
                let lanes = (h - j).min(V::W);
                let i_g = V::sigmoid(V::load_n(gates.add(j), lanes));
                let f_g = V::sigmoid(V::load_n(gates.add(h + j), lanes));
                let g_g = V::tanh(V::load_n(gates.add(2 * h + j), lanes));
                let o_g = V::sigmoid(V::load_n(gates.add(3 * h + j), lanes));
                let c = V::fma(f_g, V::load_n(cell.add(j), lanes), V::mul(i_g, g_g));
                c.store_n(cell.add(j), lanes);
                V::mul(o_g, V::tanh(c)).store_n(out.add(j), lanes);
                j += lanes;
            }
        }
    }

    /// Vectors of outputs held in registers through a whole sum.
    const BLOCK: usize = 16;

    /// # Safety
    /// As [`super::accumulate_rows`]; the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn accumulate_rows_avx512(m: usize, bias: *const f32, terms: &[Term], out: *mut f32) {
        // SAFETY: forwarded contract; this function has the feature `rows` needs.
        unsafe { rows::<__m512>(m, bias, terms, out) }
    }

    /// # Safety
    /// As [`super::accumulate_rows`]; the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn accumulate_rows_avx2(m: usize, bias: *const f32, terms: &[Term], out: *mut f32) {
        // SAFETY: forwarded contract; this function has the features `rows` needs.
        unsafe { rows::<__m256>(m, bias, terms, out) }
    }

    /// # Safety
    /// As [`super::accumulate_rows`]; the CPU has `V`'s unit.
    #[inline(always)]
    unsafe fn rows<V: Lanes>(m: usize, bias: *const f32, terms: &[Term], out: *mut f32) {
        // SAFETY (whole body): vectors cover only the `lanes` outputs left from `j0`.
        unsafe {
            let mut j0 = 0;
            while j0 < m {
                // A block of up to BLOCK vectors; the last vector may be short.
                let width = (m - j0).min(BLOCK * V::W);
                let vectors = width.div_ceil(V::W);
                let lanes = |v: usize| (width - v * V::W).min(V::W);
                let mut acc = [V::zero(); BLOCK];
                for (v, a) in acc.iter_mut().enumerate().take(vectors) {
                    *a = V::load_n(bias.add(j0 + v * V::W), lanes(v));
                }
                for t in terms {
                    for p in 0..t.len {
                        let s = V::splat(*t.v.add(p));
                        let row = t.w.add(p * m + j0);
                        if vectors == BLOCK && width == BLOCK * V::W {
                            for (v, a) in acc.iter_mut().enumerate() {
                                *a = V::fma(s, V::load(row.add(v * V::W)), *a);
                            }
                        } else {
                            for (v, a) in acc.iter_mut().enumerate().take(vectors) {
                                *a = V::fma(s, V::load_n(row.add(v * V::W), lanes(v)), *a);
                            }
                        }
                    }
                }
                for (v, a) in acc.iter().enumerate().take(vectors) {
                    a.store_n(out.add(j0 + v * V::W), lanes(v));
                }
                j0 += width;
            }
        }
    }

    macro_rules! entry {
        ($name:ident, $v:ty, $features:literal) => {
            /// # Safety
            /// As [`super::columns`]; the CPU has the features named.
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            pub(super) unsafe fn $name(rows: usize, units: usize, features: usize, lo: usize, hi: usize, x: *const f32, w: Weights, out: *mut f32, ep: Epilogue) {
                // SAFETY: forwarded contract; this function has the features `columns` needs.
                unsafe { columns::<$v>(rows, units, features, lo, hi, x, w, out, ep) }
            }
        };
    }
    entry!(columns_avx512, __m512, "avx512f");
    entry!(columns_avx2, __m256, "avx2,fma");

    /// # Safety
    /// As [`super::columns`]; the CPU has `V`'s unit.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn columns<V: Lanes>(rows: usize, units: usize, features: usize, lo: usize, hi: usize, x: *const f32, w: Weights, out: *mut f32, ep: Epilogue) {
        // SAFETY (whole body): rows of x and w hold `features` floats; vectors cover only
        // their `lanes`, and (their starts multiples of `W`, `2W` dividing the blocked runs)
        // none crosses a blocked run; units `lo..hi` and rows `0..rows` of out exist.
        unsafe {
            for r in 0..rows {
                let xr = x.add(r * features);
                let mut u = lo;
                while u < hi {
                    let n = (hi - u).min(UNITS);
                    let mut acc = [[V::zero(); 2]; UNITS];
                    let mut p = 0;
                    while p + 2 * V::W <= features {
                        let x0 = V::load(xr.add(p));
                        let x1 = V::load(xr.add(p + V::W));
                        for (i, a) in acc.iter_mut().enumerate() {
                            let wp = w.at(u, i, n, p);
                            a[0] = V::fma(x0, V::load(wp), a[0]);
                            a[1] = V::fma(x1, V::load(wp.add(V::W)), a[1]);
                        }
                        p += 2 * V::W;
                    }
                    while p < features {
                        let lanes = (features - p).min(V::W);
                        let xv = V::load_n(xr.add(p), lanes);
                        for (i, a) in acc.iter_mut().enumerate() {
                            a[0] = V::fma(xv, V::load_n(w.at(u, i, n, p), lanes), a[0]);
                        }
                        p += lanes;
                    }
                    for (i, a) in acc.iter().enumerate().take(n) {
                        let mut s = V::add(a[0], a[1]).sum();
                        if !ep.bias.is_null() {
                            s += *ep.bias.add(u + i);
                        }
                        let o = r * units + u + i;
                        if !ep.residual.is_null() {
                            s += *ep.residual.add(o);
                        }
                        let s = ep.act.apply(s);
                        *out.add(o) = if ep.gelu { super::super::epilogue::gelu(s) } else { s };
                    }
                    u += n;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Activation;

    /// Against f64 sums: odd feature counts (vector tails), units not a multiple of the
    /// block, several rows, bias, residual and activation; two threads give the same bits.
    /// The AVX2 kernels, where the CPU has them (dispatch picks AVX-512 first): dot products
    /// within rounding of the dispatched ones, gate sums bit for bit (same order per output),
    /// the LSTM cell within 1e-6.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_kernels_agree() {
        if !(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")) {
            return;
        }
        let (rows, units, features) = (2usize, 37usize, 45usize);
        let x: Vec<f32> = (0..rows * features).map(|i| ((i * 7 % 23) as f32 - 11.0) / 9.0).collect();
        let w: Vec<f32> = (0..units * features).map(|i| ((i * 5 % 17) as f32 - 8.0) / 13.0).collect();
        let bias: Vec<f32> = (0..units).map(|i| (i % 3) as f32 - 1.0).collect();
        let ep = Epilogue { bias: bias.as_ptr(), act: Activation::Relu6, ..Epilogue::NONE };
        let (mut wide, mut narrow, mut narrow_blocked) = (vec![0.0f32; rows * units], vec![0.0f32; rows * units], vec![0.0f32; rows * units]);
        let packed = pack_blocked(units, features, &w);
        unsafe {
            columns(rows, units, features, 0, units, x.as_ptr(), Weights { w: w.as_ptr(), layout: WeightLayout::RowMajor, features }, wide.as_mut_ptr(), ep);
            x86::columns_avx2(rows, units, features, 0, units, x.as_ptr(), Weights { w: w.as_ptr(), layout: WeightLayout::RowMajor, features }, narrow.as_mut_ptr(), ep);
            x86::columns_avx2(rows, units, features, 0, units, x.as_ptr(), Weights { w: packed.as_ptr(), layout: WeightLayout::Blocked, features }, narrow_blocked.as_mut_ptr(), ep);
        }
        for (a, b) in wide.iter().zip(&narrow) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "dot products: {a} vs {b}");
        }
        assert_eq!(narrow, narrow_blocked, "avx2 dot products, blocked weights");
        let m = 70;
        let wt: Vec<f32> = (0..features * m).map(|i| ((i * 3 % 11) as f32 - 5.0) / 7.0).collect();
        let b0: Vec<f32> = (0..m).map(|j| j as f32 / 10.0).collect();
        let terms = [Term { v: x.as_ptr(), w: wt.as_ptr(), len: features }];
        let (mut sums, mut sums2) = (vec![0.0f32; m], vec![0.0f32; m]);
        unsafe {
            accumulate_rows(m, b0.as_ptr(), &terms, sums.as_mut_ptr());
            x86::accumulate_rows_avx2(m, b0.as_ptr(), &terms, sums2.as_mut_ptr());
        }
        assert_eq!(sums, sums2, "gate sums");
        let h = 13;
        let gates: Vec<f32> = (0..4 * h).map(|i| ((i * 7 % 29) as f32 - 14.0) / 3.0).collect();
        let (mut c1, mut o1) = (vec![0.5f32; h], vec![0.0f32; h]);
        let (mut c2, mut o2) = (vec![0.5f32; h], vec![0.0f32; h]);
        unsafe {
            lstm_cell(h, gates.as_ptr(), c1.as_mut_ptr(), o1.as_mut_ptr());
            x86::lstm_cell_avx2(h, gates.as_ptr(), c2.as_mut_ptr(), o2.as_mut_ptr());
        }
        for j in 0..h {
            assert!((c1[j] - c2[j]).abs() <= 1e-6 * (1.0 + c1[j].abs()) && (o1[j] - o2[j]).abs() <= 1e-6, "lstm cell {j}");
        }
    }

    #[test]
    fn lstm_cell_matches_f64() {
        for h in [64usize, 13, 1] {
            let gates: Vec<f32> = (0..4 * h).map(|i| ((i * 7 % 29) as f32 - 14.0) / 3.0).collect();
            let c0: Vec<f32> = (0..h).map(|j| (j % 5) as f32 - 2.0).collect();
            let (mut cell, mut out) = (c0.clone(), vec![f32::NAN; h]);
            unsafe { lstm_cell(h, gates.as_ptr(), cell.as_mut_ptr(), out.as_mut_ptr()) };
            let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
            for j in 0..h {
                let g = |k: usize| gates[k * h + j] as f64;
                let c = sig(g(1)) * c0[j] as f64 + sig(g(0)) * g(2).tanh();
                assert!((cell[j] as f64 - c).abs() <= 1e-6 * (1.0 + c.abs()), "h {h} j {j}: cell {} vs {c}", cell[j]);
                let o = sig(g(3)) * c.tanh();
                assert!((out[j] as f64 - o).abs() <= 1e-6, "h {h} j {j}: out {} vs {o}", out[j]);
            }
        }
    }

    #[test]
    fn accumulate_rows_matches_f64_sums() {
        for (m, la, lb) in [(256, 32, 64), (37, 5, 3), (600, 1, 0), (1, 2, 2)] {
            let bias: Vec<f32> = (0..m).map(|j| (j % 5) as f32 - 2.0).collect();
            let va: Vec<f32> = (0..la).map(|p| (p % 7) as f32 / 3.0 - 1.0).collect();
            let vb: Vec<f32> = (0..lb).map(|p| (p % 4) as f32 / 2.0 - 0.7).collect();
            let wa: Vec<f32> = (0..la * m).map(|i| ((i * 5 % 17) as f32 - 8.0) / 9.0).collect();
            let wb: Vec<f32> = (0..lb * m).map(|i| ((i * 3 % 13) as f32 - 6.0) / 7.0).collect();
            let mut out = vec![f32::NAN; m];
            let terms = [Term { v: va.as_ptr(), w: wa.as_ptr(), len: la }, Term { v: vb.as_ptr(), w: wb.as_ptr(), len: lb }];
            unsafe { accumulate_rows(m, bias.as_ptr(), &terms, out.as_mut_ptr()) };
            for j in 0..m {
                let want = bias[j] as f64 + (0..la).map(|p| va[p] as f64 * wa[p * m + j] as f64).sum::<f64>() + (0..lb).map(|p| vb[p] as f64 * wb[p * m + j] as f64).sum::<f64>();
                assert!((out[j] as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()), "m {m} j {j}: {} vs {want}", out[j]);
            }
        }
    }

    #[test]
    fn matches_f64_dot_products() {
        for (rows, units, features) in [(1, 10, 784), (3, 37, 33), (1, 5, 7), (2, 512, 512), (1, 1, 1), (1, 1000, 1280), (2, 9, 50)] {
            let x: Vec<f32> = (0..rows * features).map(|i| ((i * 7 % 23) as f32 - 11.0) / 9.0).collect();
            let w: Vec<f32> = (0..units * features).map(|i| ((i * 5 % 17) as f32 - 8.0) / 13.0).collect();
            let bias: Vec<f32> = (0..units).map(|i| (i % 3) as f32 - 1.0).collect();
            let residual: Vec<f32> = (0..rows * units).map(|i| (i % 4) as f32 * 0.5).collect();
            let ep = Epilogue { bias: bias.as_ptr(), bias_per_row: false, residual: residual.as_ptr(), act: Activation::Relu, gelu: false };
            let mut one = vec![f32::NAN; rows * units];
            unsafe { gemv(1, rows, units, features, x.as_ptr(), w.as_ptr(), WeightLayout::RowMajor, one.as_mut_ptr(), ep) };
            for r in 0..rows {
                for u in 0..units {
                    let s: f64 = (0..features).map(|p| x[r * features + p] as f64 * w[u * features + p] as f64).sum();
                    let want = (s + bias[u] as f64 + residual[r * units + u] as f64).max(0.0);
                    let got = one[r * units + u] as f64;
                    assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "{rows}x{units}x{features} ({r}, {u}): {got} vs {want}");
                }
            }
            // Split by hand as two threads would (the threshold keeps small ones on one), and
            // the blocked weights: the same sums in the same order, so the same bits.
            let packed = pack_blocked(units, features, &w);
            for (weights, layout) in [(&w, WeightLayout::RowMajor), (&packed, WeightLayout::Blocked)] {
                let mut two = vec![f32::NAN; rows * units];
                let half = units.div_ceil(2 * UNITS) * UNITS;
                for (lo, hi) in [(0, half.min(units)), (half.min(units), units)] {
                    unsafe { columns(rows, units, features, lo, hi, x.as_ptr(), Weights { w: weights.as_ptr(), layout, features }, two.as_mut_ptr(), ep) };
                }
                assert_eq!(one, two, "{rows}x{units}x{features} {layout:?}");
                let mut threads = vec![f32::NAN; rows * units];
                unsafe { gemv(2, rows, units, features, x.as_ptr(), weights.as_ptr(), layout, threads.as_mut_ptr(), ep) };
                assert_eq!(one, threads, "{rows}x{units}x{features} {layout:?} on two threads");
            }
        }
    }
}
