//! `global:F`: one ranking over every prunable layer's weights together, so the
//! `round(F·N)` smallest |w| of all `N` become zero (PyTorch's `global_unstructured` with
//! L1 importance): layers of small weights lose more than others.

use super::{count, prunable, values, zero};
use crate::ir::Graph;

pub fn prune_global(graph: &mut Graph, fraction: f64, skip: &[String]) {
    let weights = prunable(graph, skip);
    let all: Vec<Vec<f32>> = weights.iter().map(|w| values(graph, w.id)).collect();
    // (|w|, layer, position), ties broken by layer order then position.
    let mut order: Vec<(f32, usize, usize)> = all.iter().enumerate().flat_map(|(l, v)| v.iter().enumerate().map(move |(p, x)| (x.abs(), l, p))).collect();
    let k = count(fraction, order.len());
    order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut per_layer: Vec<Vec<usize>> = vec![Vec::new(); weights.len()];
    for &(_, l, p) in &order[..k] {
        per_layer[l].push(p);
    }
    for (w, positions) in weights.iter().zip(per_layer) {
        zero(graph, w.id, positions);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{mlp, weight};
    use super::*;

    /// By hand: the 4 smallest of all 8 weights (0.1, 0.25, 0.3, 0.5), wherever they are.
    #[test]
    fn one_threshold_over_all_layers() {
        let mut g = mlp(&[0.5, -0.1, 0.3, -0.7], &[2.0, -3.0, 0.25, 1.0]);
        prune_global(&mut g, 0.5, &[]);
        assert_eq!(weight(&g, "fc1.weight"), [0.0, 0.0, 0.0, -0.7]);
        assert_eq!(weight(&g, "fc2.weight"), [2.0, -3.0, 0.0, 1.0]);
    }
}
