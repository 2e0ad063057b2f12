//! The LSTM: gate pre-activations as vector accumulations over transposed weights (packed at
//! compile time, or transposed into scratch on every run; with microkernels on, summed by the
//! runtime at full vector width), gates vectorized along hidden units.

use crate::jit::builder::{KernelBuilder, F32, F32X4, LANES};
use crate::jit::epilogue::Arg;
use crate::jit::memplan::Loc;
use cranelift_codegen::ir::{InstBuilder, Value};

/// Gate-unit vectors accumulated in registers at once.
pub(crate) const CHUNK_VECTORS: i64 = 8;

/// Where the transposed weights come from.
pub enum Weights {
    /// Packed at compile time ([`pack_weights`]): `W_ihᵀ`, `W_hhᵀ`, bias.
    Packed([crate::jit::builder::DataAddr; 3]),
    /// The row-major operands, transposed into scratch on every run.
    Operands,
}

/// `dst[c][r] = src[r][c]` for a row-major `rows × cols` source.
pub(crate) fn transpose(k: &mut KernelBuilder, src: Value, dst: Value, rows: i64, cols: i64) {
    k.for_const(0, rows, |k, r| {
        let row = k.b.ins().imul_imm_s(r, cols);
        let row = k.elem(src, row);
        k.for_const(0, cols, |k, c| {
            let v = k.load(F32, row, c);
            let d = k.b.ins().imul_imm_s(c, rows);
            let d = k.b.ins().iadd(d, r);
            k.store(v, dst, d);
        });
    });
}

/// `out[0..m] = bias + Σ_k vec_a[k]·wa[k, ..] + Σ_k vec_b[k]·wb[k, ..]`: the `m` columns in
/// chunks of eight vectors held in registers, then single vectors, then single floats.
#[allow(clippy::too_many_arguments)]
/// `constant`: the weights are constants (not scratch this kernel wrote), so their loads may
/// move next to their use.
pub(crate) fn accumulate_rows(k: &mut KernelBuilder, bias: Value, terms: [(Value, Value, i64); 2], m: i64, out: Value, constant: bool) {
    let chunk = CHUNK_VECTORS * LANES;
    let columns = |k: &mut KernelBuilder, j0: Value, width: i64, ty: cranelift_codegen::ir::Type| {
        let lanes = if ty == F32 { 1 } else { LANES };
        let b0 = k.elem(bias, j0);
        let accs: Vec<_> = (0..width / lanes).map(|v| {
            let init = k.load_at(ty, b0, v * lanes);
            k.var(ty, init)
        }).collect();
        for (vec, w, len) in terms {
            let w0 = k.elem(w, j0);
            k.for_const(0, len, |k, p| {
                let s = k.load(F32, vec, p);
                let s = if ty == F32 { s } else { k.b.ins().splat(ty, s) };
                let row_off = k.b.ins().imul_imm_s(p, m);
                let row = k.elem(w0, row_off);
                for (v, &acc) in accs.iter().enumerate() {
                    let wv = if constant { k.load_input_at(ty, row, v as i64 * lanes) } else { k.load_at(ty, row, v as i64 * lanes) };
                    let cur = k.b.use_var(acc);
                    let next = k.fma(s, wv, cur);
                    k.b.def_var(acc, next);
                }
            });
        }
        let o0 = k.elem(out, j0);
        for (v, &acc) in accs.iter().enumerate() {
            let r = k.b.use_var(acc);
            let at = k.int(v as i64 * lanes);
            k.store(r, o0, at);
        }
    };
    let full = m / chunk;
    k.for_const(0, full, |k, c| {
        let j0 = k.b.ins().imul_imm_s(c, chunk);
        columns(k, j0, chunk, F32X4);
    });
    let mut j = full * chunk;
    while j + LANES <= m {
        let j0 = k.int(j);
        columns(k, j0, LANES, F32X4);
        j += LANES;
    }
    while j < m {
        let j0 = k.int(j);
        columns(k, j0, 1, F32);
        j += 1;
    }
}

/// The whole sequence: `args` are x `[T, N, I]`, `W_ih`, `W_hh` and optionally `b_ih`,
/// `b_hh` (row-major).
pub fn lstm(k: &mut KernelBuilder, hidden: usize, args: &[Arg], out: Arg, scratch: Loc, weights: Weights) {
    let [t_len, n, i_len] = args[0].ty.shape[..] else { unreachable!("rank checked") };
    let (t_len, n, i_len, h) = (t_len as i64, n as i64, i_len as i64, hidden as i64);
    let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
    let gates = k.ptr(scratch);
    let at = |k: &mut KernelBuilder, offset: i64| {
        let off = k.int(offset);
        k.elem(gates, off)
    };
    let cell = at(k, 4 * h);
    let h0 = at(k, 4 * h + n * h);
    let constant = matches!(weights, Weights::Packed(_));
    let [wih, whh, bias] = match weights {
        Weights::Packed(addrs) => addrs.map(|a| k.data_addr(a)),
        Weights::Operands => {
            let wih = at(k, 4 * h + 2 * n * h);
            let whh = at(k, 4 * h + 2 * n * h + i_len * 4 * h);
            let bias = at(k, 4 * h + 2 * n * h + (i_len + h) * 4 * h);
            for (src, dst, cols) in [(args[1], wih, i_len), (args[2], whh, h)] {
                let src = k.ptr(src.loc);
                transpose(k, src, dst, 4 * h, cols);
            }
            let biases: Vec<Value> = args[3..].iter().map(|b| k.ptr(b.loc)).collect();
            k.for_vectorized(4 * h, |k, i, ty| {
                let mut v = k.c(ty, 0.0);
                for &b in &biases {
                    let bv = k.load(ty, b, i);
                    v = k.b.ins().fadd(v, bv);
                }
                k.store(v, bias, i);
            });
            [wih, whh, bias]
        }
    };
    k.for_vectorized(2 * n * h, |k, i, ty| {
        let z = k.c(ty, 0.0);
        k.store(z, cell, i);
    });
    k.for_const(0, t_len, |k, t| {
        k.for_const(0, n, |k, b| {
            let xo = k.b.ins().imul_imm_s(t, n * i_len);
            let xb = k.b.ins().imul_imm_s(b, i_len);
            let xo = k.b.ins().iadd(xo, xb);
            let xt = k.elem(x, xo);
            // h_{t-1}: the previous step's output row, or the zero state at t = 0 (chosen
            // before any load: at t = 0 `prev_row` points before the output).
            let prev_t = k.b.ins().iadd_imm_s(t, -1);
            let ho = k.b.ins().imul_imm_s(prev_t, n * h);
            let hb = k.b.ins().imul_imm_s(b, h);
            let ho = k.b.ins().iadd(ho, hb);
            let prev_row = k.elem(o, ho);
            let zero = k.int(0);
            let first = k.b.ins().icmp(cranelift_codegen::ir::condcodes::IntCC::Equal, t, zero);
            let h0_row = k.elem(h0, hb);
            let hprev = k.b.ins().select(first, h0_row, prev_row);
            let c_row = k.elem(cell, hb);
            let out_off = k.b.ins().imul_imm_s(t, n * h);
            let out_off = k.b.ins().iadd(out_off, hb);
            let out_row = k.elem(o, out_off);
            if k.runtime.is_some() {
                // The runtime holds 256 gate columns in AVX-512 registers through the sums,
                // and computes the gates at full width.
                k.lstm_step(h, bias, (xt, wih, i_len), (hprev, whh), gates, c_row, out_row);
                return;
            }
            accumulate_rows(k, bias, [(xt, wih, i_len), (hprev, whh, h)], 4 * h, gates, constant);
            // Gates (i, f, g, o) and the cell update, as vectors along the hidden units.
            k.for_vectorized(h, |k, j, ty| {
                let gate = |k: &mut KernelBuilder, g: i64| {
                    let idx = k.b.ins().iadd_imm_s(j, g * h);
                    k.load(ty, gates, idx)
                };
                let (gi, gf, gg, go) = (gate(k, 0), gate(k, 1), gate(k, 2), gate(k, 3));
                let i_g = k.sigmoid(ty, gi);
                let f_g = k.sigmoid(ty, gf);
                let g_g = k.tanh(ty, gg);
                let o_g = k.sigmoid(ty, go);
                let c_prev = k.load(ty, c_row, j);
                let ig = k.b.ins().fmul(i_g, g_g);
                let c_new = k.fma(f_g, c_prev, ig);
                k.store(c_new, c_row, j);
                let tc = k.tanh(ty, c_new);
                let hv = k.b.ins().fmul(o_g, tc);
                k.store(hv, out_row, j);
            });
        });
    });
}
