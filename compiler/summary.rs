//! `nnc summary`: what a model costs, layer by layer: output shapes, parameters and
//! multiply-accumulates, with totals and the peak of live activation memory.

use crate::ir::{Graph, NodeId, NodeKind};
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

pub struct LayerRow {
    pub name: String,
    pub op: &'static str,
    pub shape: String,
    pub params: u64,
    pub macs: u64,
}

pub struct Summary {
    pub model: String,
    pub rows: Vec<LayerRow>,
    pub params: u64,
    pub macs: u64,
    /// Bytes of every activation (inputs and op results) added up.
    pub activation_bytes: u64,
    /// The most activation bytes alive at once when running in topological order, keeping a
    /// value from its definition to its last use (outputs to the end).
    pub peak_activation_bytes: u64,
    /// The JIT's memory plan of the model as `nnc run --backend jit` compiles it: arena bytes
    /// (activations, views sharing their operand's memory, and kernel scratch) and the plan's
    /// liveness lower bound, or why the JIT cannot compile it. Set by whoever compiled it
    /// ([`Summary::with_jit_plan`]).
    pub jit_plan: Option<Result<(u64, u64), String>>,
}

pub fn summarize(graph: &Graph) -> Summary {
    let order = graph.topo_order();
    let mut counted: HashSet<NodeId> = HashSet::new();
    let mut rows = Vec::new();
    let mut params = 0u64;
    for &id in &order {
        let node = graph.node(id);
        match &node.kind {
            NodeKind::Param | NodeKind::Const(_) => {}
            NodeKind::Input { .. } => {}
            NodeKind::Op(op) => {
                // A parameter is counted at its first user, so shared weights count once.
                let mut p = 0u64;
                for o in graph.operands(id) {
                    if matches!(graph.node(o).kind, NodeKind::Param) && counted.insert(o) {
                        p += graph.node(o).ty.numel() as u64;
                    }
                }
                params = params.saturating_add(p);
                let macs = op.macs(&graph.operand_types(id), &node.ty);
                rows.push(LayerRow { name: node.name.clone(), op: op.name(), shape: node.ty.to_string(), params: p, macs });
            }
        }
    }
    // Parameters no op uses still belong to the model.
    for id in graph.node_ids() {
        if matches!(graph.node(id).kind, NodeKind::Param) && !counted.contains(&id) {
            params += graph.node(id).ty.numel() as u64;
        }
    }
    let (activation_bytes, peak_activation_bytes) = activation_memory(graph, &order);
    let macs = rows.iter().fold(0u64, |acc, r| acc.saturating_add(r.macs));
    Summary {
        model: graph.name.clone(),
        macs,
        rows,
        params,
        activation_bytes,
        peak_activation_bytes,
        jit_plan: None,
    }
}

impl Summary {
    pub fn with_jit_plan(self, plan: Result<crate::jit::memplan::MemoryPlan, String>) -> Summary {
        Summary { jit_plan: Some(plan.map(|p| (p.arena_bytes as u64, p.lower_bound_bytes as u64))), ..self }
    }
}

fn is_activation(graph: &Graph, id: NodeId) -> bool {
    matches!(graph.node(id).kind, NodeKind::Input { .. } | NodeKind::Op(_))
}

fn activation_memory(graph: &Graph, order: &[NodeId]) -> (u64, u64) {
    let position: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut last_use: HashMap<NodeId, usize> = HashMap::new();
    for &id in order {
        let end = if graph.is_output(id) { order.len() } else { graph.users(id).iter().map(|(u, _)| position[u]).max().unwrap_or(position[&id]) };
        last_use.insert(id, end);
    }
    let (mut live, mut peak, mut total) = (0u64, 0u64, 0u64);
    let mut frees: HashMap<usize, u64> = HashMap::new();
    for (i, &id) in order.iter().enumerate() {
        if is_activation(graph, id) {
            let bytes = graph.node(id).ty.size_bytes() as u64;
            total += bytes;
            live += bytes;
            *frees.entry(last_use[&id]).or_default() += bytes;
        }
        peak = peak.max(live);
        live -= frees.remove(&i).unwrap_or(0);
    }
    (total, peak)
}

/// `1234567` → `1,234,567`
pub fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.2} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

impl Summary {
    pub fn render(&self) -> String {
        let headers = ["layer", "op", "output", "params", "MACs"];
        let cells: Vec<[String; 5]> = self.rows.iter().map(|r| [r.name.clone(), r.op.to_string(), r.shape.clone(), thousands(r.params), thousands(r.macs)]).collect();
        let total = ["total".to_string(), String::new(), String::new(), thousands(self.params), thousands(self.macs)];
        let mut widths = headers.map(str::len);
        for row in cells.iter().chain([&total]) {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, row: &[String; 5]| {
            let _ = writeln!(out, "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}", row[0], row[1], row[2], row[3], row[4], w0 = widths[0], w1 = widths[1], w2 = widths[2], w3 = widths[3], w4 = widths[4]);
        };
        let _ = writeln!(out, "model {}", self.model);
        line(&mut out, &headers.map(String::from));
        let rule: usize = widths.iter().sum::<usize>() + 8;
        let _ = writeln!(out, "{}", "-".repeat(rule));
        for row in &cells {
            line(&mut out, row);
        }
        let _ = writeln!(out, "{}", "-".repeat(rule));
        line(&mut out, &total);
        let _ = writeln!(
            out,
            "parameters: {} ({} as f32)\nMACs: {}\nactivations: {} in all, peak {} live at once",
            thousands(self.params),
            human_bytes(self.params * 4),
            thousands(self.macs),
            human_bytes(self.activation_bytes),
            human_bytes(self.peak_activation_bytes),
        );
        match &self.jit_plan {
            Some(Ok((arena, lower_bound))) => {
                let _ = writeln!(out, "JIT memory plan: {} arena (liveness lower bound {}, scratch included)", human_bytes(*arena), human_bytes(*lower_bound));
            }
            Some(Err(why)) => {
                let _ = writeln!(out, "JIT memory plan: none, the JIT cannot compile this model ({why})");
            }
            None => {}
        }
        out
    }
}
