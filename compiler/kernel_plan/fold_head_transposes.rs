//! Multi-head attention's head transposes read and written in place by the attention kernel:
//! a decision about a node and its neighbours, made after each node has its own plan.
//!
//! A transformer splits `q`, `k` and `v` into heads as `transpose(reshape(x, [b, s, h, d]),
//! perm=[0, 2, 1, 3])` and merges them back with the inverse transpose. Each transpose is a
//! copy of the whole tensor (the transformer example's four took 10 µs on one thread and
//! 35–45 on two, where each reads rows the other thread wrote), and the runtime's attention
//! kernel can instead read each head's rows where they lie in `[b, s, h, d]`, `h·d` floats
//! apart (`nnc_runtime::gemm::attention::Heads`). A folded transpose gets no kernel and
//! shares its operand's memory (the memory plan treats it as a view); the attention then
//! reads (or, for the transpose of its result, writes) that memory with the heads
//! interleaved. The bits are those of the transposes run apart.

use super::{Kernel, KernelPlan};
use crate::ir::{Graph, Layout, NodeId};
use crate::ops::Op;
use std::collections::HashMap;

/// The head transpose's permutation: `[b, s, h, d]` ↔ `[b, h, s, d]`.
const HEAD_PERM: [usize; 4] = [0, 2, 1, 3];

/// How a folded head transpose is done in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadFold {
    /// Splitting heads: the attentions that read it read its operand's memory, the heads
    /// interleaved in rows.
    Split,
    /// Merging heads: the attention it transposes writes its result here, the heads
    /// interleaved; readers find the transpose's own row-major layout.
    Merge,
}

/// The transposes the attention kernels read or write in place, and how.
pub fn folded_head_transposes(graph: &Graph, plans: &HashMap<NodeId, KernelPlan>) -> HashMap<NodeId, HeadFold> {
    let runtime_attention = |id: NodeId| matches!(graph.node(id).op(), Some(Op::Attention(_))) && plans.get(&id).is_some_and(|p| p.kernel == Kernel::Gemm);
    let mut folded = HashMap::new();
    for id in graph.node_ids() {
        let node = graph.node(id);
        let Some(Op::Transpose(t)) = node.op() else { continue };
        // Graph outputs leave the arena in their own order, so they stay copies.
        if t.perm != HEAD_PERM || node.ty.layout != Layout::RowMajor || !node.ty.dtype.is_float() || graph.is_output(id) {
            continue;
        }
        let users = graph.users(id);
        let Some(&source) = graph.operands(id).first() else { continue };
        if graph.node(source).ty.layout != Layout::RowMajor {
            continue;
        }
        // Splitting heads: every reader is a runtime attention (as q, k or v).
        let splits = !users.is_empty() && users.iter().all(|&(u, _)| runtime_attention(u));
        // Merging heads: the attention's only reader is this transpose.
        let merges = runtime_attention(source) && !graph.is_output(source) && graph.users(source).len() == 1;
        // Not both: the attention before would write the heads interleaved (the transpose's
        // result in its order) and the ones after would read them as interleaved again (the
        // transpose's operand in its order); such a transpose between two attentions stays a
        // copy.
        if splits != merges {
            folded.insert(id, if splits { HeadFold::Split } else { HeadFold::Merge });
        }
    }
    folded
}

/// For the attention node `id`: how many heads share each row of its `q`, `k`, `v` and result
/// ([`nnc_runtime::gemm::attention::Heads`]): a splitting transpose's head count for an
/// operand, a merging one's for the result, else 1. (An operand that is a merging
/// transpose, another attention's result, lies in its own row-major layout: 1.)
pub fn attention_heads(graph: &Graph, folded: &HashMap<NodeId, HeadFold>, id: NodeId) -> [usize; 4] {
    let heads = |t: NodeId| if folded.get(&t) == Some(&HeadFold::Split) { graph.node(t).ty.shape[1] } else { 1 };
    let operands = graph.operands(id);
    let result = match graph.users(id).as_slice() {
        [(t, _)] if folded.get(t) == Some(&HeadFold::Merge) => graph.node(id).ty.shape[1],
        _ => 1,
    };
    [heads(operands[0]), heads(operands[1]), heads(operands[2]), result]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{build_graph, Source};
    use crate::target::CpuTarget;

    fn folded_names(src: &str, ukernels: bool) -> Vec<String> {
        let g = build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap();
        let plans = crate::jit::plans(&g, &CpuTarget::host(ukernels)).unwrap();
        let mut names: Vec<String> = folded_head_transposes(&g, &plans).into_keys().map(|id| g.node(id).name.clone()).collect();
        names.sort();
        names
    }

    const HEADS: &str = "model m {
        input x: f32[2, 16, 24]
        q = transpose(reshape(x, [2, 16, 3, 8]), perm=[0, 2, 1, 3])
        k = transpose(reshape(x * 2.0, [2, 16, 3, 8]), perm=[0, 2, 1, 3])
        v = transpose(reshape(x + 1.0, [2, 16, 3, 8]), perm=[0, 2, 1, 3])
        output y = reshape(transpose(attention(q, k, v), perm=[0, 2, 1, 3]), [2, 16, 24])
    }";

    #[test]
    fn splitting_and_merging_transposes_fold_into_runtime_attention() {
        assert_eq!(folded_names(HEADS, true).len(), 4);
        // Without the runtime's kernel, attention is Cranelift code reading whole tensors.
        assert!(folded_names(HEADS, false).is_empty());
    }

    #[test]
    fn transposes_read_elsewhere_or_given_out_stay_copies() {
        // `q` is also an output, `k` also feeds an add, and the attention's result is read
        // by the add too: only `v` folds.
        let src = "model m {
            input x: f32[1, 16, 24]
            output q = transpose(reshape(x, [1, 16, 3, 8]), perm=[0, 2, 1, 3])
            k = transpose(reshape(x * 2.0, [1, 16, 3, 8]), perm=[0, 2, 1, 3])
            v = transpose(reshape(x + 1.0, [1, 16, 3, 8]), perm=[0, 2, 1, 3])
            a = attention(q, k, v)
            output y = transpose(a, perm=[0, 2, 1, 3]) + transpose(a + k, perm=[0, 2, 1, 3])
        }";
        assert_eq!(folded_names(src, true), ["v"]);
    }

    #[test]
    fn a_transpose_between_two_attentions_stays_a_copy() {
        // `t` would merge the first attention's heads and split them for the second at once:
        // no single order of its memory serves both (found by the differential campaign).
        let src = "model m {
            input x: f32[2, 6, 5, 5]
            t = transpose(attention(x, x, x), perm=[0, 2, 1, 3])
            output y = attention(t, t, t) * 1.0
        }";
        assert!(folded_names(src, true).is_empty());
    }

    #[test]
    fn an_attention_reading_merged_heads_reads_them_in_rows() {
        // `t` merges the first attention's heads (its other reader is not an attention), so
        // the second attention finds `t` in its own row-major order: its `q` is contiguous,
        // not heads interleaved (found by the differential campaign, stream 106).
        let src = "model m {
            input x: f32[1, 3, 7, 3]
            t = transpose(attention(x, x, x), perm=[0, 2, 1, 3])
            u = transpose(t, perm=[0, 1, 2, 3])
            output y = attention(t, u, u) * 1.0
        }";
        let g = build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap();
        let plans = crate::jit::plans(&g, &CpuTarget::host(true)).unwrap();
        let folded = folded_head_transposes(&g, &plans);
        let id = |name: &str| g.node_ids().find(|&n| g.node(n).name == name).unwrap();
        assert_eq!(folded.get(&id("t")), Some(&HeadFold::Merge));
        let attentions: Vec<NodeId> = g.node_ids().filter(|&n| matches!(g.node(n).op(), Some(Op::Attention(_)))).collect();
        let heads: Vec<[usize; 4]> = attentions.iter().map(|&a| attention_heads(&g, &folded, a)).collect();
        assert!(heads.contains(&[1, 1, 1, 3]), "the first writes its 3 heads into t: {heads:?}");
        assert!(heads.contains(&[1, 1, 1, 1]), "the second reads t in rows: {heads:?}");
    }
}
