//! What `nnc sim` prints: the JSON report of SPEC §4, the readable per-layer table and the
//! Chrome/Perfetto trace of the three queues.

use super::program::{Program, Unit};
use super::machine::Timing;
use serde_json::{json, Value};

/// The JSON report.
pub fn json_report(p: &Program, o: &Timing) -> Value {
    let c = &o.counters;
    let energy = c.energy(&p.config.energy);
    let layers: Vec<Value> = p
        .layers
        .iter()
        .zip(&o.layer_cycles)
        .zip(&o.layer_counters)
        .map(|((l, &cycles), lc)| {
            json!({
                "name": l.name,
                "op": l.op,
                "unit": match l.unit { Unit::Array => "array", Unit::Vector => "vector" },
                "cycles": cycles,
                "macs": l.macs,
                "utilization": if l.unit == Unit::Array { p.config.utilization(l.macs, cycles) } else { 0.0 },
                "dram_bytes": lc.dram_read + lc.dram_written,
                "energy_pj": lc.energy(&p.config.energy).total,
                "tile": l.tiles.map(|t| json!({"m": t.tm, "k": t.tk, "n": t.tn})),
                "skipped_folds": l.skipped_folds,
                "skipped_macs": l.skipped_macs,
                "skipped_tiles": l.skipped_tiles,
            })
        })
        .collect();
    json!({
        "config": serde_json::to_value(&p.config).expect("configs serialize"),
        "total_cycles": o.total_cycles,
        "compute_cycles": c.compute_cycles,
        "stall_cycles": o.total_cycles.saturating_sub(c.compute_cycles),
        "utilization": p.config.utilization(c.macs, o.total_cycles),
        "macs": c.macs + p.layers.iter().filter(|l| l.unit == Unit::Vector).map(|l| l.macs).sum::<u64>(),
        "array_macs": c.macs,
        "vector_ops": c.vector_ops,
        "dram_bytes_read": c.dram_read,
        "dram_bytes_written": c.dram_written,
        "energy_pj": energy,
        "latency_us": p.config.latency_us(o.total_cycles),
        "instructions": p.insns.len(),
        "skipped_folds": p.layers.iter().map(|l| l.skipped_folds).sum::<u64>(),
        "skipped_macs": p.layers.iter().map(|l| l.skipped_macs).sum::<u64>(),
        "skipped_tiles": p.layers.iter().map(|l| l.skipped_tiles).sum::<u64>(),
        "layers": layers,
    })
}

fn si(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// The readable table: one row per layer, then totals.
pub fn table(p: &Program, o: &Timing) -> String {
    let cfg = &p.config;
    let mut s = format!(
        "accelerator: {} — {}x{} {} {}, {} MHz, scratchpad {} KiB, accumulator {} KiB, DRAM {} GB/s ({} memory), fold overlap {}\n",
        cfg.name,
        cfg.rows,
        cfg.cols,
        cfg.dtype.name(),
        match cfg.dataflow {
            super::config::Dataflow::Ws => "weight-stationary",
            super::config::Dataflow::Os => "output-stationary",
        },
        cfg.clock_mhz,
        cfg.scratchpad_kib,
        cfg.accumulator_kib,
        cfg.dram_gbps,
        match cfg.memory {
            super::config::MemoryModel::Ideal => "ideal",
            super::config::MemoryModel::Modeled => "modeled",
        },
        cfg.fold_overlap
    );
    let width = p.layers.iter().map(|l| l.name.len()).max().unwrap_or(5).clamp(5, 40);
    s += &format!("{:<width$}  {:<22} {:>6}  {:>10}  {:>6}  {:>9}  {:>9}  {:>10}\n", "layer", "op", "unit", "cycles", "util", "MACs", "DRAM B", "energy pJ");
    for ((l, &cycles), lc) in p.layers.iter().zip(&o.layer_cycles).zip(&o.layer_counters) {
        let util = if l.unit == Unit::Array { format!("{:.1}%", 100.0 * p.config.utilization(l.macs, cycles)) } else { "-".into() };
        let mut op = l.op.clone();
        op.truncate(22);
        let mut name = l.name.clone();
        name.truncate(width);
        s += &format!(
            "{name:<width$}  {op:<22} {:>6}  {cycles:>10}  {util:>6}  {:>9}  {:>9}  {:>10}\n",
            match l.unit {
                Unit::Array => "array",
                Unit::Vector => "vector",
            },
            si(l.macs as f64),
            si((lc.dram_read + lc.dram_written) as f64),
            si(lc.energy(&cfg.energy).total)
        );
    }
    let c = &o.counters;
    let e = c.energy(&cfg.energy);
    s += &format!(
        "total: {} cycles = {:.1} µs at {} MHz; array busy {:.1}% of peak ({} MACs on the array), {} instructions\n",
        o.total_cycles,
        p.config.latency_us(o.total_cycles),
        cfg.clock_mhz,
        100.0 * p.config.utilization(c.macs, o.total_cycles),
        si(c.macs as f64),
        p.insns.len()
    );
    s += &format!("compute {} cycles, stalled {} cycles; DRAM read {} B, written {} B\n", c.compute_cycles, o.total_cycles.saturating_sub(c.compute_cycles), si(c.dram_read as f64), si(c.dram_written as f64));
    s += &format!(
        "energy: {:.1} µJ (MAC {:.1}%, vector {:.1}%, scratchpad {:.1}%, accumulator {:.1}%, DRAM {:.1}%)\n",
        e.total / 1e6,
        100.0 * e.mac / e.total.max(1e-12),
        100.0 * e.vector / e.total.max(1e-12),
        100.0 * e.scratchpad / e.total.max(1e-12),
        100.0 * e.accumulator / e.total.max(1e-12),
        100.0 * e.dram / e.total.max(1e-12)
    );
    let (folds, macs): (u64, u64) = p.layers.iter().fold((0, 0), |(f, m), l| (f + l.skipped_folds, m + l.skipped_macs));
    if folds > 0 {
        let tiles: u64 = p.layers.iter().map(|l| l.skipped_tiles).sum();
        s += &format!("zero weights: {folds} folds skipped ({} MACs not done); {tiles} tiles not loaded\n", si(macs as f64));
    }
    s
}

/// Chrome trace-event JSON (open in Perfetto or chrome://tracing): one track per queue,
/// one slice per instruction, timestamps in microseconds at the configured clock.
pub fn trace(p: &Program, o: &Timing) -> Value {
    let us = |cycles: u64| cycles as f64 / p.config.clock_mhz;
    let mut layer_of = vec![usize::MAX; p.insns.len()];
    for (li, l) in p.layers.iter().enumerate() {
        layer_of[l.start..l.end].fill(li);
    }
    let mut events: Vec<Value> = ["load", "compute", "store"]
        .iter()
        .enumerate()
        .map(|(i, q)| json!({"name": "thread_name", "ph": "M", "pid": 0, "tid": i, "args": {"name": q}}))
        .collect();
    for (i, (insn, span)) in p.insns.iter().zip(&o.spans).enumerate() {
        let tid = match span.queue {
            super::isa::Queue::Load => 0,
            super::isa::Queue::Compute => 1,
            super::isa::Queue::Store => 2,
        };
        let layer = p.layers.get(layer_of[i]).map_or("", |l| l.name.as_str());
        events.push(json!({
            "name": insn.mnemonic(),
            "ph": "X",
            "pid": 0,
            "tid": tid,
            "ts": us(span.start),
            "dur": us(span.end - span.start),
            "args": {"layer": layer, "insn": insn.to_string(), "cycles": span.end - span.start},
        }));
    }
    json!({"traceEvents": events, "displayTimeUnit": "ns"})
}

/// The `--emit isa` listing: descriptors, then one instruction per line grouped by layer.
pub fn listing(p: &Program) -> String {
    let mut s = format!("; nnc accelerator program for {} ({} instructions, {} bytes of DRAM)\n", p.config.name, p.insns.len(), p.dram_bytes);
    for (i, c) in p.convs.iter().enumerate() {
        s += &format!(
            "; conv #{i}: input {}x{}x{} (channels {}..{}), kernel {}x{}, stride {:?}, pad {:?}, dilation {:?}, output width {}, {}\n",
            c.c,
            c.h,
            c.w,
            c.c0,
            c.c0 + c.cg,
            c.kh,
            c.kw,
            c.stride,
            c.pad,
            c.dilation,
            c.wo,
            c.src.name()
        );
    }
    for (i, a) in p.acts.iter().enumerate() {
        let kind = match &a.kind {
            super::program::ActKind::Float(act) => format!("f32 {}{}", act.name(), if a.rounds_to.is_float() && a.rounds_to != nnc_runtime::DType::F32 { format!(", rounded to {}", a.rounds_to) } else { String::new() }),
            super::program::ActKind::Raw => "i32 as accumulated".to_string(),
            super::program::ActKind::Requantize { scales, out_scale, activation } => format!("requantize to i8 (scales at {scales:#x}, {} then out_scale {out_scale})", activation.name()),
            super::program::ActKind::Dequantize { scales, activation } => format!("dequantize to f32 (scales at {scales:#x}) then {}", activation.name()),
        };
        s += &format!("; act #{i}: {kind}, bias {}\n", a.bias.map_or("none".into(), |b| format!("at {b:#x}")));
    }
    let mut li = 0;
    for (i, insn) in p.insns.iter().enumerate() {
        if let Some(l) = p.layers.get(li) {
            if l.start == i {
                s += &format!("\n; {} ({}, on the {})\n", l.name, l.op, if l.unit == Unit::Array { "array" } else { "vector unit" });
                li += 1;
            }
        }
        s += &format!("{i:>6}: {insn}\n");
    }
    s
}

/// The binary program: the instructions' 32-byte encodings, back to back.
pub fn binary(p: &Program) -> Vec<u8> {
    p.insns.iter().flat_map(|i| i.encode()).collect()
}
