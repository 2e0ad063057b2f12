//! `channels:F`: structured pruning. In each group of coupled channels, the fraction `F` with
//! the smallest L1 norm of their filters is removed, and with them everything that depends
//! on them, so the graph really has fewer channels (as Torch-Pruning's DepGraph does).
//!
//! Channels are coupled when removing one forces removing another: a convolution's or dense
//! layer's output channels pass unchanged through batch norm, activations and pooling; the
//! two operands of an elementwise add (a residual) must keep the same channels, so the
//! filters of every layer feeding a residual stream form one group; a depthwise convolution
//! keeps its input's channels. A group loses its channels in every layer that produces it
//! (weights' rows and biases), every op that carries per-channel parameters (batch-norm and
//! layer-norm entries, broadcast constants, a depthwise convolution's filters) and every
//! consumer's matching input channels (a convolution's weight columns, a dense layer's,
//! through a flatten each channel's block of features). Concatenation along channels lays
//! groups side by side.
//!
//! What cannot follow a channel keeps it: the model's inputs and outputs keep their shapes, and
//! reshapes, transposes, matmuls, attention, LSTMs, grouped (non-depthwise) convolutions,
//! slices and softmaxes across channels, and weights shared by several layers pin the groups
//! they touch. `--prune-skip` pins the groups a named layer produces.

use super::{count, skipped, Weight};
use crate::ir::{Graph, NodeId, NodeKind};
use crate::ops::Op;
use nnc_runtime::Tensor;
use std::collections::HashMap;

/// A run of channels along a value's channel axis: `space`'s channels in order, each
/// `block` consecutive elements wide (1, or a flattened channel's pixels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Segment {
    space: usize,
    block: usize,
}

/// A value's channel axis and the channel spaces laid along it.
#[derive(Clone, Debug)]
struct Channels {
    axis: usize,
    segments: Vec<Segment>,
}

/// Channel spaces under union-find: coupled spaces share a root.
struct Spaces {
    parent: Vec<usize>,
    size: Vec<usize>,
    pinned: Vec<bool>,
    /// Layers whose output channels are the space (conv and dense weights' rows).
    producers: Vec<Vec<NodeId>>,
}

impl Spaces {
    fn new_space(&mut self, size: usize, pinned: bool, producer: Option<NodeId>) -> usize {
        self.parent.push(self.parent.len());
        self.size.push(size);
        self.pinned.push(pinned);
        self.producers.push(producer.into_iter().collect());
        self.parent.len() - 1
    }

    fn root(&mut self, mut s: usize) -> usize {
        while self.parent[s] != s {
            self.parent[s] = self.parent[self.parent[s]];
            s = self.parent[s];
        }
        s
    }

    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.root(a), self.root(b));
        if a != b {
            self.parent[b] = a;
            self.pinned[a] |= self.pinned[b];
            let moved = std::mem::take(&mut self.producers[b]);
            self.producers[a].extend(moved);
        }
    }

    fn pin(&mut self, s: usize) {
        let r = self.root(s);
        self.pinned[r] = true;
    }
}

/// What the rewrite does once each space's kept channels are known.
enum Edit {
    /// Keep the channels of `value`'s channel axis in constant `constant`'s axis `axis`.
    Slice { constant: NodeId, axis: usize, channels: Channels },
    /// A depthwise convolution: `groups` becomes its input's channel count.
    Groups { conv: NodeId },
}

/// Remove the fraction `fraction` of each prunable channel group, as the module documentation
/// describes; a no-op on a model without one. An error (the graph left inconsistent) would be
/// a bug in the coupling rules above, reported rather than panicked on.
pub fn prune_channels(graph: &mut Graph, fraction: f64, skip: &[String]) -> Result<(), String> {
    let mut spaces = Spaces { parent: Vec::new(), size: Vec::new(), pinned: Vec::new(), producers: Vec::new() };
    let mut chans: HashMap<NodeId, Channels> = HashMap::new();
    let mut edits: Vec<Edit> = Vec::new();
    let users = |g: &Graph, id: NodeId| g.users(id).len();
    let order = graph.topo_order();
    for &id in &order {
        let node = graph.node(id);
        let rank = node.ty.rank();
        // A value's channel axis: 1 for images, else the last (features).
        let own_axis = if rank == 4 { 1 } else { rank.saturating_sub(1) };
        let fresh = |spaces: &mut Spaces, pinned: bool, producer: Option<NodeId>| {
            let size = node.ty.shape.get(own_axis).copied().unwrap_or(1);
            Channels { axis: own_axis, segments: vec![Segment { space: spaces.new_space(size, pinned, producer), block: 1 }] }
        };
        let op = match &node.kind {
            NodeKind::Input { .. } => {
                let c = fresh(&mut spaces, true, None);
                chans.insert(id, c);
                continue;
            }
            NodeKind::Const(_) | NodeKind::Param => continue,
            NodeKind::Op(op) => op.clone(),
        };
        let operands = graph.operands(id);
        let chan_of = |i: usize| operands.get(i).and_then(|o| chans.get(o)).cloned();
        let pin_all = |spaces: &mut Spaces, c: &Option<Channels>| {
            for s in c.iter().flat_map(|c| &c.segments) {
                spaces.pin(s.space);
            }
        };
        // Pins every operand's channels and gives the result fresh, pinned ones.
        let opaque = |spaces: &mut Spaces| {
            for i in 0..operands.len() {
                pin_all(spaces, &chan_of(i));
            }
            fresh(spaces, true, None)
        };
        let weight_ok = |i: usize| operands.get(i).is_some_and(|&w| matches!(graph.node(w).kind, NodeKind::Const(_)) && users(graph, w) == 1);
        let out = match &op {
            Op::Conv2d(_) | Op::Dense(_) => {
                // Convolutions read input channels on axis 1, dense layers on the last.
                let (in_axis, depthwise, ungrouped) = match &op {
                    Op::Conv2d(c) => {
                        let channels_in = graph.node(operands[0]).ty.shape[1];
                        (1, c.groups > 1 && c.groups == channels_in && node.ty.shape[1] == channels_in, c.groups == 1)
                    }
                    _ => (graph.node(operands[0]).ty.rank() - 1, false, true),
                };
                match chan_of(0).filter(|ch| ch.axis == in_axis && (1..operands.len()).all(weight_ok)) {
                    // A depthwise convolution's filters (and biases) follow their input channels.
                    Some(ch) if depthwise => {
                        for &p in &operands[1..] {
                            edits.push(Edit::Slice { constant: p, axis: 0, channels: ch.clone() });
                        }
                        edits.push(Edit::Groups { conv: id });
                        ch
                    }
                    // Weight columns follow the input's channels; rows and bias are the output's.
                    Some(ch) if ungrouped => {
                        edits.push(Edit::Slice { constant: operands[1], axis: 1, channels: ch });
                        let out = fresh(&mut spaces, false, Some(id));
                        for &p in &operands[1..] {
                            edits.push(Edit::Slice { constant: p, axis: 0, channels: out.clone() });
                        }
                        out
                    }
                    _ => opaque(&mut spaces),
                }
            }
            Op::BatchNorm(_) | Op::LayerNorm(_) => {
                let input = chan_of(0);
                // Batch norm's parameters are per channel (axis 1), layer norm's per feature
                // of the last axis: they follow the channels when those lie there.
                let param_axis = if matches!(op, Op::BatchNorm(_)) { 1 } else { rank - 1 };
                match input {
                    Some(ch) if ch.axis == param_axis && (1..operands.len()).all(weight_ok) => {
                        for &p in &operands[1..] {
                            edits.push(Edit::Slice { constant: p, axis: 0, channels: ch.clone() });
                        }
                        ch
                    }
                    Some(ch) if ch.axis != param_axis => ch,
                    _ => opaque(&mut spaces),
                }
            }
            Op::Unary(_) | Op::Cast(_) => match chan_of(0) {
                Some(ch) => ch,
                None => opaque(&mut spaces),
            },
            // Pooling keeps the channel axis and resizes the others.
            Op::Pool(_) | Op::GlobalAvgPool(_) => match chan_of(0) {
                Some(ch) if ch.axis == 1 => ch,
                _ => opaque(&mut spaces),
            },
            Op::Softmax(s) => match chan_of(0) {
                Some(ch) if ch.axis != s.axis => ch,
                _ => opaque(&mut spaces),
            },
            Op::Flatten(_) => match chan_of(0) {
                // `[N, C, H, W]` → `[N, C·H·W]`: each channel a block of H·W features.
                Some(ch) if ch.axis == 1 => {
                    let inner: usize = graph.node(operands[0]).ty.shape[2..].iter().product();
                    Channels { axis: 1, segments: ch.segments.iter().map(|s| Segment { space: s.space, block: s.block * inner }).collect() }
                }
                _ => opaque(&mut spaces),
            },
            Op::Binary(_) => binary(graph, id, &operands, &chans, &mut spaces, &mut edits).unwrap_or_else(|| opaque(&mut spaces)),
            Op::Concat(c) => {
                let inputs: Option<Vec<Channels>> = (0..operands.len()).map(chan_of).collect();
                match inputs {
                    Some(ins) if ins.iter().all(|ch| ch.axis == c.axis) => Channels { axis: c.axis, segments: ins.into_iter().flat_map(|ch| ch.segments).collect() },
                    _ => opaque(&mut spaces),
                }
            }
            Op::Slice(s) => match chan_of(0) {
                Some(ch) if ch.axis != s.axis => ch,
                _ => opaque(&mut spaces),
            },
            Op::MatMul(_) | Op::Reshape(_) | Op::Transpose(_) | Op::Attention(_) | Op::Lstm(_) | Op::ConvertLayout(_) | Op::Quantize(_) | Op::Dequantize(_) | Op::Requantize(_) | Op::Fused(_) => opaque(&mut spaces),
        };
        chans.insert(id, out);
    }
    for (_, o) in graph.outputs.clone() {
        if let Some(ch) = chans.get(&o).cloned() {
            for s in ch.segments {
                spaces.pin(s.space);
            }
        }
    }
    // `--prune-skip` names layers (or their weights): their output channels stay.
    for layer in order.iter().copied().filter(|&l| matches!(graph.node(l).op(), Some(Op::Conv2d(_) | Op::Dense(_)))) {
        let w = Weight { id: graph.operands(layer)[1], layer };
        if skipped(graph, &w, skip) {
            if let Some(ch) = chans.get(&layer).cloned() {
                for s in ch.segments {
                    spaces.pin(s.space);
                }
            }
        }
    }

    // Each free group keeps its channels of largest L1 norm summed over its producers.
    let mut kept: HashMap<usize, Vec<usize>> = HashMap::new();
    for s in 0..spaces.parent.len() {
        let r = spaces.root(s);
        if r != s || spaces.pinned[r] || spaces.producers[r].is_empty() {
            continue;
        }
        let size = spaces.size[r];
        let mut norms = vec![0f64; size];
        for &layer in &spaces.producers[r] {
            let w = super::values(graph, graph.operands(layer)[1]);
            let per = w.len() / size;
            for (c, n) in norms.iter_mut().enumerate() {
                *n += w[c * per..(c + 1) * per].iter().map(|v| v.abs() as f64).sum::<f64>();
            }
        }
        let remove = count(fraction, size).min(size - 1);
        let mut order: Vec<usize> = (0..size).collect();
        order.sort_by(|&a, &b| norms[a].total_cmp(&norms[b]).then(a.cmp(&b)));
        let mut keep: Vec<usize> = order[remove..].to_vec();
        keep.sort_unstable();
        kept.insert(r, keep);
    }
    if kept.is_empty() {
        return Ok(());
    }

    // Indices kept along a channel axis laid out as `channels`.
    let mut indices = |channels: &Channels| -> Vec<usize> {
        let mut out = Vec::new();
        let mut offset = 0;
        for seg in &channels.segments {
            let r = spaces.root(seg.space);
            let size = spaces.size[r];
            match kept.get(&r) {
                Some(keep) => {
                    for &c in keep {
                        out.extend((0..seg.block).map(|b| offset + c * seg.block + b));
                    }
                }
                None => out.extend(offset..offset + size * seg.block),
            }
            offset += size * seg.block;
        }
        out
    };
    for edit in &edits {
        match edit {
            Edit::Slice { constant, axis, channels } => {
                let keep = indices(channels);
                slice_constant(graph, *constant, *axis, &keep);
            }
            Edit::Groups { conv } => {
                // The filters were sliced with the input's channels (the edits before this
                // one): one group per filter still.
                let filters = graph.node(graph.operands(*conv)[1]).ty.shape[0];
                if let NodeKind::Op(Op::Conv2d(c)) = &mut graph.node_mut(*conv).kind {
                    c.groups = filters;
                }
            }
        }
    }
    reinfer(graph, &order)
}

/// An elementwise binary op: operands with the result's channels are coupled (a residual
/// add), constants that vary along the channel axis are sliced with it, and broadcast
/// operands pass. `None` when the channels cannot be matched.
fn binary(graph: &Graph, id: NodeId, operands: &[NodeId], chans: &HashMap<NodeId, Channels>, spaces: &mut Spaces, edits: &mut Vec<Edit>) -> Option<Channels> {
    let out_ty = &graph.node(id).ty;
    let rank = out_ty.rank();
    // The result's channel axis comes from the operand that spans it.
    let mut result: Option<Channels> = None;
    for &o in operands {
        let ty = &graph.node(o).ty;
        if let Some(ch) = chans.get(&o) {
            let aligned = ch.axis + rank - ty.rank();
            if ty.shape.get(ch.axis) == out_ty.shape.get(aligned) && ty.shape[ch.axis] > 1 {
                let ch = Channels { axis: aligned, segments: ch.segments.clone() };
                match &result {
                    None => result = Some(ch),
                    // Coupled channel by channel: the same segments, of the same sizes.
                    Some(r) if r.axis == ch.axis && r.segments.len() == ch.segments.len() && r.segments.iter().zip(&ch.segments).all(|(a, b)| a.block == b.block && spaces.size[a.space] == spaces.size[b.space]) => {
                        for (a, b) in r.segments.iter().zip(&ch.segments) {
                            spaces.union(a.space, b.space);
                        }
                    }
                    Some(_) => return None,
                }
            }
        }
    }
    let result = result?;
    for &o in operands {
        let ty = &graph.node(o).ty;
        let offset = rank - ty.rank();
        let spans = result.axis >= offset && ty.shape[result.axis - offset] > 1;
        match (&graph.node(o).kind, chans.get(&o)) {
            // Another value: it spans the channels (coupled above) or broadcasts across them.
            (_, Some(ch)) if spans && ch.axis + offset != result.axis => return None,
            (_, Some(_)) => {}
            (NodeKind::Const(_), None) if spans => {
                if graph.users(o).len() != 1 {
                    return None;
                }
                edits.push(Edit::Slice { constant: o, axis: result.axis - offset, channels: result.clone() });
            }
            (_, None) => {}
        }
    }
    Some(result)
}

/// Keep `keep` (in order) of a constant's `axis`.
fn slice_constant(graph: &mut Graph, id: NodeId, axis: usize, keep: &[usize]) {
    let NodeKind::Const(t) = &graph.node(id).kind else { unreachable!("only constants are sliced") };
    let shape = t.shape().to_vec();
    if shape[axis] == keep.len() {
        return;
    }
    let data = t.to_f32_vec();
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out = Vec::with_capacity(outer * keep.len() * inner);
    for o in 0..outer {
        for &k in keep {
            let at = (o * shape[axis] + k) * inner;
            out.extend_from_slice(&data[at..at + inner]);
        }
    }
    let mut new_shape = shape;
    new_shape[axis] = keep.len();
    let tensor = Tensor::from_f32(t.dtype(), new_shape, out).expect("a slice of a valid constant");
    let node = graph.node_mut(id);
    node.ty.shape = tensor.shape().to_vec();
    node.kind = NodeKind::Const(tensor);
}

/// Every op's result type again, in topological order, after its operands shrank.
fn reinfer(graph: &mut Graph, order: &[NodeId]) -> Result<(), String> {
    for &id in order {
        let Some(op) = graph.node(id).op() else { continue };
        let ty = op.infer(&graph.operand_types(id)).map_err(|e| format!("internal compiler error: channel pruning left `{}` inconsistent: {}", graph.node(id).name, e.message))?;
        graph.node_mut(id).ty = ty;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{build_graph, Source};

    fn bound(src: &str) -> Graph {
        let mut g = build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap();
        let w = crate::weights::random_weights(&g, 3);
        crate::weights::bind_weights(&mut g, w, "random").unwrap();
        g
    }

    fn shape(g: &Graph, name: &str) -> Vec<usize> {
        g.node(g.by_name(name).unwrap_or_else(|| panic!("no {name}"))).ty.shape.clone()
    }

    /// An MLP by hand: fc1's rows of smallest L1 norm go, with their bias entries and fc2's
    /// matching columns; fc2 (the output) keeps its units.
    #[test]
    fn removes_the_rows_of_smallest_l1_norm_and_the_consumers_columns() {
        let mut g = super::super::testing::mlp(&[0.5, -0.1, 0.3, -0.7], &[2.0, -3.0, 0.25, 1.0]);
        prune_channels(&mut g, 0.5, &[]).unwrap();
        // fc1 rows: |0.5|+|-0.1| = 0.6, |0.3|+|-0.7| = 1.0: row 0 goes.
        assert_eq!(super::super::testing::weight(&g, "fc1.weight"), [0.3, -0.7]);
        assert_eq!(super::super::testing::weight(&g, "fc1.bias"), [0.1]);
        // fc2's column 0 goes with it; its two units stay (the model's output).
        assert_eq!(super::super::testing::weight(&g, "fc2.weight"), [-3.0, 1.0]);
        assert_eq!(shape(&g, "fc2"), [1, 2]);
    }

    /// A residual block: both convolutions feeding the add lose the same channels, batch
    /// norm follows, a depthwise convolution keeps its producer's channels, and the classifier
    /// reads the pooled channels it still has. The input and output shapes stay.
    #[test]
    fn residual_depthwise_and_flatten_follow_their_groups() {
        let src = "model m {\n input x: f32[1, 3, 8, 8]\n a = conv2d(x, filters=8, kernel=3, padding=1)\n bn = batch_norm(a)\n b = conv2d(relu(bn), filters=8, kernel=3, padding=1)\n s = relu(a + b)\n d = conv2d(s, filters=8, kernel=3, padding=1, groups=8)\n p = flatten(max_pool(d, kernel=8))\n output y = dense(p, units=4)\n}";
        let mut g = bound(src);
        prune_channels(&mut g, 0.5, &[]).unwrap();
        assert_eq!(shape(&g, "a"), [1, 4, 8, 8]);
        assert_eq!(shape(&g, "b"), [1, 4, 8, 8]);
        assert_eq!(shape(&g, "bn.weight"), [4]);
        assert_eq!(shape(&g, "b.weight"), [4, 4, 3, 3]);
        assert_eq!(shape(&g, "d.weight"), [4, 1, 3, 3]);
        assert!(matches!(g.node(g.by_name("d").unwrap()).op(), Some(Op::Conv2d(c)) if c.groups == 4));
        assert_eq!(shape(&g, "y.weight"), [4, 4]);
        assert_eq!(shape(&g, "x"), [1, 3, 8, 8]);
        assert_eq!(shape(&g, "y"), [1, 4]);
        crate::ir::verify::verify(&g).unwrap();
    }

    /// The residual group keeps the channels whose filters, summed over both convolutions,
    /// have the largest L1 norm; computed here from the weights directly.
    #[test]
    fn a_group_ranks_channels_by_the_norm_over_all_its_producers() {
        let src = "model m {\n input x: f32[1, 2, 4, 4]\n a = conv2d(x, filters=4, kernel=1)\n b = conv2d(a, filters=4, kernel=1)\n output y = global_avg_pool(a + b) * 1.0\n z = conv2d(a + b, filters=4, kernel=1)\n output w = z\n}";
        let g0 = bound(src);
        let mut g = g0.clone();
        prune_channels(&mut g, 0.5, &[]).unwrap();
        // `y` is an output, so the residual group a+b is pinned: nothing changes there.
        assert_eq!(shape(&g, "a"), [1, 4, 4, 4]);
        let src = "model m {\n input x: f32[1, 2, 4, 4]\n a = conv2d(x, filters=4, kernel=1)\n b = conv2d(a, filters=4, kernel=1)\n z = conv2d(a + b, filters=3, kernel=1)\n output w = z\n}";
        let g0 = bound(src);
        let mut g = g0.clone();
        prune_channels(&mut g, 0.5, &[]).unwrap();
        let w = |g: &Graph, n: &str| super::super::testing::weight(g, n);
        let (wa, wb) = (w(&g0, "a.weight"), w(&g0, "b.weight"));
        let norm = |c: usize| wa[c * 2..c * 2 + 2].iter().chain(&wb[c * 4..c * 4 + 4]).map(|v| v.abs()).sum::<f32>();
        let mut by: Vec<usize> = (0..4).collect();
        by.sort_by(|&p, &q| norm(p).total_cmp(&norm(q)));
        let mut keep = by[2..].to_vec();
        keep.sort();
        let a_rows: Vec<f32> = keep.iter().flat_map(|&c| wa[c * 2..c * 2 + 2].to_vec()).collect();
        assert_eq!(w(&g, "a.weight"), a_rows);
        let z_cols: Vec<f32> = (0..3).flat_map(|f| keep.iter().map(move |&c| (f, c))).map(|(f, c)| w(&g0, "z.weight")[f * 4 + c]).collect();
        assert_eq!(w(&g, "z.weight"), z_cols);
        assert_eq!(shape(&g, "z"), [1, 3, 4, 4]);
    }

    /// Residual operands laid out as segments of different sizes cannot be coupled channel by
    /// channel: they are pinned (found by review: they were joined and sliced out of range).
    #[test]
    fn mismatched_segments_pin_instead_of_coupling() {
        let src = "model m {\n input x: f32[1, 2, 4, 4]\n c1 = conv2d(x, filters=6, kernel=1)\n c2 = conv2d(x, filters=4, kernel=1)\n c3 = conv2d(x, filters=4, kernel=1)\n c4 = conv2d(x, filters=6, kernel=1)\n s = concat(c1, c2, axis=1) + concat(c3, c4, axis=1)\n output y = conv2d(s, filters=2, kernel=1)\n}";
        let mut g = bound(src);
        prune_channels(&mut g, 0.5, &[]).unwrap();
        for n in ["c1", "c2", "c3", "c4"] {
            assert_eq!(shape(&g, n)[1], shape(&bound(src), n)[1], "{n}");
        }
        crate::ir::verify::verify(&g).unwrap();
    }

    /// Concatenated groups are pruned each on its own; an LSTM pins its input; skip pins a
    /// layer.
    #[test]
    fn concat_lstm_and_skip() {
        let src = "model m {\n input x: f32[1, 2, 4, 4]\n a = conv2d(x, filters=4, kernel=1)\n b = conv2d(x, filters=6, kernel=1)\n c = concat(a, b, axis=1)\n output y = conv2d(c, filters=2, kernel=1)\n}";
        let mut g = bound(src);
        prune_channels(&mut g, 0.5, &["b".to_string()]).unwrap();
        assert_eq!(shape(&g, "a"), [1, 2, 4, 4]);
        assert_eq!(shape(&g, "b"), [1, 6, 4, 4]);
        assert_eq!(shape(&g, "y.weight"), [2, 8, 1, 1]);
        let src = "model m {\n input x: f32[4, 1, 8]\n h = dense(x, units=6)\n output y = lstm(h, hidden=3)\n}";
        let mut g = bound(src);
        prune_channels(&mut g, 0.5, &[]).unwrap();
        assert_eq!(shape(&g, "h"), [4, 1, 6]);
    }
}
