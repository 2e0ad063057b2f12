//! The x86 vector types the runtime's kernels are generic over (AVX-512 and AVX2 floats), with
//! the few operations they use, so each kernel is written once for both widths.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

/// A SIMD vector of `W` floats and the operations the kernels need. Each
/// implementation is only called from a function compiled with its target feature.
pub(crate) trait Lanes: Copy {
    const W: usize;
    /// # Safety
    /// The CPU has the vector unit; `p` is valid for `W` floats.
    unsafe fn load(p: *const f32) -> Self;
    /// # Safety
    /// As [`Lanes::load`], writable.
    unsafe fn store(self, p: *mut f32);
    /// # Safety
    /// The CPU has the vector unit.
    unsafe fn zero() -> Self;
    /// # Safety
    /// The CPU has the vector unit.
    unsafe fn splat(v: f32) -> Self;
    /// `a·b + c`.
    /// # Safety
    /// The CPU has the vector unit.
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self;
    /// # Safety
    /// The CPU has the vector unit.
    unsafe fn add(a: Self, b: Self) -> Self;
    /// The first `n ≤ W` floats at `p`, zeros in the other lanes (full loads when `n = W`).
    /// # Safety
    /// The CPU has the vector unit; `p` is valid for `n` floats.
    unsafe fn load_n(p: *const f32, n: usize) -> Self;
    /// Store the first `n ≤ W` lanes.
    /// # Safety
    /// The CPU has the vector unit; `p` is valid and writable for `n` floats.
    unsafe fn store_n(self, p: *mut f32, n: usize);
    /// `x < 0 ? 0 : x` per lane (NaN stays NaN, −0 stays −0), as `Activation::Relu`.
    /// # Safety
    /// The CPU has the vector unit.
    unsafe fn relu(x: Self) -> Self;
    /// `x < 0 ? 0 : x > 6 ? 6 : x` per lane, as `Activation::Relu6`.
    /// # Safety
    /// The CPU has the vector unit.
    unsafe fn relu6(x: Self) -> Self;
    /// The sum of the lanes, in a fixed order (halves added pairwise down to one lane).
    /// # Safety
    /// The CPU has the vector unit.
    unsafe fn sum(self) -> f32;
    /// # Safety
    /// The CPU has the vector unit.
    unsafe fn mul(a: Self, b: Self) -> Self;
    /// # Safety
    /// The CPU has the vector unit.
    unsafe fn sub(a: Self, b: Self) -> Self;
    /// The larger per lane; a NaN in `b` wins.
    /// # Safety
    /// The CPU has the vector unit.
    unsafe fn max(a: Self, b: Self) -> Self;
    /// The largest lane (NaN if any lane is NaN is not promised).
    /// # Safety
    /// The CPU has the vector unit.
    unsafe fn max_lane(self) -> f32;
    /// `eˣ` per lane: the polynomial generated code uses (`KernelBuilder::exp`), relative
    /// error about 2·10⁻⁷; below −104 it gives 0, above 89 infinity.
    /// # Safety
    /// The CPU has the vector unit.
    unsafe fn exp(x: Self) -> Self;
    /// # Safety
    /// The CPU has the vector unit.
    unsafe fn div(a: Self, b: Self) -> Self;
    /// # Safety
    /// The CPU has the vector unit.
    unsafe fn abs(x: Self) -> Self;
    /// `−y` in the lanes where `x < 0`, `y` elsewhere.
    /// # Safety
    /// The CPU has the vector unit.
    unsafe fn negate_where_negative(y: Self, x: Self) -> Self;

    /// `1 / (1 + e⁻ˣ)`, as generated code computes it (`KernelBuilder::sigmoid`).
    /// # Safety
    /// The CPU has the vector unit.
    #[inline(always)]
    unsafe fn sigmoid(x: Self) -> Self {
        unsafe {
            let one = Self::splat(1.0);
            Self::div(one, Self::add(one, Self::exp(Self::sub(Self::zero(), x))))
        }
    }

    /// `2·sigmoid(2x) − 1`, as generated code computes it (`KernelBuilder::tanh`).
    /// # Safety
    /// The CPU has the vector unit.
    #[inline(always)]
    unsafe fn tanh(x: Self) -> Self {
        unsafe {
            let two = Self::splat(2.0);
            Self::fma(Self::sigmoid(Self::mul(x, two)), two, Self::splat(-1.0))
        }
    }

    /// `0.5·x·(1 + erf(x/√2))` with generated code's erf (`KernelBuilder::erf`: Abramowitz
    /// and Stegun 7.1.28, absolute error below 3·10⁻⁷ plus f32 rounding).
    /// # Safety
    /// The CPU has the vector unit.
    #[inline(always)]
    unsafe fn gelu(x: Self) -> Self {
        unsafe {
            let one = Self::splat(1.0);
            let xs = Self::mul(x, Self::splat(std::f32::consts::FRAC_1_SQRT_2));
            let ax = Self::abs(xs);
            let mut poly = Self::splat(ERF_COEFFS[0]);
            for c in &ERF_COEFFS[1..] {
                poly = Self::fma(poly, ax, Self::splat(*c));
            }
            // The 16th power by four squarings.
            for _ in 0..4 {
                poly = Self::mul(poly, poly);
            }
            let erf = Self::negate_where_negative(Self::sub(one, Self::div(one, poly)), xs);
            Self::mul(Self::mul(x, Self::splat(0.5)), Self::add(erf, one))
        }
    }

    /// An epilogue's activation, then GELU where asked: what follows the bias and the
    /// residual, in the scalar epilogue's order.
    /// # Safety
    /// The CPU has the vector unit.
    #[inline(always)]
    unsafe fn activate(x: Self, act: crate::Activation, gelu: bool) -> Self {
        unsafe {
            let x = match act {
                crate::Activation::None => x,
                crate::Activation::Relu => Self::relu(x),
                crate::Activation::Relu6 => Self::relu6(x),
            };
            if gelu {
                Self::gelu(x)
            } else {
                x
            }
        }
    }
}

/// Abramowitz and Stegun 7.1.28: `erf(x) ≈ 1 − (1 + a₁x + a₂x² + … + a₆x⁶)⁻¹⁶` for `x ≥ 0`,
/// the coefficients highest first (the last the constant 1); generated code's erf uses the
/// same. No `exp`: half the operations of 7.1.26 with `exp`, on which GELU's epilogue spent
/// ~70 µs of the transformer's `linear1`.
pub const ERF_COEFFS: [f32; 7] = [4.306_38e-5, 2.765_672e-4, 1.520_143e-4, 9.270_527e-3, 4.228_201e-2, 7.052_307_6e-2, 1.0];

/// The coefficients of `exp`'s polynomial on `[−ln2/2, ln2/2]`, highest first, and the
/// split `ln 2` (the same as generated code's).
const EXP_COEFFS: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 5e-1];
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

impl Lanes for __m512 {
    const W: usize = 16;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { _mm512_storeu_ps(p, self) }
    }
    #[inline(always)]
    unsafe fn zero() -> Self {
        unsafe { _mm512_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        unsafe { _mm512_set1_ps(v) }
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> Self {
        unsafe {
            if n == 16 {
                _mm512_loadu_ps(p)
            } else {
                _mm512_maskz_loadu_ps(((1u32 << n) - 1) as __mmask16, p)
            }
        }
    }
    #[inline(always)]
    unsafe fn store_n(self, p: *mut f32, n: usize) {
        unsafe {
            if n == 16 {
                _mm512_storeu_ps(p, self)
            } else {
                _mm512_mask_storeu_ps(p, ((1u32 << n) - 1) as __mmask16, self)
            }
        }
    }
    // MAXPS/MINPS return their second operand when either is NaN or both are zeros, so
    // with `x` second they give exactly the scalar comparisons' results.
    #[inline(always)]
    unsafe fn relu(x: Self) -> Self {
        unsafe { _mm512_max_ps(_mm512_setzero_ps(), x) }
    }
    #[inline(always)]
    unsafe fn relu6(x: Self) -> Self {
        unsafe { _mm512_min_ps(_mm512_set1_ps(6.0), _mm512_max_ps(_mm512_setzero_ps(), x)) }
    }
    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn div(a: Self, b: Self) -> Self {
        unsafe { _mm512_div_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn abs(x: Self) -> Self {
        unsafe { _mm512_abs_ps(x) }
    }
    #[inline(always)]
    unsafe fn negate_where_negative(y: Self, x: Self) -> Self {
        unsafe {
            let zero = _mm512_setzero_ps();
            _mm512_mask_sub_ps(y, _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, zero), zero, y)
        }
    }
    #[inline(always)]
    unsafe fn sub(a: Self, b: Self) -> Self {
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn max(a: Self, b: Self) -> Self {
        unsafe { _mm512_max_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn max_lane(self) -> f32 {
        unsafe { _mm512_reduce_max_ps(self) }
    }
    #[inline(always)]
    unsafe fn exp(x: Self) -> Self {
        unsafe {
            let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0)), _mm512_set1_ps(89.0));
            let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)));
            let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
            let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
            let mut p = _mm512_set1_ps(EXP_COEFFS[0]);
            for c in &EXP_COEFFS[1..] {
                p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(*c));
            }
            let poly = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0)));
            // poly·2ⁿ in one instruction, rounded once: the bits of the two half-power
            // multiplies generated code does (each exact until the last, which rounds once
            // where the result is subnormal), in one operation instead of nine.
            _mm512_scalef_ps(poly, n)
        }
    }
    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        unsafe {
            let half = _mm256_add_ps(_mm512_castps512_ps256(self), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(self), 1)));
            half.sum()
        }
    }
}

impl Lanes for __m256 {
    const W: usize = 8;
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { _mm256_storeu_ps(p, self) }
    }
    #[inline(always)]
    unsafe fn zero() -> Self {
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> Self {
        unsafe { _mm256_set1_ps(v) }
    }
    #[inline(always)]
    unsafe fn fma(a: Self, b: Self, c: Self) -> Self {
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> Self {
        unsafe {
            if n == 8 {
                _mm256_loadu_ps(p)
            } else {
                _mm256_maskload_ps(p, lane_mask(n))
            }
        }
    }
    #[inline(always)]
    unsafe fn store_n(self, p: *mut f32, n: usize) {
        unsafe {
            if n == 8 {
                _mm256_storeu_ps(p, self)
            } else {
                _mm256_maskstore_ps(p, lane_mask(n), self)
            }
        }
    }
    #[inline(always)]
    unsafe fn relu(x: Self) -> Self {
        unsafe { _mm256_max_ps(_mm256_setzero_ps(), x) }
    }
    #[inline(always)]
    unsafe fn relu6(x: Self) -> Self {
        unsafe { _mm256_min_ps(_mm256_set1_ps(6.0), _mm256_max_ps(_mm256_setzero_ps(), x)) }
    }
    #[inline(always)]
    unsafe fn mul(a: Self, b: Self) -> Self {
        unsafe { _mm256_mul_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn div(a: Self, b: Self) -> Self {
        unsafe { _mm256_div_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn abs(x: Self) -> Self {
        unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), x) }
    }
    #[inline(always)]
    unsafe fn negate_where_negative(y: Self, x: Self) -> Self {
        unsafe {
            let zero = _mm256_setzero_ps();
            _mm256_blendv_ps(y, _mm256_sub_ps(zero, y), _mm256_cmp_ps::<_CMP_LT_OQ>(x, zero))
        }
    }
    #[inline(always)]
    unsafe fn sub(a: Self, b: Self) -> Self {
        unsafe { _mm256_sub_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn max(a: Self, b: Self) -> Self {
        unsafe { _mm256_max_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn max_lane(self) -> f32 {
        unsafe {
            let q = _mm_max_ps(_mm256_castps256_ps128(self), _mm256_extractf128_ps(self, 1));
            let d = _mm_max_ps(q, _mm_movehl_ps(q, q));
            _mm_cvtss_f32(_mm_max_ss(d, _mm_shuffle_ps(d, d, 1)))
        }
    }
    #[inline(always)]
    unsafe fn exp(x: Self) -> Self {
        unsafe {
            let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-104.0)), _mm256_set1_ps(89.0));
            let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)));
            let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
            let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
            let mut p = _mm256_set1_ps(EXP_COEFFS[0]);
            for c in &EXP_COEFFS[1..] {
                p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
            }
            let poly = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0)));
            let ni = _mm256_cvtps_epi32(n);
            let lo = _mm256_srai_epi32::<1>(ni);
            let hi = _mm256_sub_epi32(ni, lo);
            let bias = _mm256_set1_epi32(127);
            let two_lo = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(lo, bias)));
            let two_hi = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(hi, bias)));
            _mm256_mul_ps(_mm256_mul_ps(poly, two_lo), two_hi)
        }
    }
    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        unsafe {
            let q = _mm_add_ps(_mm256_castps256_ps128(self), _mm256_extractf128_ps(self, 1));
            let d = _mm_add_ps(q, _mm_movehl_ps(q, q));
            _mm_cvtss_f32(_mm_add_ss(d, _mm_shuffle_ps(d, d, 1)))
        }
    }
}

/// The AVX2 mask of the first `n` of 8 lanes.
///
/// # Safety
/// The CPU has AVX2 (the caller is compiled with it).
#[inline(always)]
pub(crate) unsafe fn lane_mask(n: usize) -> __m256i {
    unsafe { _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)) }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use std::arch::x86_64::*;

    use super::Lanes;

    /// The AVX-512 `exp` (`scalef`) gives the bits of the AVX2 one (2ⁿ as two half powers,
    /// as generated code computes it) over the whole clamped range, subnormal results
    /// included.
    #[test]
    fn avx512_exp_has_the_bits_of_the_two_half_powers() {
        if !(std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")) {
            return;
        }
        #[target_feature(enable = "avx512f")]
        unsafe fn wide(x: &[f32; 16]) -> [f32; 16] {
            let mut out = [0.0; 16];
            unsafe { __m512::exp(__m512::load(x.as_ptr())).store(out.as_mut_ptr()) };
            out
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn narrow(x: &[f32; 16]) -> [f32; 16] {
            let mut out = [0.0; 16];
            unsafe {
                __m256::exp(__m256::load(x.as_ptr())).store(out.as_mut_ptr());
                __m256::exp(__m256::load(x.as_ptr().add(8))).store(out.as_mut_ptr().add(8));
            }
            out
        }
        let mut x = -110.0f32;
        while x < 95.0 {
            let xs: [f32; 16] = std::array::from_fn(|i| x + i as f32 * 0.000_731);
            let (a, b) = unsafe { (wide(&xs), narrow(&xs)) };
            assert_eq!(a.map(f32::to_bits), b.map(f32::to_bits), "from {x}");
            x += 0.0117;
        }
    }
}
