//! Products with sparse weights: `C = A·B (+ epilogue)` where A, the weights, was pruned and
//! is stored compressed at compile time, so only its nonzeros are multiplied.
//!
//! A is kept as compressed sparse rows ([`encode_csr`]). How the product runs depends on how
//! B and C lie in memory, which the caller's strides say:
//!
//! * **Contiguous rows** (a row-major convolution: B is the im2col patches or the input
//!   planes, `K × pixels`, C the output planes): for each of A's rows, each nonzero
//!   `a[r, k]` is broadcast and multiplied into a run of B's row `k`, as XNNPACK's sparse
//!   inference does. Columns are cut into blocks of [`COLUMN_BLOCK`], so the rows of B a
//!   block reads stay in L2 while every row of A passes over them.
//! * **Few columns** (a dense layer at batch 1: B is the input vector): each output is a dot
//!   product of the row's nonzeros with the input elements they pick.
//! * **Anything else** (a dense layer on many rows, whose B and C are transposed views): B is
//!   transposed into scratch, the contiguous kernel runs into scratch, and the result is
//!   transposed into C.
//!
//! Which of the three runs is decided from the strides; which CPU code runs is decided once
//! from the CPU's features (AVX-512F for the contiguous kernel, FMA for the dot products,
//! else portable code).

use super::Epilogue;

/// Columns of C per block of the contiguous kernel: eight AVX-512 vectors of accumulators.
/// (Narrower blocks, whose rows of B would stay in L1 or L2 more often, measured slower: 64
/// and 32 by 10% and 40% on a 1024 × 256 by 256 × 128 product, and 16 for ResNet-18's
/// layer4 (49 columns), 60%: every block is another pass over the nonzeros.)
pub const COLUMN_BLOCK: usize = 128;

/// Columns up to which a product with row-strided B (a dense layer's input) gathers its
/// operands rather than transposing them.
pub const GATHER_MAX_COLUMNS: usize = 8;

/// The words of a `rows × k` matrix (row-major, `a[r·k + c]`) in compressed sparse rows:
/// `rows + 1` row starts, then each nonzero's column, then the nonzero values, row by row.
/// (Interleaved column–value pairs were measured 20% slower in the dot-product kernel.)
/// Offsets and columns are `u32` bit patterns stored in f32 words (constants are f32 words).
///
/// # Panics
/// If `a` does not hold `rows · k` values or `k` does not fit a `u32`.
pub fn encode_csr(rows: usize, k: usize, a: &[f32]) -> Vec<f32> {
    assert_eq!(a.len(), rows * k, "a {rows} × {k} matrix");
    assert!(k <= u32::MAX as usize, "columns are u32");
    let nonzeros = a.iter().filter(|v| **v != 0.0).count();
    let mut words = Vec::with_capacity(rows + 1 + 2 * nonzeros);
    let mut start = 0u32;
    words.push(f32::from_bits(0));
    for r in 0..rows {
        start += a[r * k..(r + 1) * k].iter().filter(|v| **v != 0.0).count() as u32;
        words.push(f32::from_bits(start));
    }
    words.extend(a.iter().enumerate().filter(|(_, v)| **v != 0.0).map(|(i, _)| f32::from_bits((i % k) as u32)));
    words.extend(a.iter().filter(|v| **v != 0.0));
    words
}

/// Floats of scratch [`spmm`] needs for this product: none when B's columns or C's are
/// contiguous or B has few columns, else room for B and C transposed.
pub fn spmm_scratch_floats(rows: usize, k: usize, p: usize, [rsb, csb]: [isize; 2], csc: isize) -> usize {
    match Plan::of(p, rsb, csb, csc) {
        Plan::Contiguous | Plan::Gather => 0,
        Plan::Transposed => (k + rows) * p,
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Plan {
    Contiguous,
    Gather,
    Transposed,
}

impl Plan {
    fn of(p: usize, rsb: isize, csb: isize, csc: isize) -> Plan {
        if csb == 1 && csc == 1 {
            Plan::Contiguous
        } else if rsb == 1 && p <= GATHER_MAX_COLUMNS {
            Plan::Gather
        } else {
            Plan::Transposed
        }
    }
}

/// A's compressed rows, read from its words.
#[derive(Clone, Copy)]
struct Csr {
    starts: *const u32,
    cols: *const u32,
    vals: *const f32,
}

impl Csr {
    /// # Safety
    /// `words` is an [`encode_csr`] encoding of a matrix with `rows` rows.
    unsafe fn new(words: *const f32, rows: usize) -> Csr {
        // SAFETY: the encoding starts with `rows + 1` offsets, the last one the count of
        // nonzeros, then that many columns and values.
        unsafe {
            let starts = words as *const u32;
            let nonzeros = *starts.add(rows) as usize;
            let cols = starts.add(rows + 1);
            Csr { starts, cols, vals: cols.add(nonzeros) as *const f32 }
        }
    }

    /// The nonzeros of row `r`, as a range of nonzero indices.
    ///
    /// # Safety
    /// `r` is a row of the matrix.
    #[inline(always)]
    unsafe fn row(&self, r: usize) -> std::ops::Range<usize> {
        // SAFETY: rows have `starts[r]` and `starts[r + 1]`.
        unsafe { *self.starts.add(r) as usize..*self.starts.add(r + 1) as usize }
    }

    /// Nonzero `e`: its column and value.
    ///
    /// # Safety
    /// `e` is below the count of nonzeros.
    #[inline(always)]
    unsafe fn nonzero(&self, e: usize) -> (usize, f32) {
        // SAFETY: the caller's contract.
        unsafe { (*self.cols.add(e) as usize, *self.vals.add(e)) }
    }
}

/// The pointers of one product, shared by the tasks that compute disjoint rows of C.
#[derive(Clone, Copy)]
struct Product {
    a: Csr,
    b: *const f32,
    rsb: isize,
    csb: isize,
    c: *mut f32,
    rsc: isize,
    csc: isize,
    ep: Epilogue,
}
// SAFETY: tasks read A and B and write disjoint rows of C.
unsafe impl Send for Product {}
unsafe impl Sync for Product {}

/// Multiply-adds below which a product runs on one thread (as the dense GEMM's
/// `MIN_PARALLEL_MACS`: a hand-off costs tens of microseconds).
const MIN_PARALLEL_MACS: usize = 1 << 21;

/// `C = A·B`, then `ep`, for the sparse `A: rows × k` (encoded by [`encode_csr`]), `B: k × p`
/// and `C: rows × p` (strides in elements), on up to `threads` threads.
///
/// # Safety
/// `a` is the encoding of a `rows × k` matrix; B and C are valid for the elements their
/// sizes and strides address, C writable and overlapping neither B nor `scratch`;
/// `scratch` has room for [`spmm_scratch_floats`]; the bias holds `rows` floats (per row)
/// or `p` (per column) and the residual is valid with C's strides.
#[allow(clippy::too_many_arguments)]
pub unsafe fn spmm(threads: usize, rows: usize, k: usize, p: usize, a: *const f32, b: *const f32, rsb: isize, csb: isize, c: *mut f32, rsc: isize, csc: isize, scratch: *mut f32, ep: Epilogue) {
    // SAFETY: forwarded contract.
    unsafe { spmm_with(kernels(), threads, rows, k, p, a, b, rsb, csb, c, rsc, csc, scratch, ep) }
}

/// [`spmm`] with the given kernels.
///
/// # Safety
/// As [`spmm`]; the CPU can run `kernels`.
#[allow(clippy::too_many_arguments)]
unsafe fn spmm_with(kernels: Kernels, threads: usize, rows: usize, k: usize, p: usize, a: *const f32, b: *const f32, rsb: isize, csb: isize, c: *mut f32, rsc: isize, csc: isize, scratch: *mut f32, ep: Epilogue) {
    // SAFETY (whole body): the caller's contract; each plan reads B and writes C only at
    // the elements their strides address, and the scratch within its planned size.
    unsafe {
        let csr = Csr::new(a, rows);
        let nonzeros = *csr.starts.add(rows) as usize;
        let threads = if nonzeros * p < MIN_PARALLEL_MACS { 1 } else { threads.max(1) };
        // The dot products split A's rows; the contiguous kernel splits C's columns, so that
        // each thread reads its own part of B (by rows, every thread would stream all of B
        // through its own L2: ResNet-18 at 90% sparsity took 20 ms on two threads, 16.5 on one).
        let by_rows = |prod: Product, kernel: unsafe fn(&Product, usize, usize, usize)| {
            let threads = threads.min(rows.max(1));
            let per = rows.div_ceil(threads);
            crate::pool::parallel_for(threads, &|t| {
                let (lo, hi) = ((t * per).min(rows), ((t + 1) * per).min(rows));
                if lo < hi {
                    kernel(&prod, lo, hi, p);
                }
            });
        };
        let by_columns = |prod: Product, kernel: unsafe fn(&Product, usize, usize, usize)| {
            let per = p.div_ceil(threads).next_multiple_of(16);
            let threads = p.div_ceil(per.max(1)).max(1);
            crate::pool::parallel_for(threads, &|t| {
                let (lo, hi) = ((t * per).min(p), ((t + 1) * per).min(p));
                if lo < hi {
                    kernel(&prod, rows, lo, hi);
                }
            });
        };
        match Plan::of(p, rsb, csb, csc) {
            Plan::Contiguous => by_columns(Product { a: csr, b, rsb, csb, c, rsc, csc, ep }, kernels.contiguous),
            Plan::Gather => {
                by_rows(Product { a: csr, b, rsb, csb, c, rsc, csc, ep: Epilogue::NONE }, kernels.gather);
                if !ep.is_none() {
                    ep.apply(c, 0, 0, rows, p, rsc, csc);
                }
            }
            Plan::Transposed => {
                // B as `k × p` with contiguous rows, and C likewise, in the scratch.
                let (bt, ct) = (scratch, scratch.add(k * p));
                copy_blocked(k, p, b, [rsb, csb], bt, [p as isize, 1]);
                by_columns(Product { a: csr, b: bt, rsb: p as isize, csb: 1, c: ct, rsc: p as isize, csc: 1, ep: Epilogue::NONE }, kernels.contiguous);
                copy_blocked(rows, p, ct, [p as isize, 1], c, [rsc, csc]);
                if !ep.is_none() {
                    // In C's transposed frame, where its columns are contiguous: the same
                    // elements, the bias along the other axis.
                    let t = Epilogue { bias_per_row: !ep.bias_per_row, ..ep };
                    t.apply(c, 0, 0, p, rows, csc, rsc);
                }
            }
        }
    }
}

/// `dst = src` for a `rows × cols` matrix with the given (row, column) strides of each, by
/// 32 × 32 blocks, so that a transposing copy reads and writes whole cache lines while both
/// blocks' lines stay in L1 (element by element, a 1024 × 128 transpose took 0.4 ms).
///
/// # Safety
/// Both matrices are valid for the elements their strides address, `dst` writable and not
/// overlapping `src`.
unsafe fn copy_blocked(rows: usize, cols: usize, src: *const f32, [srs, scs]: [isize; 2], dst: *mut f32, [drs, dcs]: [isize; 2]) {
    const BLOCK: usize = 16;
    // SAFETY (whole body): every (i, j) is inside the matrix.
    unsafe {
        for i0 in (0..rows).step_by(BLOCK) {
            for j0 in (0..cols).step_by(BLOCK) {
                // The inner loop writes along the axis `dst` is contiguous in, unless the reads
                // along it are 4 KiB apart: 16 such lines fall in one L1 set and evict each
                // other (the transformer's 128 × 1024 input: its whole sparse product 334 µs
                // reading down columns, 246 µs reading along rows).
                let aliased = |stride: isize| stride % 1024 == 0;
                let along_i = if drs == 1 { !aliased(srs) } else { dcs != 1 || aliased(scs) };
                if along_i {
                    for j in j0..(j0 + BLOCK).min(cols) {
                        for i in i0..(i0 + BLOCK).min(rows) {
                            *dst.offset(i as isize * drs + j as isize * dcs) = *src.offset(i as isize * srs + j as isize * scs);
                        }
                    }
                } else {
                    for i in i0..(i0 + BLOCK).min(rows) {
                        for j in j0..(j0 + BLOCK).min(cols) {
                            *dst.offset(i as isize * drs + j as isize * dcs) = *src.offset(i as isize * srs + j as isize * scs);
                        }
                    }
                }
            }
        }
    }
}

/// The kernels for one CPU.
#[derive(Clone, Copy)]
struct Kernels {
    /// Every row of C over columns `lo..hi`: `(product, rows, lo, hi)`.
    contiguous: unsafe fn(&Product, usize, usize, usize),
    /// Rows `lo..hi` of C over its `p` columns: `(product, lo, hi, p)`.
    gather: unsafe fn(&Product, usize, usize, usize),
}

const PORTABLE: Kernels = Kernels { contiguous: contiguous_portable, gather: gather_portable };

fn kernels() -> Kernels {
    static K: std::sync::OnceLock<Kernels> = std::sync::OnceLock::new();
    *K.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            let mut k = PORTABLE;
            if std::arch::is_x86_feature_detected!("avx512f") {
                k.contiguous = x86::contiguous_avx512;
            }
            if std::arch::is_x86_feature_detected!("fma") {
                k.gather = x86::gather_fma;
            }
            k
        }
        #[cfg(not(target_arch = "x86_64"))]
        PORTABLE
    })
}

/// Columns `lo..hi` of every row of a product whose B and C rows are contiguous, in plain Rust.
///
/// # Safety
/// As [`spmm`]'s contract, for C's `rows` rows and columns `lo..hi`.
unsafe fn contiguous_portable(g: &Product, rows: usize, lo: usize, hi: usize) {
    // SAFETY (whole body): the caller's contract; columns are below `k` by construction.
    unsafe {
        for j0 in (lo..hi).step_by(COLUMN_BLOCK) {
            let w = COLUMN_BLOCK.min(hi - j0);
            for r in 0..rows {
                let out = std::slice::from_raw_parts_mut(g.c.offset(r as isize * g.rsc + j0 as isize), w);
                out.fill(0.0);
                for e in g.a.row(r) {
                    let (col, v) = g.a.nonzero(e);
                    let src = std::slice::from_raw_parts(g.b.offset(col as isize * g.rsb + j0 as isize), w);
                    for (o, x) in out.iter_mut().zip(src) {
                        *o += v * *x;
                    }
                }
                g.ep.apply(out.as_mut_ptr(), r, j0, 1, w, g.rsc, 1);
            }
        }
    }
}

/// Rows `lo..hi` of a product with row-strided B (`rsb = 1`) and few columns, in plain Rust:
/// one dot product per element of C.
///
/// # Safety
/// As [`spmm`]'s contract, for rows `lo..hi` of C and `p` columns.
unsafe fn gather_portable(g: &Product, lo: usize, hi: usize, p: usize) {
    // SAFETY: forwarded contract.
    unsafe { gather_rows(g, lo, hi, p, |a, b, c| a * b + c) }
}

/// The two columns at `cols`, read as one 8-byte word.
///
/// # Safety
/// `cols` is valid for two `u32`.
#[inline(always)]
unsafe fn two_columns(cols: *const u32) -> [usize; 2] {
    // SAFETY: the caller's contract.
    let both = unsafe { (cols as *const u64).read_unaligned() };
    let (first, second) = if cfg!(target_endian = "little") { (both as u32, (both >> 32) as u32) } else { ((both >> 32) as u32, both as u32) };
    [first as usize, second as usize]
}

/// The dot products of [`gather_portable`], with `fma(a, b, c) = a·b + c` as the caller's CPU
/// computes it best. Four independent sums hide the FMA latency; the loop is bound by its
/// loads (a column, a value and an element of B per nonzero), so columns are read two at a
/// time (18% faster than one by one).
///
/// # Safety
/// As [`spmm`]'s contract, for rows `lo..hi` of C and `p` columns, `rsb = 1`.
#[inline(always)]
unsafe fn gather_rows(g: &Product, lo: usize, hi: usize, p: usize, fma: impl Fn(f32, f32, f32) -> f32) {
    // SAFETY (whole body): the caller's contract; every column is below `k`, so each read of
    // B is inside its column `j`.
    unsafe {
        for j in 0..p {
            let x = g.b.offset(j as isize * g.csb);
            for r in lo..hi {
                let range = g.a.row(r);
                let (mut e, end) = (range.start, range.end);
                let (mut a0, mut a1, mut a2, mut a3) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
                while e + 4 <= end {
                    // Two columns per load: the loop is bound by loads, three per nonzero
                    // otherwise.
                    let [c0, c1] = two_columns(g.a.cols.add(e));
                    let [c2, c3] = two_columns(g.a.cols.add(e + 2));
                    let v = g.a.vals.add(e);
                    a0 = fma(*v, *x.add(c0), a0);
                    a1 = fma(*v.add(1), *x.add(c1), a1);
                    a2 = fma(*v.add(2), *x.add(c2), a2);
                    a3 = fma(*v.add(3), *x.add(c3), a3);
                    e += 4;
                }
                let mut sum = (a0 + a1) + (a2 + a3);
                for e in e..end {
                    let (col, v) = g.a.nonzero(e);
                    sum = fma(v, *x.add(col), sum);
                }
                *g.c.offset(r as isize * g.rsc + j as isize * g.csc) = sum;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Product, COLUMN_BLOCK};
    use std::arch::x86_64::*;

    /// `NV` full vectors and `tail` more columns of row `r`, from column `j0`.
    ///
    /// # Safety
    /// As [`super::spmm`]'s contract for this row and these columns; the CPU has AVX-512F.
    #[inline(always)]
    unsafe fn row_block<const NV: usize>(g: &Product, r: usize, j0: usize, tail: usize) {
        // SAFETY (whole body): the caller's contract; the masked loads and stores touch only
        // the `tail` columns that exist.
        unsafe {
            let mask: __mmask16 = ((1u32 << tail) - 1) as u16;
            let mut acc = [_mm512_setzero_ps(); NV];
            let mut last = _mm512_setzero_ps();
            for e in g.a.row(r) {
                let (col, v) = g.a.nonzero(e);
                let w = _mm512_set1_ps(v);
                let src = g.b.offset(col as isize * g.rsb + j0 as isize);
                for (v, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(w, _mm512_loadu_ps(src.add(16 * v)), *a);
                }
                if tail > 0 {
                    last = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(mask, src.add(16 * NV)), last);
                }
            }
            let dst = g.c.offset(r as isize * g.rsc + j0 as isize);
            for (v, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(dst.add(16 * v), *a);
            }
            if tail > 0 {
                _mm512_mask_storeu_ps(dst.add(16 * NV), mask, last);
            }
            g.ep.apply(dst, r, j0, 1, 16 * NV + tail, g.rsc, 1);
        }
    }

    /// Columns `lo..hi` of every row, contiguous B and C rows, AVX-512.
    ///
    /// # Safety
    /// As [`super::spmm`]'s contract for C's `rows` rows and columns `lo..hi`; the CPU has
    /// AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn contiguous_avx512(g: &Product, rows: usize, lo: usize, hi: usize) {
        // SAFETY (whole body): forwarded contract.
        unsafe {
            for j0 in (lo..hi).step_by(COLUMN_BLOCK) {
                let w = COLUMN_BLOCK.min(hi - j0);
                let (nv, tail) = (w / 16, w % 16);
                for r in 0..rows {
                    match nv {
                        8 => row_block::<8>(g, r, j0, tail),
                        7 => row_block::<7>(g, r, j0, tail),
                        6 => row_block::<6>(g, r, j0, tail),
                        5 => row_block::<5>(g, r, j0, tail),
                        4 => row_block::<4>(g, r, j0, tail),
                        3 => row_block::<3>(g, r, j0, tail),
                        2 => row_block::<2>(g, r, j0, tail),
                        1 => row_block::<1>(g, r, j0, tail),
                        _ => row_block::<0>(g, r, j0, tail),
                    }
                }
            }
        }
    }

    /// Rows `lo..hi` of a product with row-strided B (`rsb = 1`): each element of C a dot
    /// product of the row's nonzeros with B's elements at their columns, in scalar code:
    /// AVX-512 and AVX2 gathers were both measured slower (Zen 4: 17 µs against 10.7 µs for
    /// a 784 → 512 layer at 10% density).
    ///
    /// # Safety
    /// As [`super::spmm`]'s contract for rows `lo..hi`, `rsb = 1`; the CPU has FMA.
    #[target_feature(enable = "fma")]
    pub(super) unsafe fn gather_fma(g: &Product, lo: usize, hi: usize, p: usize) {
        // SAFETY: forwarded contract; with the feature, `mul_add` is one instruction.
        unsafe { super::gather_rows(g, lo, hi, p, f32::mul_add) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Activation;

    /// A deterministic matrix with about `density` of its entries nonzero.
    fn sparse(rows: usize, cols: usize, density: f64, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..rows * cols)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = (s >> 33) as f64 / (1u64 << 31) as f64;
                if u < density { (u * 7.0 - 0.3) as f32 } else { 0.0 }
            })
            .collect()
    }

    fn reference(rows: usize, k: usize, p: usize, a: &[f32], b: &[f32], bias: &[f32], residual: &[f32], relu: bool) -> Vec<f32> {
        let mut c = vec![0.0f32; rows * p];
        for r in 0..rows {
            for j in 0..p {
                let mut s = 0.0f64;
                for kk in 0..k {
                    s += a[r * k + kk] as f64 * b[kk * p + j] as f64;
                }
                let v = s as f32 + bias[r] + residual[r * p + j];
                c[r * p + j] = if relu { v.max(0.0) } else { v };
            }
        }
        c
    }

    #[test]
    fn csr_encoding_round_trips() {
        let a = sparse(7, 13, 0.3, 1);
        let words = encode_csr(7, 13, &a);
        let csr = unsafe { Csr::new(words.as_ptr(), 7) };
        let mut back = vec![0.0f32; 7 * 13];
        for r in 0..7 {
            for e in unsafe { csr.row(r) } {
                let (col, v) = unsafe { csr.nonzero(e) };
                back[r * 13 + col] = v;
            }
        }
        assert_eq!(back, a);
        assert_eq!(encode_csr(3, 0, &[]).len(), 4);
    }

    /// Every plan (contiguous, gather, transposed), with every epilogue part, on shapes that
    /// leave partial vectors and blocks, against an f64 reference.
    #[test]
    fn every_plan_matches_the_dense_product() {
        for &(rows, k, p, density) in &[(5, 9, 1, 0.5), (16, 40, 3, 0.2), (33, 70, 200, 0.1), (8, 300, 17, 0.05), (3, 5, 130, 1.0), (4, 6, 20, 0.0)] {
            let a = sparse(rows, k, density, rows as u64);
            let b = sparse(k, p, 1.0, k as u64);
            let bias: Vec<f32> = (0..rows).map(|r| r as f32 * 0.25 - 1.0).collect();
            let residual = sparse(rows, p, 1.0, 99);
            let want = reference(rows, k, p, &a, &b, &bias, &residual, true);
            let words = encode_csr(rows, k, &a);
            let ep = Epilogue { bias: bias.as_ptr(), bias_per_row: true, residual: residual.as_ptr(), act: Activation::Relu, gelu: false };
            // C = A·B as given.
            let mut c = vec![f32::NAN; rows * p];
            for (threads, kernels) in [(1, kernels()), (2, kernels()), (1, PORTABLE)] {
                unsafe { spmm_with(kernels, threads, rows, k, p, words.as_ptr(), b.as_ptr(), p as isize, 1, c.as_mut_ptr(), p as isize, 1, std::ptr::null_mut(), ep) };
                close(&c, &want);
            }
            // Cᵀ = (A·Bᵀᵀ)ᵀ: B given transposed (a dense layer's input rows), C written
            // transposed (its output rows), the residual in C's layout.
            let bt: Vec<f32> = (0..p * k).map(|i| b[(i % k) * p + i / k]).collect();
            let residual_t: Vec<f32> = (0..p * rows).map(|i| residual[(i % rows) * p + i / rows]).collect();
            let ep_t = Epilogue { residual: residual_t.as_ptr(), ..ep };
            let mut ct = vec![f32::NAN; rows * p];
            let mut scratch = vec![0.0f32; spmm_scratch_floats(rows, k, p, [1, k as isize], rows as isize)];
            for kernels in [kernels(), PORTABLE] {
                ct.fill(f32::NAN);
                unsafe { spmm_with(kernels, 1, rows, k, p, words.as_ptr(), bt.as_ptr(), 1, k as isize, ct.as_mut_ptr(), 1, rows as isize, scratch.as_mut_ptr(), ep_t) };
                let back: Vec<f32> = (0..rows * p).map(|i| ct[(i % p) * rows + i / p]).collect();
                close(&back, &want);
            }
        }
    }

    /// Two threads give the one-thread bits, on products large enough to be split (by
    /// columns in the contiguous plan, by rows in the dot products).
    #[test]
    fn threads_split_without_changing_bits() {
        for &(rows, k, p) in &[(64, 576, 3136), (512, 784, 1)] {
            let a = sparse(rows, k, 0.1, 7);
            let b = sparse(k, p, 1.0, 8);
            let words = encode_csr(rows, k, &a);
            let bias: Vec<f32> = (0..rows).map(|r| r as f32).collect();
            let ep = Epilogue { bias: bias.as_ptr(), bias_per_row: true, residual: std::ptr::null(), act: Activation::Relu, gelu: false };
            let run = |threads| {
                let mut c = vec![0.0f32; rows * p];
                unsafe { spmm(threads, rows, k, p, words.as_ptr(), b.as_ptr(), p as isize, 1, c.as_mut_ptr(), p as isize, 1, std::ptr::null_mut(), ep) };
                c
            };
            assert_eq!(run(1), run(2), "{rows}x{k}x{p}");
        }
    }

    fn close(got: &[f32], want: &[f32]) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "element {i}: {g} vs {w}");
        }
    }
}
