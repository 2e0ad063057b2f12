//! The int8 roundings every backend shares: the interpreter's `quantize` and `requantize`,
//! the integer GEMM's requantizing epilogue and the accelerator's activation unit call these
//! functions, so their codes are the same bits.

use crate::Activation;

/// The largest code: the range is symmetric, [-127, 127].
pub const QMAX: f32 = 127.0;

/// One f32 to its int8 code at `scale`: round half to even of `x / scale`, saturated. NaN
/// maps to 0.
///
/// Rounding adds and subtracts 1.5·2²³, which rounds to nearest-even exactly for |v| ≤ 2²²
/// (the default floating-point mode) and needs no SSE4.1 `roundps`, so loops over it
/// vectorize on any x86-64; clamping to ±128 first keeps |v| in that range without changing
/// any code (everything beyond ±127.5 saturates either way).
#[inline(always)]
pub fn quantize_value(x: f32, scale: f32) -> i8 {
    const MAGIC: f32 = 12_582_912.0;
    let v = (x / scale).clamp(-128.0, 128.0);
    let rounded = (v + MAGIC) - MAGIC;
    rounded.clamp(-QMAX, QMAX) as i8
}

/// An i32 accumulator to its int8 code: dequantize at `scale` (the product of the input's
/// and the weight's scales), apply the activation in f32, quantize at `out_scale`. Identical
/// to running `dequantize`, the activation op and `quantize` one after another, which is why
/// the quantization pass may fold that chain into one `requantize`.
#[inline(always)]
pub fn requantize_value(acc: i32, scale: f32, activation: Activation, out_scale: f32) -> i8 {
    quantize_value(activation.apply(acc as f32 * scale), out_scale)
}

/// [`quantize_value`] over `out.len()` values of `x`, split across up to `threads` threads,
/// with the widest vectors the CPU has (AVX-512: 16 values a step, AVX2: 8), each step the
/// scalar function's operations in its order, NaN lanes zeroed before the conversion as the
/// saturating cast zeroes them. Generated code ran this at four values a step on one thread:
/// a 224² RGB image took 230 µs.
///
/// # Safety
/// `x` holds `n` floats, `out` is writable for `n` codes and overlaps nothing `x` holds.
pub unsafe fn quantize_slice(x: *const f32, n: usize, scale: f32, out: *mut i8, threads: usize) {
    /// Values below which one thread does it all (a few microseconds of work).
    const MIN_PARALLEL: usize = 1 << 16;
    let threads = if n < MIN_PARALLEL { 1 } else { threads.max(1) };
    // SAFETY: tasks read `x` and write disjoint ranges of `out`.
    let shared = unsafe { crate::pool::Shared::new((x, out)) };
    crate::pool::parallel_tasks(threads, threads, &|t| {
        let (x, out) = shared.get();
        // Ranges of whole 64-value blocks, so each thread writes whole cache lines.
        let blocks = n.div_ceil(64);
        let (lo, hi) = ((blocks * t / threads * 64).min(n), (blocks * (t + 1) / threads * 64).min(n));
        // SAFETY: `lo..hi` is inside both buffers.
        unsafe { quantize_range(x.add(lo), hi - lo, scale, out.add(lo)) }
    });
}

/// [`quantize_slice`] on one thread.
///
/// # Safety
/// As [`quantize_slice`].
unsafe fn quantize_range(x: *const f32, n: usize, scale: f32, out: *mut i8) {
    // SAFETY (all): the caller's contract; each variant runs only where its features are.
    unsafe {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return x86::quantize_avx512(x, n, scale, out);
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return x86::quantize_avx2(x, n, scale, out);
            }
        }
        for i in 0..n {
            *out.add(i) = quantize_value(*x.add(i), scale);
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use super::{quantize_value, QMAX};
    use crate::Activation;
    use std::arch::x86_64::*;

    /// [`super::requantize_value`] on 16 accumulators at once, its operations in its order
    /// (convert, scale, activation, divide by the output scale, clamp to ±128, round by
    /// adding and subtracting 1.5·2²³, clamp to ±127, truncate), so the codes are its bits.
    /// Accumulators times finite scales are never NaN, so `max`/`min` give what its
    /// comparisons give, up to the sign of a zero, which no code keeps. The integer GEMM's
    /// epilogue and the int8 depthwise kernel both requantize through this.
    pub(crate) struct Requantize16 {
        out_scale: __m512,
        activation: Activation,
    }

    impl Requantize16 {
        /// # Safety
        /// The CPU has AVX-512F.
        #[inline(always)]
        pub(crate) unsafe fn new(out_scale: f32, activation: Activation) -> Self {
            // SAFETY: the caller's contract (AVX-512F).
            Requantize16 { out_scale: unsafe { _mm512_set1_ps(out_scale) }, activation }
        }

        /// The codes of `acc` at the per-lane `scale`.
        ///
        /// # Safety
        /// The CPU has AVX-512F.
        #[inline(always)]
        pub(crate) unsafe fn codes(&self, acc: __m512i, scale: __m512) -> __m128i {
            // SAFETY: the caller's contract (AVX-512F); register operations only.
            unsafe {
                let zero = _mm512_setzero_ps();
                let mut v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), scale);
                v = match self.activation {
                    Activation::None => v,
                    Activation::Relu => _mm512_max_ps(v, zero),
                    Activation::Relu6 => _mm512_min_ps(_mm512_max_ps(v, zero), _mm512_set1_ps(6.0)),
                };
                let v = _mm512_min_ps(_mm512_max_ps(_mm512_div_ps(v, self.out_scale), _mm512_set1_ps(-128.0)), _mm512_set1_ps(128.0));
                let magic = _mm512_set1_ps(12_582_912.0);
                let v = _mm512_sub_ps(_mm512_add_ps(v, magic), magic);
                let v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-QMAX)), _mm512_set1_ps(QMAX));
                _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(v))
            }
        }
    }

    /// # Safety
    /// As [`super::quantize_slice`]; the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn quantize_avx512(x: *const f32, n: usize, scale: f32, out: *mut i8) {
        let s = _mm512_set1_ps(scale);
        let (lo, hi) = (_mm512_set1_ps(-128.0), _mm512_set1_ps(128.0));
        let (qlo, qhi) = (_mm512_set1_ps(-QMAX), _mm512_set1_ps(QMAX));
        let magic = _mm512_set1_ps(12_582_912.0);
        let mut i = 0;
        // SAFETY: each step reads `x[i..i + 16]` and writes `out[i..i + 16]`, inside `n`.
        unsafe {
            while i + 16 <= n {
                let v = _mm512_div_ps(_mm512_loadu_ps(x.add(i)), s);
                // `max(bound, v)` keeps a NaN `v` (the second operand wins), as `clamp` does.
                let v = _mm512_min_ps(hi, _mm512_max_ps(lo, v));
                let v = _mm512_sub_ps(_mm512_add_ps(v, magic), magic);
                let v = _mm512_min_ps(qhi, _mm512_max_ps(qlo, v));
                let ordered = _mm512_cmp_ps_mask::<_CMP_ORD_Q>(v, v);
                let q = _mm512_maskz_cvttps_epi32(ordered, v);
                _mm_storeu_si128(out.add(i) as *mut __m128i, _mm512_cvtepi32_epi8(q));
                i += 16;
            }
            for i in i..n {
                *out.add(i) = quantize_value(*x.add(i), scale);
            }
        }
    }

    /// # Safety
    /// As [`super::quantize_slice`]; the CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn quantize_avx2(x: *const f32, n: usize, scale: f32, out: *mut i8) {
        let s = _mm256_set1_ps(scale);
        let (lo, hi) = (_mm256_set1_ps(-128.0), _mm256_set1_ps(128.0));
        let (qlo, qhi) = (_mm256_set1_ps(-QMAX), _mm256_set1_ps(QMAX));
        let magic = _mm256_set1_ps(12_582_912.0);
        let mut codes = [0i32; 8];
        let mut i = 0;
        // SAFETY: each step reads `x[i..i + 8]` and writes `out[i..i + 8]`, inside `n`.
        unsafe {
            while i + 8 <= n {
                let v = _mm256_div_ps(_mm256_loadu_ps(x.add(i)), s);
                let v = _mm256_min_ps(hi, _mm256_max_ps(lo, v));
                let v = _mm256_sub_ps(_mm256_add_ps(v, magic), magic);
                let v = _mm256_min_ps(qhi, _mm256_max_ps(qlo, v));
                let ordered = _mm256_cmp_ps::<_CMP_ORD_Q>(v, v);
                let v = _mm256_and_ps(v, ordered);
                _mm256_storeu_si256(codes.as_mut_ptr() as *mut __m256i, _mm256_cvttps_epi32(v));
                for (j, &q) in codes.iter().enumerate() {
                    *out.add(i + j) = q as i8;
                }
                i += 8;
            }
            for i in i..n {
                *out.add(i) = quantize_value(*x.add(i), scale);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The add-and-subtract rounding against `round_ties_even` on ties, edges and a sweep
    /// of bit patterns of `x` (scale 1, and a scale that makes `x / scale` inexact).
    /// The vector quantizers (every one this CPU runs) give `quantize_value`'s codes on the
    /// same edges and sweep, at lengths with and without a scalar tail, on two threads too.
    #[test]
    fn slices_quantize_like_the_scalar_function() {
        let edges = [0.5f32, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, 127.5, -127.5, 128.0, 1e30, -1e30, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -0.0, 0.49999997, f32::MIN_POSITIVE, -f32::NAN];
        let sweep = (0..1u32 << 18).map(|i| f32::from_bits(i.wrapping_mul(0x9e37_79b9) ^ (i >> 5)));
        let x: Vec<f32> = edges.into_iter().chain(sweep).collect();
        for s in [1.0f32, 0.0123, 3.7e-5] {
            let want: Vec<i8> = x.iter().map(|&v| quantize_value(v, s)).collect();
            for (len, threads) in [(x.len(), 1), (x.len(), 2), (37, 1)] {
                let mut got = vec![0i8; len];
                unsafe { quantize_slice(x.as_ptr(), len, s, got.as_mut_ptr(), threads) };
                assert_eq!(got, want[..len], "scale {s}, {len} values, {threads} threads");
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") {
                    let mut avx2 = vec![0i8; len];
                    unsafe { x86::quantize_avx2(x.as_ptr(), len, s, avx2.as_mut_ptr()) };
                    assert_eq!(avx2, want[..len], "AVX2, scale {s}");
                }
            }
        }
    }

    #[test]
    fn codes_match_round_half_to_even_then_saturate() {
        let reference = |x: f32, s: f32| (x / s).round_ties_even().clamp(-QMAX, QMAX) as i8;
        let edges = [0.5f32, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, 127.5, -127.5, 128.0, 1e30, -1e30, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -0.0, 0.49999997, f32::MIN_POSITIVE];
        let sweep = (0..1u32 << 22).map(|i| f32::from_bits(i.wrapping_mul(0x9e37_79b9) ^ (i >> 5)));
        for x in edges.into_iter().chain(sweep) {
            for s in [1.0f32, 0.0123, 3.7e-5] {
                assert_eq!(quantize_value(x, s), reference(x, s), "{x:e} / {s}");
            }
        }
    }
}
