//! int8 depthwise convolutions of NCHW planes at the CPU's full vector width, with the
//! requantization fused: what a quantized MobileNetV2 spends most of its time on. (Generated
//! code, limited to 128-bit vectors of i16 products and a scalar loop with a bounds test per
//! tap at every row's edges, ran them at 2–3 GMAC/s.)
//!
//! Each plane is widened once into a zero-padded copy in f32, split by column phase for
//! strided windows (phase `q` of a padded row holds its columns `q, q + sw, q + 2·sw, …`), so
//! every tap of `W` consecutive outputs is one unaligned vector load and one multiply-add,
//! with no test for the padding. The sums are exact: a product of two codes is at most 2¹⁴
//! in magnitude, so up to [`EXACT_TAPS`] of them and every partial sum are integers below
//! 2²⁴, which f32 holds exactly whatever the order. Converted back to i32 and added to the
//! bias (wrapping, as the interpreter adds), they are the interpreter's accumulators bit for
//! bit; [`crate::quant::requantize_value`] then makes the same codes.

use super::int8::IntOut;
#[cfg(target_arch = "x86_64")]
use crate::floats::Floats;

/// One depthwise convolution of NCHW int8 planes: `acc[b, ch, oy, ox] = bias[ch] +
/// Σ_{ky,kx} x[b, ch, oy·sh − pt + ky, ox·sw − pl + kx] · wt[ch, ky, kx]`, taps in the
/// padding left out, undilated.
#[derive(Clone, Copy, Debug)]
pub struct DepthwiseI8 {
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
}

/// The most taps whose sums f32 holds exactly: 2²⁴ / 2¹⁴.
pub const EXACT_TAPS: usize = 1 << 10;

/// The most taps the vector kernels keep their weights for (larger windows, which no model
/// has, run the scalar loop).
#[cfg(target_arch = "x86_64")]
const VECTOR_TAPS: usize = 25;

/// Convolutions below this many multiply-adds run on one thread: at 10–20 GMAC/s that is
/// 13–26 µs, about what handing work to a worker costs.
const MIN_PARALLEL_MACS: usize = 1 << 18;

impl DepthwiseI8 {
    /// Whether the sizes are ones this kernel computes: positive strides and windows, at most
    /// [`EXACT_TAPS`] taps. (Any output size is safe: rows and columns past the image read
    /// as zeros, the interpreter's padding.)
    pub fn is_valid(&self) -> bool {
        self.sh > 0 && self.sw > 0 && self.kh > 0 && self.kw > 0 && self.kh * self.kw <= EXACT_TAPS
    }

    /// Padded rows a plane's outputs read.
    fn padded_rows(&self) -> usize {
        (self.oh.max(1) - 1) * self.sh + self.kh
    }

    /// Floats of each phase of a padded row, for vectors of `lanes`: every vector of every
    /// output row reads inside it, rounded up to whole cache lines.
    fn phase_len(&self, lanes: usize) -> usize {
        (self.ow.next_multiple_of(lanes) + (self.kw - 1) / self.sw).next_multiple_of(16)
    }
}

/// The convolution `g` of `x` (`n·c·h·w` codes) by `wt` (`c·kh·kw` codes), plus `bias` (null,
/// or `c` i32), into `out`: the accumulators, or codes requantized with one scale per
/// channel (`Requantize::per_row`: the channel is the row) or a single one. Planes are split
/// across up to `threads` threads; every thread count gives the same bits.
///
/// # Safety
/// `g.is_valid()`; the buffers hold what is said above, `out` `n·c·oh·ow` elements, writable
/// and overlapping no input; a requantizing output's scales hold `c` floats (or 1 when
/// `single`).
pub unsafe fn depthwise_i8(g: DepthwiseI8, threads: usize, x: *const i8, wt: *const i8, bias: *const i32, out: IntOut) {
    let planes = g.n * g.c;
    let macs = planes * g.oh * g.ow * g.kh * g.kw;
    let threads = if macs < MIN_PARALLEL_MACS { 1 } else { threads.clamp(1, planes.max(1)) };
    // SAFETY: tasks read the inputs and write the outputs of disjoint ranges of planes.
    let shared = unsafe { crate::pool::Shared::new((x, wt, bias, out)) };
    crate::pool::parallel_tasks(threads, threads, &|t| {
        let (x, wt, bias, out) = shared.get();
        // SAFETY: the caller's contract, for planes `lo..hi`.
        unsafe { plane_range(&g, planes * t / threads, planes * (t + 1) / threads, x, wt, bias, out) }
    });
}

/// Planes `lo..hi` (counted over all images) with the best kernel for this CPU.
///
/// # Safety
/// As [`depthwise_i8`], for those planes.
unsafe fn plane_range(g: &DepthwiseI8, lo: usize, hi: usize, x: *const i8, wt: *const i8, bias: *const i32, out: IntOut) {
    #[cfg(target_arch = "x86_64")]
    thread_local! {
        // The vector kernels' padded plane (its phases) and the plane's rows of f32 sums.
        static BUFFERS: std::cell::RefCell<(Floats, Floats)> = const { std::cell::RefCell::new((Floats::new(), Floats::new())) };
    }
    // SAFETY (all): the caller's contract; each variant runs only where its features are.
    // (The buffers are borrowed here, outside the vector functions: a closure inside one
    // would not inherit its target features.)
    unsafe {
        #[cfg(target_arch = "x86_64")]
        if g.kh * g.kw <= VECTOR_TAPS {
            let wide = std::arch::is_x86_feature_detected!("avx512f");
            let avx2 = std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
            if wide || avx2 {
                return BUFFERS.with(|bufs| {
                    let (padded, sums) = &mut *bufs.borrow_mut();
                    let lanes = if wide { 16 } else { 8 };
                    padded.ensure_lines(g.padded_rows() * g.sw * g.phase_len(lanes));
                    sums.ensure_lines(g.oh * g.ow.next_multiple_of(lanes));
                    if wide {
                        x86::planes_avx512(g, lo, hi, x, wt, bias, out, padded, sums)
                    } else {
                        x86::planes_avx2(g, lo, hi, x, wt, bias, out, padded, sums)
                    }
                });
            }
        }
        for p in lo..hi {
            plane_scalar(g, p, x, wt, bias, out);
        }
    }
}

/// The bias of plane `p`'s channel, or 0.
///
/// # Safety
/// `bias` is null or holds `c` values.
unsafe fn bias_of(g: &DepthwiseI8, p: usize, bias: *const i32) -> i32 {
    // SAFETY: the caller's contract; `p % c < c`.
    if bias.is_null() { 0 } else { unsafe { *bias.add(p % g.c) } }
}

/// Plane `p`, one output at a time, the interpreter's way: the reference the vector kernels
/// are tested against, and the kernel where they do not run.
///
/// # Safety
/// As [`depthwise_i8`], for plane `p`.
unsafe fn plane_scalar(g: &DepthwiseI8, p: usize, x: *const i8, wt: *const i8, bias: *const i32, out: IntOut) {
    // SAFETY: every read is inside plane `p` (tap positions tested against the image) or
    // its channel's weights; every write one of plane `p`'s outputs.
    unsafe {
        let (plane, taps) = (x.add(p * g.h * g.w), wt.add(p % g.c * g.kh * g.kw));
        let b = bias_of(g, p, bias);
        let mut row = vec![0i32; g.ow];
        for oy in 0..g.oh {
            for (ox, acc) in row.iter_mut().enumerate() {
                *acc = b;
                for ky in 0..g.kh {
                    let iy = (oy * g.sh + ky).wrapping_sub(g.pt);
                    if iy >= g.h {
                        continue;
                    }
                    for kx in 0..g.kw {
                        let ix = (ox * g.sw + kx).wrapping_sub(g.pl);
                        if ix < g.w {
                            *acc = acc.wrapping_add(*plane.add(iy * g.w + ix) as i32 * *taps.add(ky * g.kw + kx) as i32);
                        }
                    }
                }
            }
            store_row(g, p, oy, &row, out);
        }
    }
}

/// Output row `oy` of plane `p` from its accumulators (bias included): stored, or
/// requantized.
///
/// # Safety
/// As [`depthwise_i8`], for plane `p`; `row` holds `ow` values.
unsafe fn store_row(g: &DepthwiseI8, p: usize, oy: usize, row: &[i32], out: IntOut) {
    let at = (p * g.oh + oy) * g.ow;
    // SAFETY: the caller's contract: `ow` outputs of row `oy` of plane `p`, and the scales.
    unsafe {
        match out {
            IntOut::Acc(o) => std::ptr::copy_nonoverlapping(row.as_ptr(), o.add(at), g.ow),
            IntOut::Codes(o, rq) => {
                let s = *rq.scales.add(if rq.single { 0 } else { p % g.c });
                for (ox, &a) in row.iter().enumerate() {
                    *o.add(at + ox) = crate::quant::requantize_value(a, s, rq.activation, rq.out_scale);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::simd::Lanes;
    use super::{bias_of, DepthwiseI8, Floats, IntOut, VECTOR_TAPS};
    use std::arch::x86_64::*;

    /// # Safety
    /// As [`super::plane_range`]; the CPU has AVX-512F; at most `VECTOR_TAPS` taps; the
    /// buffers as [`plane`] wants them for 16 lanes.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn planes_avx512(g: &DepthwiseI8, lo: usize, hi: usize, x: *const i8, wt: *const i8, bias: *const i32, out: IntOut, padded: &mut Floats, sums: &mut Floats) {
        // SAFETY: forwarded contract; this function has the feature `planes` needs.
        unsafe { planes::<__m512>(g, lo, hi, x, wt, bias, out, padded, sums) }
    }

    /// # Safety
    /// As [`super::plane_range`]; the CPU has AVX2 and FMA; at most `VECTOR_TAPS` taps; the
    /// buffers as [`plane`] wants them for 8 lanes.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn planes_avx2(g: &DepthwiseI8, lo: usize, hi: usize, x: *const i8, wt: *const i8, bias: *const i32, out: IntOut, padded: &mut Floats, sums: &mut Floats) {
        // SAFETY: forwarded contract; this function has the features `planes` needs.
        unsafe { planes::<__m256>(g, lo, hi, x, wt, bias, out, padded, sums) }
    }

    /// Planes `lo..hi`, with the common windows' tap loops unrolled.
    ///
    /// # Safety
    /// As [`super::plane_range`]; the CPU has `V`'s unit; the buffers as [`plane`] wants.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn planes<V: IntLanes>(g: &DepthwiseI8, lo: usize, hi: usize, x: *const i8, wt: *const i8, bias: *const i32, out: IntOut, padded: &mut Floats, sums: &mut Floats) {
        // The padding is in the same places in every plane: zeroed once, and each plane
        // writes only its image's part.
        let len = g.padded_rows() * g.sw * g.phase_len(V::W);
        padded[..len].fill(0.0);
        for p in lo..hi {
            // SAFETY: the caller's contract.
            unsafe {
                match (g.kh, g.kw, g.sw) {
                    (3, 3, 1) => plane::<V, 3, 3, 1>(g, p, x, wt, bias, out, padded, sums),
                    (3, 3, 2) => plane::<V, 3, 3, 2>(g, p, x, wt, bias, out, padded, sums),
                    (5, 5, 1) => plane::<V, 5, 5, 1>(g, p, x, wt, bias, out, padded, sums),
                    (5, 5, 2) => plane::<V, 5, 5, 2>(g, p, x, wt, bias, out, padded, sums),
                    _ => plane::<V, 0, 0, 0>(g, p, x, wt, bias, out, padded, sums),
                }
            }
        }
    }

    /// Plane `p`: widened into `padded` (whose padding is zero), then every output row summed
    /// into `sums`, then every row stored.
    /// `KH`, `KW`, `SW` are the window and column stride when known now (0: read from `g`).
    ///
    /// # Safety
    /// As [`super::plane_range`] for plane `p`; `padded` holds `padded_rows·sw·phase_len`
    /// floats and `sums` `oh` rows of `ow` rounded up to `V::W`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn plane<V: IntLanes, const KH: usize, const KW: usize, const SW: usize>(g: &DepthwiseI8, p: usize, x: *const i8, wt: *const i8, bias: *const i32, out: IntOut, padded: &mut Floats, sums: &mut Floats) {
        let (kh, kw, sw) = if KH > 0 { (KH, KW, SW) } else { (g.kh, g.kw, g.sw) };
        let lp = g.phase_len(V::W);
        // SAFETY: plane `p` holds `h·w` codes, its channel's weights `kh·kw`; the phases are
        // written within `padded` (rows `padded_rows`, each `sw` phases of `lp`).
        unsafe {
            let plane = x.add(p * g.h * g.w);
            for r in 0..g.padded_rows() {
                let iy = r.wrapping_sub(g.pt);
                if iy >= g.h {
                    continue;
                }
                for q in 0..sw {
                    let dst = &mut padded[(r * sw + q) * lp..][..lp];
                    // Padded column `j·sw + q` is image column `j·sw + q − pl`: inside the
                    // row for `j` in `jlo..jhi`.
                    let jlo = g.pl.saturating_sub(q).div_ceil(sw).min(lp);
                    let jhi = (g.w + g.pl).saturating_sub(q).div_ceil(sw).clamp(jlo, lp);
                    if jlo < jhi {
                        let src = plane.add(iy * g.w + jlo * sw + q - g.pl);
                        if sw == 2 {
                            V::widen_even(dst[jlo..jhi].as_mut_ptr(), src, jhi - jlo);
                        } else {
                            widen::<SW>(&mut dst[jlo..jhi], src, sw);
                        }
                    }
                }
            }
            let mut weights = [0.0f32; VECTOR_TAPS];
            for (t, v) in weights[..kh * kw].iter_mut().enumerate() {
                *v = *wt.add(p % g.c * kh * kw + t) as f32;
            }
            // Each output vector sums its taps in one register; out-of-order execution
            // overlaps consecutive vectors (eight in flight, each in its own register, measured
            // no faster: 262 against 283 µs on a 56²×144 layer).
            let row_len = g.ow.div_ceil(V::W) * V::W;
            for oy in 0..g.oh {
                let top = oy * g.sh * sw * lp;
                for ox in (0..g.ow).step_by(V::W) {
                    let mut acc = V::zero();
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let v = V::load(padded.as_ptr().add(top + (ky * sw + kx % sw) * lp + ox + kx / sw));
                            acc = V::fma(v, V::splat(weights[ky * kw + kx]), acc);
                        }
                    }
                    acc.store(sums.as_mut_ptr().add(oy * row_len + ox));
                }
            }
            let b = bias_of(g, p, bias);
            for oy in 0..g.oh {
                V::finish_row(g, p, oy, &sums[oy * row_len..][..row_len], b, out);
            }
        }
    }

    /// What the plane kernels do with codes beyond [`Lanes`]' float operations, written out
    /// with intrinsics: Rust's saturating conversions in plain loops did not vectorize (a
    /// row's end took two thirds of the kernel's time), nor did a strided widening.
    pub(super) trait IntLanes: Lanes {
        /// The end of an output row: its f32 sums (exact integers, below 2²⁴ in magnitude:
        /// see the module documentation) to i32, plus the bias (wrapping), then stored or
        /// requantized by the operations of [`crate::quant::requantize_value`] in its order
        /// (AVX-512: `quant::x86::Requantize16`, which the integer GEMM's epilogue uses
        /// too), so the codes are its bits.
        ///
        /// # Safety
        /// As [`plane`]; `sums` holds row `oy`'s sums, `ow` rounded up to `W`.
        unsafe fn finish_row(g: &DepthwiseI8, p: usize, oy: usize, sums: &[f32], bias: i32, out: IntOut);

        /// `dst[j] = src[2j]` as f32 for `j < n`: a stride-2 window's column phase. Each step
        /// reads `2·W` codes as `W` little-endian pairs and keeps each pair's low byte, so
        /// the last pair, whose high byte may lie past the row, is read on its own.
        ///
        /// # Safety
        /// `src` is valid for `2n − 1` codes, `dst` writable for `n` floats.
        #[inline(always)]
        unsafe fn widen_even(dst: *mut f32, src: *const i8, n: usize) {
            // SAFETY: the caller's contract.
            unsafe {
                for j in 0..n {
                    *dst.add(j) = *src.add(2 * j) as f32;
                }
            }
        }
    }

    /// The first `n < 16` codes of `q` to `dst`, in pieces of 8, 4, 2 and 1 bytes. Through a
    /// buffer and a copy of run-time length, every row of a 7×7 or 14×14 plane ended in a
    /// call to `memcpy`: MobileNetV2 int8's depthwise layers on such planes took 11–19% longer
    /// (features.12: 162 against 131 µs), the model 6.23 against 5.92 ms.
    ///
    /// # Safety
    /// `dst` is writable for `n` bytes; the CPU has SSE2.
    #[inline(always)]
    unsafe fn store_codes_short(dst: *mut i8, q: __m128i, n: usize) {
        let mut bytes = [0u8; 16];
        // SAFETY: 16 bytes of the buffer; then pieces of the first `n` bytes at `dst`.
        unsafe {
            _mm_storeu_si128(bytes.as_mut_ptr() as *mut __m128i, q);
            let (mut at, src) = (0, bytes.as_ptr());
            if n - at >= 8 {
                (dst.add(at) as *mut u64).write_unaligned((src.add(at) as *const u64).read_unaligned());
                at += 8;
            }
            if n - at >= 4 {
                (dst.add(at) as *mut u32).write_unaligned((src.add(at) as *const u32).read_unaligned());
                at += 4;
            }
            if n - at >= 2 {
                (dst.add(at) as *mut u16).write_unaligned((src.add(at) as *const u16).read_unaligned());
                at += 2;
            }
            if n - at >= 1 {
                *dst.add(at) = *src.add(at) as i8;
            }
        }
    }

    impl IntLanes for __m512 {
        #[inline(always)]
        unsafe fn widen_even(dst: *mut f32, src: *const i8, n: usize) {
            let mut j = 0;
            // SAFETY: a step reads codes `2j..2j + 32`, all before `2n − 1` while `j + 16 < n`,
            // and writes `dst[j..j + 16]`.
            unsafe {
                while j + 16 < n {
                    let pairs = _mm512_cvtepi16_epi32(_mm256_loadu_si256(src.add(2 * j) as *const __m256i));
                    let even = _mm512_srai_epi32::<24>(_mm512_slli_epi32::<24>(pairs));
                    _mm512_storeu_ps(dst.add(j), _mm512_cvtepi32_ps(even));
                    j += 16;
                }
                for j in j..n {
                    *dst.add(j) = *src.add(2 * j) as f32;
                }
            }
        }

        #[inline(always)]
        unsafe fn finish_row(g: &DepthwiseI8, p: usize, oy: usize, sums: &[f32], bias: i32, out: IntOut) {
            let at = (p * g.oh + oy) * g.ow;
            // SAFETY: `sums` holds whole vectors; every store is to one of the row's `ow`
            // outputs (a partial vector's through a mask or a buffer); the scales as the
            // caller's contract says.
            unsafe {
                let b = _mm512_set1_epi32(bias);
                // (A macro, not a closure: a closure would not inherit the caller's target
                // features, and its intrinsics would be calls.)
                macro_rules! acc_at {
                    ($ox:expr) => {
                        _mm512_add_epi32(_mm512_cvttps_epi32(_mm512_loadu_ps(sums.as_ptr().add($ox))), b)
                    };
                }
                match out {
                    IntOut::Acc(o) => {
                        for ox in (0..g.ow).step_by(16) {
                            let n = (g.ow - ox).min(16);
                            _mm512_mask_storeu_epi32(o.add(at + ox) as *mut _, ((1u32 << n) - 1) as u16, acc_at!(ox));
                        }
                    }
                    IntOut::Codes(o, rq) => {
                        let scale = _mm512_set1_ps(*rq.scales.add(if rq.single { 0 } else { p % g.c }));
                        let requantize = crate::quant::x86::Requantize16::new(rq.out_scale, rq.activation);
                        for ox in (0..g.ow).step_by(16) {
                            let n = (g.ow - ox).min(16);
                            let q = requantize.codes(acc_at!(ox), scale);
                            if n == 16 {
                                _mm_storeu_si128(o.add(at + ox) as *mut __m128i, q);
                            } else {
                                store_codes_short(o.add(at + ox), q, n);
                            }
                        }
                    }
                }
            }
        }
    }

    impl IntLanes for __m256 {
        #[inline(always)]
        unsafe fn widen_even(dst: *mut f32, src: *const i8, n: usize) {
            let mut j = 0;
            // SAFETY: as for `__m512`, 8 pairs a step.
            unsafe {
                while j + 8 < n {
                    let pairs = _mm256_cvtepi16_epi32(_mm_loadu_si128(src.add(2 * j) as *const __m128i));
                    let even = _mm256_srai_epi32::<24>(_mm256_slli_epi32::<24>(pairs));
                    _mm256_storeu_ps(dst.add(j), _mm256_cvtepi32_ps(even));
                    j += 8;
                }
                for j in j..n {
                    *dst.add(j) = *src.add(2 * j) as f32;
                }
            }
        }

        #[inline(always)]
        unsafe fn finish_row(g: &DepthwiseI8, p: usize, oy: usize, sums: &[f32], bias: i32, out: IntOut) {
            use crate::Activation;
            let at = (p * g.oh + oy) * g.ow;
            // SAFETY: as for `__m512`; results go through an 8-lane buffer, `n` of them out.
            unsafe {
                let b = _mm256_set1_epi32(bias);
                macro_rules! acc_at {
                    ($ox:expr) => {
                        _mm256_add_epi32(_mm256_cvttps_epi32(_mm256_loadu_ps(sums.as_ptr().add($ox))), b)
                    };
                }
                let mut lanes = [0i32; 8];
                match out {
                    IntOut::Acc(o) => {
                        for ox in (0..g.ow).step_by(8) {
                            let n = (g.ow - ox).min(8);
                            _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, acc_at!(ox));
                            std::ptr::copy_nonoverlapping(lanes.as_ptr(), o.add(at + ox), n);
                        }
                    }
                    IntOut::Codes(o, rq) => {
                        let scale = _mm256_set1_ps(*rq.scales.add(if rq.single { 0 } else { p % g.c }));
                        let out_scale = _mm256_set1_ps(rq.out_scale);
                        let (lo, hi) = (_mm256_set1_ps(-128.0), _mm256_set1_ps(128.0));
                        let (qlo, qhi) = (_mm256_set1_ps(-crate::quant::QMAX), _mm256_set1_ps(crate::quant::QMAX));
                        let (magic, zero, six) = (_mm256_set1_ps(12_582_912.0), _mm256_setzero_ps(), _mm256_set1_ps(6.0));
                        for ox in (0..g.ow).step_by(8) {
                            let n = (g.ow - ox).min(8);
                            let mut v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc_at!(ox)), scale);
                            v = match rq.activation {
                                Activation::None => v,
                                Activation::Relu => _mm256_max_ps(v, zero),
                                Activation::Relu6 => _mm256_min_ps(_mm256_max_ps(v, zero), six),
                            };
                            let v = _mm256_min_ps(_mm256_max_ps(_mm256_div_ps(v, out_scale), lo), hi);
                            let v = _mm256_sub_ps(_mm256_add_ps(v, magic), magic);
                            let v = _mm256_min_ps(_mm256_max_ps(v, qlo), qhi);
                            _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, _mm256_cvttps_epi32(v));
                            for (j, &q) in lanes[..n].iter().enumerate() {
                                *o.add(at + ox + j) = q as i8;
                            }
                        }
                    }
                }
            }
        }
    }

    /// `dst[j] = src[j·sw]` as f32, with `SW` the stride when known now (0: `sw`).
    ///
    /// # Safety
    /// `src` is valid for `(dst.len() − 1)·sw + 1` codes.
    #[inline(always)]
    unsafe fn widen<const SW: usize>(dst: &mut [f32], src: *const i8, sw: usize) {
        let sw = if SW > 0 { SW } else { sw };
        // SAFETY: the caller's contract.
        unsafe {
            if sw == 1 {
                for (j, d) in dst.iter_mut().enumerate() {
                    *d = *src.add(j) as f32;
                }
            } else {
                for (j, d) in dst.iter_mut().enumerate() {
                    *d = *src.add(j * sw) as f32;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::int8::Requantize;
    use crate::Activation;

    /// Codes from a seeded generator, over the whole int8 range.
    fn codes(len: usize, seed: u64) -> Vec<i8> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8 as i8
            })
            .collect()
    }

    fn geometry(n: usize, c: usize, [h, w]: [usize; 2], [kh, kw]: [usize; 2], [sh, sw]: [usize; 2], [pt, pl]: [usize; 2]) -> DepthwiseI8 {
        let (oh, ow) = ((h + 2 * pt - kh) / sh + 1, (w + 2 * pl - kw) / sw + 1);
        DepthwiseI8 { n, c, h, w, kh, kw, sh, sw, pt, pl, oh, ow }
    }

    /// Every kernel this CPU runs, every thread count, accumulators and requantized codes,
    /// against the scalar loop (the interpreter's arithmetic) on odd sizes, strides, padding,
    /// windows and the extremes of the code range.
    #[test]
    fn vector_kernels_give_the_scalar_loops_bits() {
        let cases = [
            geometry(1, 3, [7, 9], [3, 3], [1, 1], [1, 1]),
            geometry(2, 5, [17, 33], [3, 3], [2, 2], [1, 1]),
            geometry(1, 4, [6, 5], [5, 5], [1, 1], [2, 2]),
            geometry(1, 3, [19, 20], [5, 5], [2, 2], [2, 2]),
            geometry(1, 2, [9, 40], [3, 2], [1, 3], [0, 1]),
            geometry(1, 2, [4, 4], [1, 1], [1, 1], [0, 0]),
            geometry(1, 16, [56, 56], [3, 3], [1, 1], [1, 1]),
            geometry(1, 8, [3, 3], [3, 3], [2, 2], [1, 1]),
            // Rows long enough for the stride-2 widening's vector steps, odd and even.
            geometry(1, 3, [9, 70], [3, 3], [2, 2], [1, 1]),
            geometry(1, 2, [7, 67], [5, 5], [2, 2], [2, 2]),
            geometry(1, 2, [5, 36], [3, 3], [2, 2], [0, 0]),
            // Rows strided but columns not, and the reverse.
            geometry(1, 3, [11, 19], [3, 3], [2, 1], [1, 1]),
            geometry(1, 3, [11, 19], [3, 3], [1, 2], [1, 1]),
            // "Same" padding at stride 2 on an even size: one more output row and column than
            // the near padding alone gives (the far side padded by one less).
            DepthwiseI8 { n: 1, c: 2, h: 8, w: 34, kh: 3, kw: 3, sh: 2, sw: 2, pt: 0, pl: 0, oh: 4, ow: 17 },
        ];
        for (i, g) in cases.into_iter().enumerate() {
            assert!(g.is_valid(), "{g:?}");
            let mut x = codes(g.n * g.c * g.h * g.w, 1 + i as u64);
            // The extremes, where a product is largest.
            x[0] = -128;
            x[1] = 127;
            let mut wt = codes(g.c * g.kh * g.kw, 100 + i as u64);
            wt[0] = -128;
            let bias: Vec<i32> = (0..g.c).map(|ch| if ch == 1 { i32::MAX - 3 } else { ch as i32 * 977 - 3000 }).collect();
            let scales: Vec<f32> = (0..g.c).map(|ch| 1e-3 * (1.0 + ch as f32)).collect();
            let len = g.n * g.c * g.oh * g.ow;
            let run = |threads: usize, out: IntOut, vector: bool| unsafe {
                if vector {
                    depthwise_i8(g, threads, x.as_ptr(), wt.as_ptr(), bias.as_ptr(), out)
                } else {
                    for p in 0..g.n * g.c {
                        plane_scalar(&g, p, x.as_ptr(), wt.as_ptr(), bias.as_ptr(), out)
                    }
                }
            };
            let mut want = vec![0i32; len];
            run(1, IntOut::Acc(want.as_mut_ptr()), false);
            for threads in [1, 2, 3] {
                let mut got = vec![0i32; len];
                run(threads, IntOut::Acc(got.as_mut_ptr()), true);
                assert_eq!(got, want, "accumulators, case {i}, {threads} threads");
                for (act, single) in [(Activation::None, false), (Activation::Relu6, false), (Activation::Relu, true)] {
                    let rq = Requantize { scales: scales.as_ptr(), per_row: true, single, out_scale: 0.05, activation: act };
                    let (mut want_q, mut got_q) = (vec![0i8; len], vec![0i8; len]);
                    run(1, IntOut::Codes(want_q.as_mut_ptr(), rq), false);
                    run(threads, IntOut::Codes(got_q.as_mut_ptr(), rq), true);
                    assert_eq!(got_q, want_q, "codes, case {i}, {threads} threads, {act:?}");
                    let s = |ch: usize| if single { scales[0] } else { scales[ch] };
                    let direct: Vec<i8> = want.iter().enumerate().map(|(e, &a)| crate::quant::requantize_value(a, s(e / (g.oh * g.ow) % g.c), act, 0.05)).collect();
                    assert_eq!(want_q, direct, "the scalar loop requantizes each accumulator, case {i}");
                }
            }
            // The AVX2 kernel too, where an AVX-512 CPU runs the tests.
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                let mut got = vec![0i32; len];
                let (mut padded, mut sums) = (Floats::zeroed_lines(g.padded_rows() * g.sw * g.phase_len(8)), Floats::zeroed_lines(g.oh * g.ow.next_multiple_of(8)));
                unsafe { x86::planes_avx2(&g, 0, g.n * g.c, x.as_ptr(), wt.as_ptr(), bias.as_ptr(), IntOut::Acc(got.as_mut_ptr()), &mut padded, &mut sums) };
                assert_eq!(got, want, "AVX2 accumulators, case {i}");
                let rq = Requantize { scales: scales.as_ptr(), per_row: true, single: false, out_scale: 0.05, activation: Activation::Relu6 };
                let (mut want_q, mut got_q) = (vec![0i8; len], vec![0i8; len]);
                run(1, IntOut::Codes(want_q.as_mut_ptr(), rq), false);
                unsafe { x86::planes_avx2(&g, 0, g.n * g.c, x.as_ptr(), wt.as_ptr(), bias.as_ptr(), IntOut::Codes(got_q.as_mut_ptr(), rq), &mut padded, &mut sums) };
                assert_eq!(got_q, want_q, "AVX2 codes, case {i}");
            }
        }
    }
}
