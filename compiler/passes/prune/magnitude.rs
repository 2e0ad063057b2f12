//! `magnitude:F`: in each prunable layer, the `round(F·n)` weights of smallest |w| become
//! zero (PyTorch's `l1_unstructured`, layer by layer).

use super::{by_magnitude, count, prunable, values, zero};
use crate::ir::Graph;

pub fn prune_magnitude(graph: &mut Graph, fraction: f64, skip: &[String]) {
    for w in prunable(graph, skip) {
        let data = values(graph, w.id);
        let k = count(fraction, data.len());
        let smallest: Vec<usize> = by_magnitude(&data).into_iter().take(k).collect();
        zero(graph, w.id, smallest);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{mlp, weight};
    use super::*;

    /// By hand: 2 of fc1's 4 weights and 2 of fc2's 4 (half of each, the smallest |w|).
    #[test]
    fn zeroes_the_smallest_fraction_of_each_layer() {
        let mut g = mlp(&[0.5, -0.1, 0.3, -0.7], &[2.0, -3.0, 0.25, 1.0]);
        prune_magnitude(&mut g, 0.5, &[]);
        assert_eq!(weight(&g, "fc1.weight"), [0.5, 0.0, 0.0, -0.7]);
        assert_eq!(weight(&g, "fc2.weight"), [2.0, -3.0, 0.0, 0.0]);
        // Biases are never pruned.
        assert_eq!(weight(&g, "fc1.bias"), [0.1, 0.1]);
    }

    #[test]
    fn skip_leaves_a_layer_alone() {
        let mut g = mlp(&[0.5, -0.1, 0.3, -0.7], &[2.0, -3.0, 0.25, 1.0]);
        prune_magnitude(&mut g, 0.75, &["fc2".into()]);
        assert_eq!(weight(&g, "fc1.weight"), [0.0, 0.0, 0.0, -0.7]);
        assert_eq!(weight(&g, "fc2.weight"), [2.0, -3.0, 0.25, 1.0]);
    }
}
