//! Single-precision matrix multiplication for compiled models: `C (+)= A·B` with arbitrary
//! row and column strides, blocked for the caches and computed by register-tile
//! microkernels chosen at run time from the CPU's features (AVX-512F, else AVX2+FMA, else
//! portable code). Generated code calls [`nnc_sgemm`] for the matrix products inside
//! convolutions, dense layers and matmuls when microkernels are on.
//!
//! The structure is the classic one (Goto/BLIS): the `k` dimension is cut into `kc` slabs,
//! `A` into `mc × kc` blocks packed into `MR`-row panels, `B` into `kc × nc` blocks packed into
//! `NR`-column panels, and the microkernel keeps an `MR × NR` tile of `C` in registers. The
//! compiler chooses `kc`, `mc` and `nc` per product from the cache sizes ([`Blocking`]).

use std::sync::OnceLock;

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
    fn sanitized(self, mr: usize) -> Blocking {
        Blocking { kc: self.kc.clamp(1, 1 << 14), mc: self.mc.clamp(1, 1 << 14).next_multiple_of(mr), nc: self.nc.clamp(1, 1 << 14) }
    }

    fn from_abi(kc: i64, mc: i64, nc: i64) -> Blocking {
        let pos = |v: i64| v.max(1) as usize;
        Blocking { kc: pos(kc), mc: pos(mc), nc: pos(nc) }
    }
}

pub use crate::activation::Activation;

/// What happens to each element of C after its last product slab: add a bias (one per row or
/// one per column), add a residual matrix (addressed with C's strides), then an activation.
/// It runs on each register tile right after the microkernel stores it, while the tile is in
/// L1, instead of as separate passes over C in memory. ReLU keeps NaN, as the interpreter does.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue {
    pub bias: *const f32,
    pub bias_per_row: bool,
    pub residual: *const f32,
    pub act: Activation,
}

impl Epilogue {
    pub const NONE: Epilogue = Epilogue { bias: std::ptr::null(), bias_per_row: false, residual: std::ptr::null(), act: Activation::None };

    fn is_none(&self) -> bool {
        self.bias.is_null() && self.residual.is_null() && self.act == Activation::None
    }

    /// The epilogue of the sub-product whose C starts at row `di`, column `dj`.
    unsafe fn shifted(&self, di: usize, dj: usize, rsc: isize, csc: isize) -> Epilogue {
        let bias = if self.bias.is_null() { self.bias } else { self.bias.add(if self.bias_per_row { di } else { dj }) };
        let residual = if self.residual.is_null() { self.residual } else { self.residual.offset(di as isize * rsc + dj as isize * csc) };
        Epilogue { bias, residual, ..*self }
    }

    /// Apply to the `rows × cols` tile of C at `c`, whose first element is C's `(i0, j0)`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn apply(&self, c: *mut f32, i0: usize, j0: usize, rows: usize, cols: usize, rsc: isize, csc: isize) {
        // One loop per combination, so the per-element work has no branches on the
        // epilogue's shape and vectorizes.
        const NO: u8 = 0;
        const ROW: u8 = 1;
        const COL: u8 = 2;
        let bias = match (self.bias.is_null(), self.bias_per_row) {
            (true, _) => NO,
            (false, true) => ROW,
            (false, false) => COL,
        };
        let t = Tile { c, i0, j0, rows, cols, rsc, csc };
        macro_rules! go {
            ($b:expr, $r:expr) => {
                match self.act {
                    Activation::None => self.apply_as::<$b, $r, 0>(t),
                    Activation::Relu => self.apply_as::<$b, $r, 1>(t),
                    Activation::Relu6 => self.apply_as::<$b, $r, 2>(t),
                }
            };
        }
        match (bias, self.residual.is_null()) {
            (NO, true) => go!(NO, false),
            (NO, false) => go!(NO, true),
            (ROW, true) => go!(ROW, false),
            (ROW, false) => go!(ROW, true),
            (_, true) => go!(COL, false),
            (_, false) => go!(COL, true),
        }
    }

    #[inline(always)]
    unsafe fn apply_as<const BIAS: u8, const RESIDUAL: bool, const ACT: u8>(&self, t: Tile) {
        for i in 0..t.rows {
            let row = t.c.offset(i as isize * t.rsc);
            let res_row = if RESIDUAL { self.residual.offset((t.i0 + i) as isize * t.rsc + t.j0 as isize * t.csc) } else { std::ptr::null() };
            let row_bias = if BIAS == 1 { *self.bias.add(t.i0 + i) } else { 0.0 };
            for j in 0..t.cols {
                let p = row.offset(j as isize * t.csc);
                let mut v = *p;
                if BIAS == 1 {
                    v += row_bias;
                } else if BIAS == 2 {
                    v += *self.bias.add(t.j0 + j);
                }
                if RESIDUAL {
                    v += *res_row.offset(j as isize * t.csc);
                }
                *p = match ACT {
                    0 => v,
                    1 => Activation::Relu.apply(v),
                    _ => Activation::Relu6.apply(v),
                };
            }
        }
    }

    fn from_abi(bias: *const f32, bias_per_row: i64, residual: *const f32, act: i64) -> Epilogue {
        Epilogue { bias, bias_per_row: bias_per_row != 0, residual, act: Activation::from_code(act) }
    }
}

/// A block of C an [`Epilogue`] applies to.
#[derive(Clone, Copy)]
struct Tile {
    c: *mut f32,
    i0: usize,
    j0: usize,
    rows: usize,
    cols: usize,
    rsc: isize,
    csc: isize,
}

/// A microkernel: `C[0..MR, 0..NR] (+)= Apanel · Bpanel` over `kc`, with `C` strided.
type Micro = unsafe fn(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rsc: isize, csc: isize, accumulate: bool);

#[derive(Clone, Copy)]
struct Kernel {
    mr: usize,
    nr: usize,
    micro: Micro,
    name: &'static str,
}

fn select() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Kernel { mr: 8, nr: 32, micro: x86::micro_avx512_8x32, name: "avx512f 8x32" };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return Kernel { mr: 6, nr: 16, micro: x86::micro_avx2_6x16, name: "avx2+fma 6x16" };
        }
    }
    Kernel { mr: 4, nr: 8, micro: micro_portable_4x8, name: "portable 4x8" }
}

fn kernel() -> Kernel {
    static K: OnceLock<Kernel> = OnceLock::new();
    *K.get_or_init(select)
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

/// Pack rows `0..mc` of an `mc × kc` block of A (element `(i, p)` at `a[i*rsa + p*csa]`) into
/// `MR`-row panels: panel-major, then `p`, then the `MR` rows, zero-padded.
unsafe fn pack_a(mr: usize, mc: usize, kc: usize, a: *const f32, rsa: isize, csa: isize, out: &mut [f32]) {
    let mut o = 0;
    for i0 in (0..mc).step_by(mr) {
        let rows = mr.min(mc - i0);
        for p in 0..kc {
            for i in 0..mr {
                out[o] = if i < rows { *a.offset((i0 + i) as isize * rsa + p as isize * csa) } else { 0.0 };
                o += 1;
            }
        }
    }
}

/// Pack a `kc × nc` block of B into `NR`-column panels, zero-padded.
unsafe fn pack_b(nr: usize, kc: usize, nc: usize, b: *const f32, rsb: isize, csb: isize, out: &mut [f32]) {
    let mut o = 0;
    for j0 in (0..nc).step_by(nr) {
        let cols = nr.min(nc - j0);
        for p in 0..kc {
            let row = b.offset(p as isize * rsb);
            if csb == 1 && cols == nr {
                std::ptr::copy_nonoverlapping(row.add(j0), out.as_mut_ptr().add(o), nr);
                o += nr;
                continue;
            }
            for j in 0..nr {
                out[o] = if j < cols { *row.offset((j0 + j) as isize * csb) } else { 0.0 };
                o += 1;
            }
        }
    }
}

/// Where the A operand comes from.
#[derive(Clone, Copy)]
enum ASource {
    Strided(*const f32, isize, isize),
    /// Laid out by [`pack_a_all`].
    Packed(*const f32),
    /// A convolution's patches, gathered from the image as they are packed.
    Patches(ConvPatches),
}

/// The patch matrix of a convolution over one NHWC image, never stored: row `r` is output
/// pixel `row0 + r` (row-major over the output), column `(ky·kw + kx)·c + ch` is channel `ch`
/// of the input pixel under tap `(ky, kx)`, or 0 in the padding. Packing A gathers straight
/// from the image, instead of an im2col pass writing the matrix and packing reading it back.
#[derive(Clone, Copy, Debug)]
pub struct ConvPatches {
    pub input: *const f32,
    pub c: isize,
    pub h: isize,
    pub w: isize,
    pub kh: isize,
    pub kw: isize,
    pub sh: isize,
    pub sw: isize,
    pub dh: isize,
    pub dw: isize,
    pub pt: isize,
    pub pl: isize,
    pub ow: isize,
    pub row0: usize,
}

/// Pack rows `i0..i0+mc`, columns `pc..pc+kc` of a patch matrix like [`pack_a`]: per panel,
/// each run of columns that belongs to one tap reads `mr` pixels' channel runs.
unsafe fn pack_a_patches(mr: usize, mc: usize, kc: usize, src: &ConvPatches, i0: usize, pc: usize, out: &mut [f32]) {
    const MAX_MR: usize = 16;
    assert!(mr <= MAX_MR, "patch packing holds at most {MAX_MR} rows per panel");
    let c = src.c as usize;
    let mut o = 0;
    for r0 in (0..mc).step_by(mr) {
        let rows = mr.min(mc - r0);
        // Each row's window origin.
        let mut origin = [(0isize, 0isize); MAX_MR];
        for (i, org) in origin.iter_mut().enumerate().take(rows) {
            let pix = (src.row0 + i0 + r0 + i) as isize;
            *org = ((pix / src.ow) * src.sh - src.pt, (pix % src.ow) * src.sw - src.pl);
        }
        let mut k = pc;
        while k < pc + kc {
            let tap = k / c;
            let (ky, kx) = (tap as isize / src.kw, tap as isize % src.kw);
            let first = k - tap * c;
            let count = (pc + kc - k).min(c - first);
            let mut rows_at = [std::ptr::null::<f32>(); MAX_MR];
            for i in 0..rows {
                let (iy, ix) = (origin[i].0 + ky * src.dh, origin[i].1 + kx * src.dw);
                if iy >= 0 && iy < src.h && ix >= 0 && ix < src.w {
                    rows_at[i] = src.input.offset((iy * src.w + ix) * src.c + first as isize);
                }
            }
            for ch in 0..count {
                for &at in &rows_at[..mr] {
                    out[o] = if at.is_null() { 0.0 } else { *at.add(ch) };
                    o += 1;
                }
            }
            k += count;
        }
    }
}

/// Where the B operand comes from.
#[derive(Clone, Copy)]
enum BSource {
    Strided(*const f32, isize, isize),
    /// Laid out by [`pack_b_all`].
    Packed(*const f32),
}

/// Floats [`pack_b_all`] writes for a `k × n` matrix.
pub fn packed_b_len(k: usize, n: usize, blk: Blocking) -> usize {
    let nr = kernel().nr;
    let blk = blk.sanitized(kernel().mr);
    (0..n).step_by(blk.nc).map(|jc| blk.nc.min(n - jc).next_multiple_of(nr)).sum::<usize>() * k
}

/// Where the packed `kc` slab at depth `pc` of the `nc` block at column `jc` starts.
fn packed_b_offset(k: usize, jc: usize, pc: usize, nc: usize, nc_max: usize, nr: usize) -> usize {
    (jc / nc_max) * nc_max.next_multiple_of(nr) * k + nc.next_multiple_of(nr) * pc
}

/// Pack all of B (`k × n`, strided) once, for [`sgemm_packed_b`] with the same blocking:
/// every `nc` block, every `kc` slab, in the panel order the microkernel reads. Constant
/// right-hand operands (channels-last convolution weights) are packed at compile time.
///
/// # Safety
/// B must be valid for `p < k, j < n`; `out` must hold [`packed_b_len`] floats.
pub unsafe fn pack_b_all(k: usize, n: usize, b: *const f32, rsb: isize, csb: isize, blk: Blocking, out: &mut [f32]) {
    let (mr, nr) = (kernel().mr, kernel().nr);
    let blk = blk.sanitized(mr);
    for jc in (0..n).step_by(blk.nc) {
        let nc = blk.nc.min(n - jc);
        for pc in (0..k).step_by(blk.kc) {
            let kc = blk.kc.min(k - pc);
            let at = packed_b_offset(k, jc, pc, nc, blk.nc, nr);
            pack_b(nr, kc, nc, b.offset(pc as isize * rsb + jc as isize * csb), rsb, csb, &mut out[at..]);
        }
    }
}

/// Rows of A once every `mc` block is padded to whole `MR` panels.
fn padded_rows(m: usize, mr: usize, blk: Blocking) -> usize {
    (0..m).step_by(blk.mc).map(|ic| blk.mc.min(m - ic).next_multiple_of(mr)).sum()
}

/// Floats [`pack_a_all`] writes for an `m × k` matrix.
pub fn packed_a_len(m: usize, k: usize, blk: Blocking) -> usize {
    let mr = kernel().mr;
    padded_rows(m, mr, blk.sanitized(mr)) * k
}

/// Pack all of A (`m × k`, strided) once, for [`sgemm_packed_a`] with the same blocking:
/// every `kc` slab, every `mc` block, in the panel order the microkernel reads. Constant
/// operands (weights) are packed at compile time this way instead of on every call.
///
/// # Safety
/// A must be valid for `i < m, p < k`; `out` must hold [`packed_a_len`] floats.
pub unsafe fn pack_a_all(m: usize, k: usize, a: *const f32, rsa: isize, csa: isize, blk: Blocking, out: &mut [f32]) {
    let mr = kernel().mr;
    let blk = blk.sanitized(mr);
    let rows = padded_rows(m, mr, blk);
    for pc in (0..k).step_by(blk.kc) {
        let kc = blk.kc.min(k - pc);
        for ic in (0..m).step_by(blk.mc) {
            let mc = blk.mc.min(m - ic);
            let at = rows * pc + ic * kc;
            pack_a(mr, mc, kc, a.offset(ic as isize * rsa + pc as isize * csa), rsa, csa, &mut out[at..]);
        }
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
    gemm(m, n, k, ASource::Strided(a, rsa, csa), BSource::Strided(b, rsb, csb), c, rsc, csc, accumulate, blk, Epilogue::NONE)
}

/// Pointers a parallel GEMM shares between its tasks.
#[derive(Clone, Copy)]
struct Shared(ASource, BSource, *mut f32, Epilogue);
// SAFETY: tasks read A and B and write disjoint column ranges of C.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    // A method, so closures capture the whole (Sync) struct rather than its raw fields.
    fn parts(&self) -> (ASource, BSource, *mut f32, Epilogue) {
        (self.0, self.1, self.2, self.3)
    }
}

/// Products below this many multiply-adds run on one thread: handing work to a worker costs
/// about as much as 2M multiply-adds (tens of microseconds).
const MIN_PARALLEL_MACS: usize = 1 << 21;

/// [`gemm`] split across up to `threads` threads: by ranges of whole `NR`-column tiles, or,
/// when B is packed (its columns cannot be cut apart), by ranges of whole `MR`-row tiles of a
/// strided A. Each tile of C is computed by exactly the same sequence of operations as on one
/// thread, so the result is bit-identical for every thread count.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_threaded(threads: usize, m: usize, n: usize, k: usize, a: ASource, b: BSource, c: *mut f32, rsc: isize, csc: isize, accumulate: bool, blk: Blocking, ep: Epilogue) {
    let (mr, nr) = (kernel().mr, kernel().nr);
    let by_rows = matches!(b, BSource::Packed(_));
    let (extent, unit) = if by_rows { (m, mr) } else { (n, nr) };
    let tiles = extent.div_ceil(unit);
    // Too little work per thread is not worth the hand-off.
    let mut threads = threads.min(tiles / 2).max(1);
    if (m * n * k) < MIN_PARALLEL_MACS || (by_rows && matches!(a, ASource::Packed(_))) {
        threads = 1;
    }
    if threads == 1 {
        return gemm(m, n, k, a, b, c, rsc, csc, accumulate, blk, ep);
    }
    let per = tiles.div_ceil(threads);
    let shared = Shared(a, b, c, ep);
    crate::pool::parallel_for(threads, &|t| {
        let (a, b, c, ep) = shared.parts();
        let lo = (t * per * unit).min(extent);
        let hi = ((t + 1) * per * unit).min(extent);
        if lo >= hi {
            return;
        }
        if by_rows {
            let rows = match a {
                ASource::Strided(ap, rsa, csa) => ASource::Strided(ap.offset(lo as isize * rsa), rsa, csa),
                ASource::Patches(p) => ASource::Patches(ConvPatches { row0: p.row0 + lo, ..p }),
                ASource::Packed(_) => unreachable!("checked above"),
            };
            gemm(hi - lo, n, k, rows, b, c.offset(lo as isize * rsc), rsc, csc, accumulate, blk, ep.shifted(lo, 0, rsc, csc));
        } else {
            let BSource::Strided(bp, rsb, csb) = b else { unreachable!("by columns only when B is strided") };
            gemm(m, hi - lo, k, a, BSource::Strided(bp.offset(lo as isize * csb), rsb, csb), c.offset(lo as isize * csc), rsc, csc, accumulate, blk, ep.shifted(0, lo, rsc, csc));
        }
    });
}

/// [`sgemm`] with A already packed by [`pack_a_all`].
///
/// # Safety
/// As [`sgemm`]; `a` holds [`packed_a_len`]`(m, k)` floats from [`pack_a_all`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_packed_a(m: usize, n: usize, k: usize, a: *const f32, b: *const f32, rsb: isize, csb: isize, c: *mut f32, rsc: isize, csc: isize, accumulate: bool, blk: Blocking) {
    gemm(m, n, k, ASource::Packed(a), BSource::Strided(b, rsb, csb), c, rsc, csc, accumulate, blk, Epilogue::NONE)
}

/// [`sgemm`] with B already packed by [`pack_b_all`].
///
/// # Safety
/// As [`sgemm`]; `b` holds [`packed_b_len`]`(k, n)` floats from [`pack_b_all`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_packed_b(m: usize, n: usize, k: usize, a: *const f32, rsa: isize, csa: isize, b: *const f32, c: *mut f32, rsc: isize, csc: isize, accumulate: bool, blk: Blocking) {
    gemm(m, n, k, ASource::Strided(a, rsa, csa), BSource::Packed(b), c, rsc, csc, accumulate, blk, Epilogue::NONE)
}

#[allow(clippy::too_many_arguments)]
unsafe fn gemm(m: usize, n: usize, k: usize, a: ASource, b: BSource, c: *mut f32, rsc: isize, csc: isize, accumulate: bool, blk: Blocking, ep: Epilogue) {
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
    let kern = kernel();
    let (mr, nr) = (kern.mr, kern.nr);
    let Blocking { kc: kc_max, mc: mc_max, nc: nc_max } = blk.sanitized(mr);
    thread_local! {
        static BUFFERS: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    }
    BUFFERS.with(|bufs| {
        let mut bufs = bufs.borrow_mut();
        let (apack, bpack) = &mut *bufs;
        let a_len = mc_max * kc_max;
        let b_len = nc_max.next_multiple_of(nr) * kc_max;
        if apack.len() < a_len {
            apack.resize(a_len, 0.0);
        }
        if bpack.len() < b_len {
            bpack.resize(b_len, 0.0);
        }
        let mut tile = [0.0f32; 16 * 32];
        for jc in (0..n).step_by(nc_max) {
            let nc = nc_max.min(n - jc);
            for pc in (0..k).step_by(kc_max) {
                let kc = kc_max.min(k - pc);
                // The first slab writes C, later ones add to it.
                let acc = accumulate || pc > 0;
                let b_block = match b {
                    BSource::Strided(b, rsb, csb) => {
                        pack_b(nr, kc, nc, b.offset(pc as isize * rsb + jc as isize * csb), rsb, csb, bpack);
                        bpack.as_ptr()
                    }
                    BSource::Packed(p) => p.add(packed_b_offset(k, jc, pc, nc, nc_max, nr)),
                };
                for ic in (0..m).step_by(mc_max) {
                    let mc = mc_max.min(m - ic);
                    let a_block = match a {
                        ASource::Strided(a, rsa, csa) => {
                            pack_a(mr, mc, kc, a.offset(ic as isize * rsa + pc as isize * csa), rsa, csa, apack);
                            apack.as_ptr()
                        }
                        ASource::Packed(p) => p.add(padded_rows(m, mr, Blocking { kc: kc_max, mc: mc_max, nc: nc_max }) * pc + ic * kc),
                        ASource::Patches(ref patches) => {
                            pack_a_patches(mr, mc, kc, patches, ic, pc, apack);
                            apack.as_ptr()
                        }
                    };
                    for jr in (0..nc).step_by(nr) {
                        let cols = nr.min(nc - jr);
                        let bp = b_block.add(jr * kc);
                        for ir in (0..mc).step_by(mr) {
                            let rows = mr.min(mc - ir);
                            let ap = a_block.add(ir * kc);
                            let cp = c.offset((ic + ir) as isize * rsc + (jc + jr) as isize * csc);
                            if rows == mr && cols == nr {
                                (kern.micro)(kc, ap, bp, cp, rsc, csc, acc);
                                if pc + kc == k && !ep.is_none() {
                                    ep.apply(cp, ic + ir, jc + jr, rows, cols, rsc, csc);
                                }
                            } else {
                                // Edge tile: compute the full tile aside, copy what exists.
                                (kern.micro)(kc, ap, bp, tile.as_mut_ptr(), nr as isize, 1, false);
                                for i in 0..rows {
                                    for j in 0..cols {
                                        let dst = cp.offset(i as isize * rsc + j as isize * csc);
                                        let v = tile[i * nr + j];
                                        *dst = if acc { *dst + v } else { v };
                                    }
                                }
                                if pc + kc == k && !ep.is_none() {
                                    ep.apply(cp, ic + ir, jc + jr, rows, cols, rsc, csc);
                                }
                            }
                        }
                    }
                }
            }
        }
    });
}

/// [`sgemm`] with a C ABI, as generated code calls it, plus an [`Epilogue`]: `bias` (null
/// for none; `m` floats if `bias_per_row`, else `n`), `residual` (null, or a matrix with C's
/// strides) and `act` ([`Activation::code`]).
///
/// # Safety
/// As [`sgemm`]; `bias` and `residual` null or valid for the elements named above.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn nnc_sgemm(m: i64, n: i64, k: i64, a: *const f32, rsa: i64, csa: i64, b: *const f32, rsb: i64, csb: i64, c: *mut f32, rsc: i64, csc: i64, accumulate: i64, threads: i64, kc: i64, mc: i64, nc: i64, bias: *const f32, bias_per_row: i64, residual: *const f32, act: i64) {
    let ep = Epilogue::from_abi(bias, bias_per_row, residual, act);
    gemm_threaded(threads.max(1) as usize, m as usize, n as usize, k as usize, ASource::Strided(a, rsa as isize, csa as isize), BSource::Strided(b, rsb as isize, csb as isize), c, rsc as isize, csc as isize, accumulate != 0, Blocking::from_abi(kc, mc, nc), ep);
}

unsafe fn micro_portable_4x8(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rsc: isize, csc: isize, accumulate: bool) {
    let mut acc = [[0.0f32; 8]; 4];
    for p in 0..kc {
        for (i, row) in acc.iter_mut().enumerate() {
            let av = *a.add(p * 4 + i);
            for (j, v) in row.iter_mut().enumerate() {
                *v += av * *b.add(p * 8 + j);
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            let dst = c.offset(i as isize * rsc + j as isize * csc);
            *dst = if accumulate { *dst + v } else { *v };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// 8 rows × 32 columns: 16 zmm accumulators, one broadcast of A per row per step.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn micro_avx512_8x32(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rsc: isize, csc: isize, accumulate: bool) {
        let mut acc = [_mm512_setzero_ps(); 16];
        for p in 0..kc {
            let b0 = _mm512_loadu_ps(b.add(p * 32));
            let b1 = _mm512_loadu_ps(b.add(p * 32 + 16));
            for i in 0..8 {
                let av = _mm512_set1_ps(*a.add(p * 8 + i));
                acc[2 * i] = _mm512_fmadd_ps(av, b0, acc[2 * i]);
                acc[2 * i + 1] = _mm512_fmadd_ps(av, b1, acc[2 * i + 1]);
            }
        }
        if csc == 1 {
            for i in 0..8 {
                let row = c.offset(i as isize * rsc);
                for v in 0..2 {
                    let p = row.add(v * 16);
                    let x = if accumulate { _mm512_add_ps(_mm512_loadu_ps(p), acc[2 * i + v]) } else { acc[2 * i + v] };
                    _mm512_storeu_ps(p, x);
                }
            }
            return;
        }
        store_tile(&acc.map(|v| std::mem::transmute::<__m512, [f32; 16]>(v)), 8, 32, c, rsc, csc, accumulate);
    }

    /// 6 rows × 16 columns: 12 ymm accumulators.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn micro_avx2_6x16(kc: usize, a: *const f32, b: *const f32, c: *mut f32, rsc: isize, csc: isize, accumulate: bool) {
        let mut acc = [_mm256_setzero_ps(); 12];
        for p in 0..kc {
            let b0 = _mm256_loadu_ps(b.add(p * 16));
            let b1 = _mm256_loadu_ps(b.add(p * 16 + 8));
            for i in 0..6 {
                let av = _mm256_set1_ps(*a.add(p * 6 + i));
                acc[2 * i] = _mm256_fmadd_ps(av, b0, acc[2 * i]);
                acc[2 * i + 1] = _mm256_fmadd_ps(av, b1, acc[2 * i + 1]);
            }
        }
        if csc == 1 {
            for i in 0..6 {
                let row = c.offset(i as isize * rsc);
                for v in 0..2 {
                    let p = row.add(v * 8);
                    let x = if accumulate { _mm256_add_ps(_mm256_loadu_ps(p), acc[2 * i + v]) } else { acc[2 * i + v] };
                    _mm256_storeu_ps(p, x);
                }
            }
            return;
        }
        store_tile(&acc.map(|v| std::mem::transmute::<__m256, [f32; 8]>(v)), 6, 16, c, rsc, csc, accumulate);
    }

    /// Write an accumulator tile (rows of `nr` floats, split in equal vectors) to C.
    #[inline(always)]
    unsafe fn store_tile<const W: usize>(acc: &[[f32; W]], mr: usize, nr: usize, c: *mut f32, rsc: isize, csc: isize, accumulate: bool) {
        let per_row = nr / W;
        for i in 0..mr {
            for v in 0..per_row {
                let lanes = &acc[i * per_row + v];
                for (l, &x) in lanes.iter().enumerate() {
                    let dst = c.offset(i as isize * rsc + (v * W + l) as isize * csc);
                    *dst = if accumulate { *dst + x } else { x };
                }
            }
        }
    }
}


/// [`sgemm_packed_a`] with a C ABI.
///
/// # Safety
/// As [`sgemm_packed_a`].
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn nnc_sgemm_packed_a(m: i64, n: i64, k: i64, a: *const f32, b: *const f32, rsb: i64, csb: i64, c: *mut f32, rsc: i64, csc: i64, accumulate: i64, threads: i64, kc: i64, mc: i64, nc: i64, bias: *const f32, bias_per_row: i64, residual: *const f32, act: i64) {
    let ep = Epilogue::from_abi(bias, bias_per_row, residual, act);
    gemm_threaded(threads.max(1) as usize, m as usize, n as usize, k as usize, ASource::Packed(a), BSource::Strided(b, rsb as isize, csb as isize), c, rsc as isize, csc as isize, accumulate != 0, Blocking::from_abi(kc, mc, nc), ep);
}

/// [`sgemm_packed_b`] with a C ABI.
///
/// # Safety
/// As [`sgemm_packed_b`].
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn nnc_sgemm_packed_b(m: i64, n: i64, k: i64, a: *const f32, rsa: i64, csa: i64, b: *const f32, c: *mut f32, rsc: i64, csc: i64, accumulate: i64, threads: i64, kc: i64, mc: i64, nc: i64, bias: *const f32, bias_per_row: i64, residual: *const f32, act: i64) {
    let ep = Epilogue::from_abi(bias, bias_per_row, residual, act);
    gemm_threaded(threads.max(1) as usize, m as usize, n as usize, k as usize, ASource::Strided(a, rsa as isize, csa as isize), BSource::Packed(b), c, rsc as isize, csc as isize, accumulate != 0, Blocking::from_abi(kc, mc, nc), ep);
}

/// A convolution over one NHWC image as `out[P, F] = patches[P, kh·kw·c] · B` with B packed
/// by [`pack_b_all`] ([`ConvPatches`]: the patches are gathered while packing), plus the
/// epilogue, as [`nnc_sgemm_packed_b`].
///
/// # Safety
/// `input` holds `h·w·c` floats; `b` the packing of a `(kh·kw·c) × n` matrix; `out` has room
/// for `m × n` with the given strides, `m = oh·ow`; bias and residual as [`nnc_sgemm`].
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn nnc_sgemm_conv_nhwc(
    m: i64, n: i64, input: *const f32, c: i64, h: i64, w: i64, kh: i64, kw: i64, sh: i64, sw: i64, dh: i64, dw: i64, pt: i64, pl: i64, ow: i64,
    b: *const f32, out: *mut f32, rsc: i64, csc: i64, threads: i64, kc: i64, mc: i64, nc: i64, bias: *const f32, bias_per_row: i64, residual: *const f32, act: i64,
) {
    let i = |v: i64| v as isize;
    let patches = ConvPatches { input, c: i(c), h: i(h), w: i(w), kh: i(kh), kw: i(kw), sh: i(sh), sw: i(sw), dh: i(dh), dw: i(dw), pt: i(pt), pl: i(pl), ow: i(ow), row0: 0 };
    let k = (kh * kw * c) as usize;
    let ep = Epilogue::from_abi(bias, bias_per_row, residual, act);
    gemm_threaded(threads.max(1) as usize, m as usize, n as usize, k, ASource::Patches(patches), BSource::Packed(b), out, rsc as isize, csc as isize, false, Blocking::from_abi(kc, mc, nc), ep);
}


/// Unfold one image for convolution as a matrix product: row `(c·kh + ky)·kw + kx`, column
/// `oy·ow + ox` of `col` is the input pixel under tap `(ky, kx)` of output `(oy, ox)` in
/// channel `c`, or 0 where the tap falls in the padding.
///
/// # Safety
/// `input` holds `c·h·w` floats and `col` has room for `c·kh·kw·oh·ow`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn nnc_im2col(input: *const f32, c: i64, h: i64, w: i64, kh: i64, kw: i64, sh: i64, sw: i64, dh: i64, dw: i64, pt: i64, pl: i64, oh: i64, ow: i64, col: *mut f32) {
    let mut o = col;
    for ch in 0..c {
        let plane = input.offset((ch * h * w) as isize);
        for ky in 0..kh {
            for kx in 0..kw {
                for oy in 0..oh {
                    let iy = oy * sh + ky * dh - pt;
                    if iy < 0 || iy >= h {
                        std::ptr::write_bytes(o, 0, ow as usize);
                        o = o.add(ow as usize);
                        continue;
                    }
                    let row = plane.offset((iy * w) as isize);
                    for ox in 0..ow {
                        let ix = ox * sw + kx * dw - pl;
                        *o = if ix >= 0 && ix < w { *row.offset(ix as isize) } else { 0.0 };
                        o = o.add(1);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] as f64 * b[p * n + j] as f64).sum::<f64>() as f32;
            }
        }
        c
    }

    /// The patch matrix written out, the reference for gathering while packing: row
    /// `oy·ow + ox`, column `(ky·kw + kx)·c + ch`.
    #[allow(clippy::too_many_arguments)]
    fn im2col_nhwc(input: &[f32], c: i64, h: i64, w: i64, kh: i64, kw: i64, sh: i64, sw: i64, dh: i64, dw: i64, pt: i64, pl: i64, oh: i64, ow: i64) -> Vec<f32> {
        let mut col = Vec::new();
        for oy in 0..oh {
            for ox in 0..ow {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let (iy, ix) = (oy * sh + ky * dh - pt, ox * sw + kx * dw - pl);
                        for ch in 0..c {
                            let inside = iy >= 0 && iy < h && ix >= 0 && ix < w;
                            col.push(if inside { input[((iy * w + ix) * c + ch) as usize] } else { 0.0 });
                        }
                    }
                }
            }
        }
        col
    }

    #[test]
    fn patches_gathered_while_packing_match_im2col() {
        // 5 channels, 20×18, 3×3 window, stride 2, dilation 1 and 2,
        // padding 1; 2 threads split the pixels.
        for (dh, dw) in [(1, 1), (2, 2)] {
            let (c, h, w, kh, kw, sh, sw, pt, pl) = (5i64, 20i64, 18i64, 3i64, 3i64, 2i64, 1i64, 1i64, 2i64);
            let oh = (h + 2 * pt - dh * (kh - 1) - 1) / sh + 1;
            let ow = (w + 2 * pl - dw * (kw - 1) - 1) / sw + 1;
            let (m, k, n) = ((oh * ow) as usize, (kh * kw * c) as usize, 300usize);
            let input: Vec<f32> = (0..h * w * c).map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 13) as f32 - 6.0) / 7.0).collect();
            let blk = Blocking { kc: 16, mc: 8, nc: 64 };
            let mut packed_b = vec![0.0f32; packed_b_len(k, n, blk)];
            unsafe { pack_b_all(k, n, b.as_ptr(), n as isize, 1, blk, &mut packed_b) };
            let col = im2col_nhwc(&input, c, h, w, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow);
            let mut want = vec![0.0f32; m * n];
            unsafe { sgemm_packed_b(m, n, k, col.as_ptr(), k as isize, 1, packed_b.as_ptr(), want.as_mut_ptr(), n as isize, 1, false, blk) };
            for threads in [1, 2] {
                let mut got = vec![0.0f32; m * n];
                unsafe {
                    nnc_sgemm_conv_nhwc(m as i64, n as i64, input.as_ptr(), c, h, w, kh, kw, sh, sw, dh, dw, pt, pl, ow, packed_b.as_ptr(), got.as_mut_ptr(), n as i64, 1, threads, 16, 8, 64, std::ptr::null(), 0, std::ptr::null(), 0)
                };
                assert_eq!(got, want, "dilation {dh}, {threads} threads");
            }
        }
    }

    #[test]
    fn matches_naive_product_on_awkward_sizes() {
        // Small blocks cut every product into several slabs and blocks; large ones do not.
        for blk in [Blocking { kc: 64, mc: 20, nc: 96 }, Blocking { kc: 256, mc: 1792, nc: 4096 }] {
            for &(m, n, k) in &[(1, 1, 1), (7, 33, 5), (17, 65, 300), (100, 10, 513), (1, 1000, 64), (64, 1, 64), (300, 160, 50)] {
                let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
                let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect();
                let want = naive(m, n, k, &a, &b);
                let mut c = vec![1.0f32; m * n];
                unsafe { sgemm(m, n, k, a.as_ptr(), k as isize, 1, b.as_ptr(), n as isize, 1, c.as_mut_ptr(), n as isize, 1, false, blk) };
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{m}x{n}x{k} {blk:?}: {x} vs {y}");
                }
                // Accumulating adds to C; a transposed view of B (column stride n → 1) works too.
                let mut bt = vec![0.0f32; k * n];
                for p in 0..k {
                    for j in 0..n {
                        bt[j * k + p] = b[p * n + j];
                    }
                }
                let mut c2 = vec![1.0f32; m * n];
                unsafe { sgemm(m, n, k, a.as_ptr(), k as isize, 1, bt.as_ptr(), 1, k as isize, c2.as_mut_ptr(), n as isize, 1, true, blk) };
                for (x, y) in c2.iter().zip(&want) {
                    assert!((x - (y + 1.0)).abs() <= 1e-4 * (2.0 + y.abs()), "{m}x{n}x{k} accumulate: {x} vs {}", y + 1.0);
                }
                // A packed once ahead of time gives the same product.
                let mut packed = vec![0.0f32; packed_a_len(m, k, blk)];
                unsafe { pack_a_all(m, k, a.as_ptr(), k as isize, 1, blk, &mut packed) };
                let mut c3 = vec![0.0f32; m * n];
                unsafe { sgemm_packed_a(m, n, k, packed.as_ptr(), b.as_ptr(), n as isize, 1, c3.as_mut_ptr(), n as isize, 1, false, blk) };
                assert_eq!(c3, c, "{m}x{n}x{k} packed A");
                // Two threads give the very same bits.
                let mut c4 = vec![0.0f32; m * n];
                let (kc, mc, nc) = (blk.kc as i64, blk.mc as i64, blk.nc as i64);
                unsafe { nnc_sgemm(m as i64, n as i64, k as i64, a.as_ptr(), k as i64, 1, b.as_ptr(), n as i64, 1, c4.as_mut_ptr(), n as i64, 1, 0, 2, kc, mc, nc, std::ptr::null(), 0, std::ptr::null(), 0) };
                assert_eq!(c4, c, "{m}x{n}x{k} two threads");
                // So does B packed ahead of time, on one thread or two (split by rows).
                let mut packed_b = vec![0.0f32; packed_b_len(k, n, blk)];
                unsafe { pack_b_all(k, n, b.as_ptr(), n as isize, 1, blk, &mut packed_b) };
                let mut c5 = vec![0.0f32; m * n];
                unsafe { sgemm_packed_b(m, n, k, a.as_ptr(), k as isize, 1, packed_b.as_ptr(), c5.as_mut_ptr(), n as isize, 1, false, blk) };
                assert_eq!(c5, c, "{m}x{n}x{k} packed B");
                let mut c6 = vec![0.0f32; m * n];
                unsafe { nnc_sgemm_packed_b(m as i64, n as i64, k as i64, a.as_ptr(), k as i64, 1, packed_b.as_ptr(), c6.as_mut_ptr(), n as i64, 1, 0, 2, kc, mc, nc, std::ptr::null(), 0, std::ptr::null(), 0) };
                assert_eq!(c6, c, "{m}x{n}x{k} packed B, two threads");
                // The epilogue: bias per row or column, residual, activation, on both
                // splits of the work; exactly what applying them to C afterwards gives.
                let bias: Vec<f32> = (0..m.max(n)).map(|i| (i % 7) as f32 - 3.0).collect();
                let residual: Vec<f32> = (0..m * n).map(|i| (i % 5) as f32 * 0.5 - 1.0).collect();
                for (per_row, act) in [(true, Activation::Relu6), (false, Activation::Relu)] {
                    let want: Vec<f32> = (0..m * n)
                        .map(|idx| {
                            let v = c[idx] + bias[if per_row { idx / n } else { idx % n }] + residual[idx];
                            match act {
                                Activation::Relu6 => v.clamp(0.0, 6.0),
                                _ => v.max(0.0),
                            }
                        })
                        .collect();
                    let (bp, rp) = (bias.as_ptr(), residual.as_ptr());
                    let mut c7 = vec![0.0f32; m * n];
                    unsafe { nnc_sgemm(m as i64, n as i64, k as i64, a.as_ptr(), k as i64, 1, b.as_ptr(), n as i64, 1, c7.as_mut_ptr(), n as i64, 1, 0, 2, kc, mc, nc, bp, per_row as i64, rp, act.code()) };
                    assert_eq!(c7, want, "{m}x{n}x{k} epilogue by columns");
                    let mut c8 = vec![0.0f32; m * n];
                    unsafe { nnc_sgemm_packed_b(m as i64, n as i64, k as i64, a.as_ptr(), k as i64, 1, packed_b.as_ptr(), c8.as_mut_ptr(), n as i64, 1, 0, 2, kc, mc, nc, bp, per_row as i64, rp, act.code()) };
                    assert_eq!(c8, want, "{m}x{n}x{k} epilogue by rows");
                }
            }
        }
    }
}
