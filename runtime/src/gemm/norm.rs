//! Layer normalization over the last axis at the CPU's full vector width, rows split across
//! threads: per row the mean, the variance of the centred values (two passes, as generated
//! code does: stable where E[x²] − E[x]² is not), then `(x − mean)/√(var + eps)·γ + β`.
//! Every row is computed the same way whatever the thread count.

use crate::pool::Shared;

/// Normalizations below this many elements run on one thread.
const MIN_PARALLEL_ELEMENTS: usize = 1 << 14;

/// `out[r, ..] = layer_norm(x[r, ..])` for `rows` rows of `d` values, on up to `threads`
/// threads.
///
/// # Safety
/// `x` and `out` (writable; it may be `x` itself) hold `rows·d` floats, `gamma` and `beta`
/// `d` each.
#[allow(clippy::too_many_arguments)]
pub unsafe fn layer_norm(threads: usize, rows: usize, d: usize, x: *const f32, gamma: *const f32, beta: *const f32, eps: f32, out: *mut f32) {
    let threads = if rows * d < MIN_PARALLEL_ELEMENTS { 1 } else { threads.clamp(1, rows.max(1)) };
    let per = rows.div_ceil(threads);
    // SAFETY: tasks read x, gamma and beta and write disjoint rows of out.
    let shared = unsafe { Shared::new((x, gamma, beta, out)) };
    crate::pool::parallel_for(threads, &|t| {
        let (x, gamma, beta, out) = shared.get();
        for r in (t * per).min(rows)..((t + 1) * per).min(rows) {
            // SAFETY: the caller's contract; tasks write disjoint rows.
            unsafe { row(d, x.add(r * d), gamma, beta, eps, out.add(r * d)) };
        }
    });
}

/// One row, with the best kernel for this CPU.
///
/// # Safety
/// As [`layer_norm`], for one row.
unsafe fn row(d: usize, x: *const f32, gamma: *const f32, beta: *const f32, eps: f32, out: *mut f32) {
    // SAFETY: the caller's contract; each kernel runs only where its features exist.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return x86::row_avx512(d, x, gamma, beta, eps, out);
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return x86::row_avx2(d, x, gamma, beta, eps, out);
            }
        }
        let mean = (0..d).map(|i| *x.add(i)).sum::<f32>() * (1.0 / d as f32);
        let var = (0..d).fold(0.0f32, |s, i| (*x.add(i) - mean).mul_add(*x.add(i) - mean, s)) * (1.0 / d as f32);
        let inv = 1.0 / (var + eps).sqrt();
        for i in 0..d {
            *out.add(i) = ((*x.add(i) - mean) * inv).mul_add(*gamma.add(i), *beta.add(i));
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::simd::Lanes;

    /// # Safety
    /// As [`super::row`]; the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn row_avx512(d: usize, x: *const f32, gamma: *const f32, beta: *const f32, eps: f32, out: *mut f32) {
        // SAFETY: forwarded contract; this function has the feature `row` needs.
        unsafe { row::<__m512>(d, x, gamma, beta, eps, out) }
    }

    /// # Safety
    /// As [`super::row`]; the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn row_avx2(d: usize, x: *const f32, gamma: *const f32, beta: *const f32, eps: f32, out: *mut f32) {
        // SAFETY: forwarded contract; this function has the features `row` needs.
        unsafe { row::<__m256>(d, x, gamma, beta, eps, out) }
    }

    /// # Safety
    /// As [`super::row`]; the CPU has `V`'s unit.
    #[inline(always)]
    unsafe fn row<V: Lanes>(d: usize, x: *const f32, gamma: *const f32, beta: *const f32, eps: f32, out: *mut f32) {
        // SAFETY (whole body): vectors cover only the `lanes` values left from `i` (masked
        // lanes load 0, so they add nothing to the sums: the centred value is masked again).
        unsafe {
            // Four independent sums over whole groups of four vectors, then the rest into the
            // first: one chain waited on every add's latency (7.5 µs for the transformer's
            // 128 rows of 256, against about 3 with four).
            let mut total = [V::zero(); 4];
            let mut i = 0;
            while i + 4 * V::W <= d {
                for (j, t) in total.iter_mut().enumerate() {
                    *t = V::add(*t, V::load(x.add(i + j * V::W)));
                }
                i += 4 * V::W;
            }
            while i < d {
                let lanes = (d - i).min(V::W);
                total[0] = V::add(total[0], V::load_n(x.add(i), lanes));
                i += lanes;
            }
            let inv_d = 1.0 / d as f32;
            let mean = V::add(V::add(total[0], total[1]), V::add(total[2], total[3])).sum() * inv_d;
            let m = V::splat(mean);
            let mut sq = [V::zero(); 4];
            let mut i = 0;
            while i + 4 * V::W <= d {
                for (j, q) in sq.iter_mut().enumerate() {
                    let c = V::sub(V::load(x.add(i + j * V::W)), m);
                    *q = V::fma(c, c, *q);
                }
                i += 4 * V::W;
            }
            while i < d {
                let lanes = (d - i).min(V::W);
                let c = V::sub(V::load_n(x.add(i), lanes), m);
                // Lanes past the row read 0 and would add mean²: clear them.
                let c = if lanes == V::W { c } else { V::load_n(keep(c, lanes).as_ptr(), V::W) };
                sq[0] = V::fma(c, c, sq[0]);
                i += lanes;
            }
            let sq = V::add(V::add(sq[0], sq[1]), V::add(sq[2], sq[3]));
            let var = sq.sum() * inv_d;
            let inv = V::splat(1.0 / (var + eps).sqrt());
            let mut i = 0;
            while i < d {
                let lanes = (d - i).min(V::W);
                let c = V::sub(V::load_n(x.add(i), lanes), m);
                V::fma(V::mul(c, inv), V::load_n(gamma.add(i), lanes), V::load_n(beta.add(i), lanes)).store_n(out.add(i), lanes);
                i += lanes;
            }
        }
    }

    /// The first `lanes` lanes of `c`, zeros after them.
    ///
    /// # Safety
    /// The CPU has `V`'s unit.
    #[inline(always)]
    unsafe fn keep<V: Lanes>(c: V, lanes: usize) -> [f32; 16] {
        let mut buf = [0.0f32; 16];
        // SAFETY: `buf` holds 16 ≥ W floats.
        unsafe { c.store_n(buf.as_mut_ptr(), lanes) };
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against f64 on row lengths with and without vector tails, rows split as two threads
    /// would split them (bit-identical), and the AVX2 kernel where the CPU has it.
    #[test]
    fn matches_f64_layer_norm() {
        for (rows, d) in [(128usize, 256usize), (3, 37), (2, 1), (200, 100)] {
            let x: Vec<f32> = (0..rows * d).map(|i| ((i * 7 % 23) as f32 - 11.0) / 3.0 + 100.0).collect();
            let g: Vec<f32> = (0..d).map(|i| 0.5 + (i % 5) as f32 * 0.25).collect();
            let b: Vec<f32> = (0..d).map(|i| (i % 3) as f32 - 1.0).collect();
            let mut one = vec![f32::NAN; rows * d];
            unsafe { layer_norm(1, rows, d, x.as_ptr(), g.as_ptr(), b.as_ptr(), 1e-5, one.as_mut_ptr()) };
            for r in 0..rows {
                let xr = &x[r * d..(r + 1) * d];
                let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
                let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
                for i in 0..d {
                    let want = (xr[i] as f64 - mean) / (var + 1e-5).sqrt() * g[i] as f64 + b[i] as f64;
                    let got = one[r * d + i] as f64;
                    assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "{rows}x{d} ({r}, {i}): {got} vs {want}");
                }
            }
            let mut two = vec![f32::NAN; rows * d];
            let half = rows.div_ceil(2);
            for (lo, hi) in [(0, half), (half, rows)] {
                for r in lo..hi {
                    unsafe { row(d, x.as_ptr().add(r * d), g.as_ptr(), b.as_ptr(), 1e-5, two.as_mut_ptr().add(r * d)) };
                }
            }
            assert_eq!(one, two, "{rows}x{d}");
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                let mut narrow = vec![f32::NAN; rows * d];
                for r in 0..rows {
                    unsafe { x86::row_avx2(d, x.as_ptr().add(r * d), g.as_ptr(), b.as_ptr(), 1e-5, narrow.as_mut_ptr().add(r * d)) };
                }
                for (a, w) in narrow.iter().zip(&one) {
                    assert!((a - w).abs() <= 1e-4 * (1.0 + w.abs()), "{rows}x{d} avx2: {a} vs {w}");
                }
            }
        }
    }
}
