//! Max and average pooling of NHWC images at the CPU's full vector width (AVX-512: 16
//! channels per vector, AVX2: 8). Generated code, limited to 128-bit vectors and to
//! Cranelift's `fmax` (a NaN- and signed-zero-exact sequence of about eight instructions),
//! took 640 µs for ResNet-18's 3×3 stem pooling of 112²×64 values.
//!
//! Each output pixel's channels are one run of vectors. A window's taps are visited in order
//! (row by row, left to right), those in the padding skipped: a maximum starts from −∞ and a
//! NaN anywhere in the window gives NaN (PyTorch's rule); an average sums in f32 from zero
//! and multiplies by `1/count` of the taps inside (the padding does not count), as the
//! generated kernel does. Every thread count gives the same bits.

/// One pooling: `out[b, oy, ox, ch]` over the window of `x[b, oy·sh − pt + ky, ox·sw − pl +
/// kx, ch]`, both tensors NHWC (channels innermost).
#[derive(Clone, Copy, Debug)]
pub struct Pool {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub pt: usize,
    pub pl: usize,
    pub oh: usize,
    pub ow: usize,
    /// Maximum (true) or average (false).
    pub max: bool,
}

impl Pool {
    /// The input rows (or columns) `[lo, hi)` inside the image of the window at output index
    /// `o`: `o·s − p + t` for `t < taps`, clipped to `[0, len)`.
    fn span(o: usize, s: usize, p: usize, taps: usize, len: usize) -> (usize, usize) {
        let start = o * s;
        let lo = start.saturating_sub(p).min(len);
        let hi = (start + taps).saturating_sub(p).min(len);
        (lo, hi.max(lo))
    }
}

/// Output rows `lo..hi` of the pooling `g` (rows counted over all images, so threads split by
/// handing out disjoint ranges), with the best kernel for this CPU.
///
/// # Safety
/// `x` holds `n·h·w·c` floats, `out` (writable, not overlapping `x`) `n·oh·ow·c`, and
/// `lo ≤ hi ≤ n·oh`.
pub unsafe fn pool(g: Pool, lo: usize, hi: usize, x: *const f32, out: *mut f32) {
    // SAFETY: the caller's contract; each kernel runs only where its features exist.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return x86::rows_avx512(g, lo, hi, x, out);
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return x86::rows_avx2(g, lo, hi, x, out);
            }
        }
        rows_portable(g, lo, hi, x, out)
    }
}

/// The larger of a running maximum and a value, a NaN in either giving NaN: what the vector
/// kernels compute (`vmaxps(acc, v)`, which returns `v` when they are equal or `v` is NaN,
/// then `acc` where it is NaN).
#[inline(always)]
fn max_nan(acc: f32, v: f32) -> f32 {
    if acc.is_nan() || acc > v {
        acc
    } else {
        v
    }
}

/// Plain Rust, for CPUs without AVX2.
///
/// # Safety
/// As [`pool`].
unsafe fn rows_portable(g: Pool, lo: usize, hi: usize, x: *const f32, out: *mut f32) {
    for r in lo..hi {
        let (b, oy) = (r / g.oh, r % g.oh);
        let (y0, y1) = Pool::span(oy, g.sh, g.pt, g.kh, g.h);
        for ox in 0..g.ow {
            let (x0, x1) = Pool::span(ox, g.sw, g.pl, g.kw, g.w);
            let scale = 1.0f32 / ((y1 - y0) * (x1 - x0)) as f32;
            let o = ((b * g.oh + oy) * g.ow + ox) * g.c;
            for ch in 0..g.c {
                let mut acc = if g.max { f32::NEG_INFINITY } else { 0.0 };
                for iy in y0..y1 {
                    for ix in x0..x1 {
                        // SAFETY: (b, iy, ix, ch) is inside the input.
                        let v = unsafe { *x.add(((b * g.h + iy) * g.w + ix) * g.c + ch) };
                        acc = if g.max { max_nan(acc, v) } else { acc + v };
                    }
                }
                // SAFETY: (b, oy, ox, ch) is inside the output, a row of `lo..hi`.
                unsafe { *out.add(o + ch) = if g.max { acc } else { acc * scale } };
            }
        }
    }
}

/// The mean of one plane as `global_avg_pool` is defined: its values summed in f64 in order,
/// divided in f64, rounded once to f32. The interpreter computes the op with this, and
/// generated code calls it (`nnc_plane_means`) in graphs that must give the interpreter's
/// bits (quantized ones), so their average pools need no reference kernel and compile
/// ahead of time.
pub fn plane_mean(plane: &[f32]) -> f32 {
    (plane.iter().map(|&v| v as f64).sum::<f64>() / plane.len() as f64) as f32
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::simd::Lanes;
    use super::Pool;

    /// The running maximum with NaN sticking: `vmaxps(acc, v)` lets a NaN in `v` through but
    /// would drop one already in `acc`.
    trait MaxNan: Lanes {
        /// Which lanes have seen a NaN.
        type Nan: Copy;
        /// # Safety
        /// The CPU has the vector unit.
        unsafe fn max_nan(acc: Self, v: Self) -> Self;
        /// # Safety
        /// The CPU has the vector unit.
        unsafe fn no_nan() -> Self::Nan;
        /// `seen` and the lanes of `v` that are NaN.
        /// # Safety
        /// The CPU has the vector unit.
        unsafe fn nan_or(seen: Self::Nan, v: Self) -> Self::Nan;
        /// # Safety
        /// The CPU has the vector unit.
        unsafe fn any(seen: Self::Nan) -> bool;
    }

    impl MaxNan for __m512 {
        type Nan = __mmask16;
        #[inline(always)]
        unsafe fn max_nan(acc: Self, v: Self) -> Self {
            unsafe {
                let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(acc, acc);
                _mm512_mask_mov_ps(Self::max(acc, v), nan, acc)
            }
        }
        #[inline(always)]
        unsafe fn no_nan() -> Self::Nan {
            0
        }
        #[inline(always)]
        unsafe fn nan_or(seen: Self::Nan, v: Self) -> Self::Nan {
            seen | unsafe { _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v) }
        }
        #[inline(always)]
        unsafe fn any(seen: Self::Nan) -> bool {
            seen != 0
        }
    }

    impl MaxNan for __m256 {
        type Nan = __m256;
        #[inline(always)]
        unsafe fn max_nan(acc: Self, v: Self) -> Self {
            unsafe {
                let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(acc, acc);
                _mm256_blendv_ps(Self::max(acc, v), acc, nan)
            }
        }
        #[inline(always)]
        unsafe fn no_nan() -> Self::Nan {
            unsafe { _mm256_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn nan_or(seen: Self::Nan, v: Self) -> Self::Nan {
            unsafe { _mm256_or_ps(seen, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v)) }
        }
        #[inline(always)]
        unsafe fn any(seen: Self::Nan) -> bool {
            unsafe { _mm256_movemask_ps(seen) != 0 }
        }
    }

    /// # Safety
    /// As [`super::pool`]; the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn rows_avx512(g: Pool, lo: usize, hi: usize, x: *const f32, out: *mut f32) {
        // SAFETY: forwarded contract; this function has the feature `rows` needs.
        unsafe { rows::<__m512>(g, lo, hi, x, out) }
    }

    /// # Safety
    /// As [`super::pool`]; the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rows_avx2(g: Pool, lo: usize, hi: usize, x: *const f32, out: *mut f32) {
        // SAFETY: forwarded contract; this function has the features `rows` needs.
        unsafe { rows::<__m256>(g, lo, hi, x, out) }
    }

    /// # Safety
    /// As [`super::pool`]; the CPU has `V`'s vector unit.
    #[inline(always)]
    unsafe fn rows<V: MaxNan>(g: Pool, lo: usize, hi: usize, x: *const f32, out: *mut f32) {
        // SAFETY: every pixel read is (b, iy, ix) inside the input with `n ≤ W` channels from
        // `ch < c`, and every one written (b, oy, ox) inside the output, `oy` a row of
        // `lo..hi`.
        unsafe {
            for r in lo..hi {
                let (b, oy) = (r / g.oh, r % g.oh);
                let (y0, y1) = Pool::span(oy, g.sh, g.pt, g.kh, g.h);
                for ox in 0..g.ow {
                    let (x0, x1) = Pool::span(ox, g.sw, g.pl, g.kw, g.w);
                    let px = Pixel { b, rows: y0..y1, cols: x0..x1, out: out.add(((b * g.oh + oy) * g.ow + ox) * g.c) };
                    // Four channel vectors at a time: four independent chains of maxima or
                    // sums (one vector's chain waited on each operation's latency).
                    let mut ch = 0;
                    while ch + 4 * V::W <= g.c {
                        pixel::<V, 4>(&g, x, &px, ch, V::W);
                        ch += 4 * V::W;
                    }
                    while ch < g.c {
                        let n = (g.c - ch).min(V::W);
                        pixel::<V, 1>(&g, x, &px, ch, n);
                        ch += n;
                    }
                }
            }
        }
    }

    /// One output pixel: its image, its window's rows and columns inside the image, where its
    /// channels go.
    struct Pixel {
        b: usize,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        out: *mut f32,
    }

    /// `NV` channel vectors of `px` from channel `ch` (`n` lanes each; all whole when `NV >
    /// 1`). A maximum is taken without minding NaN, whose lanes are only noted; a window
    /// that held one is taken again the exact way, rare enough not to matter.
    ///
    /// # Safety
    /// As [`rows`], for a pixel of the output; `ch + NV·n ≤ c`.
    #[inline(always)]
    unsafe fn pixel<V: MaxNan, const NV: usize>(g: &Pool, x: *const f32, px: &Pixel, ch: usize, n: usize) {
        // SAFETY (whole body): the caller's contract; every tap is inside the image.
        unsafe {
            let tap = |iy: usize, ix: usize, v: usize| x.add(((px.b * g.h + iy) * g.w + ix) * g.c + ch + v * V::W);
            if g.max {
                let mut acc = [V::splat(f32::NEG_INFINITY); NV];
                let mut seen = V::no_nan();
                for iy in px.rows.clone() {
                    for ix in px.cols.clone() {
                        for (v, a) in acc.iter_mut().enumerate() {
                            let t = V::load_n(tap(iy, ix, v), n);
                            *a = V::max(*a, t);
                            seen = V::nan_or(seen, t);
                        }
                    }
                }
                if V::any(seen) {
                    // The NaN-exact sequence: the first NaN in tap order sticks.
                    for (v, a) in acc.iter_mut().enumerate() {
                        *a = V::splat(f32::NEG_INFINITY);
                        for iy in px.rows.clone() {
                            for ix in px.cols.clone() {
                                *a = V::max_nan(*a, V::load_n(tap(iy, ix, v), n));
                            }
                        }
                    }
                }
                for (v, a) in acc.into_iter().enumerate() {
                    a.store_n(px.out.add(ch + v * V::W), n);
                }
            } else {
                let scale = V::splat(1.0f32 / (px.rows.len() * px.cols.len()) as f32);
                let mut acc = [V::zero(); NV];
                for iy in px.rows.clone() {
                    for ix in px.cols.clone() {
                        for (v, a) in acc.iter_mut().enumerate() {
                            *a = V::add(*a, V::load_n(tap(iy, ix, v), n));
                        }
                    }
                }
                for (v, a) in acc.into_iter().enumerate() {
                    V::mul(a, scale).store_n(px.out.add(ch + v * V::W), n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pooling by its definition, in f64 for the average.
    fn reference(g: Pool, x: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; g.n * g.oh * g.ow * g.c];
        for b in 0..g.n {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    for ch in 0..g.c {
                        let mut vals = Vec::new();
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let (iy, ix) = ((oy * g.sh + ky) as isize - g.pt as isize, (ox * g.sw + kx) as isize - g.pl as isize);
                                if iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w {
                                    vals.push(x[((b * g.h + iy as usize) * g.w + ix as usize) * g.c + ch]);
                                }
                            }
                        }
                        out[((b * g.oh + oy) * g.ow + ox) * g.c + ch] = if g.max {
                            vals.iter().fold(f32::NEG_INFINITY, |m, &v| if m.is_nan() || v.is_nan() { f32::NAN } else { m.max(v) })
                        } else {
                            (vals.iter().map(|&v| v as f64).sum::<f64>() / vals.len() as f64) as f32
                        };
                    }
                }
            }
        }
        out
    }

    fn geometry(n: usize, c: usize, hw: [usize; 2], k: [usize; 2], s: [usize; 2], p: [usize; 2], max: bool) -> Pool {
        let o = |i: usize| (hw[i] + 2 * p[i] - k[i]) / s[i] + 1;
        Pool { n, c, h: hw[0], w: hw[1], kh: k[0], kw: k[1], sh: s[0], sw: s[1], pt: p[0], pl: p[1], oh: o(0), ow: o(1), max }
    }

    /// Every kernel this CPU has, on channel counts below, at and past a vector (with tails),
    /// strides, padding and rectangular windows, against the definition; the maximum exactly,
    /// the average within f32 summation; NaN wins a maximum wherever it lies in the window;
    /// any split of the rows gives the same bits.
    #[test]
    fn pooling_matches_its_definition_on_every_kernel_and_split() {
        let cases = [
            geometry(1, 64, [112, 112], [3, 3], [2, 2], [1, 1], true),
            geometry(2, 6, [28, 28], [2, 2], [2, 2], [0, 0], true),
            geometry(1, 17, [9, 11], [3, 2], [1, 2], [1, 0], true),
            geometry(1, 33, [7, 7], [3, 3], [1, 1], [1, 1], false),
            geometry(2, 5, [10, 9], [2, 3], [2, 1], [1, 1], false),
            geometry(1, 16, [5, 5], [5, 5], [1, 1], [2, 2], false),
            // Four whole vectors at a time, then the rest.
            geometry(1, 80, [9, 9], [3, 3], [2, 2], [1, 1], true),
            geometry(1, 80, [9, 9], [3, 3], [2, 2], [1, 1], false),
        ];
        for g in cases {
            let len = g.n * g.h * g.w * g.c;
            let mut x: Vec<f32> = (0..len).map(|i| ((i * 7919 % 1013) as f32 - 500.0) / 97.0).collect();
            if g.max {
                // NaN in the first, a middle and the last tap of some windows.
                for i in [0, len / 3, len - 1] {
                    x[i] = f32::NAN;
                }
            }
            let want = reference(g, &x);
            let rows = g.n * g.oh;
            let run = |kernel: &dyn Fn(Pool, usize, usize, *const f32, *mut f32), splits: &[usize]| {
                let mut out = vec![f32::MAX; want.len()];
                let mut lo = 0;
                for &hi in splits.iter().chain([&rows]) {
                    // SAFETY: the buffers have the geometry's sizes.
                    kernel(g, lo, hi, x.as_ptr(), out.as_mut_ptr());
                    lo = hi;
                }
                out
            };
            // SAFETY (every closure): as `pool`, whose contract `run` keeps.
            let mut kernels: Vec<(&str, Box<dyn Fn(Pool, usize, usize, *const f32, *mut f32)>)> = vec![("portable", Box::new(|g, lo, hi, x, o| unsafe { rows_portable(g, lo, hi, x, o) }))];
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    kernels.push(("avx2", Box::new(|g, lo, hi, x, o| unsafe { x86::rows_avx2(g, lo, hi, x, o) })));
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    kernels.push(("avx512", Box::new(|g, lo, hi, x, o| unsafe { x86::rows_avx512(g, lo, hi, x, o) })));
                }
            }
            let whole = run(&*kernels[0].1, &[]);
            for (name, kernel) in &kernels {
                let got = run(&**kernel, &[]);
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    let ok = if g.max { a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()) } else { (a - b).abs() <= 1e-6 * (1.0 + b.abs()) };
                    assert!(ok, "{name} {g:?}: [{i}] {a} vs {b}");
                }
                // The kernels agree bit for bit (NaNs aside) and every split gives the same.
                let same = |u: &[f32], v: &[f32]| u.iter().zip(v).all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
                assert!(same(&got, &whole), "{name} {g:?}: differs from the portable kernel");
                assert!(same(&run(&**kernel, &[1, rows / 2]), &got), "{name} {g:?}: a split changes the bits");
            }
            if g.max {
                assert!(whole.iter().any(|v| v.is_nan()), "{g:?}: the NaNs reach the output");
            }
        }
    }
}
