//! The accelerator's timing: an event model over the load, compute and store queues (each
//! instruction starts when its queue is free, the tokens it pops have been pushed and, for
//! DMA, the DRAM port is free; its duration follows the cost rules in
//! `docs/accelerator.md`), and the traffic each instruction moves, which both the timing and
//! the energy counters read.

use super::config::{Dataflow, MemoryModel};
use super::isa::{Insn, Queue};
use super::program::{ActKind, Program};
use crate::ops::Op;
use super::program::RunError;

/// One instruction's place on the timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub queue: Queue,
    pub start: u64,
    pub end: u64,
}

/// Time and energy of one program's instructions.
pub(super) struct Timeline {
    queue_free: [u64; 3],
    dram_free: u64,
    /// Token FIFOs: load→compute, compute→load, compute→store, store→compute.
    tokens: [std::collections::VecDeque<u64>; 4],
    /// End of the last array instruction and whether the array is mid-stream, for overlap.
    last_array_end: Option<u64>,
    /// When the last of all instructions issued so far completes.
    latest_end: u64,
    pub(super) spans: Vec<Span>,
}

// The token channels.
const L2C: usize = 0;
const C2L: usize = 1;
const C2S: usize = 2;
const S2C: usize = 3;

impl Timeline {
    /// An empty timeline for a program of `instructions`.
    pub(super) fn new(instructions: usize) -> Timeline {
        Timeline { queue_free: [0; 3], dram_free: 0, tokens: Default::default(), last_array_end: None, latest_end: 0, spans: Vec::with_capacity(instructions) }
    }

    fn qi(q: Queue) -> usize {
        match q {
            Queue::Load => 0,
            Queue::Compute => 1,
            Queue::Store => 2,
        }
    }

    fn pop(&mut self, channel: usize) -> Result<u64, RunError> {
        self.tokens[channel].pop_front().ok_or_else(|| RunError::Program("an instruction pops a token no earlier instruction pushed".into()))
    }

    pub(super) fn schedule(&mut self, p: &Program, insn: &Insn, work: u64, traffic: &Traffic) -> Result<Span, RunError> {
        let cfg = &p.config;
        let (r, c) = (cfg.rows as u64, cfg.cols as u64);
        let q = insn.queue();
        let qi = Timeline::qi(q);
        let deps = insn.deps();
        let mut ready = self.queue_free[qi];
        if let Insn::Fence = insn {
            // Everything issued so far has completed, DMA latency included.
            ready = ready.max(self.latest_end);
        }
        match q {
            Queue::Load => {
                if deps.pop_next {
                    ready = ready.max(self.pop(C2L)?);
                }
            }
            Queue::Compute => {
                if deps.pop_prev {
                    ready = ready.max(self.pop(L2C)?);
                }
                if deps.pop_next {
                    ready = ready.max(self.pop(S2C)?);
                }
            }
            Queue::Store => {
                if deps.pop_prev {
                    ready = ready.max(self.pop(C2S)?);
                }
            }
        }
        let ideal = cfg.memory == MemoryModel::Ideal;
        // DRAM requests are pipelined: the queue may issue its next request once this one's
        // bytes are on the bus; the latency only delays this instruction's completion.
        let mut latency = 0;
        let mut dma = |bytes: u64, this: &mut Timeline, start: &mut u64| -> u64 {
            // On-chip moves (bytes = 0) keep pace with the array, like its own streaming.
            if ideal || bytes == 0 {
                return 0;
            }
            *start = (*start).max(this.dram_free);
            // `validate` bounds bandwidth and clock, so this is far below u64::MAX.
            let transfer = (bytes as f64 / cfg.dram_bytes_per_cycle()).ceil() as u64;
            this.dram_free = start.saturating_add(transfer);
            latency = cfg.dram_latency_cycles;
            latency + transfer
        };
        // DMA, vector and fence instructions spend one cycle to issue, then their own time.
        // The array's sequencer decodes its next preload or compute while the current fold
        // streams, so those have no issue cycle: folds run back to back, as SCALE-Sim counts.
        let mut start = ready;
        let issue = u64::from(!matches!(insn, Insn::Preload { .. } | Insn::Compute { .. }));
        let duration = issue + match *insn {
            Insn::LoadSpad { .. } | Insn::LoadIm2col { .. } => dma(traffic.dram_bytes(), self, &mut start),
            Insn::Preload { .. } => {
                // Double-buffered weights shift in while the previous fold streams.
                if cfg.fold_overlap && self.last_array_end.is_some_and(|e| start <= e) {
                    0
                } else {
                    r
                }
            }
            Insn::Compute { m, k, .. } => {
                let stream = if cfg.dataflow == Dataflow::Ws { m as u64 } else { k as u64 };
                let fill_drain = r + c - 2;
                let busy = if cfg.fold_overlap { stream.max(r) } else { stream };
                // Back to back with the previous fold, the skew overlaps; after a gap, the
                // pipeline fills and drains again.
                if cfg.fold_overlap && self.last_array_end.is_some_and(|e| start <= e) {
                    busy
                } else {
                    busy + fill_drain
                }
            }
            Insn::Vector { .. } => {
                let lanes = c.max(1);
                let compute = work.div_ceil(lanes);
                let mut s = start;
                let mem = dma(traffic.dram_bytes(), self, &mut s);
                start = s;
                compute.max(mem)
            }
            // The activation unit keeps pace with the array's output (one row per cycle, as
            // rows drain during the fold), so a store costs only its DMA.
            Insn::Store { .. } => dma(traffic.dram_bytes(), self, &mut start),
            Insn::Fence => 0,
        };
        let end = start.saturating_add(duration);
        self.queue_free[qi] = end - latency;
        self.latest_end = self.latest_end.max(end);
        if let Insn::Fence = insn {
            self.queue_free = [end; 3];
        }
        if let Insn::Compute { .. } = insn {
            self.last_array_end = Some(end);
        }
        match q {
            Queue::Load => {
                if deps.push_next {
                    self.tokens[L2C].push_back(end);
                }
            }
            Queue::Compute => {
                if deps.push_prev {
                    self.tokens[C2L].push_back(end);
                }
                if deps.push_next {
                    self.tokens[C2S].push_back(end);
                }
            }
            Queue::Store => {
                if deps.push_prev {
                    self.tokens[S2C].push_back(end);
                }
            }
        }
        let span = Span { queue: q, start, end };
        self.spans.push(span);
        Ok(span)
    }
}

/// What one instruction moves: DRAM bytes each way, and bytes moved within the chip instead
/// (activations resident in an on-chip buffer, `activations_on_chip`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Traffic {
    pub dram_read: u64,
    pub dram_written: u64,
    pub on_chip: u64,
}

impl Traffic {
    pub fn dram_bytes(&self) -> u64 {
        self.dram_read + self.dram_written
    }

    fn read(&mut self, p: &Program, addr: u64, bytes: u64) {
        if p.on_chip(addr) {
            self.on_chip += bytes;
        } else {
            self.dram_read += bytes;
        }
    }

    fn write(&mut self, p: &Program, addr: u64, bytes: u64) {
        if p.on_chip(addr) {
            self.on_chip += bytes;
        } else {
            self.dram_written += bytes;
        }
    }
}

/// The traffic of one instruction; the single definition the counters and the timing share.
pub fn traffic(p: &Program, insn: &Insn) -> Traffic {
    let mut t = Traffic::default();
    match *insn {
        Insn::LoadSpad { dram, rows, cols, src, .. } => t.read(p, dram, rows as u64 * cols as u64 * src.bytes()),
        Insn::LoadIm2col { dram, conv, m0, rows, k0, cols, .. } => t.read(p, dram, p.convs.get(conv as usize).map_or(0, |d| d.block_dram_bytes(m0, rows, k0, cols))),
        Insn::Store { dram, rows, cols, act, .. } => {
            let a = p.acts.get(act as usize);
            t.write(p, dram, rows as u64 * cols as u64 * a.map_or(4, |a| a.out_type().bytes()));
            // The per-channel bias and scale tables: constants in DRAM, read with the tile.
            let tables = a.map_or(0, |a| a.bias.is_some() as u64 + matches!(a.kind, ActKind::Requantize { .. } | ActKind::Dequantize { .. }) as u64);
            t.dram_read += tables * cols as u64 * 4;
        }
        Insn::Vector { node, .. } => {
            let id = crate::ir::NodeId::new(node as usize);
            let operands = p.graph.operands(id);
            let b = &p.values[&id];
            // A fused op's steps after the array read its result and the extra operands.
            let steps_after_array = p.steps_only.contains(&id).then(|| p.graph.node(id).op()).flatten();
            let reads = if let Some(Op::Fused(f)) = steps_after_array {
                t.read(p, b.addr, b.bytes());
                &operands[f.anchor_operands(operands.len())..]
            } else {
                &operands[..]
            };
            for o in reads {
                let v = &p.values[o];
                t.read(p, v.addr, v.bytes());
            }
            t.write(p, b.addr, b.bytes());
        }
        Insn::Preload { .. } | Insn::Compute { .. } | Insn::Fence => {}
    }
    t
}
