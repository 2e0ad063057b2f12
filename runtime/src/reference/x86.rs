//! `libm::exp` and `libm::erf` on eight f64 lanes of AVX-512F: each lane computes every path
//! of the scalar function and keeps the one its argument takes, with the same operations in
//! the same order (a multiply and an add never fused), so every lane has `libm`'s bits; the
//! tests check that on millions of arguments and every threshold. The scalar functions stay
//! the definitions; these only make them affordable over a tensor.

// The constants are `libm`'s (fdlibm's), digit for digit, so they can be checked against
// its source; shorter spellings or `consts::LOG2_E` would be the same bits but not that.
#![allow(clippy::approx_constant, clippy::excessive_precision)]

use std::arch::x86_64::*;

#[inline]
#[target_feature(enable = "avx512f")]
fn splat(v: f64) -> __m512d {
    _mm512_set1_pd(v)
}

/// `c[0] + s·(c[1] + s·(… + s·c[N−1]))`, `libm`'s nesting.
#[inline]
#[target_feature(enable = "avx512f")]
fn horner<const N: usize>(c: &[f64; N], s: __m512d) -> __m512d {
    let mut acc = splat(c[N - 1]);
    for &ci in c[..N - 1].iter().rev() {
        acc = _mm512_add_pd(splat(ci), _mm512_mul_pd(s, acc));
    }
    acc
}

/// The high word of `|x|` (`libm`'s `hx & 0x7fffffff`) in each 64-bit lane, and the lanes
/// whose sign bit is set.
#[inline]
#[target_feature(enable = "avx512f")]
fn high_word(x: __m512d) -> (__m512i, __mmask8) {
    let bits = _mm512_castpd_si512(x);
    let hx = _mm512_and_si512(_mm512_srli_epi64::<32>(bits), _mm512_set1_epi64(0x7fff_ffff));
    (hx, _mm512_cmplt_epi64_mask(bits, _mm512_setzero_si512()))
}

/// `-x`: the sign bit flipped, as Rust's negation does.
#[inline]
#[target_feature(enable = "avx512f")]
fn negate(x: __m512d) -> __m512d {
    _mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(x), _mm512_set1_epi64(i64::MIN)))
}

/// The lanes whose high word is above `word`.
#[inline]
#[target_feature(enable = "avx512f")]
fn above(hx: __m512i, word: i64) -> __mmask8 {
    _mm512_cmpgt_epi64_mask(hx, _mm512_set1_epi64(word))
}

/// The lanes whose high word is below `word`.
#[inline]
#[target_feature(enable = "avx512f")]
fn below(hx: __m512i, word: i64) -> __mmask8 {
    _mm512_cmplt_epi64_mask(hx, _mm512_set1_epi64(word))
}

/// `libm::exp` on each lane.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn exp8(x: __m512d) -> __m512d {
    const LN2HI: f64 = 6.93147180369123816490e-01;
    const LN2LO: f64 = 1.90821492927058770002e-10;
    const INVLN2: f64 = 1.44269504088896338700e+00;
    const P: [f64; 5] = [1.66666666666666019037e-01, -2.77777777770155933842e-03, 6.61375632143793436117e-05, -1.65339022054652515390e-06, 4.13813679705723846039e-08];
    let x1p1023 = f64::from_bits(0x7fe0000000000000);
    let (hx, neg) = high_word(x);
    // Argument reduction: k = trunc(x/ln2 ± ½) where |x| ≥ 1.5 ln2, ±1 above 0.5 ln2, else 0.
    let reduced = above(hx, 0x3fd62e42);
    let rounded = _mm512_cvtepi32_pd(_mm512_cvttpd_epi32(_mm512_add_pd(_mm512_mul_pd(splat(INVLN2), x), _mm512_mask_blend_pd(neg, splat(0.5), splat(-0.5)))));
    let unit = _mm512_mask_blend_pd(neg, splat(1.0), splat(-1.0));
    let kf = _mm512_mask_blend_pd(above(hx, 0x3ff0a2b1), _mm512_maskz_mov_pd(reduced, unit), rounded);
    let hi = _mm512_mask_blend_pd(reduced, x, _mm512_sub_pd(x, _mm512_mul_pd(kf, splat(LN2HI))));
    let lo = _mm512_maskz_mov_pd(reduced, _mm512_mul_pd(kf, splat(LN2LO)));
    let r = _mm512_mask_blend_pd(reduced, x, _mm512_sub_pd(hi, lo));
    let xx = _mm512_mul_pd(r, r);
    let c = _mm512_sub_pd(r, _mm512_mul_pd(xx, horner(&P, xx)));
    let q = _mm512_div_pd(_mm512_mul_pd(r, c), _mm512_sub_pd(splat(2.0), c));
    let y = _mm512_add_pd(splat(1.0), _mm512_add_pd(_mm512_sub_pd(q, lo), hi));
    // scalbn(y, k), as `libm`'s for the k that reach it (−1075 ≤ k ≤ 1024): one prescaling
    // step outside the normal exponents, then the power of two (k = 0 multiplies by 1).
    let k = _mm512_cvtepi32_epi64(_mm512_cvttpd_epi32(kf));
    let up = _mm512_cmpgt_epi64_mask(k, _mm512_set1_epi64(1023));
    let down = _mm512_cmplt_epi64_mask(k, _mm512_set1_epi64(-1022));
    let y = _mm512_mask_mul_pd(y, up, y, splat(x1p1023));
    let y = _mm512_mask_mul_pd(y, down, y, splat(f64::from_bits(0x0360000000000000)));
    let n = _mm512_mask_sub_epi64(k, up, k, _mm512_set1_epi64(1023));
    let n = _mm512_mask_add_epi64(n, down, n, _mm512_set1_epi64(969));
    let scale = _mm512_castsi512_pd(_mm512_slli_epi64::<52>(_mm512_add_epi64(n, _mm512_set1_epi64(0x3ff))));
    let mut out = _mm512_mul_pd(y, scale);
    // |x| ≤ 2⁻²⁸: 1 + x.
    out = _mm512_mask_blend_pd(above(hx, 0x3e300000), _mm512_add_pd(splat(1.0), x), out);
    // |x| ≥ 708.39: underflow to 0, overflow, NaN (the subnormal and largest results above).
    let special = above(hx, 0x4086232a);
    out = _mm512_mask_mov_pd(out, special & _mm512_cmp_pd_mask::<_CMP_LT_OQ>(x, splat(-745.13321910194110842)), _mm512_setzero_pd());
    out = _mm512_mask_mov_pd(out, special & _mm512_cmp_pd_mask::<_CMP_GT_OQ>(x, splat(709.782712893383973096)), _mm512_mul_pd(x, splat(x1p1023)));
    _mm512_mask_mov_pd(out, _mm512_cmp_pd_mask::<_CMP_UNORD_Q>(x, x), x)
}

/// `libm::erf` on each lane.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn erf8(x: __m512d) -> __m512d {
    const ERX: f64 = 8.45062911510467529297e-01;
    const EFX8: f64 = 1.02703333676410069053e+00;
    const PP: [f64; 5] = [1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02, -5.77027029648944159157e-03, -2.37630166566501626084e-05];
    const QQ: [f64; 5] = [3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03, 1.32494738004321644526e-04, -3.96022827877536812320e-06];
    const PA: [f64; 7] = [-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01, 3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02, -2.16637559486879084300e-03];
    const QA: [f64; 6] = [1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02, 1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02];
    const RA: [f64; 8] = [-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e+01, -6.23753324503260060396e+01, -1.62396669462573470355e+02, -1.84605092906711035994e+02, -8.12874355063065934246e+01, -9.81432934416914548592e+00];
    const SA: [f64; 8] = [1.96512716674392571292e+01, 1.37657754143519042600e+02, 4.34565877475229228821e+02, 6.45387271733267880336e+02, 4.29008140027567833386e+02, 1.08635005541779435134e+02, 6.57024977031928170135e+00, -6.04244152148580987438e-02];
    const RB: [f64; 7] = [-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e+01, -1.60636384855821916062e+02, -6.37566443368389627722e+02, -1.02509513161107724954e+03, -4.83519191608651397019e+02];
    const SB: [f64; 7] = [3.03380607434824582924e+01, 3.25792512996573918826e+02, 1.53672958608443695994e+03, 3.19985821950859553908e+03, 2.55305040643316442583e+03, 4.74528541206955367215e+02, -2.24409524465858183362e+01];
    let one = splat(1.0);
    let (ix, neg) = high_word(x);
    // |x| < 0.84375: x + x·P(x²)/Q(x²); below 2⁻²⁸, a scaled x.
    let z = _mm512_mul_pd(x, x);
    let near = _mm512_add_pd(x, _mm512_mul_pd(x, _mm512_div_pd(horner(&PP, z), _mm512_add_pd(one, _mm512_mul_pd(z, horner(&QQ, z))))));
    let tiny = _mm512_mul_pd(splat(0.125), _mm512_add_pd(_mm512_mul_pd(splat(8.0), x), _mm512_mul_pd(splat(EFX8), x)));
    // 0.84375 ≤ |x| < 1.25: erfc = 1 − erx − P(s)/Q(s), s = |x| − 1.
    let ax = _mm512_abs_pd(x);
    let s1 = _mm512_sub_pd(ax, one);
    let mid = _mm512_sub_pd(_mm512_sub_pd(one, splat(ERX)), _mm512_div_pd(horner(&PA, s1), _mm512_add_pd(one, _mm512_mul_pd(s1, horner(&QA, s1)))));
    // 1.25 ≤ |x| < 6: erfc = exp(−z² − 0.5625)·exp((z − |x|)(z + |x|) + R/S)/|x|, z = |x|
    // with its low word cleared; R/S one rational function below 1/0.35, another above.
    let s2 = _mm512_div_pd(one, _mm512_mul_pd(ax, ax));
    let first = below(ix, 0x4006db6d);
    let r = _mm512_mask_blend_pd(first, horner(&RB, s2), horner(&RA, s2));
    let big_s = _mm512_mask_blend_pd(first, _mm512_add_pd(one, _mm512_mul_pd(s2, horner(&SB, s2))), _mm512_add_pd(one, _mm512_mul_pd(s2, horner(&SA, s2))));
    let zz = _mm512_castsi512_pd(_mm512_and_si512(_mm512_castpd_si512(ax), _mm512_set1_epi64(0xffff_ffff_0000_0000u64 as i64)));
    let e1 = exp8(_mm512_sub_pd(_mm512_mul_pd(negate(zz), zz), splat(0.5625)));
    let e2 = exp8(_mm512_add_pd(_mm512_mul_pd(_mm512_sub_pd(zz, ax), _mm512_add_pd(zz, ax)), _mm512_div_pd(r, big_s)));
    let tail = _mm512_div_pd(_mm512_mul_pd(e1, e2), ax);
    let erfc = _mm512_mask_blend_pd(below(ix, 0x3ff40000), tail, mid);
    // Below 6: 1 − erfc; above, 1 − 2⁻¹⁰²², with x's sign.
    let y = _mm512_mask_blend_pd(below(ix, 0x40180000), _mm512_sub_pd(one, splat(f64::from_bits(0x0010000000000000))), _mm512_sub_pd(one, erfc));
    let mut out = _mm512_mask_blend_pd(neg, y, negate(y));
    out = _mm512_mask_mov_pd(out, below(ix, 0x3feb0000), near);
    out = _mm512_mask_mov_pd(out, below(ix, 0x3e300000), tiny);
    // NaN and ±∞: 1 − 2·sign + 1/x.
    let signed_one = _mm512_mask_blend_pd(neg, one, splat(-1.0));
    _mm512_mask_mov_pd(out, above(ix, 0x7fefffff), _mm512_add_pd(signed_one, _mm512_div_pd(one, x)))
}

/// `x/2·(1 + erf(x/√2))` on each lane, as the scalar GELU.
#[inline]
#[target_feature(enable = "avx512f")]
fn gelu8(x: __m512d) -> __m512d {
    _mm512_mul_pd(_mm512_mul_pd(splat(0.5), x), _mm512_add_pd(splat(1.0), erf8(_mm512_div_pd(x, splat(std::f64::consts::SQRT_2)))))
}

/// `x·sigmoid(x)` on each lane, as the scalar SiLU (a NaN returned as it came).
#[inline]
#[target_feature(enable = "avx512f")]
fn silu8(x: __m512d) -> __m512d {
    _mm512_mask_mov_pd(_mm512_mul_pd(x, sigmoid8(x)), _mm512_cmp_pd_mask::<_CMP_UNORD_Q>(x, x), x)
}

/// `1/(1 + exp(−x))` on each lane, as the scalar sigmoid.
#[inline]
#[target_feature(enable = "avx512f")]
fn sigmoid8(x: __m512d) -> __m512d {
    let one = splat(1.0);
    _mm512_div_pd(one, _mm512_add_pd(one, exp8(negate(x))))
}

/// The activations [`unary`] computes eight at a time (tanh stays `libm`'s, one by one).
pub(super) fn vectorized(f: super::Transcendental) -> bool {
    matches!(f, super::Transcendental::Sigmoid | super::Transcendental::Silu | super::Transcendental::Gelu | super::Transcendental::Exp)
}

/// `out[i] = f(x[i])` for `n` floats, eight at a time, the last few one by one.
///
/// # Safety
/// As [`super::unary`]; the CPU has AVX-512F, and `f` is [`vectorized`].
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn unary(f: super::Transcendental, x: *const f32, out: *mut f32, n: usize) {
    use super::Transcendental;
    let whole = n / 8 * 8;
    // One loop per activation, each calling its one function (inlined there; a choice
    // inside the loop left the calls standing, and sigmoid cost four exponentials).
    macro_rules! eights {
        ($f:ident) => {
            for i in (0..whole).step_by(8) {
                // SAFETY: elements `i..i + 8` lie inside both buffers; the eight are read
                // before they are written, so `out` may be `x`.
                unsafe { _mm256_storeu_ps(out.add(i), _mm512_cvtpd_ps($f(_mm512_cvtps_pd(_mm256_loadu_ps(x.add(i)))))) };
            }
        };
    }
    match f {
        Transcendental::Gelu => eights!(gelu8),
        Transcendental::Sigmoid => eights!(sigmoid8),
        Transcendental::Silu => eights!(silu8),
        Transcendental::Exp => eights!(exp8),
        Transcendental::Tanh | Transcendental::LeakyRelu { .. } => unreachable!("not vectorized"),
    }
    for i in whole..n {
        // SAFETY: `i < n`.
        unsafe { *out.add(i) = f.apply(*x.add(i) as f64) as f32 };
    }
}

/// `v = exp(v)` in place, eight at a time, the last few one by one.
#[target_feature(enable = "avx512f")]
pub(super) fn exp_in_place(values: &mut [f64]) {
    let mut chunks = values.chunks_exact_mut(8);
    for chunk in &mut chunks {
        // SAFETY: the chunk holds eight f64.
        unsafe { _mm512_storeu_pd(chunk.as_mut_ptr(), exp8(_mm512_loadu_pd(chunk.as_ptr()))) };
    }
    for v in chunks.into_remainder() {
        *v = super::exp(*v);
    }
}

#[cfg(test)]
pub(super) fn exp8_of(x: [f64; 8]) -> [f64; 8] {
    let mut out = [0.0; 8];
    // SAFETY: the test asks only where the CPU has AVX-512F; the arrays hold eight f64.
    unsafe { _mm512_storeu_pd(out.as_mut_ptr(), exp8(_mm512_loadu_pd(x.as_ptr()))) };
    out
}

#[cfg(test)]
pub(super) fn erf8_of(x: [f64; 8]) -> [f64; 8] {
    let mut out = [0.0; 8];
    // SAFETY: as `exp8_of`.
    unsafe { _mm512_storeu_pd(out.as_mut_ptr(), erf8(_mm512_loadu_pd(x.as_ptr()))) };
    out
}
