//! The x86-64 microkernels (AVX-512, AVX-512 in ymm registers, AVX2 and AVX512_BF16): one
//! generic f32 tile over readers of A and B, instantiated per ISA by the `kernels!` macro, plus
//! the half tiles of the 32-wide AVX-512 kernels and the bf16 tile. `super` chooses among them
//! at run time.

use std::arch::x86_64::*;

use super::super::simd::Lanes;
use super::Store;

/// Where a microkernel reads A: element `i` of step `p`.
trait ReadA {
    /// # Safety
    /// `p < kc`, `i < MR` of the tile the reader was made for.
    unsafe fn at(&self, p: usize, i: usize) -> f32;
}

/// A packed panel: `kc` steps of `MR` floats.
struct PackedA<const MR: usize>(*const f32);

impl<const MR: usize> ReadA for PackedA<MR> {
    #[inline(always)]
    unsafe fn at(&self, p: usize, i: usize) -> f32 {
        // SAFETY: the caller's contract; the panel holds `kc·MR` floats.
        unsafe { *self.0.add(p * MR + i) }
    }
}

/// A row-major A read in place: row `i` at its own address. A tile with fewer than `MR`
/// rows reads its last row again for the missing ones (their results are never stored),
/// so no access leaves A.
struct RowsA<const MR: usize>([*const f32; MR]);

impl<const MR: usize> RowsA<MR> {
    #[inline(always)]
    fn new(a: *const f32, rsa: isize, rows: usize) -> Self {
        let last = rows.clamp(1, MR) - 1;
        RowsA(std::array::from_fn(|i| a.wrapping_offset(i.min(last) as isize * rsa)))
    }
}

impl<const MR: usize> ReadA for RowsA<MR> {
    #[inline(always)]
    unsafe fn at(&self, p: usize, i: usize) -> f32 {
        // SAFETY: the caller's contract; every row pointer is one of A's rows.
        unsafe { *self.0[i].add(p) }
    }
}

/// A convolution's patches read in place (see [`super::MicroTapsA`]): row `i`'s window at
/// its own address, column `p` at the same offset from each.
struct TapsA<const MR: usize> {
    rows: [*const f32; MR],
    off: *const isize,
}

impl<const MR: usize> ReadA for TapsA<MR> {
    #[inline(always)]
    unsafe fn at(&self, p: usize, i: usize) -> f32 {
        // SAFETY: the caller's contract; every window holds every offset's element.
        unsafe { *self.rows[i].offset(*self.off.add(p)) }
    }
}

/// Where a microkernel reads B: the `NV` vectors of step `p`.
trait ReadB<V: Lanes, const NV: usize> {
    /// # Safety
    /// `p < kc` of the tile the reader was made for; the CPU has `V`'s unit.
    unsafe fn at(&self, p: usize) -> [V; NV];

    /// Ask for step `p`'s operands in L1 (a hint: any `p` is fine, past the end too).
    #[inline(always)]
    fn prefetch(&self, _p: usize) {}
}

/// How many steps of `k` ahead a microkernel prefetches its packed B panel into L1.
const B_PREFETCH_STEPS: usize = 8;

/// A packed panel: `kc` steps of `STEP·W` floats, of which the tile reads the first `NV`
/// vectors (all of them, or the first half for a [`super::HalfTile`]).
struct PackedB<const STEP: usize>(*const f32);

impl<V: Lanes, const NV: usize, const STEP: usize> ReadB<V, NV> for PackedB<STEP> {
    #[inline(always)]
    unsafe fn at(&self, p: usize) -> [V; NV] {
        // SAFETY: the caller's contract; the panel holds `kc·STEP·W` floats, `NV ≤ STEP`.
        std::array::from_fn(|v| unsafe { V::load(self.0.add((p * STEP + v) * V::W)) })
    }

    #[inline(always)]
    fn prefetch(&self, p: usize) {
        let step = self.0.wrapping_add(p * STEP * V::W);
        for line in 0..(STEP * V::W).div_ceil(16) {
            // SAFETY: a prefetch never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(step.wrapping_add(line * 16) as *const i8) };
        }
    }
}

/// A row-major B read in place: step `p` at `b + p·rsb`, only the tile's `cols` columns
/// (an edge tile's missing ones masked off, so no access leaves B).
struct ColsB<const NV: usize> {
    b: *const f32,
    rsb: isize,
    /// The columns each vector reads.
    lanes: [usize; NV],
}

impl<V: Lanes, const NV: usize> ReadB<V, NV> for ColsB<NV> {
    #[inline(always)]
    unsafe fn at(&self, p: usize) -> [V; NV] {
        let row = self.b.wrapping_offset(p as isize * self.rsb);
        // SAFETY: the caller's contract; the row holds the tile's columns.
        std::array::from_fn(|v| unsafe { if self.lanes[v] > 0 { V::load_n(row.add(v * V::W), self.lanes[v]) } else { V::zero() } })
    }
}

/// `MR` rows × `NV` vectors of columns (`NR = NV·W`), `ACC = NV·MR` accumulators: each
/// step reads one row of B (`NV` vectors) and broadcasts each row's element of A,
/// wherever the readers take them from.
///
/// # Safety
/// As [`super::Micro`] with `NR = NV·V::W`, for the operands the readers were made for;
/// the CPU has `V`'s vector unit (the caller is compiled with its target feature, which
/// this inlines into).
#[inline(always)]
unsafe fn micro_with<V: Lanes, const MR: usize, const NV: usize, const ACC: usize>(kc: usize, a: &impl ReadA, b: &impl ReadB<V, NV>, c: *mut f32, rsc: isize, csc: isize, st: &Store) {
    // SAFETY (whole body): the readers cover `kc` steps, and C the tile's part its
    // strides address.
    unsafe {
        // The tile of C the sum will be stored to, fetched while a long k loop runs: with
        // products larger than L2 its lines come from L3 or memory (1024³: 22.0 → 21.2
        // ms). Short loops cannot hide the fetch and measured no better.
        if csc == 1 && kc >= 128 {
            for i in 0..st.rows.min(MR) {
                let row = c.wrapping_offset(i as isize * rsc);
                for v in 0..NV {
                    _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(v * V::W) as *const i8);
                }
            }
        }
        let mut acc = [V::zero(); ACC];
        match (st.stream_b, st.prefetch.is_null()) {
            (true, false) => steps::<V, MR, NV, ACC, true, true>(kc, a, b, st.prefetch, &mut acc),
            (true, true) => steps::<V, MR, NV, ACC, true, false>(kc, a, b, st.prefetch, &mut acc),
            (false, false) => steps::<V, MR, NV, ACC, false, true>(kc, a, b, st.prefetch, &mut acc),
            (false, true) => steps::<V, MR, NV, ACC, false, false>(kc, a, b, st.prefetch, &mut acc),
        }
        store_tile::<V, MR, NV, ACC>(&acc, c, rsc, csc, st);
    }
}

/// The `kc` steps of [`micro_with`]: each reads one row of B (`NV` vectors) and broadcasts
/// each row's element of A into `acc`. `PREFETCH_B`: fetch B's panel `B_PREFETCH_STEPS`
/// ahead into L1 (see [`super::Store::stream_b`]).
///
/// # Safety
/// As [`micro_with`].
#[inline(always)]
unsafe fn steps<V: Lanes, const MR: usize, const NV: usize, const ACC: usize, const PREFETCH_B: bool, const PREFETCH_NEXT: bool>(kc: usize, a: &impl ReadA, b: &impl ReadB<V, NV>, prefetch: *const f32, acc: &mut [V; ACC]) {
    // SAFETY (whole body): the readers cover `kc` steps.
    unsafe {
        for p in 0..kc {
            if PREFETCH_NEXT {
                _mm_prefetch::<_MM_HINT_T1>(prefetch.wrapping_add(p * 16) as *const i8);
            }
            // A slab of 1024 steps makes a 32-wide B micro-panel 128 KiB, more than L1, so
            // every A panel streams it from L2 again; the hardware prefetcher alone left
            // the Xeon (Sapphire Rapids class) waiting on it: 1024³ 13.49 → 12.75 ms, ResNet-18
            // 19.33 → 18.84, MobileNetV2 5.40 → 5.35 (one thread, 5–6 alternations; 16
            // steps ahead measured 13.02). Packed panels only: an in-place B has its own
            // stride.
            if PREFETCH_B {
                b.prefetch(p + B_PREFETCH_STEPS);
            }
            let bv = b.at(p);
            for i in 0..MR {
                let av = V::splat(a.at(p, i));
                for v in 0..NV {
                    acc[NV * i + v] = V::fma(av, bv[v], acc[NV * i + v]);
                }
            }
        }
    }
}

/// Both operands packed, B in panels `STEP` vectors wide.
///
/// # Safety
/// As [`super::Micro`] with `NR = STEP·V::W` (and the tile's `cols ≤ NV·V::W`); the CPU has
/// `V`'s vector unit.
#[inline(always)]
unsafe fn micro<V: Lanes, const MR: usize, const NV: usize, const ACC: usize, const STEP: usize>(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rsc: isize, csc: isize, st: &Store) {
    // SAFETY: forwarded contract.
    unsafe { micro_with::<V, MR, NV, ACC>(kc, &PackedA::<MR>(a), &PackedB::<STEP>(b), c, rsc, csc, st) }
}

/// A read in place (see [`super::MicroRowsA`]), B packed as for [`micro`].
///
/// # Safety
/// As [`super::MicroRowsA`] with `NR = STEP·V::W` (and `cols ≤ NV·V::W`); the CPU has
/// `V`'s vector unit.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_rows_a<V: Lanes, const MR: usize, const NV: usize, const ACC: usize, const STEP: usize>(kc: usize, a: *const f32, rsa: isize, b: *const f32, c: *mut f32, rsc: isize, csc: isize, st: &Store) {
    // SAFETY: forwarded contract.
    unsafe { micro_with::<V, MR, NV, ACC>(kc, &RowsA::<MR>::new(a, rsa, st.rows), &PackedB::<STEP>(b), c, rsc, csc, st) }
}

/// A convolution's patches read in place (see [`super::MicroTapsA`]), B packed as for
/// [`micro`].
///
/// # Safety
/// As [`super::MicroTapsA`] with `NR = STEP·V::W` (and `cols ≤ NV·V::W`); the CPU has
/// `V`'s vector unit.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_taps_a<V: Lanes, const MR: usize, const NV: usize, const ACC: usize, const STEP: usize>(kc: usize, rows: *const *const f32, off: *const isize, b: *const f32, c: *mut f32, rsc: isize, csc: isize, st: &Store) {
    // SAFETY: forwarded contract; `rows` holds MR pointers.
    unsafe { micro_with::<V, MR, NV, ACC>(kc, &TapsA::<MR> { rows: *(rows as *const [*const f32; MR]), off }, &PackedB::<STEP>(b), c, rsc, csc, st) }
}

/// A packed, B read in place (see [`super::MicroColsB`]).
///
/// # Safety
/// As [`super::MicroColsB`] with `NR = 2·V::W`; the CPU has `V`'s vector unit.
#[inline(always)]
unsafe fn micro_cols_b<V: Lanes, const MR: usize, const NV: usize, const ACC: usize>(kc: usize, a: *const f32, b: *const f32, rsb: isize, c: *mut f32, rsc: isize, csc: isize, st: &Store) {
    let lanes = std::array::from_fn(|v| st.cols.saturating_sub(v * V::W).min(V::W));
    // SAFETY: forwarded contract.
    unsafe { micro_with::<V, MR, NV, ACC>(kc, &PackedA::<MR>(a), &ColsB::<NV> { b, rsb, lanes }, c, rsc, csc, st) }
}

/// Store (or add) the `rows × cols` part of an `MR × NV·W` tile of accumulators, `NV`
/// vectors per row, into C, with the epilogue on the way out.
///
/// # Safety
/// C is valid (writable) for the tile's part its strides address, and so are the
/// epilogue's operands; the CPU has `V`'s unit.
#[inline(always)]
unsafe fn store_tile<V: Lanes, const MR: usize, const NV: usize, const ACC: usize>(acc: &[V; ACC], c: *mut f32, rsc: isize, csc: isize, st: &Store) {
    // SAFETY (whole body): the caller's contract; every access covers only the first
    // `lanes` floats of a vector, which lie inside the tile's `cols`.
    unsafe {
        if csc == 1 && st.rows >= MR && st.cols >= NV * V::W {
            // A whole tile, as nearly all are: constant indices (the accumulators stay in
            // registers). With `k` = 16 the general path below cost a third of the product.
            store_whole::<V, MR, NV, ACC>(acc, c, rsc, st);
            return;
        }
        // Edge tiles index the accumulators by row at run time: a copy in memory, so that
        // the accumulators themselves stay in registers on the path above.
        let acc: [V; ACC] = *acc;
        if csc == 1 {
            for i in 0..st.rows.min(MR) {
                let row = c.offset(i as isize * rsc);
                for v in 0..NV {
                    let lanes = st.cols.saturating_sub(v * V::W).min(V::W);
                    if lanes == 0 {
                        break;
                    }
                    let p = row.add(v * V::W);
                    let mut x = acc[NV * i + v];
                    if st.accumulate {
                        x = V::add(V::load_n(p, lanes), x);
                    }
                    if let Some(ep) = st.ep {
                        // The scalar epilogue's order: bias, residual, activation, GELU.
                        if !ep.bias.is_null() {
                            let bias = if ep.bias_per_row { V::splat(*ep.bias.add(i)) } else { V::load_n(ep.bias.add(v * V::W), lanes) };
                            x = V::add(x, bias);
                        }
                        if !ep.residual.is_null() {
                            x = V::add(x, V::load_n(ep.residual.offset(i as isize * rsc).add(v * V::W), lanes));
                        }
                        x = V::activate(x, ep.act, ep.gelu);
                    }
                    x.store_n(p, lanes);
                }
            }
            return;
        }
        // Strided C (a transposed result): element by element, then the epilogue.
        let mut lanes = [0.0f32; 16];
        for i in 0..st.rows.min(MR) {
            for v in 0..NV {
                acc[NV * i + v].store(lanes.as_mut_ptr());
                for (l, &x) in lanes[..V::W].iter().enumerate() {
                    let j = v * V::W + l;
                    if j >= st.cols {
                        break;
                    }
                    let dst = c.offset(i as isize * rsc + j as isize * csc);
                    *dst = if st.accumulate { *dst + x } else { x };
                }
            }
        }
        if let Some(ep) = st.ep {
            ep.apply(c, 0, 0, st.rows.min(MR), st.cols.min(NV * V::W), rsc, csc);
        }
    }
}

/// [`store_tile`] for a whole tile (all `MR` rows and `NV·W` columns) with contiguous
/// rows of C: plain loads and stores, the bias row loaded once.
///
/// Each part of the epilogue is its own pass over the tile, its condition tested once: a
/// pass over constant indices unrolls into straight-line code on registers, where testing
/// every condition for every vector (as the scalar order reads) cost six to eight branches
/// per vector, as much as a sixth of a short product's steps.
///
/// # Safety
/// As [`store_tile`], with `csc == 1`, `st.rows ≥ MR` and `st.cols ≥ NV·W`.
#[inline(always)]
unsafe fn store_whole<V: Lanes, const MR: usize, const NV: usize, const ACC: usize>(acc: &[V; ACC], c: *mut f32, rsc: isize, st: &Store) {
    // SAFETY (whole body): the caller's contract.
    unsafe {
        // Accumulator `j`'s place in C (and in the residual, which has C's strides).
        let at = |j: usize| (j / NV) as isize * rsc + (j % NV * V::W) as isize;
        let mut x = *acc;
        if st.accumulate {
            for (j, x) in x.iter_mut().enumerate() {
                *x = V::add(V::load(c.offset(at(j))), *x);
            }
        }
        if let Some(ep) = st.ep {
            // The scalar epilogue's order: bias, residual, activation, GELU.
            if !ep.bias.is_null() && !ep.bias_per_row {
                let bias: [V; NV] = std::array::from_fn(|v| V::load(ep.bias.add(v * V::W)));
                for (j, x) in x.iter_mut().enumerate() {
                    *x = V::add(*x, bias[j % NV]);
                }
            } else if !ep.bias.is_null() {
                for (j, x) in x.iter_mut().enumerate() {
                    *x = V::add(*x, V::splat(*ep.bias.add(j / NV)));
                }
            }
            if !ep.residual.is_null() {
                for (j, x) in x.iter_mut().enumerate() {
                    *x = V::add(*x, V::load(ep.residual.offset(at(j))));
                }
            }
            match ep.act {
                crate::Activation::None => {}
                crate::Activation::Relu => {
                    for x in x.iter_mut() {
                        *x = V::relu(*x);
                    }
                }
                crate::Activation::Relu6 => {
                    for x in x.iter_mut() {
                        *x = V::relu6(*x);
                    }
                }
            }
            if ep.gelu {
                // On a copy: GELU's pass may stay a loop, and indexing by a loop counter
                // would keep `x` in memory on every path.
                let mut y = x;
                for y in y.iter_mut() {
                    *y = V::gelu(*y);
                }
                x = y;
            }
        }
        for (j, x) in x.iter().enumerate() {
            x.store(c.offset(at(j)));
        }
    }
}

/// Independent accumulators in [`bf16_dot_speedup`]'s loops: enough to cover either
/// instruction's latency at two a cycle.
const SPEEDUP_CHAINS: usize = 12;

/// `reps` rounds of [`SPEEDUP_CHAINS`] independent `vdpbf16ps` (64 flops each).
#[target_feature(enable = "avx512f,avx512bf16")]
#[inline(never)]
unsafe fn dpbf16_chains(reps: usize) -> f32 {
    // SAFETY: `__m512bh` and `__m512` are both 64 bytes of lanes.
    let (a, b): (__m512bh, __m512bh) = unsafe { (std::mem::transmute::<__m512, __m512bh>(_mm512_set1_ps(0.999)), std::mem::transmute::<__m512, __m512bh>(std::hint::black_box(_mm512_set1_ps(1e-7)))) };
    let mut acc = [_mm512_setzero_ps(); SPEEDUP_CHAINS];
    for _ in 0..reps {
        for v in acc.iter_mut() {
            *v = _mm512_dpbf16_ps(*v, a, b);
        }
    }
    acc.iter().map(|v| _mm512_reduce_add_ps(*v)).sum()
}

/// `reps` rounds of [`SPEEDUP_CHAINS`] independent 512-bit FMAs (32 flops each).
#[target_feature(enable = "avx512f")]
#[inline(never)]
unsafe fn fma_chains(reps: usize) -> f32 {
    let (a, b) = (_mm512_set1_ps(0.999), std::hint::black_box(_mm512_set1_ps(1e-7)));
    let mut acc = [_mm512_setzero_ps(); SPEEDUP_CHAINS];
    for _ in 0..reps {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    acc.iter().map(|v| _mm512_reduce_add_ps(*v)).sum()
}

/// Flops per second of `vdpbf16ps` over those of the 512-bit FMA on this core: the best of
/// seven alternating runs of each (24,576 instructions apiece), so a run the host interrupts only
/// loses. The CPU has AVX-512F and AVX512_BF16.
pub(super) fn bf16_dot_speedup() -> f64 {
    const REPS: usize = 2048;
    let (mut bf16, mut f32) = (f64::MAX, f64::MAX);
    for _ in 0..7 {
        let start = std::time::Instant::now();
        // SAFETY: the caller checked the features.
        std::hint::black_box(unsafe { dpbf16_chains(REPS) });
        bf16 = bf16.min(start.elapsed().as_secs_f64());
        let start = std::time::Instant::now();
        // SAFETY: as above.
        std::hint::black_box(unsafe { fma_chains(REPS) });
        f32 = f32.min(start.elapsed().as_secs_f64());
    }
    // Twice the flops per instruction.
    2.0 * f32 / bf16.max(f64::MIN_POSITIVE)
}

/// 8 rows × 32 columns of bf16 pairs: each step is two consecutive `k`, `vdpbf16ps`
/// adding both products of a lane's pair to its f32 accumulator (16 zmm accumulators).
///
/// # Safety
/// As [`super::Micro`] with `MR = 8`, `NR = 32`, `kc` counting pairs; the CPU has
/// AVX-512F and AVX512_BF16.
#[target_feature(enable = "avx512f,avx512bf16")]
pub unsafe fn micro_avx512bf16_8x32(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rsc: isize, csc: isize, st: &Store) {
    const MR: usize = 8;
    const NR: usize = 32;
    // SAFETY (whole body): the panels hold `kc` steps of MR (A) and NR (B) pairs, and C
    // is valid for the MR × NR tile its strides address; a pair is 4 bytes like an f32.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); 2 * MR];
        let (a, b) = (a as *const i32, b as *const i32);
        for p in 0..kc {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * NR) as *const _));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * NR + 16) as *const _));
            for i in 0..MR {
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a.add(p * MR + i)));
                acc[2 * i] = _mm512_dpbf16_ps(acc[2 * i], av, b0);
                acc[2 * i + 1] = _mm512_dpbf16_ps(acc[2 * i + 1], av, b1);
            }
        }
        store_tile::<__m512, MR, 2, { 2 * MR }>(&acc, c, rsc, csc, st);
    }
}

/// The f32 kernels: for each `(MR, NV)` of a vector type, the tile reading packed
/// operands and its three in-place readers, compiled with the ISA's features; and a
/// lookup from `(MR, NR)` to them.
macro_rules! kernels {
    ($feature:literal, $v:ty, $lookup:ident; $($mr:literal, $nv:literal, $acc:literal, $name:literal: $micro:ident, $rows_a:ident, $cols_b:ident, $taps_a:ident;)*) => {
        $(
            /// # Safety
            /// As [`super::Micro`] with this tile; the CPU has the features.
            #[target_feature(enable = $feature)]
            unsafe fn $micro(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rsc: isize, csc: isize, st: &Store) {
                // SAFETY: forwarded contract.
                unsafe { micro::<$v, $mr, $nv, $acc, $nv>(kc, a, b, c, rsc, csc, st) }
            }

            /// # Safety
            /// As [`super::MicroRowsA`] with this tile; the CPU has the features.
            #[target_feature(enable = $feature)]
            unsafe fn $rows_a(kc: usize, a: *const f32, rsa: isize, b: *const f32, c: *mut f32, rsc: isize, csc: isize, st: &Store) {
                // SAFETY: forwarded contract.
                unsafe { micro_rows_a::<$v, $mr, $nv, $acc, $nv>(kc, a, rsa, b, c, rsc, csc, st) }
            }

            /// # Safety
            /// As [`super::MicroColsB`] with this tile; the CPU has the features.
            #[target_feature(enable = $feature)]
            unsafe fn $cols_b(kc: usize, a: *const f32, b: *const f32, rsb: isize, c: *mut f32, rsc: isize, csc: isize, st: &Store) {
                // SAFETY: forwarded contract.
                unsafe { micro_cols_b::<$v, $mr, $nv, $acc>(kc, a, b, rsb, c, rsc, csc, st) }
            }

            /// # Safety
            /// As [`super::MicroTapsA`] with this tile; the CPU has the features.
            #[target_feature(enable = $feature)]
            unsafe fn $taps_a(kc: usize, rows: *const *const f32, off: *const isize, b: *const f32, c: *mut f32, rsc: isize, csc: isize, st: &Store) {
                // SAFETY: forwarded contract.
                unsafe { micro_taps_a::<$v, $mr, $nv, $acc, $nv>(kc, rows, off, b, c, rsc, csc, st) }
            }
        )*

        /// The kernel of `mr` rows and `nr` columns, one of those listed.
        pub(super) fn $lookup(mr: usize, nr: usize) -> super::Kernel {
            const W: usize = std::mem::size_of::<$v>() / 4;
            match (mr, nr / W) {
                $(($mr, $nv) => super::Kernel { mr: $mr, nr: W * $nv, micro: $micro, micro_rows_a: Some($rows_a), micro_cols_b: Some($cols_b), micro_taps_a: Some($taps_a), half: None, name: $name },)*
                _ => unreachable!("no {mr}x{nr} {} kernel", $feature),
            }
        }
    };
}

// 8×32 (16 zmm accumulators) is the main tile; 8×16 serves products of at most 16
// columns; 4–7 rows products whose last row tile 8 rows fill badly.
kernels! { "avx512f", __m512, avx512_tiles;
    8, 2, 16, "avx512f 8x32": micro_8x32, micro_8x32_rows_a, micro_8x32_cols_b, micro_8x32_taps_a;
    7, 2, 14, "avx512f 7x32": micro_7x32, micro_7x32_rows_a, micro_7x32_cols_b, micro_7x32_taps_a;
    6, 2, 12, "avx512f 6x32": micro_6x32, micro_6x32_rows_a, micro_6x32_cols_b, micro_6x32_taps_a;
    5, 2, 10, "avx512f 5x32": micro_5x32, micro_5x32_rows_a, micro_5x32_cols_b, micro_5x32_taps_a;
    4, 2, 8, "avx512f 4x32": micro_4x32, micro_4x32_rows_a, micro_4x32_cols_b, micro_4x32_taps_a;
    8, 1, 8, "avx512f 8x16": micro_8x16, micro_8x16_rows_a, micro_8x16_cols_b, micro_8x16_taps_a;
    7, 1, 7, "avx512f 7x16": micro_7x16, micro_7x16_rows_a, micro_7x16_cols_b, micro_7x16_taps_a;
    6, 1, 6, "avx512f 6x16": micro_6x16, micro_6x16_rows_a, micro_6x16_cols_b, micro_6x16_taps_a;
    5, 1, 5, "avx512f 5x16": micro_5x16, micro_5x16_rows_a, micro_5x16_cols_b, micro_5x16_taps_a;
    4, 1, 4, "avx512f 4x16": micro_4x16, micro_4x16_rows_a, micro_4x16_cols_b, micro_4x16_taps_a;
}

/// Half tiles (see [`super::HalfTile`]) of the 32-wide AVX-512 tiles, by rows.
macro_rules! half_tiles {
    ($($mr:literal: $micro:ident, $rows_a:ident, $taps_a:ident;)*) => {
        $(
            /// # Safety
            /// As [`micro`] with this half tile; the CPU has AVX-512F.
            #[target_feature(enable = "avx512f")]
            unsafe fn $micro(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rsc: isize, csc: isize, st: &Store) {
                // SAFETY: forwarded contract.
                unsafe { micro::<__m512, $mr, 1, $mr, 2>(kc, a, b, c, rsc, csc, st) }
            }

            /// # Safety
            /// As [`micro_rows_a`] with this half tile; the CPU has AVX-512F.
            #[target_feature(enable = "avx512f")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn $rows_a(kc: usize, a: *const f32, rsa: isize, b: *const f32, c: *mut f32, rsc: isize, csc: isize, st: &Store) {
                // SAFETY: forwarded contract.
                unsafe { micro_rows_a::<__m512, $mr, 1, $mr, 2>(kc, a, rsa, b, c, rsc, csc, st) }
            }

            /// # Safety
            /// As [`micro_taps_a`] with this half tile; the CPU has AVX-512F.
            #[target_feature(enable = "avx512f")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn $taps_a(kc: usize, rows: *const *const f32, off: *const isize, b: *const f32, c: *mut f32, rsc: isize, csc: isize, st: &Store) {
                // SAFETY: forwarded contract.
                unsafe { micro_taps_a::<__m512, $mr, 1, $mr, 2>(kc, rows, off, b, c, rsc, csc, st) }
            }
        )*

        /// The AVX-512 kernel of `mr` rows and `nr` columns, with its half tile where
        /// it is 32 wide.
        pub(super) fn avx512(mr: usize, nr: usize) -> super::Kernel {
            let half = match (mr, nr) {
                $(($mr, 32) => Some(super::HalfTile { micro: $micro, rows_a: $rows_a, taps_a: $taps_a }),)*
                _ => None,
            };
            super::Kernel { half, ..avx512_tiles(mr, nr) }
        }
    };
}

half_tiles! {
    8: micro_8x32_half, micro_8x32_half_rows_a, micro_8x32_half_taps_a;
    7: micro_7x32_half, micro_7x32_half_rows_a, micro_7x32_half_taps_a;
    6: micro_6x32_half, micro_6x32_half_rows_a, micro_6x32_half_taps_a;
    5: micro_5x32_half, micro_5x32_half_rows_a, micro_5x32_half_taps_a;
    4: micro_4x32_half, micro_4x32_half_rows_a, micro_4x32_half_taps_a;
}

// 8×24: 24 ymm accumulators, which only AVX-512VL's 32 vector registers hold (with three
// of B and a broadcast of A); for CPUs that run AVX-512 in halves (see `mid_kernel`).
kernels! { "avx2,fma,avx512f,avx512vl", __m256, avx512_ymm;
    8, 3, 24, "avx512vl 8x24": micro_ymm_8x24, micro_ymm_8x24_rows_a, micro_ymm_8x24_cols_b, micro_ymm_8x24_taps_a;
}

// 6×16: 12 ymm accumulators.
kernels! { "avx2,fma", __m256, avx2;
    6, 2, 12, "avx2+fma 6x16": micro_avx2_6x16, micro_avx2_6x16_rows_a, micro_avx2_6x16_cols_b, micro_avx2_6x16_taps_a;
}
