//! Single-precision matrix multiplication for compiled models: `C (+)= A·B` with arbitrary
//! row and column strides, blocked for the caches and computed by register-tile
//! microkernels chosen at run time from the CPU's features ([`microkernel`]). Generated code
//! calls it through the entry points of [`abi`] for the matrix products inside convolutions,
//! dense layers and matmuls when microkernels are on.
//!
//! The structure is the classic one (Goto/BLIS): the `k` dimension is cut into `kc` slabs,
//! `A` into `mc × kc` blocks packed into `MR`-row panels, `B` into `kc × nc` blocks packed into
//! `NR`-column panels ([`pack`]), and the microkernel keeps an `MR × NR` tile of `C` in
//! registers; the [`epilogue`] runs on each tile as it is stored. The compiler chooses `kc`,
//! `mc` and `nc` per product from the cache sizes ([`Blocking`]).

pub mod abi;
pub mod attention;
pub mod conv_depthwise;
pub mod conv_direct;
pub mod depthwise;
pub mod gemv;
pub mod norm;
pub mod epilogue;
pub mod microkernel;
pub mod int8;
pub mod int8_depthwise;
pub mod layout;
pub mod pack;
pub mod pool;
pub mod sparse;
mod simd;
pub mod winograd;

/// Ends the process on a kernel call the JIT never makes (a ring or a tile that does not
/// match its buffers), rather than read or write outside them; unwinding out of the
/// runtime's `extern "C"` entry points is not an option.
pub(crate) fn refuse_call(what: &str) -> ! {
    eprintln!("nnc runtime: {what}");
    std::process::abort()
}
#[cfg(test)]
mod tests;

pub use crate::activation::Activation;
pub use abi::*;
pub use epilogue::Epilogue;
pub use simd::ERF_COEFFS;
pub use microkernel::{bf16_microkernel_name, bf16_products_pay, microkernel_name, microkernel_shape, microkernel_shape_for, microkernel_widths, tile_width_for};
pub use pack::{pack_a_all, pack_a_all_bf16, pack_b_all, pack_b_all_bf16, packed_a_bf16_len, packed_a_len, packed_b_bf16_len, packed_b_len, ConvPatches};

use crate::floats::Floats;
use microkernel::{b_panel_stays_in_l1, bf16_kernel, kernel_for, kernel_for_shape, Store};
use pack::{pack_a, pack_a_patches, pack_a_patches_pairs, pack_b, pack_b_pairs, packed_b_offset, padded_rows, pair_a_panels, ASource, BSource, TileWindows};

/// What a product multiplies in. Operands are f32 in memory either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    /// Both operands bfloat16 values (stored as f32 whose low 16 bits are zero; other values
    /// are truncated to their upper half, so round them first), products summed in f32 by
    /// the AVX512_BF16 microkernel. Packed operands hold pairs of consecutive `k` as one
    /// 4-byte element, so a packed slab of `kc` elements spans `2·kc` of the reduction; the
    /// blocking counts pairs. Requested only where [`bf16_microkernel_name`] is `Some`; other
    /// CPUs fall back to `F32` on the same (widened) values.
    Bf16,
}

impl Precision {
    /// Packed elements along `k`.
    fn steps(self, k: usize) -> usize {
        match self {
            Precision::F32 => k,
            Precision::Bf16 => k.div_ceil(2),
        }
    }

    /// Values of `k` per packed element.
    fn per_step(self) -> usize {
        match self {
            Precision::F32 => 1,
            Precision::Bf16 => 2,
        }
    }

    /// This precision if the CPU can run it, else f32.
    pub fn available(self) -> Precision {
        match self {
            Precision::Bf16 if bf16_kernel().is_none() => Precision::F32,
            p => p,
        }
    }
}

/// Cache blocking: the depth `kc` of a packed slab, and the rows `mc` of A and columns `nc` of
/// B packed at once. Any positive sizes give the same result; they only change speed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocking {
    pub kc: usize,
    pub mc: usize,
    pub nc: usize,
}

impl Blocking {
    /// Sizes that are positive, with `mc` a whole number of micro-panels (packed A relies on
    /// it) and the packing buffers bounded.
    pub(super) fn sanitized(self, mr: usize) -> Blocking {
        Blocking { kc: self.kc.clamp(1, 1 << 14), mc: self.mc.clamp(1, 1 << 14).next_multiple_of(mr), nc: self.nc.clamp(1, 1 << 14) }
    }

    pub(super) fn from_abi(kc: i64, mc: i64, nc: i64) -> Blocking {
        let pos = |v: i64| v.max(1) as usize;
        Blocking { kc: pos(kc), mc: pos(mc), nc: pos(nc) }
    }
}


/// `C (+)= A·B` for `A: m × k`, `B: k × n`, `C: m × n`, all strided (in elements). With
/// `accumulate` false, C is overwritten.
///
/// # Safety
/// Every element the strides address must be valid: A for `i < m, p < k`, B for `p < k,
/// j < n`, C (writable) for `i < m, j < n`; C must not overlap A or B.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm(m: usize, n: usize, k: usize, a: *const f32, rsa: isize, csa: isize, b: *const f32, rsb: isize, csb: isize, c: *mut f32, rsc: isize, csc: isize, accumulate: bool, blk: Blocking) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        gemm(m, n, k, ASource::Strided(a, rsa, csa), BSource::Strided(b, rsb, csb), c, rsc, csc, accumulate, blk, Epilogue::NONE, Precision::F32)
    }
}

/// [`sgemm`] in `precision` (see [`Precision`], whose `Bf16` wants bf16 values); `Bf16` falls
/// back to f32 where the CPU has no bf16 kernel.
///
/// # Safety
/// As [`sgemm`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_in(precision: Precision, m: usize, n: usize, k: usize, a: *const f32, rsa: isize, csa: isize, b: *const f32, rsb: isize, csb: isize, c: *mut f32, rsc: isize, csc: isize, accumulate: bool, blk: Blocking) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        gemm(m, n, k, ASource::Strided(a, rsa, csa), BSource::Strided(b, rsb, csb), c, rsc, csc, accumulate, blk, Epilogue::NONE, precision.available())
    }
}

/// Products below this many multiply-adds run on one thread: handing work to a worker costs
/// about as much as 2M multiply-adds (tens of microseconds).
const MIN_PARALLEL_MACS: usize = 1 << 21;

/// The fewest multiply-adds in one task of a split product.
const MIN_TASK_MACS: usize = 1 << 21;

/// The fewest rows in one task of a product split by rows beyond one task per thread: each
/// task streams all of B, which for a 7×7×512 convolution's 9 MiB of weights cost more than
/// the balance won (ResNet-18's last layers 1.35 → 1.85 ms at 8 tasks of 6 rows).
const MIN_TASK_ROWS: usize = 64;

/// The largest B (in floats) of a product cut into more tasks than threads: a B that does
/// not stay in L2 is streamed from L3 once per task (1024³ on two threads: 10.7–11.0 ms at
/// one task per thread, 11.0–11.5 at four).
const TASKED_B_MAX: usize = 1 << 18;

/// The smallest packed B (in elements) whose product is split across threads by columns
/// (each thread reading only its panels) rather than by rows (each reading all of B): a B
/// bigger than L2 is streamed from L3 or memory by every thread that reads it, and with the
/// vCPUs in different core complexes, which share no L3, from memory twice.
const PACKED_COLUMNS_MIN_B: usize = 1 << 18;

/// The longest patch rows (`kh·kw·c`) whose windows in the padding are copied
/// (`pack::EdgeWindows`) rather than their tiles packed. Short rows pack slowly (runs of a
/// few channels) and their products are short, so packing cost more than the product in
/// MobileNetV2's stem (27 columns, 32 filters: stem and depthwise 459–479 → 432–442 µs with
/// copies); long ones pack in long runs, and the packed tile, reused by every column tile,
/// is read faster than windows in place (ResNet-18, 576–4608 columns, 21.4–21.8 → 21.9–22.7
/// ms with copies).
const EDGE_COPY_MAX_K: usize = 256;

/// Whether row tiles fetch the next packed panel of B while they run.
const PREFETCH_NEXT_PANEL: bool = true;

/// The largest span (bytes from its first row to its last) of a block of row-major A read in
/// place rather than packed. Every column tile walks the whole block, so a block spread over
/// more pages than the TLB and L2 hold comes back from further out on every walk: 2048³ (a
/// 1224-row block 8 KiB a row apart) ran 195–214 ms in place and 170–172 packed, 1536³
/// 76.5 against 71 ms, 2000³ 188 against 159; 1024³ (4 MiB) was a tie on one thread and
/// 11.4 against 11.8 ms in place on two.
const A_IN_PLACE_SPAN_MAX: usize = 4 << 20;

/// The largest row-major B (in floats) read in place rather than packed.
const B_IN_PLACE_MAX: usize = 1 << 15;

/// Whether a product with a packed B is split across threads by columns (each thread
/// reading only its panels of B) rather than by rows (each reading all of B): when B is
/// bigger than [`PACKED_COLUMNS_MIN_B`], lies in one `nc` block, and is at least twice as
/// wide as A is tall (every thread then packs all of A, so A must be the smaller part to
/// read twice). ResNet-18's 7×7 layers (49 rows, 512 columns, 9 MiB of weights).
fn packed_b_split_by_columns(m: usize, n: usize, k: usize, blk: Blocking, precision: Precision) -> bool {
    precision.steps(k) * n > PACKED_COLUMNS_MIN_B && n >= 2 * m && n <= blk.sanitized(kernel_for(n).mr).nc
}

/// [`gemm`] split across up to `threads` threads: by ranges of whole `NR`-column tiles (of a
/// packed B, whole panels of one block, where [`packed_b_split_by_columns`]), or by even
/// ranges of rows of a strided A. Row ranges are several tasks per thread, which a thread
/// done with its own takes from another (see [`crate::pool::parallel_tasks`]; none under
/// [`MIN_TASK_ROWS`] rows or [`MIN_TASK_MACS`], and only with B at most [`TASKED_B_MAX`]). Each element of C is computed by exactly the
/// same sequence of operations whatever tile holds it, so the result is bit-identical for
/// every thread count.
///
/// # Safety
/// As [`gemm`].
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_threaded(threads: usize, m: usize, n: usize, k: usize, a: ASource, b: BSource, c: *mut f32, rsc: isize, csc: isize, accumulate: bool, blk: Blocking, ep: Epilogue, precision: Precision) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let (mr, nr) = (kernel_for(n).mr, kernel_for(n).nr);
        let packed = matches!(b, BSource::Packed(_));
        let by_rows = packed && !packed_b_split_by_columns(m, n, k, blk, precision);
        let (extent, unit) = if by_rows { (m, mr) } else { (n, nr) };
        let tiles = extent.div_ceil(unit);
        // Too little work per thread is not worth the hand-off.
        let mut threads = threads.min(tiles / 2).max(1);
        if (m * n * k) < MIN_PARALLEL_MACS || (by_rows && matches!(a, ASource::Packed(_))) {
            threads = 1;
        }
        if threads == 1 {
            return gemm(m, n, k, a, b, c, rsc, csc, accumulate, blk, ep, precision);
        }
        // Column tasks each pack their own share of A, so those stay one per thread.
        // A whole number of tasks per thread: three equal tasks on two threads take two.
        let tasks = if by_rows && k * n <= TASKED_B_MAX { (threads * crate::pool::TASKS_PER_THREAD).min(m / MIN_TASK_ROWS).min(m * n * k / MIN_TASK_MACS) / threads * threads } else { threads }.max(threads);
        let per = tiles.div_ceil(tasks);
        // SAFETY: tasks read A and B and write disjoint row or column ranges of C.
        let shared = crate::pool::Shared::new((a, b, c, ep));
        crate::pool::parallel_tasks(threads, tasks, &|t| {
            let (a, b, c, ep) = shared.get();
            // Rows split evenly (each share then gets the row tile that fits it best:
            // whole 8-row tiles gave a 7×7 image's 49 rows 32 and 17), columns by whole
            // tiles of B's panels.
            let (lo, hi) = if by_rows {
                (extent * t / tasks, extent * (t + 1) / tasks)
            } else {
                ((t * per * unit).min(extent), ((t + 1) * per * unit).min(extent))
            };
            if lo >= hi {
                return;
            }
            if by_rows {
                let rows = match a {
                    ASource::Strided(ap, rsa, csa) => ASource::Strided(ap.offset(lo as isize * rsa), rsa, csa),
                    ASource::Patches(p) => ASource::Patches(ConvPatches { row0: p.row0 + lo, ..p }),
                    ASource::Packed(_) => unreachable!("checked above"),
                };
                gemm(hi - lo, n, k, rows, b, c.offset(lo as isize * rsc), rsc, csc, accumulate, blk, ep.shifted(lo, 0, rsc, csc), precision);
            } else {
                let share = match b {
                    BSource::Strided(bp, rsb, csb) => BSource::Strided(bp.offset(lo as isize * csb), rsb, csb),
                    BSource::Packed(bp) => BSource::PackedColumns { b: bp, total: n, first: lo },
                    BSource::PackedColumns { .. } => unreachable!("only `gemm` takes shares of columns"),
                };
                gemm(m, hi - lo, k, a, share, c.offset(lo as isize * csc), rsc, csc, accumulate, blk, ep.shifted(0, lo, rsc, csc), precision);
            }
        });
    }
}

/// [`sgemm`] with A already packed by [`pack_a_all`].
///
/// # Safety
/// As [`sgemm`]; `a` holds [`packed_a_len`]`(m, k)` floats from [`pack_a_all`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_packed_a(m: usize, n: usize, k: usize, a: *const f32, b: *const f32, rsb: isize, csb: isize, c: *mut f32, rsc: isize, csc: isize, accumulate: bool, blk: Blocking) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        gemm(m, n, k, ASource::Packed(a), BSource::Strided(b, rsb, csb), c, rsc, csc, accumulate, blk, Epilogue::NONE, Precision::F32)
    }
}

/// [`sgemm`] with B already packed by [`pack_b_all`].
///
/// # Safety
/// As [`sgemm`]; `b` holds [`packed_b_len`]`(k, n)` floats from [`pack_b_all`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_packed_b(m: usize, n: usize, k: usize, a: *const f32, rsa: isize, csa: isize, b: *const f32, c: *mut f32, rsc: isize, csc: isize, accumulate: bool, blk: Blocking) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        gemm(m, n, k, ASource::Strided(a, rsa, csa), BSource::Packed(b), c, rsc, csc, accumulate, blk, Epilogue::NONE, Precision::F32)
    }
}

/// # Safety
/// As [`sgemm`], for sources `a` and `b` (packed ones made by [`pack_a_all`] and
/// [`pack_b_all`], or their `_bf16` forms for `Bf16`, for this `m`, `n`, `k` and blocking)
/// and an epilogue valid for C; `Bf16` only where the CPU has the kernel.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm(m: usize, n: usize, k: usize, a: ASource, b: BSource, c: *mut f32, rsc: isize, csc: isize, accumulate: bool, blk: Blocking, ep: Epilogue, precision: Precision) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            if !accumulate {
                for i in 0..m {
                    for j in 0..n {
                        *c.offset(i as isize * rsc + j as isize * csc) = 0.0;
                    }
                }
            }
            if !ep.is_none() {
                ep.apply(c, 0, 0, m, n, rsc, csc);
            }
            return;
        }
        // A share of a packed B's columns has the panels of the whole B's kernel.
        let b_cols = if let BSource::PackedColumns { total, .. } = b { total } else { n };
        let kern = match precision {
            // Packed A has the full kernel's rows per panel.
            Precision::F32 if matches!(a, ASource::Packed(_)) => kernel_for(b_cols),
            Precision::F32 => kernel_for_shape(m, b_cols),
            Precision::Bf16 => bf16_kernel().expect("bf16 products are asked for only where the CPU has the kernel"),
        };
        let (mr, nr) = (kern.mr, kern.nr);
        let Blocking { kc: kc_max, mc: mc_max, nc: nc_max } = blk.sanitized(mr);
        // Packed elements along k, and values of k per element.
        let (steps, per) = (precision.steps(k), precision.per_step());
        // A row-major A is read in place unless its block spans more than
        // [`A_IN_PLACE_SPAN_MAX`]. Packing it costs about as much as the product when few
        // columns use each value (pointwise convolutions with 16–24 filters ran at half
        // speed), and reading the rows in place measured no slower at any shape up to 1024³.
        let rows_a = match (a, kern.micro_rows_a) {
            (ASource::Strided(a, rsa, 1), Some(micro)) if precision == Precision::F32 && mc_max.min(m) * rsa.unsigned_abs() * 4 <= A_IN_PLACE_SPAN_MAX => Some((micro, a, rsa)),
            _ => None,
        };
        // A small row-major B (one that stays in L2, with rows not a multiple of 4 KiB apart,
        // which would put a panel's rows in one L1 set) is read in place too: packing it cost
        // as much as the product in LeNet-5's convolutions (16×100×150: 45 against 87
        // GFLOP/s). Only when A comes packed, as a convolution's weights do.
        let cols_b = match (b, kern.micro_cols_b) {
            (BSource::Strided(b, rsb, 1), Some(micro)) if precision == Precision::F32 && rows_a.is_none() && k * n <= B_IN_PLACE_MAX && rsb % 1024 != 0 => Some((micro, b, rsb)),
            _ => None,
        };
        // A convolution's patches are read in place from the image wherever a tile's windows
        // lie inside it (implicit GEMM); only tiles reaching into the padding are packed.
        // Packing MobileNetV2's stem (3 channels, 3×3) cost more than its product.
        let taps_a = match (a, kern.micro_taps_a) {
            (ASource::Patches(patches), Some(micro)) if precision == Precision::F32 => Some((micro, patches)),
            _ => None,
        };
        thread_local! {
            static BUFFERS: std::cell::RefCell<(Vec<f32>, Floats, Vec<f32>, Vec<isize>, Vec<TileWindows>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Floats::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new())) };
        }
        BUFFERS.with(|bufs| {
            let mut bufs = bufs.borrow_mut();
            // `wide`: a bf16 product's A panels in f32, before they are paired; `offsets`: the
            // patch columns' offsets within a window; `windows`: each row tile's windows in
            // the current block of rows, found once (a division per tile) for its packing
            // and all its column tiles; `edges`: copies of the windows that reach into the
            // padding (`pack::EdgeWindows`).
            let (apack, bpack, wide, offsets, windows, edges) = &mut *bufs;
            if let Some((_, patches)) = taps_a {
                patches.tap_offsets(offsets);
            }
            let a_len = mc_max * kc_max;
            let b_len = nc_max.next_multiple_of(nr) * kc_max;
            if apack.len() < a_len {
                apack.resize(a_len, 0.0);
            }
            // B's panels on cache lines, as packed weights are (`Floats::zeroed_lines`): the
            // microkernel loads each step's row of a panel as whole-line vectors.
            bpack.ensure_lines(b_len);
            for jc in (0..n).step_by(nc_max) {
                let nc = nc_max.min(n - jc);
                for pc in (0..steps).step_by(kc_max) {
                    let kc = kc_max.min(steps - pc);
                    // The slab's values of k: `kc` elements of `per` each, but the last may be
                    // short.
                    let (k0, kv) = (per * pc, (per * kc).min(k - per * pc));
                    // The first slab writes C, later ones add to it.
                    let acc = accumulate || pc > 0;
                    let stream_b = !b_panel_stays_in_l1(kc * nr * 4);
                    let b_block = match b {
                        BSource::Strided(..) if cols_b.is_some() => std::ptr::null(),
                        BSource::Strided(b, rsb, csb) => {
                            let b = b.offset(k0 as isize * rsb + jc as isize * csb);
                            match precision {
                                Precision::F32 => pack_b(nr, kc, nc, b, rsb, csb, bpack),
                                Precision::Bf16 => pack_b_pairs(nr, kv, nc, b, rsb, csb, bpack),
                            }
                            bpack.as_ptr()
                        }
                        BSource::Packed(p) => p.add(packed_b_offset(steps, jc, pc, nc, nc_max, nr)),
                        BSource::PackedColumns { b, total, first } => {
                            let start = first / nc_max * nc_max;
                            debug_assert!((first - start) % nr == 0 && first + n <= start + nc_max.min(total - start), "a column share is whole panels of one block");
                            b.add(packed_b_offset(steps, start, pc, nc_max.min(total - start), nc_max, nr) + (first - start) * kc)
                        }
                    };
                    for ic in (0..m).step_by(mc_max) {
                        let mc = mc_max.min(m - ic);
                        // A bf16 product packs its A panels in f32 aside, then pairs them.
                        let panels = match precision {
                            Precision::F32 => &mut *apack,
                            Precision::Bf16 => {
                                wide.resize(mc_max * per * kc_max, 0.0);
                                &mut *wide
                            }
                        };
                        let a_block = match a {
                            ASource::Strided(..) if rows_a.is_some() => Some(std::ptr::null()),
                            ASource::Strided(a, rsa, csa) => {
                                pack_a(mr, mc, kv, a.offset(ic as isize * rsa + k0 as isize * csa), rsa, csa, panels);
                                None
                            }
                            ASource::Packed(p) => Some(p.add(padded_rows(m, mr, Blocking { kc: kc_max, mc: mc_max, nc: nc_max }) * pc + ic * kc)),
                            ASource::Patches(ref patches) if precision == Precision::Bf16 && patches.c % 2 == 0 => {
                                pack_a_patches_pairs(mr, mc, kv, patches, ic, k0, apack);
                                Some(apack.as_ptr())
                            }
                            ASource::Patches(ref patches) if taps_a.is_some() => {
                                windows.clear();
                                patches.block_windows(ic, mc, mr, windows);
                                // Tiles reaching into the padding read copies of those
                                // windows (all their rows at most), or where the image is
                                // too narrow for copies, are packed, each at its place among
                                // the block's panels.
                                let edge_layout = patches.edge_windows().filter(|_| k <= EDGE_COPY_MAX_K);
                                let slots = windows.iter().filter(|w| matches!(w, TileWindows::Packed)).count() * mr;
                                if let Some(layout) = edge_layout.as_ref().filter(|_| slots > 0) {
                                    let floats = layout.floats(slots);
                                    if edges.len() < floats {
                                        edges.resize(floats, 0.0);
                                    }
                                }
                                let mut next = 0;
                                for (t, window) in windows.iter_mut().enumerate() {
                                    if !matches!(window, TileWindows::Packed) {
                                        continue;
                                    }
                                    let ir = t * mr;
                                    let rows = mr.min(mc - ir);
                                    match &edge_layout {
                                        Some(layout) => *window = patches.window_rows(ic + ir, rows, mr, Some((layout, edges.as_mut_ptr(), &mut next))).map_or(TileWindows::Packed, TileWindows::Listed),
                                        None => pack_a_patches(mr, rows, kv, patches, ic + ir, k0, &mut panels[ir * kv..]),
                                    }
                                }
                                None
                            }
                            ASource::Patches(ref patches) => {
                                pack_a_patches(mr, mc, kv, patches, ic, k0, panels);
                                None
                            }
                        };
                        let a_block = match (a_block, precision) {
                            (Some(p), _) => p,
                            (None, Precision::F32) => apack.as_ptr(),
                            (None, Precision::Bf16) => {
                                pair_a_panels(mr, mc, kv, wide, apack);
                                apack.as_ptr()
                            }
                        };
                        for jr in (0..nc).step_by(nr) {
                            let cols = nr.min(nc - jr);
                            let bp = b_block.wrapping_add(jr * kc); // unused (null) when B is read in place
                            // The tile's index counted along (`ir / mr` divided by a run-time
                            // `mr` for every tile cost a tenth of the stem's driver).
                            for (tile, ir) in (0..mc).step_by(mr).enumerate() {
                                let rows = mr.min(mc - ir);
                                let cp = c.offset((ic + ir) as isize * rsc + (jc + jr) as isize * csc);
                                let last = pc + kc == steps && !ep.is_none();
                                // The first two row tiles of a packed panel fetch the next
                                // panel (`kc` lines each: a 32-column panel). Packed panels
                                // follow each other in the order they are used, across slabs
                                // and blocks, so the next is the following `kc·nr` floats
                                // (past the end after the last: a prefetch never faults).
                                // B packed here at run time gets the hints too: its block can
                                // be as large as a packed weight's (2048³ as a matmul: 16 MiB,
                                // 128.6 → 114.9 ms, median of 8 alternations, level with the
                                // same product on pre-packed weights at 117.5). Its next block
                                // is repacked into the same buffer, so the last panel's hint
                                // is wasted.
                                let prefetch = if PREFETCH_NEXT_PANEL && cols_b.is_none() && tile < 2 { b_block.wrapping_add((jr + nr) * kc + tile * kc * 16) } else { std::ptr::null() };
                                let st = Store { accumulate: acc, rows, cols, ep: last.then(|| ep.shifted(ic + ir, jc + jr, rsc, csc)), prefetch, stream_b };
                                let window = taps_a.and_then(|(micro, _)| Some((micro, windows[tile].rows()?)));
                                // A last column tile at most half there: the half tile, on the
                                // first half of its panel (the same sums, in the same order).
                                if let Some(half) = kern.half.filter(|_| cols_b.is_none() && 2 * cols <= nr) {
                                    match (rows_a, window) {
                                        (Some((_, a, rsa)), _) => (half.rows_a)(kc, a.offset((ic + ir) as isize * rsa + k0 as isize), rsa, bp, cp, rsc, csc, &st),
                                        (None, Some((_, rows_at))) => (half.taps_a)(kc, rows_at.as_ptr(), offsets.as_ptr().add(k0), bp, cp, rsc, csc, &st),
                                        (None, None) => (half.micro)(kc, a_block.add(ir * kc), bp, cp, rsc, csc, &st),
                                    }
                                    continue;
                                }
                                match (rows_a, cols_b, window) {
                                    (Some((micro, a, rsa)), _, _) => micro(kc, a.offset((ic + ir) as isize * rsa + k0 as isize), rsa, bp, cp, rsc, csc, &st),
                                    (None, Some((micro, b, rsb)), _) => micro(kc, a_block.add(ir * kc), b.offset(k0 as isize * rsb + (jc + jr) as isize), rsb, cp, rsc, csc, &st),
                                    (None, None, Some((micro, rows_at))) => micro(kc, rows_at.as_ptr(), offsets.as_ptr().add(k0), bp, cp, rsc, csc, &st),
                                    (None, None, None) => (kern.micro)(kc, a_block.add(ir * kc), bp, cp, rsc, csc, &st),
                                }
                            }
                        }
                    }
                }
            }
        });
    }
}

