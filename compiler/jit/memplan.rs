//! Memory planning for compiled code: every activation (model inputs and op results) gets a
//! fixed offset in one arena per executable, reusing the bytes of values that are dead.
//!
//! `reshape` and `flatten` produce no data: their result is the operand's storage seen with
//! another shape, so the two share one storage whose lifetime covers both. An elementwise
//! op whose full-shape operand dies at that op writes its result over it. Weights stay in
//! buffers the executable owns and take no arena space.

use crate::ir::{Graph, NodeId, NodeKind};
use std::collections::HashMap;

/// Arena offsets are multiples of this, so vector loads never straddle more cache lines than
/// they must.
pub const ALIGN: usize = 64;

/// Where a value lives at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loc {
    /// Byte offset into the arena.
    Arena(usize),
    /// Index of a constant buffer owned by the executable.
    Const(usize),
    /// A model input read where the caller keeps it: the arena holds, at this byte offset
    /// (the start of the input's storage), the address of the input's data, written before
    /// the first kernel runs. Only inputs no kernel writes over (no elementwise op takes
    /// over their storage) are bound so; values that are views of them share the binding.
    Input(usize),
    /// A model output written where the caller will keep it: the arena holds, at this byte
    /// offset, the address of the output's storage, written before the first kernel runs
    /// (so the result needs no copy out of the arena). Values sharing the output's storage
    /// (its views, the elementwise values it overwrites) share the binding.
    Output(usize),
}

pub struct MemoryPlan {
    pub locs: HashMap<NodeId, Loc>,
    /// Bytes of arena the plan needs.
    pub arena_bytes: usize,
    /// The most activation bytes live at once: no plan can use less arena than this.
    pub lower_bound_bytes: usize,
    /// Constant buffers, in `Loc::Const` index order: the node each one holds.
    pub consts: Vec<NodeId>,
    /// Temporary space an op uses while it runs (e.g. an LSTM's cell state).
    pub scratch: HashMap<NodeId, Loc>,
}

/// One run of storage: the values that share it and when it is live (inclusive positions in
/// the schedule).
#[derive(Clone, Copy)]
struct Storage {
    bytes: usize,
    first: usize,
    last: usize,
}

fn is_view(graph: &Graph, id: NodeId) -> bool {
    graph.node(id).op().is_some_and(|op| op.traits().view)
}

/// Elementwise ops (and fused elementwise chains): the kernel reads element i of a
/// full-shape operand before writing element i of the result, so the result may overwrite
/// such an operand in place.
fn elementwise(graph: &Graph, id: NodeId) -> bool {
    graph.node(id).op().is_some_and(|op| op.traits().elementwise)
}

/// What kernels that compute a producer inside its consumer (`kernel_plan::fused_producers`)
/// change in a plan.
#[derive(Default)]
pub struct Fusions {
    /// `(value, reader)`: values read by a later node than their users (a fused producer's
    /// input, read when its consumer runs).
    pub late_reads: Vec<(NodeId, NodeId)>,
    /// Values never stored whole, with the bytes their storage needs (a fused producer's
    /// result, of which its consumer keeps a ring of rows).
    pub partial_bytes: HashMap<NodeId, usize>,
    /// Nodes that share their operand's storage though their op is not a view (head
    /// transposes an attention reads or writes in place).
    pub views: std::collections::HashSet<NodeId>,
}

impl Fusions {
    /// What the fused pairs `consumer → producer` (`kernel_plan::fused_producers`) change on
    /// `threads` threads: a producer's input is read when its consumer runs, and its result
    /// is the consumer's rings.
    pub fn of(graph: &Graph, fused: &HashMap<NodeId, NodeId>, threads: usize) -> Fusions {
        Fusions {
            late_reads: fused.iter().flat_map(|(&consumer, &producer)| graph.operands(producer).into_iter().map(move |o| (o, consumer))).collect(),
            partial_bytes: fused.iter().map(|(&consumer, &producer)| (producer, crate::kernel_plan::ring_floats(graph, consumer, threads) * 4)).collect(),
            views: Default::default(),
        }
    }
}

/// Plan `graph`, whose nodes run in `schedule` order (a topological order); `scratch_bytes`
/// says how much temporary space each node needs while it runs.
///
/// With `outputs_in_place`, each f32 output's storage is the caller's buffer ([`Loc::Output`])
/// unless that makes the arena larger (an output's address lives from the start, where a
/// small output's bytes could have reused a dead value's: 64 bytes more for the MLP's
/// logits); otherwise outputs live in the arena and are copied out.
pub fn plan(graph: &Graph, schedule: &[NodeId], scratch_bytes: &dyn Fn(NodeId) -> usize, fusions: &Fusions, outputs_in_place: bool) -> MemoryPlan {
    let copied = plan_outputs(graph, schedule, scratch_bytes, fusions, false);
    if !outputs_in_place {
        return copied;
    }
    let placed = plan_outputs(graph, schedule, scratch_bytes, fusions, true);
    if placed.arena_bytes <= copied.arena_bytes {
        placed
    } else {
        copied
    }
}

/// [`plan`], outputs in the caller's buffers or not.
fn plan_outputs(graph: &Graph, schedule: &[NodeId], scratch_bytes: &dyn Fn(NodeId) -> usize, fusions: &Fusions, outputs_in_place: bool) -> MemoryPlan {
    let position: HashMap<NodeId, usize> = schedule.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let end = schedule.len();
    // Which storage each value uses; views join their operand's.
    let mut storage_of: HashMap<NodeId, usize> = HashMap::new();
    let mut storages: Vec<Storage> = Vec::new();
    let mut locs = HashMap::new();
    let mut consts = Vec::new();
    let mut scratch_storage: Vec<(NodeId, usize)> = Vec::new();
    // Last position at which each value is read (outputs: past the end).
    let mut last_use: HashMap<NodeId, usize> = schedule
        .iter()
        .map(|&id| {
            let users = graph.users(id).iter().map(|(u, _)| position[u]).max().unwrap_or(position[&id]);
            (id, if graph.is_output(id) { end } else { users })
        })
        .collect();
    for (value, reader) in &fusions.late_reads {
        if let (Some(last), Some(&at)) = (last_use.get_mut(value), position.get(reader)) {
            *last = (*last).max(at);
        }
    }
    let mut members: Vec<Vec<NodeId>> = Vec::new();
    // Inputs' storages, and the storages some kernel writes over in place.
    let mut input_storages: Vec<usize> = Vec::new();
    let mut written = std::collections::HashSet::new();
    for &id in schedule {
        let node = graph.node(id);
        let i = position[&id];
        match &node.kind {
            // Weights, bound (constants) or not yet (parameters, when only planning), live
            // outside the arena.
            NodeKind::Const(_) | NodeKind::Param => {
                locs.insert(id, Loc::Const(consts.len()));
                consts.push(id);
            }
            NodeKind::Input { .. } | NodeKind::Op(_) => {
                // A view shares its operand's storage; an elementwise op may take over the
                // storage of an operand whose every value is dead after this node.
                let operands = graph.operands(id);
                let in_place = || {
                    operands.iter().copied().find(|o| {
                        let Some(&s) = storage_of.get(o) else { return false };
                        graph.node(*o).ty.shape == node.ty.shape
                            && graph.node(*o).ty.dtype == node.ty.dtype
                            && members[s].iter().all(|m| last_use[m] <= i)
                            // A broadcast operand in the same storage would be read at other
                            // indices after they are overwritten.
                            && operands.iter().all(|o2| storage_of.get(o2) != Some(&s) || graph.node(*o2).ty.shape == node.ty.shape)
                    })
                };
                let view = is_view(graph, id) || fusions.views.contains(&id);
                let source = if view {
                    operands.first().copied()
                } else if elementwise(graph, id) {
                    in_place()
                } else {
                    None
                };
                let shared = source.and_then(|s| storage_of.get(&s).copied());
                let const_source = source.and_then(|s| locs.get(&s).copied());
                match (shared, const_source) {
                    (Some(storage), _) => {
                        storage_of.insert(id, storage);
                        members[storage].push(id);
                        if !view {
                            written.insert(storage);
                        }
                    }
                    // A view of a constant is that constant.
                    (None, Some(loc)) => {
                        locs.insert(id, loc);
                    }
                    (None, None) => {
                        // Inputs are written before the first kernel runs.
                        let first = if matches!(node.kind, NodeKind::Input { .. }) { 0 } else { i };
                        if matches!(node.kind, NodeKind::Input { .. }) {
                            input_storages.push(storages.len());
                        }
                        storage_of.insert(id, storages.len());
                        members.push(vec![id]);
                        let bytes = fusions.partial_bytes.get(&id).copied().unwrap_or_else(|| node.ty.numel() * super::lower::int8::stored_bytes(node.ty.dtype));
                        storages.push(Storage { bytes, first, last: first });
                    }
                }
                let extra = scratch_bytes(id);
                if extra > 0 {
                    scratch_storage.push((id, storages.len()));
                    members.push(Vec::new());
                    storages.push(Storage { bytes: extra, first: i, last: i });
                }
            }
        }
    }
    // Inputs nothing writes over are read where the caller keeps them; their storage holds
    // only the address (at its start).
    let bound: std::collections::HashSet<usize> = input_storages.iter().copied().filter(|s| !written.contains(s)).collect();
    // Storages that are one f32 output's (named once, not an input's) live in the caller's
    // buffer for it.
    let placed_out: std::collections::HashSet<usize> = if outputs_in_place {
        let named = |id: NodeId| graph.outputs.iter().filter(|(_, o)| *o == id).count();
        (0..storages.len())
            .filter(|s| !input_storages.contains(s))
            .filter(|&s| {
                let outs: Vec<NodeId> = members[s].iter().copied().filter(|&m| graph.is_output(m)).collect();
                matches!(outs.as_slice(), [o] if named(*o) == 1 && graph.node(*o).ty.dtype == nnc_runtime::DType::F32 && storages[s].bytes == graph.node(*o).ty.numel() * 4)
            })
            .collect()
    } else {
        Default::default()
    };
    // Their slots are written before the first kernel, like a bound input's: live from the
    // start (an earlier value placed there would overwrite the address).
    for &s in &placed_out {
        storages[s].first = 0;
    }
    // Lifetimes: a storage lives until the last use of any value in it; outputs to the end.
    for &id in schedule {
        let Some(&s) = storage_of.get(&id) else { continue };
        storages[s].last = storages[s].last.max(last_use[&id]);
    }
    let (mut offsets, mut arena_bytes) = first_fit(&storages);
    // Bound inputs need only their address's 8 bytes, but first fit is greedy: in creation
    // order, freeing the rest moved everything placed after and grew ResNet-18's arena from
    // 4.21 to 4.40 MiB (MobileNetV2's from 2.68 to 3.28), while the 1024³ product's halved.
    // Keep whichever layout is smaller.
    if !bound.is_empty() || !placed_out.is_empty() {
        let slim: Vec<Storage> = storages.iter().enumerate().map(|(k, s)| Storage { bytes: if bound.contains(&k) || placed_out.contains(&k) { 8 } else { s.bytes }, ..*s }).collect();
        let (slim_offsets, slim_bytes) = first_fit(&slim);
        if slim_bytes < arena_bytes {
            (offsets, arena_bytes, storages) = (slim_offsets, slim_bytes, slim);
        }
    }
    let mut lower_bound_bytes = 0;
    for i in 0..=end {
        let live: usize = storages.iter().filter(|s| s.first <= i && i <= s.last).map(|s| s.bytes).sum();
        lower_bound_bytes = lower_bound_bytes.max(live);
    }
    for (&id, &s) in &storage_of {
        let loc = if bound.contains(&s) {
            Loc::Input(offsets[s])
        } else if placed_out.contains(&s) {
            Loc::Output(offsets[s])
        } else {
            Loc::Arena(offsets[s])
        };
        locs.insert(id, loc);
    }
    let scratch = scratch_storage.into_iter().map(|(id, s)| (id, Loc::Arena(offsets[s]))).collect();
    MemoryPlan { locs, arena_bytes: arena_bytes.next_multiple_of(ALIGN), lower_bound_bytes, consts, scratch }
}

/// Offsets for `storages` and the bytes they span: the better of first fit in creation order
/// and first fit largest first (ties by start), as TensorFlow Lite's greedy-by-size planner
/// does. Largest first reached the liveness lower bound on ResNet-18 (4.21 → 3.83 MiB) and
/// MobileNetV2 (2.68 → 2.30 MiB); their run times were ties.
fn first_fit(storages: &[Storage]) -> (Vec<usize>, usize) {
    let by_creation: Vec<usize> = (0..storages.len()).collect();
    let mut by_size = by_creation.clone();
    by_size.sort_by_key(|&k| (std::cmp::Reverse(storages[k].bytes), storages[k].first));
    let (in_order, largest_first) = (first_fit_in(storages, &by_creation), first_fit_in(storages, &by_size));
    if largest_first.1 < in_order.1 {
        largest_first
    } else {
        in_order
    }
}

/// First fit in `order`: each storage at the lowest offset that overlaps no storage placed
/// before it and live at the same time. Storages are few (one per op) so the quadratic scan
/// is cheap.
fn first_fit_in(storages: &[Storage], order: &[usize]) -> (Vec<usize>, usize) {
    let mut offsets: Vec<usize> = vec![usize::MAX; storages.len()];
    let mut arena_bytes = 0;
    for (n, &k) in order.iter().enumerate() {
        let s = &storages[k];
        let mut busy: Vec<(usize, usize)> = order[..n]
            .iter()
            .map(|&o| (&storages[o], offsets[o]))
            .filter(|(o, _)| o.first <= s.last && s.first <= o.last)
            .map(|(o, off)| (off, off + o.bytes))
            .collect();
        busy.sort_unstable();
        let mut offset = 0;
        for (start, stop) in busy {
            if offset + s.bytes <= start {
                break;
            }
            offset = offset.max(stop.next_multiple_of(ALIGN));
        }
        offsets[k] = offset;
        arena_bytes = arena_bytes.max(offset + s.bytes);
    }
    (offsets, arena_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{build_graph, Source};

    #[test]
    fn dead_values_share_space_and_views_alias() {
        let src = "model m {
            input x: f32[1, 256]
            a = relu(x)
            b = tanh(a)
            c = sigmoid(b)
            f = reshape(c, [16, 16])
            output y = flatten(f) * 2
        }";
        let g = build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap();
        let order = g.topo_order();
        let p = plan(&g, &order, &|_| 0, &Fusions::default(), false);
        let loc = |n: &str| p.locs[&g.by_name(n).unwrap()];
        // x, a, b, c are 1 KiB each and each dies where the next is made: the elementwise
        // chain runs in place in one buffer.
        assert_eq!(p.arena_bytes, 1024);
        assert_eq!(loc("f"), loc("c"), "reshape is a view");
        assert_eq!(loc("a"), loc("x"), "relu overwrites its dead operand");
        assert!(matches!(loc("x"), Loc::Arena(_)), "an input a kernel overwrites is copied into the arena");
        assert_eq!(loc("b"), loc("a"));
    }

    #[test]
    fn inputs_only_read_are_bound_where_the_caller_keeps_them() {
        let src = "model m {
            input x: f32[6, 40]
            input w: f32[40, 24]
            output y = relu(x @ w)
            output z = reshape(x, [240])
        }";
        let g = build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap();
        let order = g.topo_order();
        let p = plan(&g, &order, &|_| 0, &Fusions::default(), false);
        let loc = |n: &str| p.locs[&g.by_name(n).unwrap()];
        let (Loc::Input(x), Loc::Input(w)) = (loc("x"), loc("w")) else { panic!("x and w are only read: {:?} {:?}", loc("x"), loc("w")) };
        assert_ne!(x, w);
        assert_eq!(loc("z"), loc("x"), "a view of a bound input shares its binding");
        assert!(matches!(loc("y"), Loc::Arena(_)));
        // x's address (live to the end, as z is an output), w's, then the product: the inputs'
        // bytes are not needed.
        assert_eq!(p.arena_bytes, 64 + 64 + 576);
    }

    #[test]
    fn outputs_are_computed_in_the_callers_buffer_its_address_live_from_the_start() {
        let plan_of = |src: &str, in_place: bool| {
            let g = build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap();
            let p = plan_outputs(&g, &g.topo_order(), &|_| 0, &Fusions::default(), in_place);
            let bytes = |in_place| plan_outputs(&g, &g.topo_order(), &|_| 0, &Fusions::default(), in_place).arena_bytes;
            let chosen = plan(&g, &g.topo_order(), &|_| 0, &Fusions::default(), true);
            assert_eq!(chosen.arena_bytes, bytes(true).min(bytes(false)), "plan keeps the smaller arena");
            let locs: HashMap<String, Loc> = ["h", "g", "y", "z"].iter().filter_map(|n| Some((n.to_string(), p.locs[&g.by_name(n)?]))).collect();
            (p.arena_bytes, locs)
        };
        let src = "model m {
            input x: f32[4, 64]
            input w: f32[64, 64]
            h = relu(x @ w)
            g = tanh(h @ w)
            output y = g @ w
        }";
        let (_, loc) = plan_of(src, true);
        let Loc::Output(slot) = loc["y"] else { panic!("y is an output: {:?}", loc["y"]) };
        // h is made before y's storage is first written, but the address must survive it.
        let Loc::Arena(h) = loc["h"] else { panic!("h lives in the arena") };
        assert!(slot + 8 <= h || h + 1024 <= slot, "h at {h} overlaps y's address at {slot}");
        // A product's result needs only its address in the arena (as its bound operands do).
        let product = "model m {
            input x: f32[4, 64]
            input w: f32[64, 64]
            output y = x @ w
        }";
        assert_eq!((plan_of(product, true).0, plan_of(product, false).0), (3 * 64, 2 * 64 + 1024));
        // The elementwise values an output overwrites share its buffer.
        let (_, loc) = plan_of(&src.replace("output y = g @ w", "output y = relu(g)"), true);
        assert!(matches!(loc["y"], Loc::Output(_)) && loc["g"] == loc["y"], "{loc:?}");
        // An output whose storage holds another output (a view of it) stays in the arena.
        let (_, loc) = plan_of(&src.replace("output y = g @ w", "output y = g @ w\n            output z = reshape(y, [256])"), true);
        assert!(matches!(loc["y"], Loc::Arena(_)) && loc["z"] == loc["y"], "{loc:?}");
    }
}
