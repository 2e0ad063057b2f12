//! Dense layers on a few rows (batch 1 and the like) as dot products at the CPU's full
//! vector width: `out[r, u] = act(bias[u] + Σ_p x[r, p]·w[u, p] (+ residual[r, u]))`, the
//! weights row-major `[units, features]` as the layer stores them. Such a layer is bound by
//! streaming its weights, so the kernel reads each weight once, four units at a time (each
//! load of `x` serves four rows of weights), and threads split the units.
//!
//! A unit's sum runs over `features` in one fixed order (two vector accumulators, then the
//! lanes), whatever the thread count.

use super::Epilogue;

/// Dense layers below this many multiply-adds run on one thread.
const MIN_PARALLEL_MACS: usize = 1 << 16;

/// Units computed together.
const UNITS: usize = 4;

/// The product, on up to `threads` threads.
///
/// # Safety
/// `x` holds `rows·features` floats, `w` `units·features`, `out` (writable, overlapping
/// neither) `rows·units`; the epilogue's bias (per column) holds `units` floats and its
/// residual `rows·units`.
pub unsafe fn gemv(threads: usize, rows: usize, units: usize, features: usize, x: *const f32, w: *const f32, out: *mut f32, ep: Epilogue) {
    let blocks = units.div_ceil(UNITS);
    let threads = if rows * units * features < MIN_PARALLEL_MACS { 1 } else { threads.clamp(1, blocks.max(1)) };
    let per = blocks.div_ceil(threads) * UNITS;
    let shared = Shared(x, w, out, ep);
    crate::pool::parallel_for(threads, &|t| {
        let (lo, hi) = ((t * per).min(units), ((t + 1) * per).min(units));
        let Shared(x, w, out, ep) = shared.get();
        // SAFETY: the caller's contract; tasks write disjoint columns.
        unsafe { columns(rows, units, features, lo, hi, x, w, out, ep) };
    });
}

#[derive(Clone, Copy)]
struct Shared(*const f32, *const f32, *mut f32, Epilogue);
// SAFETY: tasks read x, w and the epilogue's operands and write disjoint columns of out.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    // A method, so closures capture the whole (Sync) struct rather than its raw fields.
    fn get(&self) -> Shared {
        *self
    }
}

/// Units `lo..hi` of every row, with the best kernel for this CPU.
///
/// # Safety
/// As [`gemv`], with `lo ≤ hi ≤ units`.
#[allow(clippy::too_many_arguments)]
unsafe fn columns(rows: usize, units: usize, features: usize, lo: usize, hi: usize, x: *const f32, w: *const f32, out: *mut f32, ep: Epilogue) {
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
                let mut s = 0.0f32;
                for p in 0..features {
                    s = (*x.add(r * features + p)).mul_add(*w.add(u * features + p), s);
                }
                *out.add(r * units + u) = s;
            }
            let o = out.add(r * units + lo);
            ep.shifted(r, lo, units as isize, 1).apply(o, 0, 0, 1, hi - lo, units as isize, 1);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::simd::Lanes;
    use super::{Epilogue, UNITS};

    macro_rules! entry {
        ($name:ident, $v:ty, $features:literal) => {
            /// # Safety
            /// As [`super::columns`]; the CPU has the features named.
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            pub(super) unsafe fn $name(rows: usize, units: usize, features: usize, lo: usize, hi: usize, x: *const f32, w: *const f32, out: *mut f32, ep: Epilogue) {
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
    unsafe fn columns<V: Lanes>(rows: usize, units: usize, features: usize, lo: usize, hi: usize, x: *const f32, w: *const f32, out: *mut f32, ep: Epilogue) {
        // SAFETY (whole body): rows of x and w hold `features` floats; vectors cover only
        // their `lanes`; units `lo..hi` and rows `0..rows` of out exist.
        unsafe {
            for r in 0..rows {
                let xr = x.add(r * features);
                let mut u = lo;
                while u < hi {
                    let n = (hi - u).min(UNITS);
                    // Units past `hi` in a short block reread the last unit's weights.
                    let wr: [*const f32; UNITS] = std::array::from_fn(|i| w.add((u + i.min(n - 1)) * features));
                    let mut acc = [[V::zero(); 2]; UNITS];
                    let mut p = 0;
                    while p + 2 * V::W <= features {
                        let x0 = V::load(xr.add(p));
                        let x1 = V::load(xr.add(p + V::W));
                        for i in 0..UNITS {
                            acc[i][0] = V::fma(x0, V::load(wr[i].add(p)), acc[i][0]);
                            acc[i][1] = V::fma(x1, V::load(wr[i].add(p + V::W)), acc[i][1]);
                        }
                        p += 2 * V::W;
                    }
                    while p < features {
                        let lanes = (features - p).min(V::W);
                        let xv = V::load_n(xr.add(p), lanes);
                        for i in 0..UNITS {
                            acc[i][0] = V::fma(xv, V::load_n(wr[i].add(p), lanes), acc[i][0]);
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
    #[test]
    fn matches_f64_dot_products() {
        for (rows, units, features) in [(1, 10, 784), (3, 37, 33), (1, 5, 7), (2, 512, 512), (1, 1, 1)] {
            let x: Vec<f32> = (0..rows * features).map(|i| ((i * 7 % 23) as f32 - 11.0) / 9.0).collect();
            let w: Vec<f32> = (0..units * features).map(|i| ((i * 5 % 17) as f32 - 8.0) / 13.0).collect();
            let bias: Vec<f32> = (0..units).map(|i| (i % 3) as f32 - 1.0).collect();
            let residual: Vec<f32> = (0..rows * units).map(|i| (i % 4) as f32 * 0.5).collect();
            let ep = Epilogue { bias: bias.as_ptr(), bias_per_row: false, residual: residual.as_ptr(), act: Activation::Relu, gelu: false };
            let mut one = vec![f32::NAN; rows * units];
            unsafe { gemv(1, rows, units, features, x.as_ptr(), w.as_ptr(), one.as_mut_ptr(), ep) };
            for r in 0..rows {
                for u in 0..units {
                    let s: f64 = (0..features).map(|p| x[r * features + p] as f64 * w[u * features + p] as f64).sum();
                    let want = (s + bias[u] as f64 + residual[r * units + u] as f64).max(0.0);
                    let got = one[r * units + u] as f64;
                    assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "{rows}x{units}x{features} ({r}, {u}): {got} vs {want}");
                }
            }
            // Split by hand as two threads would (the threshold keeps small ones on one).
            let mut two = vec![f32::NAN; rows * units];
            let half = units.div_ceil(2 * UNITS) * UNITS;
            for (lo, hi) in [(0, half.min(units)), (half.min(units), units)] {
                unsafe { columns(rows, units, features, lo, hi, x.as_ptr(), w.as_ptr(), two.as_mut_ptr(), ep) };
            }
            assert_eq!(one, two, "{rows}x{units}x{features}");
        }
    }
}
