//! `blocks:F[:RxC]`: each prunable weight seen as a matrix `[out, in·kh·kw]` is cut into
//! `R × C` blocks (`R` output channels by `C` inputs; edge blocks are smaller) and the
//! `round(F·blocks)` blocks of smallest L2 norm become zero, layer by layer. Blocks of the
//! accelerator's fold shape (`R` = array columns, `C` = array rows) let it skip whole folds.

use super::{count, prunable, values, zero};
use crate::ir::Graph;

/// The default block when neither the spec nor an accelerator configuration gives one.
pub const DEFAULT_BLOCK: (usize, usize) = (16, 16);

pub fn prune_blocks(graph: &mut Graph, fraction: f64, (br, bc): (usize, usize), skip: &[String]) {
    for w in prunable(graph, skip) {
        let shape = graph.node(w.id).ty.shape.clone();
        let data = values(graph, w.id);
        let out = shape[0];
        let inner = data.len() / out.max(1);
        let (rows, cols) = (out.div_ceil(br), inner.div_ceil(bc));
        // (L2² norm, block index) of every block; squared norms order as the norms do.
        let mut blocks: Vec<(f64, usize)> = (0..rows * cols)
            .map(|b| {
                let (r0, c0) = (b / cols * br, b % cols * bc);
                let mut sum = 0.0f64;
                for r in r0..(r0 + br).min(out) {
                    for c in c0..(c0 + bc).min(inner) {
                        sum += (data[r * inner + c] as f64).powi(2);
                    }
                }
                (sum, b)
            })
            .collect();
        blocks.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let k = count(fraction, blocks.len());
        let mut positions = Vec::new();
        for &(_, b) in &blocks[..k] {
            let (r0, c0) = (b / cols * br, b % cols * bc);
            for r in r0..(r0 + br).min(out) {
                positions.extend((c0..(c0 + bc).min(inner)).map(|c| r * inner + c));
            }
        }
        zero(graph, w.id, positions);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{mlp, weight};
    use super::*;

    /// By hand: 1×1 blocks are single weights (magnitude pruning); 1×2 blocks are rows of
    /// each 2×2 weight, and the row of smaller norm goes.
    #[test]
    fn zeroes_the_blocks_of_smallest_norm() {
        let mut g = mlp(&[0.5, -0.1, 0.3, -0.7], &[2.0, -3.0, 0.25, 1.0]);
        prune_blocks(&mut g, 0.5, (1, 2), &[]);
        // fc1 rows: |(0.5, -0.1)| = 0.51 < |(0.3, -0.7)| = 0.76.
        assert_eq!(weight(&g, "fc1.weight"), [0.0, 0.0, 0.3, -0.7]);
        // fc2 rows: |(2, -3)| = 3.6 > |(0.25, 1)| = 1.03.
        assert_eq!(weight(&g, "fc2.weight"), [2.0, -3.0, 0.0, 0.0]);
        let mut g = mlp(&[0.5, -0.1, 0.3, -0.7], &[2.0, -3.0, 0.25, 1.0]);
        // 2×1 blocks are columns: fc1 (0.5, 0.3) = 0.58 vs (-0.1, -0.7) = 0.71.
        prune_blocks(&mut g, 0.5, (2, 1), &[]);
        assert_eq!(weight(&g, "fc1.weight"), [0.0, -0.1, 0.0, -0.7]);
    }

    #[test]
    fn edge_blocks_are_smaller() {
        // 2×2 weights in 3×3 blocks: one block, pruned whole at F = 0.5 (round(0.5) = 0,
        // half to even) is nothing; at F = 0.9 it is everything.
        let mut g = mlp(&[0.5, -0.1, 0.3, -0.7], &[2.0, -3.0, 0.25, 1.0]);
        prune_blocks(&mut g, 0.5, (3, 3), &[]);
        assert_eq!(weight(&g, "fc1.weight"), [0.5, -0.1, 0.3, -0.7]);
        prune_blocks(&mut g, 0.9, (3, 3), &[]);
        assert_eq!(weight(&g, "fc1.weight"), [0.0; 4]);
    }
}
