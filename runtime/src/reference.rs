//! The interpreter's semantics of the float ops a quantized graph must reproduce bit for bit
//! (SPEC §5): GELU and the other transcendental activations, layer normalization, softmax,
//! scaled dot-product attention and the LSTM, computed in f64 and rounded once to f32. They
//! are defined here once and the interpreter evaluates its nodes with these functions. Code
//! generated for a quantized graph calls the activations, layer norm, softmax, attention and
//! the LSTM through the ABI (`nnc_unary_reference`, `nnc_softmax_reference`,
//! `nnc_lstm_reference`, and `nnc_layer_norm` / `nnc_attention` with their `reference` flag)
//! on f32 row-major operands, so the two cannot drift apart and a library compiled ahead of
//! time carries them; fused chains of float ops, other layouts and dtypes still call back
//! into nnc (`compiler/jit/reference.rs`).
//!
//! Faster kernels may not change a single bit here. What they may do: split rows, lanes or
//! attention problems across threads (each is computed alone), and run the same operations
//! on wider vectors (each lane adds its own terms in the same order; Rust never fuses a
//! multiply and an add). The scores and weighted sums of attention and the layer norm's
//! sums start from the empty sum and add their terms in ascending order, as `Iterator::sum`
//! does; the softmax's denominator starts from +0 (it always holds exp(0) = 1, so the sign
//! of an empty start never shows).

use crate::pool::Shared;

#[cfg(target_arch = "x86_64")]
mod x86;

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
            Transcendental::Tanh => libm::tanh(x),
            Transcendental::Gelu => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
            // A NaN is returned as it came: `x·sigmoid(x)` would multiply two NaNs of
            // opposite signs, and which one a multiplication returns is not fixed.
            Transcendental::Silu => if x.is_nan() { x } else { x * sigmoid(x) },
            Transcendental::Exp => exp(x),
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
    1.0 / (1.0 + exp(-v))
}

/// The exponential every definition here uses: the `libm` crate's (FreeBSD's algorithm, in
/// Rust), the same bits on every platform, where the C library's `exp` differs between
/// libraries and versions; `x86::exp8` reproduces it on AVX-512 lanes.
pub fn exp(x: f64) -> f64 {
    libm::exp(x)
}

/// `out[i] = f(x[i])` for `n` floats, on up to `threads` threads; with AVX-512, GELU,
/// sigmoid, SiLU and exp eight at a time through `x86::unary` (GELU's `erf` cost 14 ns an
/// element one at a time), tanh and leaky ReLU one by one.
///
/// # Safety
/// `x` holds `n` floats and `out` (writable; it may be `x` itself) `n`.
pub unsafe fn unary(threads: usize, f: Transcendental, x: *const f32, out: *mut f32, n: usize) {
    let threads = if n < MIN_PARALLEL_WORK { 1 } else { threads.max(1) };
    // SAFETY: tasks read x and write disjoint ranges of out.
    let shared = unsafe { Shared::new((x, out)) };
    crate::pool::parallel_for(threads, &|t| {
        let (x, out) = shared.get();
        let (lo, hi) = (n * t / threads, n * (t + 1) / threads);
        // SAFETY: `lo..hi` lies inside both buffers, and each version runs only where the
        // CPU has its features.
        unsafe {
            #[cfg(target_arch = "x86_64")]
            if x86::vectorized(f) && std::arch::is_x86_feature_detected!("avx512f") {
                return x86::unary(f, x.add(lo), out.add(lo), hi - lo);
            }
            for i in lo..hi {
                *out.add(i) = f.apply(*x.add(i) as f64) as f32;
            }
        }
    });
}

/// `v = exp(v)` for every value, with AVX-512 eight at a time.
fn exp_in_place(values: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F.
        return unsafe { x86::exp_in_place(values) };
    }
    for v in values {
        *v = exp(*v);
    }
}

/// Softmax of one lane in place, in f64: `exp(v − max)` over their sum (added in order).
pub fn softmax_lane(values: &mut [f64]) {
    softmax_lane_body(values)
}

/// [`softmax_lane`], inlined into the attention compiled for each vector width.
#[inline(always)]
fn softmax_lane_body(values: &mut [f64]) {
    // The maximum in eight independent lanes (one chain of `max` waited on itself at every
    // element): any order finds the same value, NaNs skipped as `f64::max` skips them, and
    // where a +0 and a −0 tie, either one gives `v − max` the same exponential.
    let mut lanes = [f64::NEG_INFINITY; 8];
    let mut chunks = values.chunks_exact(8);
    for chunk in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(chunk) {
            *m = m.max(v);
        }
    }
    let max = chunks.remainder().iter().chain(&lanes).copied().fold(f64::NEG_INFINITY, f64::max);
    for v in values.iter_mut() {
        *v -= max;
    }
    exp_in_place(values);
    let mut sum = 0.0;
    for v in values.iter() {
        sum += *v;
    }
    for v in values.iter_mut() {
        *v /= sum;
    }
}

/// Softmax along an axis: `outer × inner` lanes of `len` values `inner` apart (lane `(o, i)`
/// starts at `o·len·inner + i`), each by [`softmax_lane`] in f64 and rounded to f32 once, on
/// up to `threads` threads, each taking whole lanes.
///
/// # Safety
/// `x` and `out` (writable; it may be `x` itself) hold `outer·len·inner` floats.
pub unsafe fn softmax(threads: usize, outer: usize, len: usize, inner: usize, x: *const f32, out: *mut f32) {
    let lanes = outer * inner;
    let threads = if lanes * len < MIN_PARALLEL_WORK { 1 } else { threads.clamp(1, lanes.max(1)) };
    // SAFETY: tasks read x and write the disjoint lanes of out they own; a lane is read
    // whole before it is written, so `out` may be `x`.
    let shared = unsafe { Shared::new((x, out)) };
    crate::pool::parallel_for(threads, &|t| {
        let (x, out) = shared.get();
        let mut lane = vec![0.0f64; len];
        for l in lanes * t / threads..lanes * (t + 1) / threads {
            let first = l / inner * len * inner + l % inner;
            // SAFETY: every index `first + k·inner` with `k < len` lies inside both buffers.
            unsafe {
                for (k, v) in lane.iter_mut().enumerate() {
                    *v = *x.add(first + k * inner) as f64;
                }
                softmax_lane(&mut lane);
                for (k, v) in lane.iter().enumerate() {
                    *out.add(first + k * inner) = *v as f32;
                }
            }
        }
    });
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

/// The sizes of an [`lstm`]: `steps` of `batch` rows of `input` features, `hidden` units.
#[derive(Clone, Copy, Debug)]
pub struct LstmShape {
    pub steps: usize,
    pub batch: usize,
    pub input: usize,
    pub hidden: usize,
}

/// One unidirectional LSTM layer over `x: [steps, batch, input]` from a zero state, PyTorch's
/// gate order (i, f, g, o), every step's hidden state into `out: [steps, batch, hidden]`, in
/// f64: each gate is its bias (the sum of the two, each absent one 0) plus the input's and
/// the previous state's dot products, each summed in order from the empty sum.
///
/// # Panics
/// If a slice is shorter than the shape says (`w_ih: 4·hidden × input`, `w_hh: 4·hidden ×
/// hidden`, biases `4·hidden`).
pub fn lstm(s: LstmShape, x: &[f32], w_ih: &[f32], w_hh: &[f32], b_ih: Option<&[f32]>, b_hh: Option<&[f32]>, out: &mut [f32]) {
    let LstmShape { steps, batch: n, input: i_len, hidden: h } = s;
    let bias = |g: usize| b_ih.map_or(0.0, |b| b[g] as f64) + b_hh.map_or(0.0, |b| b[g] as f64);
    let mut hs = vec![0.0f64; n * h];
    let mut cs = vec![0.0f64; n * h];
    let mut next_h = vec![0.0f64; n * h];
    for t in 0..steps {
        for b in 0..n {
            let xt = &x[(t * n + b) * i_len..][..i_len];
            let hp = &hs[b * h..][..h];
            let gate = |g: usize| -> f64 {
                let wi = &w_ih[g * i_len..][..i_len];
                let wh = &w_hh[g * h..][..h];
                bias(g) + xt.iter().zip(wi).map(|(&a, &w)| a as f64 * w as f64).sum::<f64>() + hp.iter().zip(wh).map(|(&a, &w)| a * w as f64).sum::<f64>()
            };
            for j in 0..h {
                let i_g = sigmoid(gate(j));
                let f_g = sigmoid(gate(h + j));
                let g_g = libm::tanh(gate(2 * h + j));
                let o_g = sigmoid(gate(3 * h + j));
                let c = f_g * cs[b * h + j] + i_g * g_g;
                cs[b * h + j] = c;
                next_h[b * h + j] = o_g * libm::tanh(c);
            }
        }
        std::mem::swap(&mut hs, &mut next_h);
        for (o, &v) in out[t * n * h..][..n * h].iter_mut().zip(&hs) {
            *o = v as f32;
        }
    }
}

/// The shapes of an attention's problems: `batches` independent (batch × head) problems of
/// `q: sq × d`, `k: sk × d`, `v: sk × dv`, row-major ([`attention`] takes each operand's
/// problems contiguous; the runtime's fused kernel, `gemm::attention`, as its `Heads` say).
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub batches: usize,
    pub sq: usize,
    pub sk: usize,
    pub d: usize,
    pub dv: usize,
    /// Row `i` attends to keys `0..=i` only (and to none past `sk`).
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
    let threads = if work < MIN_PARALLEL_WORK { 1 } else { threads.max(1) };
    // Tasks: whole problems, each cut into a few runs of query rows when there are fewer
    // problems than threads (each task converts its problem's k and v to f64 again).
    let per_problem = if s.batches >= threads { 1 } else { threads.div_ceil(s.batches.max(1)) * crate::pool::TASKS_PER_THREAD };
    let per_problem = per_problem.clamp(1, s.sq.max(1));
    let tasks = s.batches * per_problem;
    let threads = threads.clamp(1, tasks.max(1));
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
    attention_rows_body::<8>(s, q, k, v, rows, out)
}

/// [`attention_rows_body`] compiled for AVX-512F.
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn attention_rows_avx512(s: AttentionShape, q: &[f32], k: &[f32], v: &[f32], rows: std::ops::Range<usize>, out: &mut [f32]) {
    attention_rows_body::<32>(s, q, k, v, rows, out)
}

/// [`attention_rows_body`] compiled for AVX2.
///
/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn attention_rows_avx2(s: AttentionShape, q: &[f32], k: &[f32], v: &[f32], rows: std::ops::Range<usize>, out: &mut [f32]) {
    attention_rows_body::<32>(s, q, k, v, rows, out)
}

/// The f64 attention of one problem's query rows. Each score and each output column is one
/// sum in ascending order of its terms; the loops advance `BLOCK` such sums together
/// (independent lanes, which vectorize and stay in registers: with the sums in memory,
/// every multiply-add also loaded and stored its sum) rather than finishing one long chain
/// of additions after another: the same bits either way. 32 for AVX-512 (four registers;
/// 64 measured slower, 1.25 against 1.13 ms for the transformer's attention).
#[inline(always)]
fn attention_rows_body<const BLOCK: usize>(s: AttentionShape, q: &[f32], k: &[f32], v: &[f32], rows: std::ops::Range<usize>, out: &mut [f32]) {
    let AttentionShape { sk, d, dv, causal, .. } = s;
    let scale = 1.0 / (d as f64).sqrt();
    let empty = empty_sum();
    // kᵀ and v in f64, so that one query element (one probability) multiplies a contiguous
    // run of keys (of value columns).
    let mut kt = vec![0.0f64; d * sk];
    for (j, kj) in k.chunks_exact(d).enumerate() {
        for (t, &e) in kj.iter().enumerate() {
            kt[t * sk + j] = e as f64;
        }
    }
    let v64: Vec<f64> = v.iter().map(|&e| e as f64).collect();
    let mut scores = vec![0.0f64; sk];
    let mut row = vec![0.0f64; dv];
    for (i, o) in rows.zip(out.chunks_exact_mut(dv.max(1))) {
        // Keys up to `i` when causal; the rest are masked out.
        let visible = if causal { (i + 1).min(sk) } else { sk };
        let qi = &q[i * d..][..d];
        let mut j0 = 0;
        while j0 + BLOCK <= visible {
            let mut acc = [empty; BLOCK];
            for (t, &qt) in qi.iter().enumerate() {
                let (qt, keys) = (qt as f64, &kt[t * sk + j0..][..BLOCK]);
                for (a, &kv) in acc.iter_mut().zip(keys) {
                    *a += qt * kv;
                }
            }
            scores[j0..j0 + BLOCK].copy_from_slice(&acc);
            j0 += BLOCK;
        }
        scores[j0..visible].fill(empty);
        for (t, &qt) in qi.iter().enumerate() {
            let qt = qt as f64;
            for (s, &kv) in scores[j0..visible].iter_mut().zip(&kt[t * sk + j0..][..visible - j0]) {
                *s += qt * kv;
            }
        }
        for (j, s) in scores.iter_mut().enumerate() {
            *s = if j < visible { *s * scale } else { f64::NEG_INFINITY };
        }
        softmax_lane_body(&mut scores);
        let mut c0 = 0;
        while c0 + BLOCK <= dv {
            let mut acc = [empty; BLOCK];
            for (j, &p) in scores.iter().enumerate() {
                for (a, &e) in acc.iter_mut().zip(&v64[j * dv + c0..][..BLOCK]) {
                    *a += p * e;
                }
            }
            row[c0..c0 + BLOCK].copy_from_slice(&acc);
            c0 += BLOCK;
        }
        row[c0..].fill(empty);
        for (j, &p) in scores.iter().enumerate() {
            for (acc, &e) in row[c0..].iter_mut().zip(&v64[j * dv + c0..][..dv - c0]) {
                *acc += p * e;
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
        for (batches, sq, sk, d, dv, causal) in [(1, 1, 1, 1, 1, false), (3, 7, 5, 3, 9, true), (2, 33, 17, 16, 8, false), (1, 40, 40, 64, 64, true), (5, 2, 9, 4, 4, false), (2, 9, 70, 37, 41, true)] {
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

    /// Assert that `vector` gives `scalar`'s bits for `x` in each of `lanes`, the other lanes
    /// holding `others` (arguments of other paths).
    #[cfg(target_arch = "x86_64")]
    fn lanes_agree(name: &str, vector: fn([f64; 8]) -> [f64; 8], scalar: fn(f64) -> f64, others: [f64; 8], lanes: &[usize], x: f64) {
        for &lane in lanes {
            let mut v = others;
            v[lane] = x;
            assert_eq!(vector(v)[lane].to_bits(), scalar(x).to_bits(), "{name}({x:e}) ({:#x}) in lane {lane}", x.to_bits());
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn exp8_has_the_bits_of_libm() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("skipped: no AVX-512F");
            return;
        }
        // Each argument in every lane position, beside seven others of other paths.
        let check = |x: f64| lanes_agree("exp", x86::exp8_of, libm::exp, [0.3, -800.0, 1e-30, 2.0, f64::NAN, 710.0, -1.0, 700.0], &[0, 1, 2, 3, 4, 5, 6, 7], x);
        // Every path's edges: the reduction thresholds, overflow, underflow, subnormal
        // results, tiny arguments, infinities, NaN and signed zeros.
        for x in [0.0, -0.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, f64::MIN_POSITIVE, 1e-300, -1e-300, 709.782_712_893_384, 709.7827128933841, 709.78, -708.396_418_532_264_1, -708.4, -745.133_219_101_941_1, -745.1332191019412, -745.14, -740.0, 1023.0 * std::f64::consts::LN_2, 0.5 * std::f64::consts::LN_2, 1.5 * std::f64::consts::LN_2, f64::MAX, f64::MIN] {
            for d in -3i64..=3 {
                check(f64::from_bits((x.to_bits() as i64).wrapping_add(d) as u64));
            }
        }
        // Every high word's threshold, with low words around them.
        for hx in [0x3fd62e42u64, 0x3ff0a2b2, 0x3e300000, 0x4086232b] {
            for lo in [0u64, 1, 0xfefa39ef, 0xffffffff] {
                for sign in [0, 1u64 << 63] {
                    for step in [0u64, 1 << 32] {
                        check(f64::from_bits((((hx << 32) | lo) + step) | sign));
                        check(f64::from_bits(((hx << 32) | lo).wrapping_sub(step) | sign));
                    }
                }
            }
        }
        // A sweep of bit patterns (every exponent, many mantissas), and of the range the
        // softmax uses.
        let mut b = 0x9e3779b97f4a7c15u64;
        for i in 0..1u64 << 21 {
            b ^= b << 13;
            b ^= b >> 7;
            b ^= b << 17;
            check(f64::from_bits(b));
            check(-(i as f64) * 3.7e-4);
            check((i as f64 - 1048576.0) * 7.3e-4);
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn erf8_has_the_bits_of_libm() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("skipped: no AVX-512F");
            return;
        }
        let check = |x: f64| lanes_agree("erf", x86::erf8_of, libm::erf, [0.3, -0.9, 1e-30, 2.0, f64::NAN, 7.0, -1.3, 4.0], &[0, 5], x);
        for x in [0.0, -0.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, f64::MIN_POSITIVE, 1e-300, 0.84375, 1.25, 1.0 / 0.35, 6.0, 28.0, f64::MAX] {
            for d in -3i64..=3 {
                check(f64::from_bits((x.to_bits() as i64).wrapping_add(d) as u64));
                check(-f64::from_bits((x.to_bits() as i64).wrapping_add(d) as u64));
            }
        }
        for hx in [0x3feb0000u64, 0x3e300000, 0x3ff40000, 0x4006db6d, 0x40180000, 0x7ff00000] {
            for lo in [0u64, 1, 0x80000000, 0xffffffff] {
                for sign in [0, 1u64 << 63] {
                    check(f64::from_bits((hx << 32) | lo | sign));
                    check(f64::from_bits(((hx << 32) | lo).wrapping_sub(1 << 32) | sign));
                }
            }
        }
        let mut b = 0x2545f4914f6cdd1du64;
        for i in 0..1u64 << 21 {
            b ^= b << 13;
            b ^= b >> 7;
            b ^= b << 17;
            check(f64::from_bits(b));
            // GELU's arguments: dequantized products and their like, |x| up to 8.
            check((i as f64 - 1048576.0) * 7.7e-6);
        }
    }

    #[test]
    fn layer_norm_and_unary_split_without_changing_bits() {
        // Above `MIN_PARALLEL_WORK`, so that two and three threads split the work.
        let (rows, d) = (131, 300);
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
            for f in [Transcendental::Gelu, Transcendental::Sigmoid, Transcendental::Silu, Transcendental::Exp, Transcendental::Tanh, Transcendental::LeakyRelu { alpha: 0.1 }] {
                // An odd length (a short last block), and in place.
                let mut got = x[..x.len() - 3].to_vec();
                // SAFETY: the buffer holds `got.len()` floats, read and written in place.
                unsafe { unary(threads, f, got.as_ptr(), got.as_mut_ptr(), got.len()) };
                assert!(got.iter().zip(&x).all(|(g, &v)| g.to_bits() == (f.apply(v as f64) as f32).to_bits()), "{f:?} on {threads} threads");
            }
        }
        for f in [Transcendental::Sigmoid, Transcendental::Tanh, Transcendental::Gelu, Transcendental::Silu, Transcendental::Exp, Transcendental::LeakyRelu { alpha: 0.25 }] {
            let (code, alpha) = f.to_abi();
            assert_eq!(Transcendental::from_abi(code, alpha), Some(f));
        }
        assert_eq!(Transcendental::from_abi(6, 0.0), None);
    }

    #[test]
    fn softmax_along_any_axis_splits_without_changing_bits() {
        // Lanes `inner` apart (a middle axis), past `MIN_PARALLEL_WORK` so that threads split
        // them, and in place.
        let (outer, len, inner) = (15, 37, 61);
        let x = values(outer * len * inner, 8);
        let mut want = vec![0.0f32; x.len()];
        for o in 0..outer {
            for i in 0..inner {
                let at = |k: usize| (o * len + k) * inner + i;
                let mut lane: Vec<f64> = (0..len).map(|k| x[at(k)] as f64).collect();
                softmax_lane(&mut lane);
                for (k, v) in lane.iter().enumerate() {
                    want[at(k)] = *v as f32;
                }
            }
        }
        for threads in 1..=3 {
            let mut got = x.clone();
            // SAFETY: the buffer holds `outer·len·inner` floats, read and written in place.
            unsafe { softmax(threads, outer, len, inner, got.as_ptr(), got.as_mut_ptr()) };
            assert_eq!(got, want, "{threads} threads");
        }
    }
}
