//! Executing a program: the functional machine (DRAM image, scratchpad, accumulators, the
//! array's weight registers, the activation and vector units) and, alongside, the cycle and
//! energy model.
//!
//! Functional execution follows program order, which the token discipline makes equivalent
//! to any schedule the queues could run. Timing is an event model over the three queues:
//! each instruction starts when its queue is free, the tokens it pops have been pushed and,
//! for DMA, the DRAM port is free; its duration comes from the per-instruction cost rules
//! in `docs/accelerator.md`. Nothing loops over processing elements: a fold costs a formula.

use super::config::{Dataflow, ElemType};
use super::isa::{DramType, Insn, Queue};
use super::program::{ActKind, Buffer, Program};
use crate::ops::quant::requantize_value;
use crate::ops::Op;
use nnc_runtime::{DType, Tensor};
pub use super::program::RunError;
pub use super::timing::Span;
use super::timing::{traffic, Timeline, Traffic};


#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    pub macs: u64,
    pub vector_ops: u64,
    pub dram_read: u64,
    pub dram_written: u64,
    pub spad_bytes: u64,
    pub acc_bytes: u64,
    /// Cycles the compute queue spent executing (array and vector unit).
    pub compute_cycles: u64,
}

/// The time and events of a program's run, with or without its values.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    pub spans: Vec<Span>,
    pub counters: Counters,
    pub total_cycles: u64,
    /// Per layer: cycles from its first instruction's start to its last one's end.
    pub layer_cycles: Vec<u64>,
    /// Per layer: what its instructions counted.
    pub layer_counters: Vec<Counters>,
}

/// Everything a functional run produces.
pub struct Outcome {
    pub outputs: Vec<Tensor>,
    pub timing: Timing,
}


impl Counters {
    fn minus(&self, o: &Counters) -> Counters {
        Counters {
            macs: self.macs - o.macs,
            vector_ops: self.vector_ops - o.vector_ops,
            dram_read: self.dram_read - o.dram_read,
            dram_written: self.dram_written - o.dram_written,
            spad_bytes: self.spad_bytes - o.spad_bytes,
            acc_bytes: self.acc_bytes - o.acc_bytes,
            compute_cycles: self.compute_cycles - o.compute_cycles,
        }
    }

    /// Picojoules by the configuration's energy table.
    pub fn energy(&self, e: &super::config::Energy) -> EnergyPj {
        let mac = self.macs as f64 * e.mac_pj;
        let vector = self.vector_ops as f64 * e.vector_op_pj;
        let scratchpad = self.spad_bytes as f64 * e.scratchpad_pj_per_byte;
        let accumulator = self.acc_bytes as f64 * e.accumulator_pj_per_byte;
        let dram = (self.dram_read + self.dram_written) as f64 * e.dram_pj_per_byte;
        EnergyPj { mac, vector, scratchpad, accumulator, dram, total: mac + vector + scratchpad + accumulator + dram }
    }
}

#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct EnergyPj {
    pub mac: f64,
    pub vector: f64,
    pub scratchpad: f64,
    pub accumulator: f64,
    pub dram: f64,
    pub total: f64,
}

enum Spad {
    Int(Vec<i8>),
    Float(Vec<f32>),
}

enum Acc {
    Int(Vec<i32>),
    Float(Vec<f32>),
}

struct Machine<'p> {
    p: &'p Program,
    dram: Vec<u8>,
    spad: Spad,
    acc: Acc,
    /// The array's weight registers, `rows × cols`.
    weights: Spad,
}

fn read_f32(d: &[u8], at: u64) -> f32 {
    f32::from_le_bytes(d[at as usize..at as usize + 4].try_into().expect("4 bytes"))
}

fn read_i32(d: &[u8], at: u64) -> i32 {
    i32::from_le_bytes(d[at as usize..at as usize + 4].try_into().expect("4 bytes"))
}

impl Machine<'_> {
    fn read_tensor(&self, b: &Buffer) -> Tensor {
        let n: usize = b.shape.iter().product();
        let at = b.addr as usize;
        match b.dram_type() {
            DramType::I8 => Tensor::from_i8(b.shape.clone(), self.dram[at..at + n].iter().map(|&x| x as i8).collect()).expect("sized"),
            DramType::I32 => Tensor::from_i32(b.shape.clone(), (0..n).map(|i| read_i32(&self.dram, (at + 4 * i) as u64)).collect()).expect("sized"),
            DramType::F32 => {
                let data = (0..n).map(|i| read_f32(&self.dram, (at + 4 * i) as u64)).collect();
                Tensor::from_f32(if b.dtype.is_float() { b.dtype } else { DType::F32 }, b.shape.clone(), data).expect("sized")
            }
        }
    }

    fn write_tensor(&mut self, b: &Buffer, t: &Tensor) {
        let at = b.addr as usize;
        match t.data() {
            nnc_runtime::tensor::Data::I8(v) => {
                for (i, &x) in v.iter().enumerate() {
                    self.dram[at + i] = x as u8;
                }
            }
            nnc_runtime::tensor::Data::I32(v) => {
                for (i, x) in v.iter().enumerate() {
                    self.dram[at + 4 * i..at + 4 * i + 4].copy_from_slice(&x.to_le_bytes());
                }
            }
            nnc_runtime::tensor::Data::F32(v) => {
                for (i, x) in v.iter().enumerate() {
                    self.dram[at + 4 * i..at + 4 * i + 4].copy_from_slice(&x.to_le_bytes());
                }
            }
        }
    }

    /// Write one loaded element into the scratchpad, converting to the array's type.
    #[inline]
    fn spad_put(&mut self, at: usize, src: DramType, dram_at: Option<u64>) {
        let bf16 = self.p.config.dtype == ElemType::Bf16;
        match &mut self.spad {
            Spad::Int(s) => s[at] = dram_at.map_or(0, |a| self.dram[a as usize] as i8),
            Spad::Float(s) => {
                let v = dram_at.map_or(0.0, |a| match src {
                    DramType::F32 => read_f32(&self.dram, a),
                    DramType::I8 => self.dram[a as usize] as i8 as f32,
                    DramType::I32 => read_i32(&self.dram, a) as f32,
                });
                s[at] = if bf16 { DType::BF16.round_f32(v) } else { v };
            }
        }
    }

    /// Execute one instruction: move and compute its values (its events are [`count`]ed
    /// separately, so timing can run without values).
    fn exec(&mut self, insn: &Insn) -> Result<(), RunError> {
        let cfg = &self.p.config;
        match *insn {
            Insn::LoadSpad { dram, spad, rows, cols, stride, src, .. } => {
                let eb = src.bytes();
                for r in 0..rows as u64 {
                    for c in 0..cols as u64 {
                        let at = spad as usize + (r * cols as u64 + c) as usize;
                        self.spad_put(at, src, Some(dram + (r * stride as u64 + c) * eb));
                    }
                }
            }
            Insn::LoadIm2col { dram, spad, conv, m0, rows, k0, cols, .. } => {
                let desc = self.p.convs.get(conv as usize).ok_or_else(|| RunError::Program(format!("no conv descriptor #{conv}")))?.clone();
                let eb = desc.src.bytes();
                for r in 0..rows {
                    for c in 0..cols {
                        let at = spad as usize + (r * cols + c) as usize;
                        let src = desc.source(m0 + r, k0 + c).map(|e| dram + e * eb);
                        self.spad_put(at, desc.src, src);
                    }
                }
            }
            Insn::Preload { spad, k, n, stride, .. } => {
                let cols = cfg.cols as usize;
                match (&mut self.weights, &self.spad) {
                    (Spad::Int(w), Spad::Int(s)) => {
                        w.fill(0);
                        for r in 0..k as usize {
                            w[r * cols..r * cols + n as usize].copy_from_slice(&s[spad as usize + r * stride as usize..][..n as usize]);
                        }
                    }
                    (Spad::Float(w), Spad::Float(s)) => {
                        w.fill(0.0);
                        for r in 0..k as usize {
                            w[r * cols..r * cols + n as usize].copy_from_slice(&s[spad as usize + r * stride as usize..][..n as usize]);
                        }
                    }
                    _ => unreachable!("weights and scratchpad share the element type"),
                }
            }
            Insn::Compute { accumulate, a, a_stride, b, b_stride, acc, acc_stride, m, k, n, .. } => {
                let cols = cfg.cols as usize;
                let (m, k, n) = (m as usize, k as usize, n as usize);
                let ws = cfg.dataflow == Dataflow::Ws;
                // B: the weight registers (ws, row stride = array columns) or the scratchpad.
                let (b_base, b_stride) = if ws { (0, cols) } else { (b as usize, b_stride as usize) };
                match (&self.spad, &mut self.acc, &self.weights) {
                    (Spad::Int(s), Acc::Int(out), Spad::Int(w)) => {
                        let bm: &[i8] = if ws { w } else { s };
                        for i in 0..m {
                            let arow = &s[a as usize + i * a_stride as usize..][..k];
                            let orow = &mut out[acc as usize + i * acc_stride as usize..][..n];
                            if !accumulate {
                                orow.fill(0);
                            }
                            for (r, &av) in arow.iter().enumerate() {
                                let brow = &bm[b_base + r * b_stride..][..n];
                                for (o, &bv) in orow.iter_mut().zip(brow) {
                                    *o = o.wrapping_add(av as i32 * bv as i32);
                                }
                            }
                        }
                    }
                    (Spad::Float(s), Acc::Float(out), Spad::Float(w)) => {
                        let bm: &[f32] = if ws { w } else { s };
                        for i in 0..m {
                            let arow = &s[a as usize + i * a_stride as usize..][..k];
                            let orow = &mut out[acc as usize + i * acc_stride as usize..][..n];
                            if !accumulate {
                                orow.fill(0.0);
                            }
                            for (r, &av) in arow.iter().enumerate() {
                                let brow = &bm[b_base + r * b_stride..][..n];
                                for (o, &bv) in orow.iter_mut().zip(brow) {
                                    *o += av * bv;
                                }
                            }
                        }
                    }
                    _ => unreachable!("memories share the array's element type"),
                }
            }
            Insn::Store { acc, acc_stride, dram, rows, cols, row_stride, col_stride, act, c0, .. } => {
                let desc = self.p.acts.get(act as usize).ok_or_else(|| RunError::Program(format!("no activation descriptor #{act}")))?.clone();
                let ob = desc.out_type().bytes();
                for r in 0..rows as u64 {
                    for c in 0..cols as u64 {
                        let ch = c0 as u64 + c;
                        let at = (dram + (r * row_stride as u64 + c * col_stride as u64) * ob) as usize;
                        let src = acc as usize + (r * acc_stride as u64 + c) as usize;
                        match (&self.acc, &desc.kind) {
                            (Acc::Float(a), ActKind::Float(activation)) => {
                                let bias = desc.bias.map_or(0.0, |b| read_f32(&self.dram, b + 4 * ch));
                                let v = desc.rounds_to.round_f32(activation.apply(a[src] + bias));
                                self.dram[at..at + 4].copy_from_slice(&v.to_le_bytes());
                            }
                            (Acc::Int(a), kind) => {
                                let v = a[src].wrapping_add(desc.bias.map_or(0, |b| read_i32(&self.dram, b + 4 * ch)));
                                match kind {
                                    ActKind::Raw => self.dram[at..at + 4].copy_from_slice(&v.to_le_bytes()),
                                    ActKind::Requantize { scales, out_scale, activation } => {
                                        self.dram[at] = requantize_value(v, read_f32(&self.dram, scales + 4 * ch), *activation, *out_scale) as u8;
                                    }
                                    ActKind::Dequantize { scales, activation } => {
                                        let f = activation.apply(v as f32 * read_f32(&self.dram, scales + 4 * ch));
                                        self.dram[at..at + 4].copy_from_slice(&f.to_le_bytes());
                                    }
                                    ActKind::Float(_) => return Err(RunError::Program("a float activation on int32 accumulators".into())),
                                }
                            }
                            (Acc::Float(_), _) => return Err(RunError::Program("an integer activation on float accumulators".into())),
                        }
                    }
                }
            }
            Insn::Vector { node, .. } => {
                let id = crate::ir::NodeId::new(node as usize);
                let graph = &self.p.graph;
                let n = graph.node(id);
                let Some(op) = n.op() else { return Err(RunError::Program(format!("vector instruction on non-op node #{node}"))) };
                let operands = graph.operands(id);
                let inputs: Vec<Tensor> = operands.iter().map(|o| self.read_tensor(&self.p.values[o])).collect();
                let out_buf = self.p.values[&id].clone();
                let result = match (op, self.p.steps_only.contains(&id)) {
                    // The array wrote the anchor's result; the vector unit finishes the steps.
                    (Op::Fused(f), true) => {
                        let n_anchor = f.anchor_operands(inputs.len());
                        let mut data = self.read_tensor(&out_buf).to_f32_vec();
                        let extras: Vec<Vec<f32>> = inputs[n_anchor..].iter().map(|t| t.to_f32_vec()).collect();
                        let extras: Vec<&[f32]> = extras.iter().map(|v| v.as_slice()).collect();
                        f.apply_steps(&mut data, &extras);
                        Tensor::from_f32(n.ty.dtype, n.ty.shape.clone(), data).expect("same shape")
                    }
                    (op, _) => {
                        let refs: Vec<&Tensor> = inputs.iter().collect();
                        op.eval(&refs, &n.ty)
                    }
                };
                self.write_tensor(&out_buf, &result);
            }
            Insn::Fence => {}
        }
        Ok(())
    }
}

/// Count one instruction's events: its traffic `t`, vector-unit `work`, and the array's
/// MACs, scratchpad and accumulator accesses.
fn count(c: &mut Counters, cfg: &super::config::AccelConfig, insn: &Insn, t: &Traffic, work: u64) {
    c.vector_ops += work;
    c.dram_read += t.dram_read;
    c.dram_written += t.dram_written;
    c.spad_bytes += t.on_chip;
    let eb = cfg.dtype.bytes();
    match *insn {
        Insn::LoadSpad { rows, cols, .. } => c.spad_bytes += rows as u64 * cols as u64 * eb,
        Insn::LoadIm2col { rows, cols, .. } => c.spad_bytes += rows as u64 * cols as u64 * eb,
        Insn::Preload { k, n, .. } => c.spad_bytes += k as u64 * n as u64 * eb,
        Insn::Compute { accumulate, m, k, n, .. } => {
            let (m, k, n) = (m as u64, k as u64, n as u64);
            c.macs += m * k * n;
            // A streams once; os reads its B block once; each output is read and written.
            c.spad_bytes += m * k * eb + if cfg.dataflow == Dataflow::Ws { 0 } else { k * n * eb };
            c.acc_bytes += m * n * 4 * if accumulate { 2 } else { 1 };
        }
        Insn::Store { rows, cols, .. } => c.acc_bytes += rows as u64 * cols as u64 * 4,
        Insn::Vector { .. } | Insn::Fence => {}
    }
}

/// Element operations the vector unit performs for a node: MACs for the products it runs
/// (attention, LSTM, or products the array cannot take), a few passes over the data for
/// normalisations, one per element otherwise.
pub fn vector_work(p: &Program, id: crate::ir::NodeId) -> u64 {
    let graph = &p.graph;
    let node = graph.node(id);
    let Some(op) = node.op() else { return 0 };
    let types = graph.operand_types(id);
    let elems = node.ty.numel() as u64;
    let input_elems: u64 = types.iter().map(|t| t.numel() as u64).sum();
    let macs = op.macs(&types, &node.ty);
    match op {
        Op::Fused(f) if p.steps_only.contains(&id) => elems * f.steps.len() as u64,
        Op::Fused(f) => macs + elems * f.steps.len().max(1) as u64,
        // A few passes: statistics, then the normalized values.
        Op::Softmax(_) | Op::LayerNorm(_) | Op::BatchNorm(_) => 4 * elems,
        // Every input element is read once.
        Op::Pool(_) | Op::GlobalAvgPool(_) => input_elems.max(elems),
        // Products the array cannot take (computed weights, attention, LSTM) cost their MACs.
        Op::Conv2d(_) | Op::Dense(_) | Op::MatMul(_) | Op::Lstm(_) | Op::Attention(_) => macs.max(elems),
        // One operation per element.
        Op::Unary(_)
        | Op::Binary(_)
        | Op::Flatten(_)
        | Op::Reshape(_)
        | Op::Transpose(_)
        | Op::Concat(_)
        | Op::Slice(_)
        | Op::ConvertLayout(_)
        | Op::Quantize(_)
        | Op::Dequantize(_)
        | Op::Requantize(_)
        | Op::Cast(_) => elems,
    }
}

/// Run `p` on `inputs`: outputs, timeline and counters.
pub fn run(p: &Program, inputs: &[Tensor]) -> Result<Outcome, RunError> {
    if inputs.len() != p.inputs.len() {
        return Err(RunError::InputCount { expected: p.inputs.len(), got: inputs.len() });
    }
    if p.without_data {
        return Err(RunError::Program("a program lowered for timing only has no weights to compute with".into()));
    }
    let cfg = &p.config;
    let (spad, acc, weights) = match cfg.dtype {
        ElemType::Int8 => (Spad::Int(vec![0; cfg.scratchpad_elems() as usize]), Acc::Int(vec![0; cfg.accumulator_elems() as usize]), Spad::Int(vec![0; (cfg.rows * cfg.cols) as usize])),
        ElemType::F32 | ElemType::Bf16 => (Spad::Float(vec![0.0; cfg.scratchpad_elems() as usize]), Acc::Float(vec![0.0; cfg.accumulator_elems() as usize]), Spad::Float(vec![0.0; (cfg.rows * cfg.cols) as usize])),
    };
    let mut m = Machine { p, dram: vec![0; p.dram_bytes as usize], spad, acc, weights };
    for (at, bytes) in &p.init {
        m.dram[*at as usize..*at as usize + bytes.len()].copy_from_slice(bytes);
    }
    for (i, (b, t)) in p.inputs.iter().zip(inputs).enumerate() {
        if t.shape() != b.shape.as_slice() {
            return Err(RunError::InputShape { index: i, expected: b.shape.clone(), got: t.shape().to_vec() });
        }
        m.write_tensor(b, t);
    }
    let timing = simulate(p, Some(&mut m))?;
    let outputs = p.outputs.iter().map(|b| m.read_tensor(b)).collect();
    Ok(Outcome { outputs, timing })
}

/// Time `p` without computing any value: the cycles and events of [`run`], exactly, for a
/// fraction of the cost (what `nnc sweep` does for every configuration).
pub fn time(p: &Program) -> Result<Timing, RunError> {
    simulate(p, None)
}

/// Walk the instruction stream once: schedule and count every instruction and, given a
/// machine, execute it.
fn simulate(p: &Program, mut machine: Option<&mut Machine>) -> Result<Timing, RunError> {
    let mut tl = Timeline::new(p.insns.len());
    let mut counters = Counters::default();
    // Layers are contiguous instruction ranges in order; fences sit between them.
    let mut layer_counters = Vec::with_capacity(p.layers.len());
    let mut next_layer = 0;
    let mut at_layer_start = Counters::default();
    for (i, insn) in p.insns.iter().enumerate() {
        if p.layers.get(next_layer).is_some_and(|l| l.start == i) {
            at_layer_start = counters.clone();
        }
        let t = traffic(p, insn);
        let work = match insn {
            Insn::Vector { node, .. } => vector_work(p, crate::ir::NodeId::new(*node as usize)),
            _ => 0,
        };
        if let Some(m) = machine.as_deref_mut() {
            m.exec(insn)?;
        }
        count(&mut counters, &p.config, insn, &t, work);
        let span = tl.schedule(p, insn, work, &t)?;
        if span.queue == Queue::Compute && !matches!(insn, Insn::Fence) {
            counters.compute_cycles += span.end - span.start;
        }
        if p.layers.get(next_layer).is_some_and(|l| l.end == i + 1) {
            layer_counters.push(counters.minus(&at_layer_start));
            next_layer += 1;
        }
    }
    let total_cycles = tl.spans.iter().map(|s| s.end).max().unwrap_or(0);
    let layer_cycles = p
        .layers
        .iter()
        .map(|l| {
            let spans = &tl.spans[l.start..l.end];
            let start = spans.iter().map(|s| s.start).min().unwrap_or(0);
            spans.iter().map(|s| s.end).max().unwrap_or(start) - start
        })
        .collect();
    Ok(Timing { spans: tl.spans, counters, total_cycles, layer_cycles, layer_counters })
}
