//! The interpreter's semantics of the float ops a quantized graph must reproduce bit for bit
//! (SPEC §5): GELU and the other transcendental activations, layer normalization, softmax
//! and scaled dot-product attention, computed in f64 and rounded once to f32. They are
//! defined here once: the interpreter evaluates its nodes with these functions, and code
//! generated for a quantized graph calls them through the ABI (`nnc_unary_reference`, and
//! `nnc_layer_norm` / `nnc_attention` with their `reference` flag), so the two cannot drift
//! apart and a library compiled ahead of time carries them.
//!
//! Faster kernels may not change a single bit here. What they may do: split rows, lanes or
//! attention problems across threads (each is computed alone), and run the same loops with
//! wider vectors (each lane adds its own terms in the same order; Rust never fuses a
//! multiply and an add). Every sum starts from the empty sum and adds its terms in
//! ascending order, as `Iterator::sum` does.

use crate::pool::Shared;

/// Elements (or attention multiply-adds) below which a reference kernel stays on one
/// thread: waking a worker costs tens of microseconds.
const MIN_PARALLEL_WORK: usize = 1 << 15;

/// The value `Iterator::sum` starts an f64 sum from (−0.0: the sum of nothing keeps the sign
/// of a sum of negative zeros).
fn empty_sum() -> f64 {
    std::iter::empty::<f64>().sum()
}

/// The activations whose interpreter results are not one correctly rounded f32 operation,
/// with the ABI code `nnc_unary_reference` takes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Transcendental {
    Sigmoid,
    Tanh,
    Gelu,
    Silu,
    Exp,
    LeakyRelu { alpha: f64 },
}

impl Transcendental {
    /// The function, in f64.
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Transcendental::Sigmoid => sigmoid(x),
            Transcendental::Tanh => x.tanh(),
            Transcendental::Gelu => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
            Transcendental::Silu => x * sigmoid(x),
            Transcendental::Exp => x.exp(),
            Transcendental::LeakyRelu { alpha } => {
                if x >= 0.0 {
                    x
                } else {
                    alpha * x
                }
            }
        }
    }

    /// Its code in [`crate::gemm::UnaryReferenceCall`], and the parameter (`alpha`, else 0).
    pub fn to_abi(self) -> (i64, f64) {
        match self {
            Transcendental::Sigmoid => (0, 0.0),
            Transcendental::Tanh => (1, 0.0),
            Transcendental::Gelu => (2, 0.0),
            Transcendental::Silu => (3, 0.0),
            Transcendental::Exp => (4, 0.0),
            Transcendental::LeakyRelu { alpha } => (5, alpha),
        }
    }

    /// The activation of an ABI code, if it is one.
    pub fn from_abi(code: i64, alpha: f64) -> Option<Transcendental> {
        Some(match code {
            0 => Transcendental::Sigmoid,
            1 => Transcendental::Tanh,
            2 => Transcendental::Gelu,
            3 => Transcendental::Silu,
            4 => Transcendental::Exp,
            5 => Transcendental::LeakyRelu { alpha },
            _ => return None,
        })
    }
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// `out[i] = f(x[i])` for `n` floats, on up to `threads` threads.
///
/// # Safety
/// `x` holds `n` floats and `out` (writable; it may be `x` itself) `n`.
pub unsafe fn unary(threads: usize, f: Transcendental, x: *const f32, out: *mut f32, n: usize) {
    let threads = if n < MIN_PARALLEL_WORK { 1 } else { threads.max(1) };
    // SAFETY: tasks read x and write disjoint ranges of out.
    let shared = unsafe { Shared::new((x, out)) };
    crate::pool::parallel_for(threads, &|t| {
        let (x, out) = shared.get();
        for i in n * t / threads..n * (t + 1) / threads {
            // SAFETY: `i < n`, inside both buffers.
            unsafe { *out.add(i) = f.apply(*x.add(i) as f64) as f32 };
        }
    });
}

/// Softmax of one lane in place, in f64: `exp(v − max)` over their sum.
pub fn softmax_lane(values: &mut [f64]) {
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for v in values.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in values.iter_mut() {
        *v /= sum;
    }
}

/// Layer normalization of one row of `d = x.len()` values: the mean, the variance of the
/// centred values, then `(x − mean)/√(var + eps)·γ + β`, all in f64.
pub fn layer_norm_row(x: &[f32], gamma: &[f32], beta: &[f32], eps: f64, out: &mut [f32]) {
    let d = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / d;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d;
    let inv = 1.0 / (var + eps).sqrt();
    for (j, (o, &v)) in out.iter_mut().zip(x).enumerate() {
        *o = ((v as f64 - mean) * inv * gamma[j] as f64 + beta[j] as f64) as f32;
    }
}

/// [`layer_norm_row`] over `rows` rows of `d` values, on up to `threads` threads.
///
/// # Safety
/// `x` and `out` (writable, not overlapping `x`) hold `rows·d` floats, `gamma` and `beta`
/// `d` each.
#[allow(clippy::too_many_arguments)]
pub unsafe fn layer_norm(threads: usize, rows: usize, d: usize, x: *const f32, gamma: *const f32, beta: *const f32, eps: f64, out: *mut f32) {
    let threads = if rows * d < MIN_PARALLEL_WORK { 1 } else { threads.clamp(1, rows.max(1)) };
    // SAFETY: tasks read x, gamma and beta and write disjoint rows of out.
    let shared = unsafe { Shared::new((x, gamma, beta, out)) };
    crate::pool::parallel_for(threads, &|t| {
        let (x, gamma, beta, out) = shared.get();
        // SAFETY: the caller's contract: the parameters hold `d` floats.
        let (gamma, beta) = unsafe { (std::slice::from_raw_parts(gamma, d), std::slice::from_raw_parts(beta, d)) };
        for r in rows * t / threads..rows * (t + 1) / threads {
            // SAFETY: row `r < rows` lies inside both buffers, which do not overlap.
            let (xr, or) = unsafe { (std::slice::from_raw_parts(x.add(r * d), d), std::slice::from_raw_parts_mut(out.add(r * d), d)) };
            layer_norm_row(xr, gamma, beta, eps, or);
        }
    });
}

/// The shape of [`attention`]'s problems: `batches` of `q: sq × d`, `k: sk × d`, `v: sk × dv`,
/// each operand's problems contiguous, row-major.
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub batches: usize,
    pub sq: usize,
    pub sk: usize,
    pub d: usize,
    pub dv: usize,
    /// Row `i` attends to keys `0..=i` only.
    pub causal: bool,
}

/// `out[b] = softmax(q[b]·k[b]ᵀ/√d [causal])·v[b]` for every problem `b`, in f64, on up to
/// `threads` threads (by problems and rows of queries).
///
/// # Safety
/// `q`, `k`, `v` hold `batches·sq·d`, `batches·sk·d` and `batches·sk·dv` floats, `out`
/// (writable, overlapping none of them) `batches·sq·dv`.
pub unsafe fn attention(threads: usize, s: AttentionShape, q: *const f32, k: *const f32, v: *const f32, out: *mut f32) {
    let work = s.batches * s.sq * s.sk * (s.d + s.dv);
    // Tasks: whole problems, each cut into a few runs of query rows.
    let per_problem = if s.batches >= threads { 1 } else { threads.div_ceil(s.batches.max(1)) * crate::pool::TASKS_PER_THREAD };
    let per_problem = per_problem.clamp(1, s.sq.max(1));
    let tasks = s.batches * per_problem;
    let threads = if work < MIN_PARALLEL_WORK { 1 } else { threads.clamp(1, tasks.max(1)) };
    // SAFETY: tasks read q, k and v and write disjoint rows of out.
    let shared = unsafe { Shared::new((q, k, v, out)) };
    crate::pool::parallel_tasks(threads, tasks, &|task| {
        let (q, k, v, out) = shared.get();
        let (b, part) = (task / per_problem, task % per_problem);
        let rows = s.sq * part / per_problem..s.sq * (part + 1) / per_problem;
        // SAFETY: problem `b < batches` lies inside every buffer; its rows `rows` of out
        // are this task's alone.
        unsafe {
            let qb = std::slice::from_raw_parts(q.add(b * s.sq * s.d), s.sq * s.d);
            let kb = std::slice::from_raw_parts(k.add(b * s.sk * s.d), s.sk * s.d);
            let vb = std::slice::from_raw_parts(v.add(b * s.sk * s.dv), s.sk * s.dv);
            let ob = std::slice::from_raw_parts_mut(out.add((b * s.sq + rows.start) * s.dv), rows.len() * s.dv);
            attention_rows(s, qb, kb, vb, rows, ob);
        }
    });
}

/// The query rows `rows` of one attention problem into `out` (`rows.len()·dv` floats), with
/// the widest vectors the CPU has: the loops are the same, each lane of a vector one sum.
fn attention_rows(s: AttentionShape, q: &[f32], k: &[f32], v: &[f32], rows: std::ops::Range<usize>, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { attention_rows_avx512(s, q, k, v, rows, out) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { attention_rows_avx2(s, q, k, v, rows, out) };
        }
    }
    attention_rows_body(s, q, k, v, rows, out)
}

/// [`attention_rows_body`] compiled for AVX-512F.
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn attention_rows_avx512(s: AttentionShape, q: &[f32], k: &[f32], v: &[f32], rows: std::ops::Range<usize>, out: &mut [f32]) {
    attention_rows_body(s, q, k, v, rows, out)
}

/// [`attention_rows_body`] compiled for AVX2.
///
/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn attention_rows_avx2(s: AttentionShape, q: &[f32], k: &[f32], v: &[f32], rows: std::ops::Range<usize>, out: &mut [f32]) {
    attention_rows_body(s, q, k, v, rows, out)
}

/// The f64 attention of one problem's query rows. The loops run over one row's sums together
/// (independent lanes, which vectorize) rather than finishing one long chain of additions
/// after another: the same bits either way.
#[inline(always)]
fn attention_rows_body(s: AttentionShape, q: &[f32], k: &[f32], v: &[f32], rows: std::ops::Range<usize>, out: &mut [f32]) {
    let AttentionShape { sk, d, dv, causal, .. } = s;
    let scale = 1.0 / (d as f64).sqrt();
    let empty = empty_sum();
    // kᵀ in f64, so that one query element multiplies a contiguous run of keys.
    let mut kt = vec![0.0f64; d * sk];
    for (j, kj) in k.chunks_exact(d).enumerate() {
        for (t, &e) in kj.iter().enumerate() {
            kt[t * sk + j] = e as f64;
        }
    }
    let mut scores = vec![0.0f64; sk];
    let mut row = vec![0.0f64; dv];
    for (i, o) in rows.zip(out.chunks_exact_mut(dv.max(1))) {
        // Keys up to `i` when causal; the rest are masked out.
        let visible = if causal { (i + 1).min(sk) } else { sk };
        scores.fill(empty);
        for t in 0..d {
            let qt = q[i * d + t] as f64;
            for (s, &kv) in scores[..visible].iter_mut().zip(&kt[t * sk..][..visible]) {
                *s += qt * kv;
            }
        }
        for (j, s) in scores.iter_mut().enumerate() {
            *s = if j < visible { *s * scale } else { f64::NEG_INFINITY };
        }
        softmax_lane(&mut scores);
        row.fill(empty);
        for (j, &p) in scores.iter().enumerate() {
            for (acc, &e) in row.iter_mut().zip(&v[j * dv..][..dv]) {
                *acc += p * e as f64;
            }
        }
        for (o, &acc) in o.iter_mut().zip(&row) {
            *o = acc as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attention of one problem as plainly as it reads: each sum a chain in order.
    fn plain_attention(s: AttentionShape, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
        let scale = 1.0 / (s.d as f64).sqrt();
        let mut out = Vec::new();
        for b in 0..s.batches {
            for i in 0..s.sq {
                let visible = if s.causal { (i + 1).min(s.sk) } else { s.sk };
                let mut scores: Vec<f64> = (0..s.sk)
                    .map(|j| if j < visible { (0..s.d).map(|t| q[(b * s.sq + i) * s.d + t] as f64 * k[(b * s.sk + j) * s.d + t] as f64).sum::<f64>() * scale } else { f64::NEG_INFINITY })
                    .collect();
                softmax_lane(&mut scores);
                for c in 0..s.dv {
                    out.push((0..s.sk).map(|j| scores[j] * v[(b * s.sk + j) * s.dv + c] as f64).sum::<f64>() as f32);
                }
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / (1 << 24) as f32 * 4.0 - 2.0).collect()
    }

    #[test]
    fn attention_has_the_plain_loops_bits_on_every_thread_count() {
        for (batches, sq, sk, d, dv, causal) in [(1, 1, 1, 1, 1, false), (3, 7, 5, 3, 9, true), (2, 33, 17, 16, 8, false), (1, 40, 40, 64, 64, true), (5, 2, 9, 4, 4, false)] {
            let s = AttentionShape { batches, sq, sk, d, dv, causal };
            let (q, k, v) = (values(batches * sq * d, 1), values(batches * sk * d, 2), values(batches * sk * dv, 3));
            let want = plain_attention(s, &q, &k, &v);
            for threads in 1..=3 {
                let mut got = vec![f32::NAN; batches * sq * dv];
                // SAFETY: the buffers hold what the shape says.
                unsafe { attention(threads, s, q.as_ptr(), k.as_ptr(), v.as_ptr(), got.as_mut_ptr()) };
                assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), "{s:?} on {threads} threads");
            }
        }
    }

    #[test]
    fn layer_norm_and_unary_split_without_changing_bits() {
        let (rows, d) = (67, 300);
        let x = values(rows * d, 4);
        let (gamma, beta) = (values(d, 5), values(d, 6));
        let mut want = vec![0.0f32; rows * d];
        for (xr, or) in x.chunks_exact(d).zip(want.chunks_exact_mut(d)) {
            layer_norm_row(xr, &gamma, &beta, 1e-5, or);
        }
        for threads in 1..=3 {
            let mut got = vec![f32::NAN; rows * d];
            // SAFETY: the buffers hold what the sizes say.
            unsafe { layer_norm(threads, rows, d, x.as_ptr(), gamma.as_ptr(), beta.as_ptr(), 1e-5, got.as_mut_ptr()) };
            assert_eq!(got, want, "{threads} threads");
            for f in [Transcendental::Gelu, Transcendental::Sigmoid, Transcendental::LeakyRelu { alpha: 0.1 }] {
                let mut got = vec![f32::NAN; x.len()];
                // SAFETY: both buffers hold `x.len()` floats.
                unsafe { unary(threads, f, x.as_ptr(), got.as_mut_ptr(), x.len()) };
                assert!(got.iter().zip(&x).all(|(g, &v)| g.to_bits() == (f.apply(v as f64) as f32).to_bits()), "{f:?} on {threads} threads");
            }
        }
        for f in [Transcendental::Sigmoid, Transcendental::Tanh, Transcendental::Gelu, Transcendental::Silu, Transcendental::Exp, Transcendental::LeakyRelu { alpha: 0.25 }] {
            let (code, alpha) = f.to_abi();
            assert_eq!(Transcendental::from_abi(code, alpha), Some(f));
        }
        assert_eq!(Transcendental::from_abi(6, 0.0), None);
    }
}
