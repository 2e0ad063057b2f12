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
    /// # Safety
    /// The CPU has the vector unit.
    unsafe fn min(a: Self, b: Self) -> Self;
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

    /// `0.5·x·(1 + erf(x/√2))`, erf as the odd rational function `s·P(s²)/Q(s²)`
    /// ([`ERF_NUMERATOR`], [`ERF_DENOMINATOR`]) clamped to `s ∈ [−4, 4]`: absolute
    /// error below 3.2·10⁻⁷ for erf, 1.6·10⁻⁷·(1 + |x|) for GELU (measured against f64
    /// erf on [−20, 20]). Generated code's GELU (`KernelBuilder::erf`, through exp) is as
    /// accurate but twice the operations; in the GEMM's epilogue that form cost 110 µs of the
    /// transformer's 128×1024 `linear1`.
    /// # Safety
    /// The CPU has the vector unit.
    #[inline(always)]
    unsafe fn gelu(x: Self) -> Self {
        unsafe {
            // erf is ±1 to f32 precision beyond ±4.
            let s = Self::mul(x, Self::splat(std::f32::consts::FRAC_1_SQRT_2));
            let s = Self::min(Self::max(s, Self::splat(-4.0)), Self::splat(4.0));
            let s2 = Self::mul(s, s);
            let mut p = Self::splat(ERF_NUMERATOR[0]);
            for c in &ERF_NUMERATOR[1..] {
                p = Self::fma(p, s2, Self::splat(*c));
            }
            let mut q = Self::splat(ERF_DENOMINATOR[0]);
            for c in &ERF_DENOMINATOR[1..] {
                q = Self::fma(q, s2, Self::splat(*c));
            }
            let erf = Self::div(Self::mul(s, p), q);
            let half_x = Self::mul(x, Self::splat(0.5));
            Self::fma(half_x, erf, half_x)
        }
    }

    /// GELU on `rows` rows of `cols` floats at `c` (rows `rsc` apart), in place: for the
    /// GEMM's tiles, outside the microkernel, whose register allocation GELU's dozen
    /// constants disturbed (the product without GELU ran 633 → 656–723 µs at 128×256×1024
    /// when GELU was inlined there).
    /// # Safety
    /// The floats are valid and writable; the CPU has the vector unit.
    unsafe fn gelu_in_place(c: *mut f32, rsc: isize, rows: usize, cols: usize);

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

/// `erf(s) ≈ s·P(s²)/Q(s²)` on `[−4, 4]`: the coefficients (highest power first) of the
/// rational approximation that Eigen and XLA use for f32 erf.
pub(super) const ERF_NUMERATOR: [f32; 7] = [-2.726_142_3e-10, 2.770_681_4e-8, -2.101_024e-6, -5.692_506_4e-5, -7.349_906_3e-4, -2.954_599_8e-3, -1.609_603_3e-2];
pub(super) const ERF_DENOMINATOR: [f32; 5] = [-1.456_607_2e-5, -2.133_740_6e-4, -1.682_827e-3, -7.373_329_2e-3, -1.426_473_9e-2];

/// The coefficients of `exp`'s polynomial on `[−ln2/2, ln2/2]`, highest first, and the
/// split `ln 2` (the same as generated code's).
const EXP_COEFFS: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 5.000_000_1e-1];
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

/// [`Lanes::gelu_in_place`] for `V`.
///
/// # Safety
/// As [`Lanes::gelu_in_place`].
#[inline(always)]
unsafe fn gelu_rows<V: Lanes>(c: *mut f32, rsc: isize, rows: usize, cols: usize) {
    // SAFETY: the caller's contract; each vector covers only the `lanes` floats left in its
    // row.
    unsafe {
        for i in 0..rows {
            let row = c.offset(i as isize * rsc);
            let mut j = 0;
            while j < cols {
                let lanes = (cols - j).min(V::W);
                V::gelu(V::load_n(row.add(j), lanes)).store_n(row.add(j), lanes);
                j += lanes;
            }
        }
    }
}

/// # Safety
/// As [`Lanes::gelu_in_place`]; the CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
#[inline(never)]
unsafe fn gelu_rows_avx512(c: *mut f32, rsc: isize, rows: usize, cols: usize) {
    // SAFETY: forwarded contract; this function has the feature.
    unsafe { gelu_rows::<__m512>(c, rsc, rows, cols) }
}

/// # Safety
/// As [`Lanes::gelu_in_place`]; the CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
unsafe fn gelu_rows_avx2(c: *mut f32, rsc: isize, rows: usize, cols: usize) {
    // SAFETY: forwarded contract; this function has the features.
    unsafe { gelu_rows::<__m256>(c, rsc, rows, cols) }
}

impl Lanes for __m512 {
    const W: usize = 16;
    #[inline(always)]
    unsafe fn gelu_in_place(c: *mut f32, rsc: isize, rows: usize, cols: usize) {
        // SAFETY: the caller's contract.
        unsafe { gelu_rows_avx512(c, rsc, rows, cols) }
    }
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
    unsafe fn sub(a: Self, b: Self) -> Self {
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn max(a: Self, b: Self) -> Self {
        unsafe { _mm512_max_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn min(a: Self, b: Self) -> Self {
        unsafe { _mm512_min_ps(a, b) }
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
            // 2ⁿ in two halves, so both are normal for n in ±150.
            let ni = _mm512_cvtps_epi32(n);
            let lo = _mm512_srai_epi32::<1>(ni);
            let hi = _mm512_sub_epi32(ni, lo);
            let bias = _mm512_set1_epi32(127);
            // (Not a closure: closures do not inherit the target features.)
            let two_lo = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(lo, bias)));
            let two_hi = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(hi, bias)));
            _mm512_mul_ps(_mm512_mul_ps(poly, two_lo), two_hi)
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
    unsafe fn gelu_in_place(c: *mut f32, rsc: isize, rows: usize, cols: usize) {
        // SAFETY: the caller's contract.
        unsafe { gelu_rows_avx2(c, rsc, rows, cols) }
    }
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
    unsafe fn sub(a: Self, b: Self) -> Self {
        unsafe { _mm256_sub_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn max(a: Self, b: Self) -> Self {
        unsafe { _mm256_max_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn min(a: Self, b: Self) -> Self {
        unsafe { _mm256_min_ps(a, b) }
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
