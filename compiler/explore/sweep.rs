//! Timing a model on many configurations: each one lowered without a DRAM image and timed
//! without values (`accel::time`), so its cycles are `nnc sim`'s for the same configuration
//! at a fraction of the cost; in parallel with rayon.

use super::grid::Grid;
use super::pareto;
use crate::accel::{self, AccelConfig};
use crate::accel::machine::EnergyPj;
use crate::ir::Graph;
use std::sync::Arc;

/// One configuration's time, energy and size.
#[derive(Clone, Debug)]
pub struct Design {
    pub config: AccelConfig,
    pub total_cycles: u64,
    pub compute_cycles: u64,
    pub latency_us: f64,
    pub energy_pj: EnergyPj,
    pub utilization: f64,
    pub macs: u64,
    pub dram_bytes: u64,
    pub onchip_kib: u64,
    pub area_mm2: f64,
}

impl Design {
    pub fn energy_uj(&self) -> f64 {
        self.energy_pj.total * 1e-6
    }
}

/// Time `graph` (already optimized for the accelerator, in `config`'s element type) on
/// `config`.
pub fn time_design(graph: &Arc<Graph>, config: &AccelConfig) -> Result<Design, String> {
    let program = accel::lower_for_timing(graph, config).map_err(|e| e.to_string())?;
    let t = accel::time(&program).map_err(|e| e.to_string())?;
    let c = &t.counters;
    Ok(Design {
        config: config.clone(),
        total_cycles: t.total_cycles,
        compute_cycles: c.compute_cycles,
        latency_us: config.latency_us(t.total_cycles),
        energy_pj: c.energy(&config.energy),
        utilization: config.utilization(c.macs, t.total_cycles),
        macs: c.macs,
        dram_bytes: c.dram_read + c.dram_written,
        onchip_kib: config.scratchpad_kib + config.accumulator_kib,
        area_mm2: config.area_mm2(),
    })
}

/// One row of a sweep: the grid point and its design.
#[derive(Clone, Debug)]
pub struct Row {
    /// Index in the whole grid.
    pub index: usize,
    /// The varied keys' values, one per axis.
    pub values: Vec<String>,
    pub design: Design,
    pub pareto: bool,
}

/// What a sweep found: the timed rows, and the grid points no hardware could have (with why).
pub struct Swept {
    pub rows: Vec<Row>,
    pub invalid: Vec<(usize, String)>,
}

/// Time the grid points `range` of `grid` over `base`, on `jobs` threads; `graph_for` gives
/// the prepared graph for a configuration; `tick` is called once per point
/// done (from any thread). Rows come back sorted by latency (then grid order), Pareto rows
/// marked over latency, energy and area among them. Points whose configuration does not
/// validate (a scratchpad too small for the array's tile) are set aside, not timed.
pub fn sweep(
    grid: &Grid,
    range: std::ops::Range<usize>,
    base: &AccelConfig,
    graph_for: &(dyn Fn(&AccelConfig) -> Result<Arc<Graph>, String> + Sync),
    jobs: usize,
    tick: &(dyn Fn() + Sync),
) -> Result<Swept, String> {
    let mut configs: Vec<(usize, AccelConfig)> = Vec::new();
    let mut invalid = Vec::new();
    for i in range {
        match grid.config(base, i) {
            Ok(c) => configs.push((i, c)),
            Err(e) => {
                invalid.push((i, e));
                tick();
            }
        }
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(jobs.max(1)).build().map_err(|e| format!("cannot start {jobs} worker threads: {e}"))?;
    // A design the lowering refuses (too many instructions, a field too wide for the
    // encoding) is set aside like an invalid configuration, not fatal to the sweep.
    let designs: Vec<Result<Row, (usize, String)>> = pool.install(|| {
        use rayon::prelude::*;
        configs
            .par_iter()
            .map(|(i, c)| {
                let timed = graph_for(c).and_then(|graph| time_design(&graph, c)).map_err(|e| (*i, format!("the configuration {}: {e}", describe(grid, *i))));
                tick();
                Ok::<_, (usize, String)>(Row { index: *i, values: grid.point(*i).iter().map(|v| v.to_string()).collect(), design: timed?, pareto: false })
            })
            .collect()
    });
    let mut rows = Vec::with_capacity(designs.len());
    for d in designs {
        match d {
            Ok(row) => rows.push(row),
            Err(e) => invalid.push(e),
        }
    }
    invalid.sort();
    let objectives: Vec<[f64; 3]> = rows.iter().map(|r| [r.design.latency_us, r.design.energy_uj(), r.design.area_mm2]).collect();
    for (row, on) in rows.iter_mut().zip(pareto::front(&objectives)) {
        row.pareto = on;
    }
    rows.sort_by(|a, b| a.design.latency_us.total_cmp(&b.design.latency_us).then(a.index.cmp(&b.index)));
    Ok(Swept { rows, invalid })
}

/// `key=value ...` of a grid point, for messages.
pub fn describe(grid: &Grid, i: usize) -> String {
    grid.axes.iter().zip(grid.point(i)).map(|(a, v)| format!("{}={v}", a.key)).collect::<Vec<_>>().join(" ")
}

/// The columns every row has after the varied keys.
pub const COLUMNS: &[&str] = &[
    "total_cycles",
    "compute_cycles",
    "latency_us",
    "energy_uj",
    "energy_mac_uj",
    "energy_vector_uj",
    "energy_scratchpad_uj",
    "energy_accumulator_uj",
    "energy_dram_uj",
    "utilization",
    "macs",
    "dram_bytes",
    "onchip_kib",
    "area_mm2",
    "pareto",
];

impl Row {
    /// The row's values for [`COLUMNS`], as JSON.
    pub fn fields(&self) -> Vec<serde_json::Value> {
        let d = &self.design;
        let e = &d.energy_pj;
        vec![
            d.total_cycles.into(),
            d.compute_cycles.into(),
            d.latency_us.into(),
            d.energy_uj().into(),
            (e.mac * 1e-6).into(),
            (e.vector * 1e-6).into(),
            (e.scratchpad * 1e-6).into(),
            (e.accumulator * 1e-6).into(),
            (e.dram * 1e-6).into(),
            d.utilization.into(),
            d.macs.into(),
            d.dram_bytes.into(),
            d.onchip_kib.into(),
            d.area_mm2.into(),
            self.pareto.into(),
        ]
    }
}
