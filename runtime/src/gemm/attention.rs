//! Scaled dot-product attention, `softmax(q·kᵀ·scale [causal]) · v`, as one kernel: for each
//! block of [`ROWS`] query rows of one batch (head), the block's scores `q·kᵀ` (a GEMM into
//! a per-thread buffer of `ROWS × sk` floats, small enough to stay in L1/L2), the row softmax
//! at full vector width, then `P·v` into the output. The score matrix is never written to
//! memory as a whole, and blocks are independent, so threads split them (heads and row
//! blocks) with every thread count computing each block the same way.

use crate::reference::AttentionShape;
use super::pack::{ASource, BSource};
use super::{gemm, Blocking, Epilogue, Precision};
use crate::floats::Floats;
use crate::pool::Shared;

/// Query rows per block.
pub const ROWS: usize = 32;

/// Blocks below this many multiply-adds in all run on one thread.
const MIN_PARALLEL_MACS: usize = 1 << 18;

/// One attention: its problems' shapes (`out: sq × dv` each, row-major), each operand's
/// problems stored as [`Heads`] says.
#[derive(Clone, Copy, Debug)]
pub struct Attention {
    pub shape: AttentionShape,
    /// Multiplies the scores (`1/√d`); positive.
    pub scale: f32,
    /// How `q`, `k`, `v` and `out` store their problems.
    pub heads: [Heads; 4],
}

/// How an operand of `rows × width` per problem stores its problems: `interleaved` of them
/// (the heads of one batch) share each row, problem `h` of a group in columns
/// `h·width .. (h+1)·width` of rows `interleaved·width` long, the layout of `[batch, rows,
/// heads, width]` that multi-head attention's inputs have before their head transpose and
/// its output after the transpose back. `Heads(1)` is contiguous problems.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heads(pub usize);

impl Heads {
    /// Problem `b`'s first row and the distance between its rows, in floats.
    fn at(self, b: usize, rows: usize, width: usize) -> (usize, usize) {
        let Heads(h) = self;
        ((b / h) * rows * h * width + (b % h) * width, h * width)
    }
}

/// Compute `out` on up to `threads` threads.
///
/// # Safety
/// `q`, `k`, `v` hold `batches·sq·d`, `batches·sk·d` and `batches·sk·dv` floats, `out`
/// (writable, overlapping none of them) `batches·sq·dv`; each operand's `Heads` is at least 1
/// and divides `batches`.
pub unsafe fn attention(threads: usize, a: Attention, q: *const f32, k: *const f32, v: *const f32, out: *mut f32) {
    let per_batch = a.shape.sq.div_ceil(ROWS);
    let blocks = a.shape.batches * per_batch;
    let macs = a.shape.batches * a.shape.sq * a.shape.sk * (a.shape.d + a.shape.dv);
    let threads = if macs < MIN_PARALLEL_MACS { 1 } else { threads.clamp(1, blocks.max(1)) };
    let per = blocks.div_ceil(threads.max(1));
    // SAFETY: tasks read q, k, v and write disjoint row blocks of out.
    let shared = unsafe { Shared::new((q, k, v, out)) };
    crate::pool::parallel_for(threads, &|t| {
        let (q, k, v, out) = shared.get();
        thread_local! {
            static PANELS: std::cell::RefCell<(Floats, Floats)> = const { std::cell::RefCell::new((Floats::new(), Floats::new())) };
        }
        PANELS.with(|panels| {
            let (kt, vp) = &mut *panels.borrow_mut();
            let mut packed_for = None;
            for block in (t * per).min(blocks)..((t + 1) * per).min(blocks) {
                let b = block / per_batch;
                // A batch's `kᵀ` and `v`, packed once for all its row blocks this task takes
                // (packing them for every block of 32 rows cost a third of the kernel).
                if packed_for != Some(b) {
                    // SAFETY: the caller's contract: batch b's k and v.
                    unsafe { pack_batch(a, b, k, v, kt, vp) };
                    packed_for = Some(b);
                }
                // SAFETY: the caller's contract; blocks write disjoint rows of `out`.
                unsafe { one_block(a, b, (block % per_batch) * ROWS, q, kt, vp, out) };
            }
        });
    });
}

/// Blocking for products this small: everything in one slab and one block.
const BLOCKING: Blocking = Blocking { kc: 1024, mc: ROWS, nc: 4096 };

/// Batch `b`'s `kᵀ` (`d × sk`) and `v` (`sk × dv`) packed as the GEMM's B panels.
///
/// # Safety
/// As [`attention`], for a batch inside it.
unsafe fn pack_batch(a: Attention, b: usize, k: *const f32, v: *const f32, kt: &mut Floats, vp: &mut Floats) {
    // On cache lines, as the GEMM's own packed panels are.
    kt.ensure_lines(super::pack::packed_b_len(a.shape.d, a.shape.sk, BLOCKING));
    vp.ensure_lines(super::pack::packed_b_len(a.shape.sk, a.shape.dv, BLOCKING));
    let (k0, rsk) = a.heads[1].at(b, a.shape.sk, a.shape.d);
    let (v0, rsv) = a.heads[2].at(b, a.shape.sk, a.shape.dv);
    // SAFETY: batch b's k (`sk × d`, read transposed: row stride 1, column stride its row
    // stride) and v.
    unsafe {
        super::pack::pack_b_all(a.shape.d, a.shape.sk, k.add(k0), 1, rsk as isize, BLOCKING, kt);
        super::pack::pack_b_all(a.shape.sk, a.shape.dv, v.add(v0), rsv as isize, 1, BLOCKING, vp);
    }
}

/// Rows `r0..r0 + ROWS` (those that exist) of batch `b`.
///
/// # Safety
/// As [`attention`], for a block inside it.
unsafe fn one_block(a: Attention, b: usize, r0: usize, q: *const f32, kt: &[f32], vp: &[f32], out: *mut f32) {
    thread_local! {
        static SCORES: std::cell::RefCell<Floats> = const { std::cell::RefCell::new(Floats::new()) };
    }
    let rows = ROWS.min(a.shape.sq - r0);
    let blk = BLOCKING;
    SCORES.with(|s| {
        let mut s = s.borrow_mut();
        s.ensure_lines(ROWS * a.shape.sk);
        let sp = s.as_mut_ptr();
        // SAFETY (whole body): the caller's contract; the buffer holds `rows × sk` scores.
        unsafe {
            let ((q0, rsq), (o0, rso)) = (a.heads[0].at(b, a.shape.sq, a.shape.d), a.heads[3].at(b, a.shape.sq, a.shape.dv));
            let qb = q.add(q0 + r0 * rsq);
            let ob = out.add(o0 + r0 * rso);
            // S = q·kᵀ, kᵀ packed by `pack_batch`.
            gemm(rows, a.shape.sk, a.shape.d, ASource::Strided(qb, rsq as isize, 1), BSource::Packed(kt.as_ptr()), sp, a.shape.sk as isize, 1, false, blk, Epilogue::NONE, Precision::F32);
            if a.shape.causal {
                for i in 0..rows {
                    let len = (r0 + i + 1).min(a.shape.sk);
                    let row = std::slice::from_raw_parts_mut(sp.add(i * a.shape.sk), a.shape.sk);
                    softmax(&mut row[..len], a.scale);
                    row[len..].fill(0.0);
                }
            } else {
                softmax_rows(std::slice::from_raw_parts_mut(sp, rows * a.shape.sk), a.shape.sk, a.scale);
            }
            gemm(rows, a.shape.dv, a.shape.sk, ASource::Strided(sp, a.shape.sk as isize, 1), BSource::Packed(vp.as_ptr()), ob, rso as isize, 1, false, blk, Epilogue::NONE, Precision::F32);
        }
    });
}

/// Rows the softmax runs through at once. One row's steps form chains (its running maximum,
/// its running sum, the reductions between its passes) that left the vector units waiting:
/// the transformer layer's 512 rows of 128 took 25–27 µs one by one and 19 four at a time,
/// each row with the same operations in the same order (the same bits); its attention kernel
/// 146 → 135 µs (medians of four profiles on the Xeon). Eight rows took 17–18 µs, but would
/// not keep AVX2's sixteen registers.
const SOFTMAX_ROWS: usize = 4;

/// Every row of `rows` (rows of `n`) ← its softmax, [`SOFTMAX_ROWS`] rows at a time.
fn softmax_rows(rows: &mut [f32], n: usize, scale: f32) {
    if n == 0 {
        return;
    }
    let mut groups = rows.chunks_exact_mut(SOFTMAX_ROWS * n);
    for group in &mut groups {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: each kernel runs only where its features exist.
        unsafe {
            if std::arch::is_x86_feature_detected!("avx512f") {
                x86::softmax_group_avx512(group, n, scale);
                continue;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                x86::softmax_group_avx2(group, n, scale);
                continue;
            }
        }
        group.chunks_exact_mut(n).for_each(|row| softmax(row, scale));
    }
    groups.into_remainder().chunks_exact_mut(n).for_each(|row| softmax(row, scale));
}

/// `row ← softmax(row · scale)` in place, with the best kernel for this CPU.
fn softmax(row: &mut [f32], scale: f32) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: each kernel runs only where its features exist.
        unsafe {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return x86::softmax_avx512(row, scale);
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return x86::softmax_avx2(row, scale);
            }
        }
    }
    let m = row.iter().fold(f32::NEG_INFINITY, |m, &x| if x > m || x.is_nan() { x } else { m });
    let mut total = 0.0;
    for x in row.iter_mut() {
        *x = ((*x - m) * scale).exp();
        total += *x;
    }
    let inv = 1.0 / total;
    row.iter_mut().for_each(|x| *x *= inv);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::simd::Lanes;

    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn softmax_avx512(row: &mut [f32], scale: f32) {
        // SAFETY: forwarded; this function has the feature `softmax` needs.
        unsafe { softmax::<__m512, 1>([row.as_mut_ptr()], row.len(), scale) }
    }

    /// [`super::SOFTMAX_ROWS`] rows of `n` at once.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `group` holds `SOFTMAX_ROWS · n` floats.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn softmax_group_avx512(group: &mut [f32], n: usize, scale: f32) {
        assert!(group.len() >= super::SOFTMAX_ROWS * n);
        let p = group.as_mut_ptr();
        // SAFETY: forwarded; the rows lie inside `group`.
        unsafe { softmax::<__m512, { super::SOFTMAX_ROWS }>(std::array::from_fn(|r| p.add(r * n)), n, scale) }
    }

    /// As [`softmax_group_avx512`] with AVX2 and FMA.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `group` holds `SOFTMAX_ROWS · n` floats.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn softmax_group_avx2(group: &mut [f32], n: usize, scale: f32) {
        assert!(group.len() >= super::SOFTMAX_ROWS * n);
        let p = group.as_mut_ptr();
        // SAFETY: forwarded; the rows lie inside `group`.
        unsafe { softmax::<__m256, { super::SOFTMAX_ROWS }>(std::array::from_fn(|r| p.add(r * n)), n, scale) }
    }

    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn softmax_avx2(row: &mut [f32], scale: f32) {
        // SAFETY: forwarded; this function has the features `softmax` needs.
        unsafe { softmax::<__m256, 1>([row.as_mut_ptr()], row.len(), scale) }
    }

    /// Max, then `exp(scale·(x − max))` and its sum, then a multiply by the reciprocal: the
    /// steps of generated code's softmax, `W` lanes at a time, for `R` rows of `n` at once
    /// (each row's steps in the same order whatever `R`).
    ///
    /// # Safety
    /// The CPU has `V`'s unit; each row holds `n` floats.
    #[inline(always)]
    unsafe fn softmax<V: Lanes, const R: usize>(rows: [*mut f32; R], n: usize, scale: f32) {
        // SAFETY (whole body): vectors cover only the `lanes` floats left in each row.
        unsafe {
            let mut mx = [V::splat(f32::NEG_INFINITY); R];
            let mut i = 0;
            while i < n {
                let lanes = (n - i).min(V::W);
                for r in 0..R {
                    let p = rows[r].add(i);
                    // A short vector's missing lanes are −∞, not the 0 a masked load gives.
                    let x = if lanes == V::W { V::load(p) } else { pad_with(V::load_n(p, lanes), lanes, f32::NEG_INFINITY) };
                    mx[r] = V::max(mx[r], x);
                }
                i += lanes;
            }
            let m: [V; R] = std::array::from_fn(|r| V::splat(mx[r].max_lane()));
            let s = V::splat(scale);
            let mut total = [V::zero(); R];
            let mut i = 0;
            while i < n {
                let lanes = (n - i).min(V::W);
                for r in 0..R {
                    let p = rows[r].add(i);
                    let e = V::exp(V::mul(V::sub(V::load_n(p, lanes), m[r]), s));
                    let e = if lanes == V::W { e } else { pad_with(e, lanes, 0.0) };
                    e.store_n(p, lanes);
                    total[r] = V::add(total[r], e);
                }
                i += lanes;
            }
            let inv: [V; R] = std::array::from_fn(|r| V::splat(1.0 / total[r].sum()));
            let mut i = 0;
            while i < n {
                let lanes = (n - i).min(V::W);
                for r in 0..R {
                    let p = rows[r].add(i);
                    V::mul(V::load_n(p, lanes), inv[r]).store_n(p, lanes);
                }
                i += lanes;
            }
        }
    }

    /// `x` with lanes `lanes..` replaced by `fill`.
    ///
    /// # Safety
    /// The CPU has `V`'s unit.
    #[inline(always)]
    unsafe fn pad_with<V: Lanes>(x: V, lanes: usize, fill: f32) -> V {
        let mut buf = [fill; 16];
        // SAFETY: `buf` holds 16 ≥ W floats.
        unsafe {
            x.store_n(buf.as_mut_ptr(), lanes);
            V::load(buf.as_ptr())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against an f64 reference: sizes that leave partial row blocks and vector tails,
    /// causal and not; the split into threads gives the same bits.
    #[test]
    fn matches_f64_attention() {
        for (batches, sq, sk, d, dv, causal) in [(4, 128, 128, 64, 64, false), (2, 37, 45, 9, 13, true), (1, 1, 1, 1, 1, false), (3, 70, 20, 16, 8, true)] {
            let a = Attention { shape: AttentionShape { batches, sq, sk, d, dv, causal }, scale: 1.0 / (d as f32).sqrt(), heads: [Heads(1); 4] };
            let q: Vec<f32> = (0..batches * sq * d).map(|i| ((i * 7 % 23) as f32 - 11.0) / 7.0).collect();
            let k: Vec<f32> = (0..batches * sk * d).map(|i| ((i * 5 % 19) as f32 - 9.0) / 6.0).collect();
            let v: Vec<f32> = (0..batches * sk * dv).map(|i| ((i * 3 % 17) as f32 - 8.0) / 5.0).collect();
            let mut one = vec![f32::NAN; batches * sq * dv];
            unsafe { attention(1, a, q.as_ptr(), k.as_ptr(), v.as_ptr(), one.as_mut_ptr()) };
            for b in 0..batches {
                for i in 0..sq {
                    let len = if causal { (i + 1).min(sk) } else { sk };
                    let s: Vec<f64> = (0..len).map(|j| (0..d).map(|p| q[(b * sq + i) * d + p] as f64 * k[(b * sk + j) * d + p] as f64).sum::<f64>() * a.scale as f64).collect();
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                    let total: f64 = e.iter().sum();
                    for c in 0..dv {
                        let want: f64 = (0..len).map(|j| e[j] / total * v[(b * sk + j) * dv + c] as f64).sum();
                        let got = one[(b * sq + i) * dv + c] as f64;
                        assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "{a:?} ({b}, {i}, {c}): {got} vs {want}");
                    }
                }
            }
            let mut two = vec![f32::NAN; one.len()];
            let per_batch = sq.div_ceil(ROWS);
            let (mut kt, mut vp) = (Floats::new(), Floats::new());
            for block in (0..batches * per_batch).rev() {
                unsafe { pack_batch(a, block / per_batch, k.as_ptr(), v.as_ptr(), &mut kt, &mut vp) };
                unsafe { one_block(a, block / per_batch, (block % per_batch) * ROWS, q.as_ptr(), &kt, &vp, two.as_mut_ptr()) };
            }
            assert_eq!(one, two, "{a:?}");
        }
    }

    /// Heads interleaved in rows (`[batch, rows, heads, width]`) give the bits of the same
    /// problems stored contiguously, each operand on its own, on one thread and on three.
    #[test]
    fn interleaved_heads_match_contiguous_problems() {
        let (groups, h, sq, sk, d, dv) = (2, 3, 70, 45, 9, 13);
        let batches = groups * h;
        // `[groups·h, rows, width]` → `[groups, rows, h, width]`.
        let interleave = |x: &[f32], rows: usize, width: usize| {
            let mut y = vec![0.0; x.len()];
            for b in 0..batches {
                for r in 0..rows {
                    for c in 0..width {
                        y[((b / h * rows + r) * h + b % h) * width + c] = x[(b * rows + r) * width + c];
                    }
                }
            }
            y
        };
        let q: Vec<f32> = (0..batches * sq * d).map(|i| ((i * 7 % 23) as f32 - 11.0) / 7.0).collect();
        let k: Vec<f32> = (0..batches * sk * d).map(|i| ((i * 5 % 19) as f32 - 9.0) / 6.0).collect();
        let v: Vec<f32> = (0..batches * sk * dv).map(|i| ((i * 3 % 17) as f32 - 8.0) / 5.0).collect();
        let (qi, ki, vi) = (interleave(&q, sq, d), interleave(&k, sk, d), interleave(&v, sk, dv));
        for causal in [false, true] {
            let a = Attention { shape: AttentionShape { batches, sq, sk, d, dv, causal }, scale: 1.0 / (d as f32).sqrt(), heads: [Heads(1); 4] };
            let mut want = vec![f32::NAN; batches * sq * dv];
            unsafe { attention(1, a, q.as_ptr(), k.as_ptr(), v.as_ptr(), want.as_mut_ptr()) };
            let want = interleave(&want, sq, dv);
            for (heads, threads) in [([Heads(h); 4], 1), ([Heads(h); 4], 3), ([Heads(h), Heads(1), Heads(h), Heads(h)], 2)] {
                let k = if heads[1] == Heads(1) { &k } else { &ki };
                let mut got = vec![f32::NAN; want.len()];
                unsafe { attention(threads, Attention { heads, ..a }, qi.as_ptr(), k.as_ptr(), vi.as_ptr(), got.as_mut_ptr()) };
                assert_eq!(got, want, "causal {causal}, {heads:?}, {threads} threads");
            }
        }
    }

    /// Rows in groups give the bits of rows one at a time: vector tails, and row counts that
    /// leave a partial group.
    #[test]
    fn grouped_softmax_has_the_bits_of_single_rows() {
        for n in [1usize, 7, 16, 45, 128] {
            for rows in [1usize, 3, 4, 5, 9] {
                let x: Vec<f32> = (0..rows * n).map(|i| ((i * 11 % 29) as f32 - 14.0) / 3.0).collect();
                let mut want = x.clone();
                want.chunks_exact_mut(n).for_each(|row| softmax(row, 0.7));
                let mut got = x.clone();
                softmax_rows(&mut got, n, 0.7);
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{rows} rows of {n}");
                // The AVX2 group too, where the CPU has it (dispatch picks AVX-512 first).
                #[cfg(target_arch = "x86_64")]
                if rows >= SOFTMAX_ROWS && std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    let (mut one, mut group) = (x[..SOFTMAX_ROWS * n].to_vec(), x[..SOFTMAX_ROWS * n].to_vec());
                    unsafe {
                        one.chunks_exact_mut(n).for_each(|row| x86::softmax_avx2(row, 0.7));
                        x86::softmax_group_avx2(&mut group, n, 0.7);
                    }
                    assert_eq!(bits(&group), bits(&one), "AVX2, {rows} rows of {n}");
                }
            }
        }
    }

    /// The AVX2 softmax, where the CPU has it (dispatch picks AVX-512 first), against f64.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_softmax_matches_f64() {
        if !(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")) {
            return;
        }
        for n in [1usize, 7, 8, 45, 128] {
            let x: Vec<f32> = (0..n).map(|i| ((i * 7 % 19) as f32 - 9.0) / 2.0).collect();
            let mut row = x.clone();
            unsafe { x86::softmax_avx2(&mut row, 0.5) };
            let m = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            let e: Vec<f64> = x.iter().map(|&v| ((v as f64 - m) * 0.5).exp()).collect();
            let total: f64 = e.iter().sum();
            for (got, want) in row.iter().zip(e.iter().map(|v| v / total)) {
                assert!((*got as f64 - want).abs() <= 1e-6, "n {n}: {got} vs {want}");
            }
        }
    }
}
