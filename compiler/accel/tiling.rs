//! Choosing the scratchpad and accumulator tiles of one GEMM.
//!
//! A tile is `tm × tk` of A plus `tk × tn` of B in one half of the scratchpad (the other half
//! is loading the next tile) and `tm × tn` accumulators in one half of the accumulator memory.
//! The choice minimises an analytic estimate of the GEMM's cycles: array folds (each with its
//! fill and drain) against DMA time, per tile, double-buffered. The candidates include the
//! tile Gemmini's `tiled_matmul_auto` picks, so the choice is never worse than it by this
//! estimate; the estimate uses the same per-fold costs as the machine's cycle model.

use super::config::{AccelConfig, Dataflow};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiles {
    pub tm: usize,
    pub tk: usize,
    pub tn: usize,
}

/// Instruction fields bound tile sizes (see `isa`).
const MAX_TK: usize = 65_535;
const MAX_TN: usize = 65_535;
const MAX_TM: usize = (1 << 24) - 1;

/// Cycles of one array fold streaming `stream` rows, without overlap (SCALE-Sim's per-fold
/// count): ws preloads `rows` weights then streams with skew; os streams the reduction.
pub fn fold_cycles(config: &AccelConfig, stream: usize) -> u64 {
    let (r, c) = (config.rows as u64, config.cols as u64);
    match config.dataflow {
        Dataflow::Ws => r + (stream as u64 + r + c - 2),
        Dataflow::Os => stream as u64 + r + c - 2,
    }
}

/// Estimated cycles of the whole GEMM with these tiles.
pub fn estimate(config: &AccelConfig, m: usize, k: usize, n: usize, t: Tiles) -> f64 {
    let (r, c) = (config.rows as usize, config.cols as usize);
    let (mt, kt, nt) = (m.div_ceil(t.tm), k.div_ceil(t.tk), n.div_ceil(t.tn));
    let eb = config.dtype.bytes() as f64;
    let bpc = match config.memory {
        super::config::MemoryModel::Ideal => f64::INFINITY,
        super::config::MemoryModel::Modeled => config.dram_bytes_per_cycle(),
    };
    let latency = match config.memory {
        super::config::MemoryModel::Ideal => 0.0,
        super::config::MemoryModel::Modeled => config.dram_latency_cycles as f64,
    };
    let compute = match config.dataflow {
        Dataflow::Ws => (t.tk.div_ceil(r) * t.tn.div_ceil(c)) as f64 * fold_cycles(config, t.tm) as f64,
        Dataflow::Os => (t.tm.div_ceil(r) * t.tn.div_ceil(c)) as f64 * fold_cycles(config, t.tk) as f64,
    };
    // Activations resident on chip stream like the array's own input; weights come from DRAM.
    let a_bytes = if config.activations_on_chip { 0.0 } else { (t.tm * t.tk) as f64 * eb };
    let dma = (a_bytes + (t.tk * t.tn) as f64 * eb) / bpc + 2.0 * latency;
    let per_tile = compute.max(dma);
    let tiles = (mt * kt * nt) as f64;
    let stores = if config.activations_on_chip { 0.0 } else { (mt * nt) as f64 * ((t.tm * t.tn * 4) as f64 / bpc + latency).min(per_tile) };
    tiles * per_tile + dma + stores
}

fn fits(config: &AccelConfig, t: Tiles) -> bool {
    let spad_slot = config.scratchpad_elems() as usize / 2;
    let acc_slot = config.accumulator_elems() as usize / 2;
    t.tm * t.tk + t.tk * t.tn <= spad_slot && t.tm * t.tn <= acc_slot && t.tk <= MAX_TK && t.tn <= MAX_TN && t.tm <= MAX_TM
}

/// Gemmini's `tiled_matmul_auto`: tiles in units of the array, grown round-robin (rows of A,
/// columns of B, the reduction) while they fit half the scratchpad and half the accumulator.
pub fn gemmini_auto(config: &AccelConfig, m: usize, k: usize, n: usize) -> Tiles {
    let dim = config.rows.max(config.cols) as usize;
    let clamp = |t: Tiles| Tiles { tm: t.tm.min(m), tk: t.tk.min(k), tn: t.tn.min(n) };
    let mut t = clamp(Tiles { tm: dim, tk: dim, tn: dim });
    loop {
        let mut grew = false;
        for axis in 0..3 {
            let mut next = t;
            match axis {
                0 if t.tm < m => next.tm = (t.tm + dim).min(m),
                1 if t.tn < n => next.tn = (t.tn + dim).min(n),
                2 if t.tk < k => next.tk = (t.tk + dim).min(k),
                _ => continue,
            }
            if fits(config, next) {
                t = next;
                grew = true;
            }
        }
        if !grew {
            return t;
        }
    }
}

/// The tiles for a GEMM of `m × k` by `k × n`.
pub fn choose_tiles(config: &AccelConfig, m: usize, k: usize, n: usize) -> Tiles {
    let (r, c) = (config.rows as usize, config.cols as usize);
    // Reduction and column tiles: multiples of the array (or the whole dimension).
    let multiples = |unit: usize, total: usize| -> Vec<usize> {
        let mut v: Vec<usize> = (0..24).map(|i| unit << i).take_while(|&x| x < total).collect();
        v.push(total);
        v
    };
    let k_unit = if config.dataflow == Dataflow::Ws { r } else { 1 };
    let tks: Vec<usize> = if config.dataflow == Dataflow::Os { multiples(r, k) } else { multiples(k_unit, k) };
    let tns = multiples(c, n);
    let spad_slot = config.scratchpad_elems() as usize / 2;
    let acc_slot = config.accumulator_elems() as usize / 2;
    let mut best = gemmini_auto(config, m, k, n);
    let mut best_cost = if fits(config, best) { estimate(config, m, k, n, best) } else { f64::INFINITY };
    for &tk in &tks {
        for &tn in &tns {
            let tk = tk.min(MAX_TK);
            let tn = tn.min(MAX_TN);
            // The most rows of A that fit with this tk and tn; os wants whole folds of rows.
            let by_spad = spad_slot.saturating_sub(tk * tn) / tk.max(1);
            let mut tm = by_spad.min(acc_slot / tn.max(1)).min(m).min(MAX_TM);
            if config.dataflow == Dataflow::Os && tm < m && tm >= r {
                tm -= tm % r;
            }
            if tm == 0 {
                continue;
            }
            // Fewer, equal tiles waste less at the edge than a maximal one plus a sliver.
            let count = m.div_ceil(tm);
            tm = m.div_ceil(count);
            if config.dataflow == Dataflow::Os && tm < m {
                // Whole folds of rows, when they still fit.
                let whole = tm.next_multiple_of(r).min(m);
                if fits(config, Tiles { tm: whole, tk, tn }) {
                    tm = whole;
                }
            }
            let t = Tiles { tm, tk, tn };
            if !fits(config, t) {
                continue;
            }
            let cost = estimate(config, m, k, n, t);
            if cost < best_cost {
                best = t;
                best_cost = cost;
            }
        }
    }
    if fits(config, best) {
        best
    } else {
        smallest(config, m, k, n)
    }
}

/// One fold of B and as many rows of A as fit: always fits a configuration that
/// `AccelConfig::validate` accepts (half the scratchpad holds two folds).
fn smallest(config: &AccelConfig, m: usize, k: usize, n: usize) -> Tiles {
    let (tk, tn) = (k.min(config.rows as usize), n.min(config.cols as usize));
    let spad_slot = config.scratchpad_elems() as usize / 2;
    let acc_slot = config.accumulator_elems() as usize / 2;
    let tm = (spad_slot.saturating_sub(tk * tn) / tk).min(acc_slot / tn).min(m).max(1);
    Tiles { tm, tk, tn }
}

/// Whether a tile fits the memories (the lowering refuses one that does not).
pub fn tile_fits(config: &AccelConfig, t: Tiles) -> bool {
    fits(config, t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tall_output_stationary_arrays_with_tight_scratchpads_still_fit() {
        let mut c = AccelConfig::preset("edge").unwrap();
        for (k, v) in [("rows", "256"), ("cols", "4"), ("dataflow", "\"os\"")] {
            c.set(k, v).unwrap();
        }
        c.validate().unwrap();
        for (m, k, n) in [(3136, 576, 64), (12544, 147, 64), (49, 4608, 512), (1, 9, 1)] {
            let t = choose_tiles(&c, m, k, n);
            assert!(fits(&c, t), "{m}x{k}x{n}: {t:?}");
        }
    }

    #[test]
    fn never_worse_than_gemmini_auto_and_always_fits() {
        for preset in ["gemmini", "tpu-v1", "edge"] {
            for df in ["ws", "os"] {
                let mut c = AccelConfig::preset(preset).unwrap();
                c.set("dataflow", df).unwrap();
                for (m, k, n) in [(3136, 576, 64), (12544, 147, 64), (49, 4608, 512), (1, 512, 1000), (784, 9, 1), (7, 3, 5)] {
                    let t = choose_tiles(&c, m, k, n);
                    assert!(fits(&c, t), "{preset} {df} {m}x{k}x{n}: {t:?}");
                    let g = gemmini_auto(&c, m, k, n);
                    assert!(estimate(&c, m, k, n, t) <= estimate(&c, m, k, n, g), "{preset} {df} {m}x{k}x{n}: {t:?} vs gemmini {g:?}");
                }
            }
        }
    }
}
