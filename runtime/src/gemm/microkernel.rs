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
    /// The slab's B micro-panel does not stay in L1 ([`b_panel_stays_in_l1`]): the
    /// microkernel prefetches it a few steps ahead.
    pub stream_b: bool,
}

/// Whether a slab's B micro-panel of `bytes` stays in L1 beside the A panels while every row
/// tile of the block reads it: at most two thirds of L1d, about the share the compiler's L1
/// rule gives B (8 of 12 ways of a 48 KiB L1: 256 steps of a 32-wide panel; 5 of 8 ways of
/// Zen 4's 32 KiB, slabs of 160, where this says 170). Such panels are not prefetched: the
/// prefetches would only take load slots (the 8×32 loop on L1-resident panels on the Xeon:
/// 230 → 218 GFLOP/s at 96 steps, 237 → 223 at 256). With that and the next panel's null
/// test taken out of the step loop, one thread on the Xeon, medians of 20 alternations:
/// transformer 1.349 → 1.315 ms, 1024³ 11.74 → 11.01, MobileNetV2 4.79 → 4.69. Decided once
/// per slab by the driver: reading the cache size in every tile made 1024³ 5% slower.
pub(super) fn b_panel_stays_in_l1(bytes: usize) -> bool {
    bytes <= crate::cpu::l1d_bytes() * 2 / 3
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

/// Whether bf16 products are faster on the bf16 kernel than on the f32 one: the CPU has
/// the kernel and its dot product (two multiply-adds per lane) does at least
/// [`BF16_MIN_SPEEDUP`] times the 512-bit FMA's flops per second, measured once per process
/// ([`x86::bf16_dot_speedup`]: a fraction of a millisecond). Where it does not, a bf16 value is
/// exact in f32, and the f32 kernel gives the same products faster and without pairing
/// panels. The two machines measured sit far on either side: on the AMD EPYC (Zen 4)
/// `vdpbf16ps` did 235.5 GFLOP/s against 116.5 for the FMA, and on the Intel Xeon (family 6
/// model 167, a VM) 122 against 246, where the bf16 GEMM ran 1024³ at 96.5 GFLOP/s against
/// 170.6 in f32 and ResNet-18 in bf16 took 43.9 ms against 17.2 in f32.
pub fn bf16_products_pay() -> bool {
    static PAY: OnceLock<bool> = OnceLock::new();
    *PAY.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if bf16_kernel().is_some() {
            return x86::bf16_dot_speedup() >= BF16_MIN_SPEEDUP;
        }
        false
    })
}

/// The least measured speedup of the bf16 dot product over the FMA, in flops, at which bf16
/// products use it: its GEMM also pairs A's values, so a tie would lose.
const BF16_MIN_SPEEDUP: f64 = 1.25;

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
mod x86;
