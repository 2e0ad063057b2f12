//! Convolutions computed inside the depthwise convolution they feed: a decision about a pair
//! of nodes, made after each node has its own plan.
//!
//! MobileNet's blocks expand channels with a 1×1 convolution (the first, its stem: a 3×3
//! one) and filter them with a depthwise one. Apart, the producer's result goes out to L3
//! and comes back (4.8 MB at 112²×96, where the depthwise layer then cost 230–390 µs for
//! 5.4 MFLOP); the runtime's fused kernel (`nnc_runtime::gemm::conv_depthwise`) keeps only
//! a window's height of its rows per band of output rows, in rings that are all the memory
//! plan gives the producer's result, and the bits are those of the two kernels apart. The
//! consumer's kernel computes both; the producer has no kernel of its own, and its input
//! stays live until the consumer runs.

use super::{Kernel, KernelPlan, Prepack};
use crate::ir::{Graph, Layout, NodeId};
use crate::ops::fused::Step;
use crate::ops::{Conv2d, Op, Product, UnaryKind};
use crate::target::CpuTarget;
use std::collections::HashMap;

/// Producer results (per image) below this stay apart: one that stays in L2 (1 MiB here)
/// costs little to write and read back, and the ring's recomputed rows would not pay
/// (MobileNetV2's 28²×192 expansions, 0.6 MB, ran 15–20 µs slower fused).
pub const MIN_FUSED_BYTES: usize = 1 << 20;

/// Each depthwise node (consumer) whose producer, a convolution through the GEMM, its kernel
/// computes: `consumer → producer`.
pub fn fused_producers(graph: &Graph, plans: &HashMap<NodeId, KernelPlan>, target: &CpuTarget) -> HashMap<NodeId, NodeId> {
    let mut pairs = HashMap::new();
    if !target.ukernels {
        return pairs;
    }
    for (&consumer, plan) in plans {
        if plan.kernel != Kernel::VectorDepthwise || plan.prepack != Prepack::ChannelWeights {
            continue;
        }
        let Some(&producer) = graph.operands(consumer).first() else { continue };
        if fusable(graph, plans, producer, consumer) {
            pairs.insert(consumer, producer);
        }
    }
    pairs
}

/// The rules of [`fused_producers`] for one pair.
fn fusable(graph: &Graph, plans: &HashMap<NodeId, KernelPlan>, producer: NodeId, consumer: NodeId) -> bool {
    let Some(pplan) = plans.get(&producer) else { return false };
    if pplan.kernel != Kernel::NhwcGemm || pplan.prepack != Prepack::ChannelWeights || pplan.bf16 {
        return false;
    }
    // The result is read by the depthwise kernel alone (its ring replaces it).
    if graph.is_output(producer) || graph.users(producer) != [(consumer, 0)] {
        return false;
    }
    let (p, d) = (graph.node(producer), graph.node(consumer));
    let (Some(pconv), Some(dconv)) = (activation_only_conv(p.op()), activation_only_conv(d.op())) else { return false };
    let x = graph.operand_types(producer)[0];
    let all_nhwc = [x.layout, p.ty.layout, d.ty.layout].iter().all(|&l| l == Layout::Nhwc);
    if !all_nhwc || pconv.groups != 1 || x.dtype != nnc_runtime::DType::F32 {
        return false;
    }
    let [_, c, h, w] = [p.ty.shape[0], p.ty.shape[1], p.ty.shape[2], p.ty.shape[3]];
    let kh = graph.operand_types(consumer)[1].shape[2];
    dconv.groups == c && kh <= nnc_runtime::gemm::depthwise::MAX_RING_WINDOW && c * h * w * 4 >= MIN_FUSED_BYTES
}

/// Floats of the storage a fused pair's producer result needs on `threads` threads: one ring
/// of window-height rows per band of output rows (`nnc_runtime::gemm::conv_depthwise`).
pub fn ring_floats(graph: &Graph, consumer: NodeId, threads: usize) -> usize {
    let e = graph.operand_types(consumer)[0];
    let (d, w) = (graph.node(consumer), graph.operand_types(consumer)[1]);
    let dilation = activation_only_conv(d.op()).map_or(1, |c| c.dilation[0]);
    let rows = nnc_runtime::gemm::conv_depthwise::ring_rows(w.shape[2], dilation, e.shape[2]);
    let bands = nnc_runtime::gemm::conv_depthwise::bands(threads, d.ty.shape[0] * d.ty.shape[2]);
    // Never more than the whole result, which still holds one ring.
    (bands * rows).min(e.shape[0] * e.shape[2]) * e.shape[3] * e.shape[1]
}

/// The convolution of `op`, if it is one followed by nothing or by one activation the
/// runtime kernels apply (no residual, no other operand).
fn activation_only_conv(op: Option<&Op>) -> Option<Conv2d> {
    match op? {
        Op::Conv2d(c) => Some(c.clone()),
        Op::Fused(f) if f.requantize.is_none() => {
            let Some(Product::Conv2d(c)) = &f.anchor else { return None };
            match f.steps.as_slice() {
                [] => Some(c.clone()),
                [Step::Unary(UnaryKind::Gelu)] => Some(c.clone()),
                [step] => step.activation().map(|_| c.clone()),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::driver::{build_graph, Source};
    use crate::target::CpuTarget;

    /// The names of the producers the JIT would compute inside their consumers.
    fn fused(src: &str) -> Vec<String> {
        let mut g = build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap();
        let w = crate::weights::random_weights(&g, 1);
        crate::weights::bind_weights(&mut g, w, "random").unwrap();
        let target = CpuTarget::host(true);
        crate::passes::optimize(&mut g, 2, Some(&target), true, &mut |_, _| {}).unwrap();
        let plans = crate::jit::plans(&g, &target).unwrap();
        let mut names: Vec<String> = super::fused_producers(&g, &plans, &target).values().map(|&p| g.node(p).name.clone()).collect();
        names.sort();
        names
    }

    #[test]
    fn only_large_results_of_gemm_convolutions_read_by_one_depthwise_convolution_fuse() {
        let src = "model m {
            input x: f32[1, 16, 64, 64]
            a = relu6(conv2d(x, filters=96, kernel=1))
            da = relu6(conv2d(a, filters=96, kernel=3, stride=2, padding=1, groups=96))
            b = conv2d(x, filters=96, kernel=1)
            db = conv2d(b, filters=96, kernel=3, padding=1, groups=96)
            c = conv2d(x, filters=96, kernel=3, stride=2, padding=1)
            dc = conv2d(c, filters=96, kernel=3, padding=1, groups=96)
            t = relu(conv2d(x, filters=256, kernel=3, stride=2, padding=1))
            dt = conv2d(t, filters=256, kernel=3, padding=1, groups=256)
            s = conv2d(x, filters=16, kernel=1)
            ds = conv2d(s, filters=16, kernel=3, padding=1, groups=16)
            output y = da
            output z = db + b
            output u = dc
            output v = ds
            output q = dt
        }";
        // `b` is read twice, `c` (32²×96, 384 KiB) and `s` (64²×16, 256 KiB) stay in L2
        // anyway; `t` (32²×256, 1 MiB) is a windowed convolution, whose patches the GEMM reads
        // in place.
        assert_eq!(fused(src), ["a.conv2d", "t.conv2d"]);
    }
}
