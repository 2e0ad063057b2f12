//! Cache tiling for the CPU: every node whose kernel (by its kernel plan) runs a matrix
//! product through a GEMM gets the blocking `CpuTarget::gemm_tile` derives from the cache
//! sizes and the microkernel's register tile, recorded on the node
//! (`tile="8x32 kc=1024 mc=224 nc=1024"` in IR dumps) and used by the code generator as is.

use crate::ir::Graph;
use crate::kernel_plan::{Known, KernelPlan, Operands};
use crate::target::CpuTarget;

pub fn select_tiles(graph: &mut Graph, target: &CpuTarget) -> bool {
    let mut changed = false;
    let known = Known::of(graph);
    for id in graph.topo_order() {
        let node = graph.node(id);
        let Some(op) = node.op() else { continue };
        // A node the JIT has no kernel for (int8 ops) runs no GEMM.
        let plan = KernelPlan::new(op, &Operands::of(graph, id, &known), &node.ty, target, node.kernel, None).ok();
        let tile = plan.and_then(|p| p.gemm).map(|[m, n, k]| target.gemm_tile(m, n, k));
        if graph.node(id).tile != tile {
            graph.node_mut(id).tile = tile;
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use crate::passes::testing::check_pass;

    #[test]
    fn products_get_cache_blocking_clamped_to_their_size() {
        let ir = check_pass(
            "select-tiles",
            "model m {
                input x: f32[16, 300]
                h = relu(dense(x, units=64))
                output y = matmul(h, transpose(h))
                output z = sigmoid(h)
            }",
        );
        // The dense layer is 16 × 64 × 300: longer than the L1 slab (256), so one slab of all
        // 300 (up to `LONG_SLAB_KC`), mc the 16 rows, nc 64 columns.
        assert!(ir.contains(r#"tile="8x32 kc=300 mc=16 nc=64""#), "{ir}");
        // The 16 × 16 × 64 product, on the narrow 8×16 tile.
        assert!(ir.contains(r#"tile="8x16 kc=64 mc=16 nc=16""#), "{ir}");
        assert_eq!(ir.matches("tile=").count(), 2, "{ir}");
    }
}
