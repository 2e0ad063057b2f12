//! The entry points of the kernels that work row by row: dense layers as dot products,
//! fused attention, LSTM steps, layer normalization, and the interpreter's transcendental
//! activations and LSTM layer ([`crate::reference`]).

use crate::gemm::Epilogue;

call_descriptor! {
    /// A dense layer on few rows as dot products ([`crate::gemm::gemv`]): `x: rows × features`,
    /// weights `units × features` row-major, or blocked (`gemv::pack_blocked`) if `blocked`
    /// is nonzero, `out: rows × units`, then the epilogue (bias per unit, residual shaped like
    /// `out`, activation), on up to `threads` threads.
    GemvCall / GemvCallFields {
        rows: i64,
        units: i64,
        features: i64,
        x: *const f32,
        w: *const f32,
        blocked: i64,
        out: *mut f32,
        threads: i64,
        /// Null, or `units` floats.
        bias: *const f32,
        /// Null, or `rows × units` floats.
        residual: *const f32,
        act: i64,
    }
}

/// The product of [`GemvCall`].
///
/// # Safety
/// `call` points to a valid [`GemvCall`] whose buffers are as `gemv::gemv` requires.
#[no_mangle]
pub unsafe extern "C" fn nnc_gemv(call: *const GemvCall) {
    // SAFETY: the caller passes a valid descriptor.
    let g = unsafe { *call };
    let u = |v: i64| v.max(0) as usize;
    let ep = Epilogue::from_abi(g.bias, 0, g.residual, g.act);
    let layout = if g.blocked != 0 { crate::gemm::gemv::WeightLayout::Blocked } else { crate::gemm::gemv::WeightLayout::RowMajor };
    // SAFETY: the descriptor's buffers are valid as the contract above says.
    unsafe { crate::gemm::gemv::gemv(u(g.threads).max(1), u(g.rows), u(g.units), u(g.features), g.x, g.w, layout, g.out, ep) }
}

call_descriptor! {
    /// Scaled dot-product attention over `batches` (batch × head) problems, row-major, each
    /// operand's problems contiguous or heads interleaved in rows: `out[sq, dv] = softmax(q[sq, d]·k[sk, d]ᵀ/√d [causal])·v[sk, dv]`
    /// ([`crate::gemm::attention`]), on up to `threads` threads. With `reference` nonzero,
    /// the interpreter's f64 attention ([`crate::reference::attention`]; contiguous problems
    /// only: the head counts must be 1).
    AttentionCall / AttentionCallFields {
        batches: i64,
        sq: i64,
        sk: i64,
        d: i64,
        dv: i64,
        q: *const f32,
        k: *const f32,
        v: *const f32,
        out: *mut f32,
        /// 1: row `i` attends to keys `0..=i` only.
        causal: i64,
        threads: i64,
        /// Per operand (`q`, `k`, `v`, `out`), the problems that share each row (heads
        /// interleaved, `[batch, rows, heads, width]`); 1: contiguous.
        heads_q: i64,
        heads_k: i64,
        heads_v: i64,
        heads_out: i64,
        /// 1: compute with the interpreter's bits.
        reference: i64,
    }
}

/// The attention of [`AttentionCall`].
///
/// # Safety
/// `call` points to a valid [`AttentionCall`] whose buffers are as
/// `attention::attention` requires.
#[no_mangle]
pub unsafe extern "C" fn nnc_attention(call: *const AttentionCall) {
    // SAFETY: the caller passes a valid descriptor.
    let g = unsafe { *call };
    let u = |v: i64| v.max(0) as usize;
    let shape = crate::reference::AttentionShape { batches: u(g.batches), sq: u(g.sq), sk: u(g.sk), d: u(g.d), dv: u(g.dv), causal: g.causal != 0 };
    if g.reference != 0 {
        if [g.heads_q, g.heads_k, g.heads_v, g.heads_out].iter().any(|&h| h > 1) {
            crate::gemm::refuse_call("nnc_attention: the reference attention reads contiguous problems only");
        }
        // SAFETY: the descriptor's buffers are valid as the contract above says.
        return unsafe { crate::reference::attention(u(g.threads).max(1), shape, g.q, g.k, g.v, g.out) };
    }
    let heads = [g.heads_q, g.heads_k, g.heads_v, g.heads_out].map(|h| crate::gemm::attention::Heads(u(h).max(1)));
    let a = crate::gemm::attention::Attention { shape, scale: 1.0 / (u(g.d).max(1) as f32).sqrt(), heads };
    // SAFETY: the descriptor's buffers are valid as the contract above says.
    unsafe { crate::gemm::attention::attention(u(g.threads).max(1), a, g.q, g.k, g.v, g.out) }
}

call_descriptor! {
    /// One LSTM step of one batch row ([`crate::gemm::gemv::accumulate_rows`], then
    /// [`crate::gemm::gemv::lstm_cell`]): `gates = bias + x·W_ihᵀ + h_prev·W_hhᵀ` over the
    /// transposed weights (`wih: [len_x][4·hidden]`, `whh: [hidden][4·hidden]`), then the
    /// cell update into `cell` and the new hidden state into `out`.
    LstmStepCall / LstmStepCallFields {
        hidden: i64,
        bias: *const f32,
        x: *const f32,
        wih: *const f32,
        len_x: i64,
        h_prev: *const f32,
        whh: *const f32,
        /// `4·hidden` floats of scratch.
        gates: *mut f32,
        cell: *mut f32,
        out: *mut f32,
    }
}

/// The step of [`LstmStepCall`].
///
/// # Safety
/// `call` points to a valid [`LstmStepCall`] whose buffers hold what its fields say.
#[no_mangle]
pub unsafe extern "C" fn nnc_lstm_step(call: *const LstmStepCall) {
    // SAFETY: the caller passes a valid descriptor.
    let g = unsafe { *call };
    let h = g.hidden.max(0) as usize;
    let terms = [crate::gemm::gemv::Term { v: g.x, w: g.wih, len: g.len_x.max(0) as usize }, crate::gemm::gemv::Term { v: g.h_prev, w: g.whh, len: h }];
    // SAFETY: the descriptor's buffers are valid as the contract above says.
    unsafe {
        crate::gemm::gemv::accumulate_rows(4 * h, g.bias, &terms, g.gates);
        crate::gemm::gemv::lstm_cell(h, g.gates, g.cell, g.out);
    }
}

call_descriptor! {
    /// A whole LSTM layer with the interpreter's bits ([`crate::reference::lstm`]): `x:
    /// [steps, batch, input]`, `w_ih: [4·hidden, input]`, `w_hh: [4·hidden, hidden]`, the
    /// biases (`4·hidden` each) or null, every step's hidden state into `out`.
    LstmReferenceCall / LstmReferenceCallFields {
        steps: i64,
        batch: i64,
        input: i64,
        hidden: i64,
        x: *const f32,
        w_ih: *const f32,
        w_hh: *const f32,
        /// Null, or `4·hidden` floats.
        b_ih: *const f32,
        /// Null, or `4·hidden` floats.
        b_hh: *const f32,
        /// `steps·batch·hidden` floats, overlapping none of the others.
        out: *mut f32,
    }
}

/// The layer of [`LstmReferenceCall`].
///
/// # Safety
/// `call` points to a valid [`LstmReferenceCall`] whose buffers hold what its fields say.
#[no_mangle]
pub unsafe extern "C" fn nnc_lstm_reference(call: *const LstmReferenceCall) {
    // SAFETY: the caller passes a valid descriptor.
    let g = unsafe { *call };
    let u = |v: i64| v.max(0) as usize;
    let s = crate::reference::LstmShape { steps: u(g.steps), batch: u(g.batch), input: u(g.input), hidden: u(g.hidden) };
    let four_h = 4 * s.hidden;
    // SAFETY: the descriptor's buffers hold what the shape says, and `out` overlaps none.
    unsafe {
        let slice = |p: *const f32, len: usize| std::slice::from_raw_parts(p, len);
        let bias = |p: *const f32| (!p.is_null()).then(|| slice(p, four_h));
        let out = std::slice::from_raw_parts_mut(g.out, s.steps * s.batch * s.hidden);
        crate::reference::lstm(s, slice(g.x, s.steps * s.batch * s.input), slice(g.w_ih, four_h * s.input), slice(g.w_hh, four_h * s.hidden), bias(g.b_ih), bias(g.b_hh), out);
    }
}

call_descriptor! {
    /// Layer normalization over the last axis ([`crate::gemm::norm::layer_norm`]): `rows` rows of
    /// `d` values, scale `gamma` and shift `beta` (`d` each), on up to `threads` threads. With
    /// `reference` nonzero, the interpreter's f64 normalization
    /// ([`crate::reference::layer_norm`]; `out` must not overlap `x`).
    LayerNormCall / LayerNormCallFields {
        rows: i64,
        d: i64,
        x: *const f32,
        gamma: *const f32,
        beta: *const f32,
        out: *mut f32,
        /// The epsilon, as the bits of an f64.
        eps_bits: i64,
        threads: i64,
        /// 1: compute with the interpreter's bits.
        reference: i64,
    }
}

/// The normalization of [`LayerNormCall`].
///
/// # Safety
/// `call` points to a valid [`LayerNormCall`] whose buffers are as `norm::layer_norm`
/// requires.
#[no_mangle]
pub unsafe extern "C" fn nnc_layer_norm(call: *const LayerNormCall) {
    // SAFETY: the caller passes a valid descriptor.
    let g = unsafe { *call };
    let u = |v: i64| v.max(0) as usize;
    let eps = f64::from_bits(g.eps_bits as u64);
    // SAFETY: the descriptor's buffers are valid as the contract above says.
    unsafe {
        if g.reference != 0 {
            crate::reference::layer_norm(u(g.threads).max(1), u(g.rows), u(g.d), g.x, g.gamma, g.beta, eps, g.out)
        } else {
            crate::gemm::norm::layer_norm(u(g.threads).max(1), u(g.rows), u(g.d), g.x, g.gamma, g.beta, eps as f32, g.out)
        }
    }
}

call_descriptor! {
    /// `out[i] = f(x[i])` for `n` floats with the interpreter's bits
    /// ([`crate::reference::unary`]): `f` the [`crate::reference::Transcendental`] of code
    /// `kind` (and `alpha_bits`, an f64's bits), on up to `threads` threads.
    UnaryReferenceCall / UnaryReferenceCallFields {
        x: *const f32,
        /// `n` floats; it may be `x` itself.
        out: *mut f32,
        n: i64,
        kind: i64,
        alpha_bits: i64,
        threads: i64,
    }
}

/// The activation of [`UnaryReferenceCall`].
///
/// # Safety
/// `call` points to a valid [`UnaryReferenceCall`] whose buffers hold `n` floats each.
#[no_mangle]
pub unsafe extern "C" fn nnc_unary_reference(call: *const UnaryReferenceCall) {
    // SAFETY: the caller passes a valid descriptor.
    let g = unsafe { *call };
    let Some(f) = crate::reference::Transcendental::from_abi(g.kind, f64::from_bits(g.alpha_bits as u64)) else {
        crate::gemm::refuse_call("nnc_unary_reference: unknown activation code");
    };
    // SAFETY: the descriptor's buffers are valid as the contract above says.
    unsafe { crate::reference::unary(g.threads.max(1) as usize, f, g.x, g.out, g.n.max(0) as usize) }
}

call_descriptor! {
    /// Softmax along an axis with the interpreter's bits ([`crate::reference::softmax`]):
    /// `outer × inner` lanes of `len` values `inner` apart, on up to `threads` threads.
    SoftmaxReferenceCall / SoftmaxReferenceCallFields {
        x: *const f32,
        /// `outer·len·inner` floats; it may be `x` itself.
        out: *mut f32,
        outer: i64,
        len: i64,
        inner: i64,
        threads: i64,
    }
}

/// The softmax of [`SoftmaxReferenceCall`].
///
/// # Safety
/// `call` points to a valid [`SoftmaxReferenceCall`] whose buffers hold `outer·len·inner`
/// floats each.
#[no_mangle]
pub unsafe extern "C" fn nnc_softmax_reference(call: *const SoftmaxReferenceCall) {
    // SAFETY: the caller passes a valid descriptor.
    let g = unsafe { *call };
    let u = |v: i64| v.max(0) as usize;
    // SAFETY: the descriptor's buffers are valid as the contract above says.
    unsafe { crate::reference::softmax(u(g.threads).max(1), u(g.outer), u(g.len), u(g.inner), g.x, g.out) }
}
