//! Kernel selection for the CPU: records on every op node which kernel computes it
//! (`kernel="gemm"` in IR dumps), as `kernel_plan::choose` decides from the node's op,
//! operand shapes and layouts, whether its weights are known, and the target. The JIT then
//! lowers each node by that plan, and `select-tiles` blocks the product it runs. Nodes the
//! JIT has no kernel for (int8 ops) get none.

use crate::ir::Graph;
use crate::kernel_plan::{choose, Known, Operands};
use crate::target::CpuTarget;

pub fn select_kernels(graph: &mut Graph, target: &CpuTarget) -> bool {
    let mut changed = false;
    let known = Known::of(graph);
    for id in graph.topo_order() {
        let node = graph.node(id);
        let Some(op) = node.op() else { continue };
        let kernel = choose(op, &Operands::of(graph, id, &known), &node.ty, target);
        if graph.node(id).kernel != kernel {
            graph.node_mut(id).kernel = kernel;
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use crate::passes::testing::check_pass;

    #[test]
    fn every_op_gets_the_kernel_the_plan_chooses() {
        let ir = check_pass(
            "select-kernels",
            "model m {
                input x: f32[1, 3, 8, 8]
                c = relu(conv2d(x, filters=8, kernel=3, padding=1))
                d = conv2d(c, filters=8, kernel=3, stride=2, groups=8)
                f = flatten(d)
                h = dense(f, units=16)
                output y = softmax(h + 1)
            }",
        );
        // With microkernels (the reference target): 3·3·3 = 27 ≥ 16 products per output.
        assert!(ir.contains(r#"groups=1 kernel="gemm""#), "{ir}");
        // Strided depthwise, 9 taps.
        assert!(ir.contains(r#"groups=8 kernel="depthwise-unrolled""#), "{ir}");
        assert!(ir.contains(r#"= flatten(%d) kernel="view""#), "{ir}");
        // One row: a GEMM tile would be mostly padding.
        assert!(ir.contains(r#"= dense(%f, %h.weight, %h.bias) kernel="dot""#), "{ir}");
        assert!(ir.contains(r#"= relu(%c.conv2d) kernel="elementwise""#) && ir.contains(r#"axis=1 kernel="loops""#), "{ir}");
        // A scalar operand broadcasts: a loop over rows.
        assert!(ir.contains(r#"= add(%h, %y.const) kernel="broadcast""#), "{ir}");
        assert_eq!(ir.matches("kernel=").count(), 7, "{ir}");
    }

    /// Products with pruned constant weights take the sparse kernel where the cost model
    /// prices it below the dense one: ungrouped convolutions and dense layers at high
    /// sparsity, never depthwise ones, not at low sparsity, and not when the target turns
    /// sparse kernels off.
    #[test]
    fn pruned_products_run_sparse_where_the_cost_model_says_it_pays() {
        use crate::driver::{build_graph, Source};
        use crate::kernel_plan::Kernel;
        use crate::passes::prune::{prune, PruneOptions, PruneSpec};
        use crate::target::CpuTarget;
        let src = "model m {\n input x: f32[1, 16, 24, 24]\n c = conv2d(x, filters=32, kernel=3, padding=1)\n d = conv2d(c, filters=32, kernel=3, padding=1, groups=32)\n f = flatten(d)\n output y = dense(f, units=64)\n}";
        let kernels = |fraction: f64, target: CpuTarget| -> Vec<(String, Kernel)> {
            let mut g = build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap();
            let w = crate::weights::random_weights(&g, 1);
            crate::weights::bind_weights(&mut g, w, "random").unwrap();
            prune(&mut g, &PruneOptions { specs: vec![PruneSpec::Magnitude(fraction)], skip: Vec::new() }).unwrap();
            crate::passes::optimize(&mut g, 1, Some(&target), true, &mut |_, _| {}).unwrap();
            g.node_ids().filter(|&id| g.node(id).op().and_then(|op| op.product()).is_some()).map(|id| (g.node(id).name.clone(), g.node(id).kernel.unwrap())).collect()
        };
        let sparse = |ks: &[(String, Kernel)]| ks.iter().filter(|(_, k)| *k == Kernel::Sparse).map(|(n, _)| n.clone()).collect::<Vec<_>>();
        let high = kernels(0.95, CpuTarget::reference());
        assert_eq!(sparse(&high), ["c", "y"], "{high:?}");
        assert!(sparse(&kernels(0.2, CpuTarget::reference())).is_empty());
        assert!(sparse(&kernels(0.95, CpuTarget { sparse_kernels: false, ..CpuTarget::reference() })).is_empty());
    }
}
