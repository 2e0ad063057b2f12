//! Layout selection for the CPU: which rank-4 activations leave row-major (NCHW) order for the
//! target's channel-vector layout, and where `convert_layout` ops go between them.
//!
//! The target decides the alternative: with GEMM microkernels, channels-last (NHWC), whose
//! convolutions are matrix products over pixel-major patches; without them, blocked NCHW4c,
//! whose four-channel blocks are exactly one of Cranelift's `f32x4` vectors. (Each is the
//! better of the two for its code generator, so the choice among three layouts comes down to
//! two per target.)
//!
//! Each op that can run either way (by the layout rule in `ops::layout`, and with a kernel for
//! it) is a free choice; everything else is row-major, as are the graph's inputs, weights and
//! outputs. The choice minimizes estimated time: the ops' own run time in each layout plus the
//! conversions the choice forces. With two layouts that is a minimum s–t cut: the source side
//! is row-major, the sink side the alternative, an op's preference is an edge to the side it
//! would rather not leave, and each value's conversion in either direction is one edge,
//! paid once however many consumers read the converted value (the rewrite converts each
//! value at most once per layout). The cut is exact, not a heuristic: no other labelling has
//! a lower estimated cost.
//!
//! The estimates, in picoseconds, are measurements of this code generator (BENCHMARKS.md,
//! "Layouts"): depthwise convolutions and pooling vectorize along channels in either
//! alternative and not in row-major order; with microkernels, NHWC patches are cheaper to
//! gather; without them, dense convolutions run register-blocked in NCHW4c and as plain
//! loops in NCHW; a conversion touches each element once.

use crate::ir::{Graph, Layout, Node, NodeId, NodeKind, TensorType};
use crate::kernel_plan::{choose, estimated_ps, Kernel, Known, Operands};
use crate::ops::layout::{follows, ConvertLayout, Follows};
use crate::ops::Op;
use crate::target::CpuTarget;
use petgraph::algo::dinics;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use std::collections::HashMap;

/// Converting one element between layouts, in picoseconds (BENCHMARKS.md, "Layouts"); the
/// ops' own costs are the kernel plan's (`kernel_plan::estimated_ps`).
const CONVERT_PS_PER_ELEMENT: u64 = 300;
/// The most one edge may cost (about 69 ms): with at most a million nodes and a few edges
/// each, every finite cut stays far below `UNCUTTABLE` and no sum overflows.
const MAX_EDGE_PS: u64 = 1 << 36;
/// A capacity no finite cut pays: larger than every cost the model sums.
const UNCUTTABLE: u64 = 1 << 60;

/// The layout a target's kernels prefer to row-major.
pub fn alternative_layout(target: &CpuTarget) -> Layout {
    if target.ukernels { Layout::Nhwc } else { Layout::Nchw4c }
}

/// The layout rule of `id`, if it is free to run in `alt` on `target`.
fn free_rule(graph: &Graph, known: &Known, id: NodeId, alt: Layout, target: &CpuTarget) -> Option<Follows> {
    let node = graph.node(id);
    let op = node.op()?;
    let operands = graph.operand_types(id);
    let rule = follows(op, &operands, &node.ty.shape)?;
    // Blocks of four channels: every value the layout reaches needs a multiple of four.
    let fours = |t: &TensorType| t.rank() != 4 || t.shape[1].is_multiple_of(4);
    if alt == Layout::Nchw4c && (!rule.operands.iter().all(|&i| fours(operands[i])) || (rule.result && !fours(&node.ty))) {
        return None;
    }
    // Only where `alt` has a fast kernel: none at all (windows too large to unroll), or only
    // the scalar fallback of channel-vector convolutions, keeps the node row-major.
    let out = node.ty.with_layout(if rule.result { alt } else { Layout::RowMajor });
    match in_layout(graph, known, id, &rule, alt, |operands| choose(op, operands, &out, target)) {
        None => None,
        // The scalar fallback keeps a node row-major, unless asked for by name.
        Some(Kernel::VectorDirect) if !target.forced_kernels.contains(Kernel::VectorDirect) => None,
        Some(_) => Some(rule),
    }
}

/// `f` of `id`'s operands as they would be with the operands its rule names in `layout`.
fn in_layout<R>(graph: &Graph, known: &Known, id: NodeId, rule: &Follows, layout: Layout, f: impl FnOnce(&Operands) -> R) -> R {
    let operands = graph.operands(id);
    let types: Vec<TensorType> = operands
        .iter()
        .enumerate()
        .map(|(i, &o)| if rule.operands.contains(&i) { graph.node(o).ty.with_layout(layout) } else { graph.node(o).ty.clone() })
        .collect();
    f(&Operands { types: types.iter().collect(), constant: operands.iter().map(|&o| known.contains(o)).collect(), interpreter_bits: known.interpreter_bits(), weight_density: operands.get(1).and_then(|&w| known.density(w)), weight_is_leaf: operands.get(1).is_some_and(|&w| crate::kernel_plan::is_weight_node(graph, w)) })
}

/// Estimated run time of `id` (free) as (row-major, alternative layout), by the kernel the
/// plan would choose in each.
fn op_cost(graph: &Graph, known: &Known, id: NodeId, rule: &Follows, alt: Layout, target: &CpuTarget) -> (u64, u64) {
    let node = graph.node(id);
    let op = node.op().expect("free nodes are ops");
    let cost = |layout: Layout| {
        let out = node.ty.with_layout(if rule.result { layout } else { Layout::RowMajor });
        in_layout(graph, known, id, rule, layout, |operands| choose(op, operands, &out, target).map(|k| (k, estimated_ps(k, op, operands, &out, target))))
    };
    let (row_major, alternative) = (cost(Layout::RowMajor), cost(alt));
    // A kernel asked for by name (`--kernels`) decides the layout where only one has it.
    let forced = |c: &Option<(Kernel, u64)>| c.is_some_and(|(k, _)| target.forced_kernels.contains(k));
    let price = |c: Option<(Kernel, u64)>| c.map_or(MAX_EDGE_PS, |(_, ps)| ps);
    match (forced(&row_major), forced(&alternative)) {
        (true, false) => (0, MAX_EDGE_PS),
        (false, true) => (MAX_EDGE_PS, 0),
        _ => (price(row_major), price(alternative)),
    }
}

fn convert_cost(graph: &Graph, id: NodeId) -> u64 {
    (graph.node(id).ty.numel() as u64).saturating_mul(CONVERT_PS_PER_ELEMENT)
}

pub fn select_layouts(graph: &mut Graph, target: &CpuTarget) -> bool {
    // Layouts are chosen once; a graph that has any is left as it is.
    let chosen = graph.node_ids().any(|id| graph.node(id).ty.layout != Layout::RowMajor || matches!(graph.node(id).op(), Some(Op::ConvertLayout(_))));
    if chosen {
        return false;
    }
    let order = graph.topo_order();
    let alt = alternative_layout(target);
    let known = Known::of(graph);
    let rules: HashMap<NodeId, Follows> = order.iter().filter_map(|&id| free_rule(graph, &known, id, alt, target).map(|r| (id, r))).collect();
    if rules.is_empty() {
        return false;
    }

    // The cut network: source = row-major, sink = the alternative layout.
    let mut net: DiGraph<(), u64> = DiGraph::new();
    let (source, sink) = (net.add_node(()), net.add_node(()));
    let vertex: HashMap<NodeId, NodeIndex> = rules.keys().map(|&id| (id, net.add_node(()))).collect();
    // A value whose layout can change: a free node whose result follows its layout.
    let free_value = |id: NodeId| rules.get(&id).is_some_and(|r| r.result);
    // Each op's preference.
    for &id in rules.keys() {
        let v = vertex[&id];
        let (row_major, alternative) = op_cost(graph, &known, id, &rules[&id], alt, target);
        if row_major > alternative {
            net.add_edge(v, sink, (row_major - alternative).min(MAX_EDGE_PS));
        } else if alternative > row_major {
            net.add_edge(source, v, (alternative - row_major).min(MAX_EDGE_PS));
        }
    }
    // Each value's conversions, charged once per value and direction however many consumers
    // need them: a value converted to the alternative layout pays `producer → to_alt` once,
    // and every consumer reading it that way hangs off `to_alt` by an uncuttable edge; the
    // conversion back to row-major likewise through `to_row_major`.
    let producers: Vec<NodeId> = order.iter().copied().filter(|&id| graph.node(id).ty.rank() == 4).collect();
    for producer in producers {
        let users = graph.users(producer);
        let following: Vec<NodeIndex> = users.iter().filter(|&&(user, pos)| rules.get(&user).is_some_and(|r| r.operands.contains(&pos))).map(|(user, _)| vertex[user]).collect();
        let cost = convert_cost(graph, producer).min(MAX_EDGE_PS);
        let at = if free_value(producer) { vertex[&producer] } else { source };
        if !following.is_empty() {
            let to_alt = net.add_node(());
            net.add_edge(at, to_alt, cost);
            for &v in &following {
                net.add_edge(to_alt, v, UNCUTTABLE);
            }
        }
        if free_value(producer) {
            // Readers that may want it row-major: following consumers (if they end up
            // row-major), and every other consumer or a graph output (always).
            let fixed = graph.is_output(producer) || users.iter().any(|&(user, pos)| !rules.get(&user).is_some_and(|r| r.operands.contains(&pos)));
            let to_row_major = net.add_node(());
            net.add_edge(to_row_major, at, cost);
            for &v in &following {
                net.add_edge(v, to_row_major, UNCUTTABLE);
            }
            if fixed {
                net.add_edge(source, to_row_major, UNCUTTABLE);
            }
        }
    }
    let (_, flows) = dinics(&net, source, sink);
    // Row-major: what the source still reaches through edges with spare capacity (forwards)
    // or flow to cancel (backwards).
    let mut row_major = vec![false; net.node_count()];
    let mut stack = vec![source];
    row_major[source.index()] = true;
    while let Some(n) = stack.pop() {
        let forward = net.edges(n).filter(|e| flows[e.id().index()] < *e.weight()).map(|e| e.target());
        let backward = net.edges_directed(n, petgraph::Direction::Incoming).filter(|e| flows[e.id().index()] > 0).map(|e| e.source());
        let next: Vec<NodeIndex> = forward.chain(backward).filter(|m| !row_major[m.index()]).collect();
        for m in next {
            row_major[m.index()] = true;
            stack.push(m);
        }
    }
    let channels_last: HashMap<NodeId, bool> = vertex.iter().map(|(&id, v)| (id, !row_major[v.index()])).collect();
    if !channels_last.values().any(|&c| c) {
        return false;
    }

    // Rewrite: set result layouts in topological order, then give every operand the layout its
    // consumer reads, converting where they differ (one conversion per value and layout).
    let mut conversions: HashMap<(NodeId, Layout), NodeId> = HashMap::new();
    for &id in &order {
        let Some(rule) = rules.get(&id) else {
            retarget_operands(graph, id, &[], Layout::RowMajor, &mut conversions);
            continue;
        };
        let layout = if channels_last[&id] { alt } else { Layout::RowMajor };
        retarget_operands(graph, id, &rule.operands, layout, &mut conversions);
        if rule.result {
            graph.node_mut(id).ty.layout = layout;
        }
    }
    for i in 0..graph.outputs.len() {
        let id = graph.outputs[i].1;
        if graph.node(id).ty.layout != Layout::RowMajor {
            graph.outputs[i].1 = convert(graph, id, Layout::RowMajor, &mut conversions);
        }
    }
    true
}

/// Make operand `pos ∈ following` of `id` arrive in `layout`, every other operand row-major.
fn retarget_operands(graph: &mut Graph, id: NodeId, following: &[usize], layout: Layout, conversions: &mut HashMap<(NodeId, Layout), NodeId>) {
    let mut operands = graph.operands(id);
    let mut changed = false;
    for (pos, operand) in operands.iter_mut().enumerate() {
        let want = if following.contains(&pos) { layout } else { Layout::RowMajor };
        if graph.node(*operand).ty.layout != want {
            *operand = convert(graph, *operand, want, conversions);
            changed = true;
        }
    }
    if changed {
        graph.set_operands(id, &operands);
    }
}

fn convert(graph: &mut Graph, value: NodeId, to: Layout, conversions: &mut HashMap<(NodeId, Layout), NodeId>) -> NodeId {
    if let Some(&c) = conversions.get(&(value, to)) {
        return c;
    }
    let from = graph.node(value);
    let node = Node { name: format!("{}.to_{}", from.name, to.name()), kind: NodeKind::Op(Op::ConvertLayout(ConvertLayout { to })), ty: from.ty.with_layout(to), span: None, tile: None, kernel: None };
    let c = graph.add(node, &[value]);
    conversions.insert((value, to), c);
    c
}

#[cfg(test)]
mod tests {
    use crate::passes::testing::check_pass;

    #[test]
    fn depthwise_blocks_run_channels_last_with_conversions_only_at_the_ends() {
        // An inverted-residual block: expand, depthwise, project, residual add. The depthwise
        // convolution pulls its neighbours channels-last; the input converts once on the way
        // in and the pooled result needs no conversion on the way out.
        let ir = check_pass(
            "select-layouts",
            "model m {
                input x: f32[1, 32, 10, 10]
                e = relu6(conv2d(x, filters=64, kernel=1))
                d = relu6(conv2d(e, filters=64, kernel=3, padding=1, groups=64))
                p = conv2d(d, filters=32, kernel=1)
                r = p + x
                output y = flatten(global_avg_pool(r))
            }",
        );
        assert_eq!(ir.matches("convert_layout(").count(), 1, "{ir}");
        assert!(ir.contains(r#"%x.to_nhwc = convert_layout(%x) to="nhwc""#), "{ir}");
        assert!(ir.contains("groups=64 : f32[1, 64, 10, 10] nhwc"), "{ir}");
        assert!(ir.contains("global_avg_pool(%r) : f32[1, 32, 1, 1] nchw"), "{ir}");
    }

    #[test]
    fn windowed_work_moves_only_when_it_pays_for_its_conversions() {
        // A 3×3 convolution and a max pool over 64 channels save more than the two
        // conversions cost...
        let ir = check_pass(
            "select-layouts",
            "model m {
                input x: f32[1, 64, 16, 16]
                c = relu(conv2d(x, filters=64, kernel=3, padding=1))
                output y = flatten(max_pool(c, kernel=2))
            }",
        );
        assert_eq!(ir.matches("convert_layout(").count(), 2, "{ir}");
        assert!(ir.contains("max_pool(%c) kernel=[2, 2] stride=[2, 2] padding=[0, 0, 0, 0] : f32[1, 64, 8, 8] nhwc"), "{ir}");
        // ...a 1×1 convolution, as fast either way, does not.
        let ir = check_pass(
            "select-layouts",
            "model m {
                input x: f32[1, 64, 16, 16]
                output y = flatten(relu(conv2d(x, filters=64, kernel=1)))
            }",
        );
        assert!(!ir.contains("nhwc"), "{ir}");
    }
}
