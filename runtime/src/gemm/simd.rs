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
}

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
}

/// The AVX2 mask of the first `n` of 8 lanes.
///
/// # Safety
/// The CPU has AVX2 (the caller is compiled with it).
#[inline(always)]
pub(crate) unsafe fn lane_mask(n: usize) -> __m256i {
    unsafe { _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)) }
}
