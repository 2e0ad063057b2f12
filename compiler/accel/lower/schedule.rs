//! The tile schedule of one GEMM on the array: scratchpad and accumulator tiles, loads one
//! tile ahead (double buffering), computes and stores, ordered by VTA-style dependency
//! tokens between the load, compute and store queues.

use crate::accel::config::Dataflow;
use crate::accel::isa::{Deps, DramType, Insn};
use crate::accel::program::*;
use crate::accel::tiling::Tiles;
use super::gemm::ZeroBlocks;
use super::{Lowering, MAX_INSTRUCTIONS};

/// Folds the schedule left out because their weights are zero.
#[derive(Default)]
pub(super) struct Skipped {
    pub(super) folds: u64,
    pub(super) macs: u64,
    /// Whole input tiles left out (their loads too).
    pub(super) tiles: u64,
}

/// One GEMM the array runs: `C[m × n] = A[m × k] · B[k × n]` (+ bias, through `act`).
pub(super) struct GemmInstance {
    pub(super) a: ASource,
    /// B, row-major `k × n` (row stride `b_stride`).
    pub(super) b: u64,
    pub(super) b_stride: u32,
    pub(super) b_type: DramType,
    pub(super) c: u64,
    pub(super) c_row_stride: u32,
    pub(super) c_col_stride: u32,
    /// Global channel of column 0, for per-channel tables.
    pub(super) c0: u32,
}

pub(super) enum ASource {
    Matrix { dram: u64, stride: u32, dtype: DramType },
    Im2col { dram: u64, conv: u32 },
}


/// One input tile of the schedule: which instance and block, and its spad slot.
pub(super) struct InputTile {
    pub(super) inst: usize,
    pub(super) m0: usize,
    pub(super) tm: usize,
    pub(super) k0: usize,
    pub(super) tk: usize,
    pub(super) n0: usize,
    pub(super) tn: usize,
    /// Index of the output tile it contributes to.
    pub(super) out: usize,
    pub(super) first_k: bool,
    pub(super) last_k: bool,
}

/// The double-buffered tile loop of one GEMM: loads run one tile ahead of compute, stores
/// drain each finished output tile. Tokens express the four hazards (see `isa`).
///
/// With `zeros`, a fold whose block of B is all zero is left out: adding its products (all
/// zero, unless an input is infinite or NaN, where the full product gives NaN) changes no
/// sum. Two kinds are kept: the fold that starts an accumulation (its
/// `accumulate = false` clears the accumulators), unless a later fold of the same
/// accumulators can take that role; and one fold per tile, which carries the tile's tokens.
pub(super) fn emit_gemm(lw: &mut Lowering, name: &str, [m, k, n]: [usize; 3], t: &Tiles, instances: &[GemmInstance], act: u32, zeros: Option<&ZeroBlocks>) -> Result<Skipped, LowerError> {
    let mut skipped = Skipped::default();
    let (rows, cols) = (lw.config.rows as usize, lw.config.cols as usize);
    let spad_slot = (lw.config.scratchpad_elems() / 2) as usize;
    let acc_slot = (lw.config.accumulator_elems() / 2) as usize;
    let mut tiles = Vec::new();
    let mut out_count = 0;
    for inst in 0..instances.len() {
        for n0 in (0..n).step_by(t.tn) {
            for m0 in (0..m).step_by(t.tm) {
                for k0 in (0..k).step_by(t.tk) {
                    if tiles.len() >= MAX_INSTRUCTIONS {
                        return Err(LowerError::TooBig { what: format!("more than {MAX_INSTRUCTIONS} tiles in `{name}`"), limit: format!("{MAX_INSTRUCTIONS} instructions") });
                    }
                    tiles.push(InputTile { inst, m0, tm: t.tm.min(m - m0), k0, tk: t.tk.min(k - k0), n0, tn: t.tn.min(n - n0), out: out_count, first_k: k0 == 0, last_k: k0 + t.tk >= k });
                }
                out_count += 1;
            }
        }
    }
    // A tile whose whole block of B is zero, between the first and the last of its output's
    // reduction, does nothing: it is left out entirely, so neither its weights nor its
    // activations are loaded. (The first clears the accumulators, the last stores them.)
    if let Some(z) = zeros {
        tiles.retain(|t: &InputTile| {
            let idle = !t.first_k && !t.last_k && z.is_zero(t.inst, t.k0, t.tk, t.n0, t.tn);
            if idle {
                // Folds as `emit_compute` counts them: ws by (k, n) blocks, os by (m, n).
                skipped.folds += match lw.config.dataflow {
                    Dataflow::Ws => t.tk.div_ceil(rows) * t.tn.div_ceil(cols),
                    Dataflow::Os => t.tm.div_ceil(rows) * t.tn.div_ceil(cols),
                } as u64;
                skipped.tiles += 1;
                skipped.macs += (t.tm * t.tk * t.tn) as u64;
            }
            !idle
        });
    }
    let folds_per_tile = |t: &InputTile| match lw.config.dataflow {
        Dataflow::Ws => 2 * t.tk.div_ceil(rows) * t.tn.div_ceil(cols),
        Dataflow::Os => t.tm.div_ceil(rows) * t.tn.div_ceil(cols),
    };
    let expected = tiles.iter().map(|t| 3 + folds_per_tile(t)).fold(lw.insns.len(), usize::saturating_add);
    if expected > MAX_INSTRUCTIONS {
        return Err(LowerError::TooBig { what: format!("{expected} instructions by `{name}`"), limit: format!("{MAX_INSTRUCTIONS}") });
    }
    let check = |_: &Lowering, insn: Insn| -> Result<Insn, LowerError> {
        if insn.fits_encoding() {
            Ok(insn)
        } else {
            Err(LowerError::TooLarge { node: name.to_string(), what: format!("instruction `{insn}`") })
        }
    };
    let emit_loads = |lw: &mut Lowering, i: usize, tile: &InputTile| -> Result<(), LowerError> {
        let inst = &instances[tile.inst];
        let base = (i % 2 * spad_slot) as u32;
        let (a_at, b_at) = (base, base + (tile.tm * tile.tk) as u32);
        let a = match inst.a {
            ASource::Matrix { dram, stride, dtype } => Insn::LoadSpad {
                deps: Deps { pop_next: i >= 2, ..Deps::default() },
                dram: dram + (tile.m0 as u64 * stride as u64 + tile.k0 as u64) * dtype.bytes(),
                spad: a_at,
                rows: tile.tm as u32,
                cols: tile.tk as u32,
                stride,
                src: dtype,
            },
            ASource::Im2col { dram, conv } => Insn::LoadIm2col { deps: Deps { pop_next: i >= 2, ..Deps::default() }, dram, spad: a_at, conv, m0: tile.m0 as u32, rows: tile.tm as u32, k0: tile.k0 as u32, cols: tile.tk as u32 },
        };
        let insn = check(lw, a)?;
        lw.insns.push(insn);
        let b = Insn::LoadSpad {
            deps: Deps { push_next: true, ..Deps::default() },
            dram: inst.b + (tile.k0 as u64 * inst.b_stride as u64 + tile.n0 as u64) * inst.b_type.bytes(),
            spad: b_at,
            rows: tile.tk as u32,
            cols: tile.tn as u32,
            stride: inst.b_stride,
            src: inst.b_type,
        };
        let insn = check(lw, b)?;
        lw.insns.push(insn);
        Ok(())
    };
    let emit_compute = |lw: &mut Lowering, i: usize, tile: &InputTile, skipped_here: &mut u64, skipped_macs: &mut u64| -> Result<(), LowerError> {
        let base = (i % 2 * spad_slot) as u32;
        let (a_at, b_at) = (base, base + (tile.tm * tile.tk) as u32);
        let acc_at = (tile.out % 2 * acc_slot) as u32;
        let mut body = Vec::new();
        match lw.config.dataflow {
            Dataflow::Ws => {
                for n0 in (0..tile.tn).step_by(cols) {
                    let nf = cols.min(tile.tn - n0);
                    // Whether this column block's accumulators still need clearing.
                    let mut clear = tile.first_k;
                    for k0 in (0..tile.tk).step_by(rows) {
                        let kf = rows.min(tile.tk - k0);
                        let last_k_fold = k0 + rows >= tile.tk;
                        if zeros.is_some_and(|z| z.is_zero(tile.inst, tile.k0 + k0, kf, tile.n0 + n0, nf)) && !(clear && last_k_fold) {
                            *skipped_here += 1;
                            *skipped_macs += (tile.tm * kf * nf) as u64;
                            continue;
                        }
                        let accumulate = !clear;
                        clear = false;
                        body.push(Insn::Preload { deps: Deps::default(), spad: b_at + (k0 * tile.tn + n0) as u32, k: kf as u32, n: nf as u32, stride: tile.tn as u32 });
                        body.push(Insn::Compute {
                            deps: Deps::default(),
                            accumulate,
                            a: a_at + k0 as u32,
                            a_stride: tile.tk as u32,
                            b: 0,
                            b_stride: 0,
                            acc: acc_at + n0 as u32,
                            acc_stride: tile.tn as u32,
                            m: tile.tm as u32,
                            k: kf as u32,
                            n: nf as u32,
                        });
                    }
                }
            }
            Dataflow::Os => {
                for n0 in (0..tile.tn).step_by(cols) {
                    let nf = cols.min(tile.tn - n0);
                    // The whole reduction of this tile is one fold: skippable unless it clears.
                    let zero = !tile.first_k && zeros.is_some_and(|z| z.is_zero(tile.inst, tile.k0, tile.tk, tile.n0 + n0, nf));
                    for m0 in (0..tile.tm).step_by(rows) {
                        let mf = rows.min(tile.tm - m0);
                        if zero {
                            *skipped_here += 1;
                            *skipped_macs += (mf * tile.tk * nf) as u64;
                            continue;
                        }
                        body.push(Insn::Compute {
                            deps: Deps::default(),
                            accumulate: !tile.first_k,
                            a: a_at + (m0 * tile.tk) as u32,
                            a_stride: tile.tk as u32,
                            b: b_at + n0 as u32,
                            b_stride: tile.tn as u32,
                            acc: acc_at + (m0 * tile.tn + n0) as u32,
                            acc_stride: tile.tn as u32,
                            m: mf as u32,
                            k: tile.tk as u32,
                            n: nf as u32,
                        });
                    }
                }
            }
        }
        if body.is_empty() {
            // Every fold of the tile was zero: one no-op-free fold carries the tile's tokens.
            let (kf, nf) = (rows.min(tile.tk), cols.min(tile.tn));
            let mf = rows.min(tile.tm);
            if lw.config.dataflow == Dataflow::Ws {
                body.push(Insn::Preload { deps: Deps::default(), spad: b_at, k: kf as u32, n: nf as u32, stride: tile.tn as u32 });
                body.push(Insn::Compute { deps: Deps::default(), accumulate: true, a: a_at, a_stride: tile.tk as u32, b: 0, b_stride: 0, acc: acc_at, acc_stride: tile.tn as u32, m: tile.tm as u32, k: kf as u32, n: nf as u32 });
                *skipped_here -= 1;
                *skipped_macs -= (tile.tm * kf * nf) as u64;
            } else {
                body.push(Insn::Compute { deps: Deps::default(), accumulate: true, a: a_at, a_stride: tile.tk as u32, b: b_at, b_stride: tile.tn as u32, acc: acc_at, acc_stride: tile.tn as u32, m: mf as u32, k: tile.tk as u32, n: nf as u32 });
                *skipped_here -= 1;
                *skipped_macs -= (mf * tile.tk * nf) as u64;
            }
        }
        let last = body.len() - 1;
        // RAW on the spad slot (loads done), WAR on the acc slot (store of out - 2 done).
        let deps0 = body[0].deps_mut().expect("array instructions carry deps");
        deps0.pop_prev = true;
        deps0.pop_next = tile.first_k && tile.out >= 2;
        let has_later_input = i + 2 < tiles.len();
        let deps_last = body[last].deps_mut().expect("array instructions carry deps");
        deps_last.push_prev = has_later_input;
        deps_last.push_next = tile.last_k;
        for insn in body {
            let insn = check(lw, insn)?;
            lw.insns.push(insn);
        }
        if tile.last_k {
            let inst = &instances[tile.inst];
            let ob = lw.acts[act as usize].out_type().bytes();
            let store = Insn::Store {
                deps: Deps { pop_prev: true, push_prev: tile.out + 2 < out_count, ..Deps::default() },
                acc: acc_at,
                acc_stride: tile.tn as u32,
                dram: inst.c + (tile.m0 as u64 * inst.c_row_stride as u64 + tile.n0 as u64 * inst.c_col_stride as u64) * ob,
                rows: tile.tm as u32,
                cols: tile.tn as u32,
                row_stride: inst.c_row_stride,
                col_stride: inst.c_col_stride,
                act,
                c0: inst.c0 + tile.n0 as u32,
            };
            let insn = check(lw, store)?;
            lw.insns.push(insn);
        }
        Ok(())
    };
    for i in 0..tiles.len() {
        emit_loads(lw, i, &tiles[i])?;
        if i >= 1 {
            emit_compute(lw, i - 1, &tiles[i - 1], &mut skipped.folds, &mut skipped.macs)?;
        }
    }
    if let Some(last) = tiles.len().checked_sub(1) {
        emit_compute(lw, last, &tiles[last], &mut skipped.folds, &mut skipped.macs)?;
    }
    Ok(skipped)
}
