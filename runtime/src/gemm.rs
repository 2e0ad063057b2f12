//! Single-precision matrix multiplication for compiled models: `C (+)= A·B` with arbitrary
//! row and column strides, blocked for the caches and computed by register-tile
//! microkernels chosen at run time from the CPU's features (AVX-512F, else AVX2+FMA, else
//! portable code). Generated code calls [`nnc_sgemm`] for the matrix products inside
//! convolutions, dense layers and matmuls when microkernels are on.
//!
//! The structure is the classic one (Goto/BLIS): the `k` dimension is cut into `KC` slabs,
//! `A` into `MC × KC` blocks packed into `MR`-row panels, `B` into `KC × NC` blocks packed into
//! `NR`-column panels, and the microkernel keeps an `MR × NR` tile of `C` in registers.

use std::sync::OnceLock;

/// Depth of a packed slab: an `MR × KC` panel of A plus a `KC × NR` panel of B stay in L1.
const KC: usize = 256;
/// Rows of A packed at once: `MC × KC` floats stay in L2.
const MC: usize = 96;
/// Columns of B packed at once.
const NC: usize = 2048;

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
}

/// Rows of A once every `MC` block is padded to whole `MR` panels.
fn padded_rows(m: usize, mr: usize) -> usize {
    (0..m).step_by(MC).map(|ic| MC.min(m - ic).next_multiple_of(mr)).sum()
}

/// Floats [`pack_a_all`] writes for an `m × k` matrix.
pub fn packed_a_len(m: usize, k: usize) -> usize {
    padded_rows(m, kernel().mr) * k
}

/// Pack all of A (`m × k`, strided) once, for [`sgemm_packed_a`]: every `KC` slab, every `MC`
/// block, in the panel order the microkernel reads. Constant operands (weights) are packed
/// at compile time this way instead of on every call.
///
/// # Safety
/// A must be valid for `i < m, p < k`; `out` must hold [`packed_a_len`] floats.
pub unsafe fn pack_a_all(m: usize, k: usize, a: *const f32, rsa: isize, csa: isize, out: &mut [f32]) {
    let mr = kernel().mr;
    let rows = padded_rows(m, mr);
    for pc in (0..k).step_by(KC) {
        let kc = KC.min(k - pc);
        for ic in (0..m).step_by(MC) {
            let mc = MC.min(m - ic);
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
pub unsafe fn sgemm(m: usize, n: usize, k: usize, a: *const f32, rsa: isize, csa: isize, b: *const f32, rsb: isize, csb: isize, c: *mut f32, rsc: isize, csc: isize, accumulate: bool) {
    gemm(m, n, k, ASource::Strided(a, rsa, csa), b, rsb, csb, c, rsc, csc, accumulate)
}

/// Pointers a parallel GEMM shares between its tasks.
#[derive(Clone, Copy)]
struct Shared(ASource, *const f32, *mut f32);
// SAFETY: tasks read A and B and write disjoint column ranges of C.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    // A method, so closures capture the whole (Sync) struct rather than its raw fields.
    fn parts(&self) -> (ASource, *const f32, *mut f32) {
        (self.0, self.1, self.2)
    }
}

/// [`gemm`] split across up to `threads` threads by ranges of whole `NR`-column tiles. Each
/// tile of C is computed by exactly the same sequence of operations as on one thread, so the
/// result is bit-identical for every thread count.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_threaded(threads: usize, m: usize, n: usize, k: usize, a: ASource, b: *const f32, rsb: isize, csb: isize, c: *mut f32, rsc: isize, csc: isize, accumulate: bool) {
    let nr = kernel().nr;
    let tiles = n.div_ceil(nr);
    // Too little work per thread is not worth the hand-off.
    let threads = threads.min(tiles / 2).max(1);
    if threads == 1 || (m * n * k) < (1 << 18) {
        return gemm(m, n, k, a, b, rsb, csb, c, rsc, csc, accumulate);
    }
    let per = tiles.div_ceil(threads);
    let shared = Shared(a, b, c);
    crate::pool::parallel_for(threads, &|t| {
        let (a, b, c) = shared.parts();
        let j0 = (t * per * nr).min(n);
        let j1 = ((t + 1) * per * nr).min(n);
        if j0 < j1 {
            gemm(m, j1 - j0, k, a, b.offset(j0 as isize * csb), rsb, csb, c.offset(j0 as isize * csc), rsc, csc, accumulate);
        }
    });
}

/// [`sgemm`] with A already packed by [`pack_a_all`].
///
/// # Safety
/// As [`sgemm`]; `a` holds [`packed_a_len`]`(m, k)` floats from [`pack_a_all`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_packed_a(m: usize, n: usize, k: usize, a: *const f32, b: *const f32, rsb: isize, csb: isize, c: *mut f32, rsc: isize, csc: isize, accumulate: bool) {
    gemm(m, n, k, ASource::Packed(a), b, rsb, csb, c, rsc, csc, accumulate)
}

#[allow(clippy::too_many_arguments)]
unsafe fn gemm(m: usize, n: usize, k: usize, a: ASource, b: *const f32, rsb: isize, csb: isize, c: *mut f32, rsc: isize, csc: isize, accumulate: bool) {
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
        return;
    }
    let kern = kernel();
    let (mr, nr) = (kern.mr, kern.nr);
    thread_local! {
        static BUFFERS: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    }
    BUFFERS.with(|bufs| {
        let mut bufs = bufs.borrow_mut();
        let (apack, bpack) = &mut *bufs;
        let a_len = MC.next_multiple_of(mr) * KC;
        let b_len = NC.next_multiple_of(nr) * KC;
        if apack.len() < a_len {
            apack.resize(a_len, 0.0);
        }
        if bpack.len() < b_len {
            bpack.resize(b_len, 0.0);
        }
        let mut tile = [0.0f32; 16 * 32];
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                // The first slab writes C, later ones add to it.
                let acc = accumulate || pc > 0;
                pack_b(nr, kc, nc, b.offset(pc as isize * rsb + jc as isize * csb), rsb, csb, bpack);
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    let a_block = match a {
                        ASource::Strided(a, rsa, csa) => {
                            pack_a(mr, mc, kc, a.offset(ic as isize * rsa + pc as isize * csa), rsa, csa, apack);
                            apack.as_ptr()
                        }
                        ASource::Packed(p) => p.add(padded_rows(m, mr) * pc + ic * kc),
                    };
                    for jr in (0..nc).step_by(nr) {
                        let cols = nr.min(nc - jr);
                        let bp = bpack.as_ptr().add(jr * kc);
                        for ir in (0..mc).step_by(mr) {
                            let rows = mr.min(mc - ir);
                            let ap = a_block.add(ir * kc);
                            let cp = c.offset((ic + ir) as isize * rsc + (jc + jr) as isize * csc);
                            if rows == mr && cols == nr {
                                (kern.micro)(kc, ap, bp, cp, rsc, csc, acc);
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
                            }
                        }
                    }
                }
            }
        }
    });
}

/// [`sgemm`] with a C ABI, as generated code calls it.
///
/// # Safety
/// As [`sgemm`].
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn nnc_sgemm(m: i64, n: i64, k: i64, a: *const f32, rsa: i64, csa: i64, b: *const f32, rsb: i64, csb: i64, c: *mut f32, rsc: i64, csc: i64, accumulate: i64, threads: i64) {
    gemm_threaded(threads.max(1) as usize, m as usize, n as usize, k as usize, ASource::Strided(a, rsa as isize, csa as isize), b, rsb as isize, csb as isize, c, rsc as isize, csc as isize, accumulate != 0);
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

    #[test]
    fn matches_naive_product_on_awkward_sizes() {
        for &(m, n, k) in &[(1, 1, 1), (7, 33, 5), (17, 65, 300), (100, 10, 513), (1, 1000, 64), (64, 1, 64)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect();
            let want = naive(m, n, k, &a, &b);
            let mut c = vec![1.0f32; m * n];
            unsafe { sgemm(m, n, k, a.as_ptr(), k as isize, 1, b.as_ptr(), n as isize, 1, c.as_mut_ptr(), n as isize, 1, false) };
            for (x, y) in c.iter().zip(&want) {
                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{m}x{n}x{k}: {x} vs {y}");
            }
            // Accumulating adds to C; a transposed view of B (column stride n → 1) works too.
            let mut bt = vec![0.0f32; k * n];
            for p in 0..k {
                for j in 0..n {
                    bt[j * k + p] = b[p * n + j];
                }
            }
            let mut c2 = vec![1.0f32; m * n];
            unsafe { sgemm(m, n, k, a.as_ptr(), k as isize, 1, bt.as_ptr(), 1, k as isize, c2.as_mut_ptr(), n as isize, 1, true) };
            for (x, y) in c2.iter().zip(&want) {
                assert!((x - (y + 1.0)).abs() <= 1e-4 * (2.0 + y.abs()), "{m}x{n}x{k} accumulate: {x} vs {}", y + 1.0);
            }
            // A packed once ahead of time gives the same product.
            let mut packed = vec![0.0f32; packed_a_len(m, k)];
            unsafe { pack_a_all(m, k, a.as_ptr(), k as isize, 1, &mut packed) };
            let mut c3 = vec![0.0f32; m * n];
            unsafe { sgemm_packed_a(m, n, k, packed.as_ptr(), b.as_ptr(), n as isize, 1, c3.as_mut_ptr(), n as isize, 1, false) };
            assert_eq!(c3, c, "{m}x{n}x{k} packed A");
            // Two threads give the very same bits.
            let mut c4 = vec![0.0f32; m * n];
            unsafe { nnc_sgemm(m as i64, n as i64, k as i64, a.as_ptr(), k as i64, 1, b.as_ptr(), n as i64, 1, c4.as_mut_ptr(), n as i64, 1, 0, 2) };
            assert_eq!(c4, c, "{m}x{n}x{k} two threads");
        }
    }
}

/// [`sgemm_packed_a`] with a C ABI.
///
/// # Safety
/// As [`sgemm_packed_a`].
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn nnc_sgemm_packed_a(m: i64, n: i64, k: i64, a: *const f32, b: *const f32, rsb: i64, csb: i64, c: *mut f32, rsc: i64, csc: i64, accumulate: i64, threads: i64) {
    gemm_threaded(threads.max(1) as usize, m as usize, n as usize, k as usize, ASource::Packed(a), b, rsb as isize, csb as isize, c, rsc as isize, csc as isize, accumulate != 0);
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
