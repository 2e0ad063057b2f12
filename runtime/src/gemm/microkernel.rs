//! The register-tile microkernels: `C[0..MR, 0..NR] (+)= Apanel · Bpanel` over a `kc` slab,
//! chosen once per process from the CPU's features (AVX-512F, else AVX2+FMA, else portable
//! code). The x86 kernels are one source, generic over the vector width ([`Lanes`]), the
//! rows and the vectors of C per row: one broadcast of A per row per step.

use std::sync::OnceLock;

use super::Epilogue;

/// A microkernel: `C[0..rows, 0..cols] (+)= Apanel · Bpanel` over `kc`, with `C` strided,
/// stored as [`Store`] says.
///
/// # Safety
/// `a` holds `kc·MR` floats (a packed A panel), `b` holds `kc·NR` (a packed B panel), C is
/// valid (writable) for the `rows × cols` elements its strides address, and the epilogue's
/// bias and residual, already shifted to this tile, are valid for them too.
pub(super) type Micro = unsafe fn(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rsc: isize, csc: isize, st: &Store);

/// A microkernel that reads A in place instead of from a packed panel: row `i` of the tile
/// at `a + i·rsa`, its `kc` values consecutive. Rows past `rows` are never read.
///
/// # Safety
/// As [`Micro`], with A valid for `kc` floats from each of the tile's `rows` rows.
pub(super) type MicroRowsA = unsafe fn(kc: usize, a: *const f32, rsa: isize, b: *const f32, c: *mut f32, rsc: isize, csc: isize, st: &Store);

/// A microkernel that reads A in place from an image, as a convolution's patch matrix:
/// row `i` of the tile is the window at `rows[i]` (`MR` pointers), its column `p` at
/// `rows[i] + off[p]`. Implicit GEMM: interior tiles of a convolution need no packing.
///
/// # Safety
/// As [`Micro`], with `rows` holding `MR` pointers and `off` `kc` offsets such that every
/// `rows[i] + off[p]` is a valid float.
pub(super) type MicroTapsA = unsafe fn(kc: usize, rows: *const *const f32, off: *const isize, b: *const f32, c: *mut f32, rsc: isize, csc: isize, st: &Store);

/// A microkernel that reads B in place instead of from a packed panel: step `p` of the tile's
/// columns at `b + p·rsb`, consecutive; only the tile's `cols` columns are read.
///
/// # Safety
/// As [`Micro`], with B valid for the tile's `cols` floats at each of the `kc` steps.
pub(super) type MicroColsB = unsafe fn(kc: usize, a: *const f32, b: *const f32, rsb: isize, c: *mut f32, rsc: isize, csc: isize, st: &Store);

/// How a microkernel stores its register tile. The epilogue is applied to the accumulators
/// before they leave the registers (a separate pass over the stored tile cost more than the
/// product itself when `k` is small, as in pointwise convolutions), and an edge tile stores
/// only its `rows × cols` part, with masked vector stores.
#[derive(Clone, Copy)]
pub(super) struct Store {
    /// Add to C instead of overwriting it.
    pub accumulate: bool,
    /// The rows (at most MR) and columns (at most NR) of the tile that exist.
    pub rows: usize,
    pub cols: usize,
    /// On the last slab of `k`: the product's epilogue shifted to this tile
    /// ([`Epilogue::shifted`]), applied after the sum.
    pub ep: Option<Epilogue>,
    /// Null, or where the microkernel fetches one cache line per step of `k` into L2 while it
    /// runs: part of the next packed panel of B, which otherwise comes from L3 or memory when
    /// its first tile starts (see `gemm`).
    pub prefetch: *const f32,
}

/// The microkernel in use and its register tile.
#[derive(Clone, Copy)]
pub(super) struct Kernel {
    pub mr: usize,
    pub nr: usize,
    pub micro: Micro,
    /// The same tile reading A in place, where there is one.
    pub micro_rows_a: Option<MicroRowsA>,
    /// The same tile reading B in place, where there is one.
    pub micro_cols_b: Option<MicroColsB>,
    /// The same tile reading a convolution's patches in place, where there is one.
    pub micro_taps_a: Option<MicroTapsA>,
    /// The same rows over only the first half of each packed panel, where there is one: for
    /// a product's last column tile when at most half of it exists.
    pub half: Option<HalfTile>,
    pub name: &'static str,
}

/// A kernel's tile over the first half (one vector) of its packed B panels, reading A
/// packed, in place, or as patches, as the whole tile does. 144 columns on 32-wide panels
/// leave a last tile of 16: the whole tile spent half its multiply-adds on the panel's zero
/// padding (a tenth of MobileNetV2's 56²×24→144 expansions).
#[derive(Clone, Copy)]
pub(super) struct HalfTile {
    pub micro: Micro,
    pub rows_a: MicroRowsA,
    pub taps_a: MicroTapsA,
}

fn select() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return x86::avx512(8, 32);
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return x86::avx2(6, 16);
        }
    }
    Kernel { mr: 4, nr: 8, micro: micro_portable_4x8, micro_rows_a: None, micro_cols_b: None, micro_taps_a: None, half: None, name: "portable 4x8" }
}

/// The microkernel this CPU runs, selected once.
pub(super) fn kernel() -> Kernel {
    static K: OnceLock<Kernel> = OnceLock::new();
    *K.get_or_init(select)
}

/// A tile half as wide, with the same rows (so packed A is the same), for products with
/// at most its `NR` columns: pointwise convolutions into 16 channels used half of each
/// 8×32 tile. Only with AVX-512 (one zmm per row still keeps eight FMAs in flight).
fn narrow_kernel() -> Option<Kernel> {
    static K: OnceLock<Option<Kernel>> = OnceLock::new();
    *K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Some(x86::avx512(8, 16));
        }
        None
    })
}

/// A tile of 8 rows by three ymm vectors (24 columns), for CPUs that run AVX-512 in 256-bit
/// halves ([`crate::cpu::avx512_in_halves`]): there a ymm FMA does half a zmm FMA's work in
/// half its time, so 24-column panels cost nothing per multiply-add and fit 24, 48 or 144
/// columns exactly where 32-column ones waste a quarter or a tenth of every tile
/// (MobileNetV2's projections into 24 channels).
fn mid_kernel() -> Option<Kernel> {
    static K: OnceLock<Option<Kernel>> = OnceLock::new();
    *K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if crate::cpu::avx512_in_halves() {
            return Some(x86::avx512_ymm(8, 24));
        }
        None
    })
}

/// The tile width for a product with `n` columns, given the main tile's width and the narrow
/// and middle ones where the CPU has them: the narrow one when `n` fits it, the middle one
/// when it fills the tiles of each row much better than the main one, else the main one.
/// The runtime and the compiler's cost model both decide by this. "Much": more tiles cost
/// more stores and calls, so 144 columns (90% filled by 32-wide tiles, 100% by 24-wide)
/// measured slower on 24 (MobileNetV2's 56²×24→144: 253 → 279 µs), while 24 columns (75%
/// against 100%) measured faster (56²×144→24: 276 → 213 µs).
pub fn tile_width_for(n: usize, wide: usize, narrow: Option<usize>, mid: Option<usize>) -> usize {
    let fill = |nr: usize| n as f64 / n.next_multiple_of(nr).max(1) as f64;
    match (narrow, mid) {
        (Some(narrow), _) if n <= narrow => narrow,
        (_, Some(mid)) if fill(mid) > fill(wide) + 0.15 => mid,
        _ => wide,
    }
}

/// The f32 microkernel for a product with `n` columns: [`kernel`], or the narrow or middle
/// one as [`tile_width_for`] says. Packing B and multiplying both ask this, so they agree on
/// the panel width.
pub(super) fn kernel_for(n: usize) -> Kernel {
    let wide = kernel();
    let (narrow, mid) = (narrow_kernel(), mid_kernel());
    let nr = tile_width_for(n, wide.nr, narrow.map(|k| k.nr), mid.map(|k| k.nr));
    [narrow, mid].into_iter().flatten().find(|k| k.nr == nr).unwrap_or(wide)
}

/// The main, narrow and middle tile widths this CPU's f32 GEMM has (see [`tile_width_for`]).
pub fn microkernel_widths() -> (usize, Option<usize>, Option<usize>) {
    (kernel().nr, narrow_kernel().map(|k| k.nr), mid_kernel().map(|k| k.nr))
}

/// [`kernel_for`]`(n)` with fewer rows where that fills the last row tile of an `m`-row
/// product much better: 49 rows (a 7×7 image) wasted an eighth of every 8-row column of
/// tiles, a Winograd product over 4 tiles half. Only for an A that is not packed ahead of
/// time (its panels have the full kernel's rows); the result is the same either way (each
/// element's sum runs in the same order whatever the tile).
pub(super) fn kernel_for_shape(m: usize, n: usize) -> Kernel {
    let wide = kernel_for(n);
    #[cfg(target_arch = "x86_64")]
    if wide.mr == 8 && matches!(wide.nr, 16 | 32) && narrow_kernel().is_some() {
        let fill = |mr: usize| m as f64 / (m.div_ceil(mr) * mr) as f64;
        // Fewer rows per step cost a little throughput: only a clearly better fill wins.
        let best = (4..8).rev().fold(8, |best, mr| if fill(mr) > fill(best) + 0.03 { mr } else { best });
        if best != 8 {
            return x86::avx512(best, wide.nr);
        }
    }
    let _ = m;
    wide
}

/// The bf16 microkernel, where the CPU has AVX512_BF16: the f32 kernel's tile (8 × 32), with
/// each packed element a pair of bf16 values of consecutive `k` (see [`super::Precision`]).
pub(super) fn bf16_kernel() -> Option<Kernel> {
    static K: OnceLock<Option<Kernel>> = OnceLock::new();
    *K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bf16") {
            return Some(Kernel { mr: 8, nr: 32, micro: x86::micro_avx512bf16_8x32, micro_rows_a: None, micro_cols_b: None, micro_taps_a: None, half: None, name: "avx512-bf16 8x32" });
        }
        None
    })
}

/// The bf16 microkernel's name, or `None` where the CPU has no bf16 dot product (bf16
/// products then run on the f32 kernel, on the widened values).
pub fn bf16_microkernel_name() -> Option<&'static str> {
    bf16_kernel().map(|k| k.name)
}

/// The microkernel in use, e.g. `"avx512f 8x32"`.
pub fn microkernel_name() -> &'static str {
    kernel().name
}

/// Rows and columns (`MR × NR`) of the microkernel's register tile of C.
pub fn microkernel_shape() -> (usize, usize) {
    let k = kernel();
    (k.mr, k.nr)
}

/// The register tile of an f32 product with `n` columns (narrower where `n` is small).
pub fn microkernel_shape_for(n: usize) -> (usize, usize) {
    let k = kernel_for(n);
    (k.mr, k.nr)
}

/// Plain Rust, for CPUs without AVX2: a 4×8 tile the compiler may vectorize.
///
/// # Safety
/// As [`Micro`] with `MR = 4`, `NR = 8`.
unsafe fn micro_portable_4x8(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rsc: isize, csc: isize, st: &Store) {
    let mut acc = [[0.0f32; 8]; 4];
    for p in 0..kc {
        for (i, row) in acc.iter_mut().enumerate() {
            // SAFETY: the panels hold `kc` steps of 4 (A) and 8 (B) floats.
            let av = unsafe { *a.add(p * 4 + i) };
            for (j, v) in row.iter_mut().enumerate() {
                *v += av * unsafe { *b.add(p * 8 + j) };
            }
        }
    }
    for (i, row) in acc.iter().enumerate().take(st.rows) {
        for (j, v) in row.iter().enumerate().take(st.cols) {
            // SAFETY: C is valid for the tile's `rows × cols` elements.
            unsafe {
                let dst = c.offset(i as isize * rsc + j as isize * csc);
                *dst = if st.accumulate { *dst + v } else { *v };
            }
        }
    }
    if let Some(ep) = st.ep {
        // SAFETY: the epilogue was shifted to this tile, which C holds.
        unsafe { ep.apply(c, 0, 0, st.rows, st.cols, rsc, csc) };
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
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
    }

    /// A packed panel: `kc` steps of `NV·W` floats.
    struct PackedB(*const f32);

    impl<V: Lanes, const NV: usize> ReadB<V, NV> for PackedB {
        #[inline(always)]
        unsafe fn at(&self, p: usize) -> [V; NV] {
            // SAFETY: the caller's contract; the panel holds `kc·NV·W` floats.
            std::array::from_fn(|v| unsafe { V::load(self.0.add((p * NV + v) * V::W)) })
        }
    }

    /// The first vector of each step of a packed panel two vectors wide (see [`super::HalfTile`]).
    struct PackedBHalf(*const f32);

    impl<V: Lanes> ReadB<V, 1> for PackedBHalf {
        #[inline(always)]
        unsafe fn at(&self, p: usize) -> [V; 1] {
            // SAFETY: the caller's contract; the panel holds `kc·2·W` floats.
            [unsafe { V::load(self.0.add(p * 2 * V::W)) }]
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
            let prefetch = st.prefetch;
            for p in 0..kc {
                if !prefetch.is_null() {
                    _mm_prefetch::<_MM_HINT_T1>(prefetch.wrapping_add(p * 16) as *const i8);
                }
                let bv = b.at(p);
                for i in 0..MR {
                    let av = V::splat(a.at(p, i));
                    for v in 0..NV {
                        acc[NV * i + v] = V::fma(av, bv[v], acc[NV * i + v]);
                    }
                }
            }
            store_tile::<V, MR, NV, ACC>(&acc, c, rsc, csc, st);
        }
    }

    /// Both operands packed.
    ///
    /// # Safety
    /// As [`super::Micro`] with `NR = 2·V::W`; the CPU has `V`'s vector unit.
    #[inline(always)]
    unsafe fn micro<V: Lanes, const MR: usize, const NV: usize, const ACC: usize>(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rsc: isize, csc: isize, st: &Store) {
        // SAFETY: forwarded contract.
        unsafe { micro_with::<V, MR, NV, ACC>(kc, &PackedA::<MR>(a), &PackedB(b), c, rsc, csc, st) }
    }

    /// A read in place (see [`super::MicroRowsA`]), B packed.
    ///
    /// # Safety
    /// As [`super::MicroRowsA`] with `NR = 2·V::W`; the CPU has `V`'s vector unit.
    #[inline(always)]
    unsafe fn micro_rows_a<V: Lanes, const MR: usize, const NV: usize, const ACC: usize>(kc: usize, a: *const f32, rsa: isize, b: *const f32, c: *mut f32, rsc: isize, csc: isize, st: &Store) {
        // SAFETY: forwarded contract.
        unsafe { micro_with::<V, MR, NV, ACC>(kc, &RowsA::<MR>::new(a, rsa, st.rows), &PackedB(b), c, rsc, csc, st) }
    }

    /// A convolution's patches read in place (see [`super::MicroTapsA`]), B packed.
    ///
    /// # Safety
    /// As [`super::MicroTapsA`] with `NR = 2·V::W`; the CPU has `V`'s vector unit.
    #[inline(always)]
    unsafe fn micro_taps_a<V: Lanes, const MR: usize, const NV: usize, const ACC: usize>(kc: usize, rows: *const *const f32, off: *const isize, b: *const f32, c: *mut f32, rsc: isize, csc: isize, st: &Store) {
        // SAFETY: forwarded contract; `rows` holds MR pointers.
        unsafe { micro_with::<V, MR, NV, ACC>(kc, &TapsA::<MR> { rows: *(rows as *const [*const f32; MR]), off }, &PackedB(b), c, rsc, csc, st) }
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

    /// [`micro`] over the first half of two-vector panels (`ACC = MR`).
    ///
    /// # Safety
    /// As [`super::Micro`] with `NR = 2·V::W`, the tile's `cols ≤ V::W`; the CPU has `V`'s unit.
    #[inline(always)]
    unsafe fn micro_half<V: Lanes, const MR: usize>(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rsc: isize, csc: isize, st: &Store) {
        // SAFETY: forwarded contract.
        unsafe { micro_with::<V, MR, 1, MR>(kc, &PackedA::<MR>(a), &PackedBHalf(b), c, rsc, csc, st) }
    }

    /// [`micro_rows_a`] over the first half of two-vector panels.
    ///
    /// # Safety
    /// As [`super::MicroRowsA`] with `NR = 2·V::W`, `cols ≤ V::W`; the CPU has `V`'s unit.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn micro_rows_a_half<V: Lanes, const MR: usize>(kc: usize, a: *const f32, rsa: isize, b: *const f32, c: *mut f32, rsc: isize, csc: isize, st: &Store) {
        // SAFETY: forwarded contract.
        unsafe { micro_with::<V, MR, 1, MR>(kc, &RowsA::<MR>::new(a, rsa, st.rows), &PackedBHalf(b), c, rsc, csc, st) }
    }

    /// [`micro_taps_a`] over the first half of two-vector panels.
    ///
    /// # Safety
    /// As [`super::MicroTapsA`] with `NR = 2·V::W`, `cols ≤ V::W`; the CPU has `V`'s unit.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn micro_taps_a_half<V: Lanes, const MR: usize>(kc: usize, rows: *const *const f32, off: *const isize, b: *const f32, c: *mut f32, rsc: isize, csc: isize, st: &Store) {
        // SAFETY: forwarded contract; `rows` holds MR pointers.
        unsafe { micro_with::<V, MR, 1, MR>(kc, &TapsA::<MR> { rows: *(rows as *const [*const f32; MR]), off }, &PackedBHalf(b), c, rsc, csc, st) }
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
    /// # Safety
    /// As [`store_tile`], with `csc == 1`, `st.rows ≥ MR` and `st.cols ≥ NV·W`.
    #[inline(always)]
    unsafe fn store_whole<V: Lanes, const MR: usize, const NV: usize, const ACC: usize>(acc: &[V; ACC], c: *mut f32, rsc: isize, st: &Store) {
        // SAFETY (whole body): the caller's contract.
        unsafe {
            let col_bias: Option<[V; NV]> = match st.ep {
                Some(ep) if !ep.bias.is_null() && !ep.bias_per_row => Some(std::array::from_fn(|v| V::load(ep.bias.add(v * V::W)))),
                _ => None,
            };
            for i in 0..MR {
                let row = c.offset(i as isize * rsc);
                for v in 0..NV {
                    let p = row.add(v * V::W);
                    let mut x = acc[NV * i + v];
                    if st.accumulate {
                        x = V::add(V::load(p), x);
                    }
                    if let Some(ep) = st.ep {
                        if let Some(bias) = col_bias {
                            x = V::add(x, bias[v]);
                        } else if !ep.bias.is_null() {
                            x = V::add(x, V::splat(*ep.bias.add(i)));
                        }
                        if !ep.residual.is_null() {
                            x = V::add(x, V::load(ep.residual.offset(i as isize * rsc).add(v * V::W)));
                        }
                        x = V::activate(x, ep.act, ep.gelu);
                    }
                    x.store(p);
                }
            }
        }
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
                    unsafe { micro::<$v, $mr, $nv, $acc>(kc, a, b, c, rsc, csc, st) }
                }

                /// # Safety
                /// As [`super::MicroRowsA`] with this tile; the CPU has the features.
                #[target_feature(enable = $feature)]
                unsafe fn $rows_a(kc: usize, a: *const f32, rsa: isize, b: *const f32, c: *mut f32, rsc: isize, csc: isize, st: &Store) {
                    // SAFETY: forwarded contract.
                    unsafe { micro_rows_a::<$v, $mr, $nv, $acc>(kc, a, rsa, b, c, rsc, csc, st) }
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
                    unsafe { micro_taps_a::<$v, $mr, $nv, $acc>(kc, rows, off, b, c, rsc, csc, st) }
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
                /// As [`micro_half`] with this tile; the CPU has AVX-512F.
                #[target_feature(enable = "avx512f")]
                unsafe fn $micro(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rsc: isize, csc: isize, st: &Store) {
                    // SAFETY: forwarded contract.
                    unsafe { micro_half::<__m512, $mr>(kc, a, b, c, rsc, csc, st) }
                }

                /// # Safety
                /// As [`micro_rows_a_half`] with this tile; the CPU has AVX-512F.
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn $rows_a(kc: usize, a: *const f32, rsa: isize, b: *const f32, c: *mut f32, rsc: isize, csc: isize, st: &Store) {
                    // SAFETY: forwarded contract.
                    unsafe { micro_rows_a_half::<__m512, $mr>(kc, a, rsa, b, c, rsc, csc, st) }
                }

                /// # Safety
                /// As [`micro_taps_a_half`] with this tile; the CPU has AVX-512F.
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn $taps_a(kc: usize, rows: *const *const f32, off: *const isize, b: *const f32, c: *mut f32, rsc: isize, csc: isize, st: &Store) {
                    // SAFETY: forwarded contract.
                    unsafe { micro_taps_a_half::<__m512, $mr>(kc, rows, off, b, c, rsc, csc, st) }
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
}
