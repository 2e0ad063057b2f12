//! The IR's text form: one node per line (value, op, operands, attributes, type), in
//! deterministic topological order. `nnc compile --emit ir` prints it and `--dump-after`
//! shows it between passes; `ir::parse` reads it back.
//!
//! ```text
//! graph lenet5 {
//!   %image = input 0 : f32[1, 1, 28, 28] nchw
//!   %c1.weight = param : f32[6, 1, 5, 5] nchw
//!   %c1 = conv2d(%image, %c1.weight, %c1.bias) stride=[1, 1] padding=[2, 2, 2, 2] dilation=[1, 1] groups=1 : f32[1, 6, 28, 28] nchw
//!   output logits = %logits
//! }
//! ```

use super::{Graph, NodeKind};

use std::fmt::Write;

/// Constants with at most this many elements are printed in full (and parse back).
pub const INLINE_CONST_LIMIT: usize = 16;

/// Shortest text that reads back as the same f32 (constants are stored as f32).
fn format_f32(v: f32) -> String {
    let s = format!("{v:?}");
    if s.contains(['.', 'e', 'n', 'i']) {
        s
    } else {
        format!("{s}.0")
    }
}

/// The largest square block whose all-zero blocks hold every zero of a matrix (a weight as
/// `[out, in·kh·kw]`, cut into blocks from the top left, edge blocks smaller): the block
/// structure `--prune blocks:F` leaves. `None` for scattered zeros.
fn zero_block_shape(shape: &[usize], values: &[f32]) -> Option<(usize, usize)> {
    let rows = *shape.first()?;
    if shape.len() < 2 || rows == 0 {
        return None;
    }
    let cols = values.len() / rows;
    [32, 16, 8, 4, 2].into_iter().map(|b| (b, b)).find(|&(r, c)| {
        // Every block is all zero or has no zero; the first mixed one rules the shape out.
        (0..rows).step_by(r).all(|r0| {
            (0..cols).step_by(c).all(|c0| {
                let mut block = (r0..(r0 + r).min(rows)).flat_map(|i| &values[i * cols + c0..i * cols + (c0 + c).min(cols)]);
                let first_zero = block.next().is_some_and(|v| *v == 0.0);
                block.all(|v| (*v == 0.0) == first_zero)
            })
        })
    })
}

pub fn print_graph(graph: &Graph) -> String {
    print_graph_with_notes(graph, &std::collections::HashMap::new())
}

/// The IR text with a `// note` after the nodes that have one (decisions the node's own
/// attributes do not record, such as a kernel that computes two nodes); the IR parser skips
/// comments, so the text still reads back.
pub fn print_graph_with_notes(graph: &Graph, notes: &std::collections::HashMap<crate::ir::NodeId, String>) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_graph(graph, notes, &mut out);
    out
}

fn write_graph(graph: &Graph, notes: &std::collections::HashMap<crate::ir::NodeId, String>, out: &mut String) -> std::fmt::Result {
    writeln!(out, "graph {} {{", graph.name)?;
    for id in graph.topo_order() {
        let node = graph.node(id);
        write!(out, "  %{} = ", node.name)?;
        match &node.kind {
            NodeKind::Input { index } => write!(out, "input {index}")?,
            NodeKind::Param => write!(out, "param")?,
            NodeKind::Const(t) => {
                let values = t.to_f32_vec();
                if values.len() <= INLINE_CONST_LIMIT {
                    let items: Vec<String> = values.iter().map(|&v| if t.dtype().is_float() { format_f32(v) } else { format!("{v}") }).collect();
                    if t.shape().is_empty() {
                        write!(out, "const {}", items[0])?;
                    } else {
                        write!(out, "const [{}]", items.join(", "))?;
                    }
                } else {
                    // Sparsity is a property of the value: pruned weights say how dense they are.
                    let zeros = values.iter().filter(|&&v| v == 0.0).count();
                    if zeros > 0 {
                        write!(out, "const <{} values, density {:.3}", values.len(), 1.0 - zeros as f64 / values.len() as f64)?;
                        if let Some((r, c)) = zero_block_shape(t.shape(), &values) {
                            write!(out, ", zeros in {r}x{c} blocks")?;
                        }
                        write!(out, ">")?;
                    } else {
                        write!(out, "const <{} values>", values.len())?;
                    }
                }
            }
            NodeKind::Op(op) => {
                let operands: Vec<String> = graph.operands(id).iter().map(|&o| format!("%{}", graph.node(o).name)).collect();
                write!(out, "{}({})", op.name(), operands.join(", "))?;
                for (key, value) in op.attrs() {
                    write!(out, " {key}={value}")?;
                }
                if let Some(kernel) = node.kernel {
                    write!(out, " kernel=\"{kernel}\"")?;
                }
                if let Some(tile) = &node.tile {
                    write!(out, " tile=\"{tile}\"")?;
                }
            }
        }
        write!(out, " : {}", node.ty)?;
        match notes.get(&id) {
            Some(note) => writeln!(out, "  // {note}")?,
            None => writeln!(out)?,
        }
    }
    for (name, id) in &graph.outputs {
        writeln!(out, "  output {name} = %{}", graph.node(*id).name)?;
    }
    writeln!(out, "}}")
}

/// Graphviz `dot` text: one box per op, ellipses for inputs, parameters and constants.
pub fn print_dot(graph: &Graph) -> String {
    let mut out = String::new();
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let _ = writeln!(out, "digraph \"{}\" {{\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];", esc(&graph.name));
    let order = graph.topo_order();
    for &id in &order {
        let n = graph.node(id);
        let (shape, label) = match &n.kind {
            NodeKind::Input { .. } => ("ellipse", format!("{}\\ninput {}", esc(&n.name), n.ty)),
            NodeKind::Param => ("note", format!("{}\\n{}", esc(&n.name), n.ty)),
            NodeKind::Const(_) => ("plaintext", format!("{}\\nconst {}", esc(&n.name), n.ty)),
            NodeKind::Op(op) => ("box", format!("{}\\n{}\\n{}", esc(&n.name), op.name(), n.ty)),
        };
        let _ = writeln!(out, "  n{} [shape={shape}, label=\"{label}\"];", id.index());
    }
    for &id in &order {
        for o in graph.operands(id) {
            let _ = writeln!(out, "  n{} -> n{};", o.index(), id.index());
        }
    }
    for (name, id) in &graph.outputs {
        let _ = writeln!(out, "  \"out_{0}\" [shape=doublecircle, label=\"{0}\"];\n  n{1} -> \"out_{0}\";", esc(name), id.index());
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::zero_block_shape;

    /// Zeros that fill whole square blocks name the largest such block; scattered ones none.
    #[test]
    fn block_structure_of_zeros() {
        // 4 × 8 with the top-left 4 × 4 zero: 4x4 (not 8x8, which would need the rest zero).
        let mut m = vec![1.0f32; 32];
        for r in 0..4 {
            for c in 0..4 {
                m[r * 8 + c] = 0.0;
            }
        }
        assert_eq!(zero_block_shape(&[4, 8], &m), Some((4, 4)));
        // A 2 × 2 block zero at (2, 6): 2x2 is the largest that explains both.
        for (r, c) in [(2, 6), (2, 7), (3, 6), (3, 7)] {
            m[r * 8 + c] = 0.0;
        }
        assert_eq!(zero_block_shape(&[4, 8], &m), Some((2, 2)));
        m[0] = 3.0;
        assert_eq!(zero_block_shape(&[4, 8], &m), None);
        // Edge blocks are smaller: a 3 × 3 matrix, zero in its last row and column, is three
        // zero edge blocks of 2 × 2; one more zero inside the first block mixes it.
        let mut e = [1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(zero_block_shape(&[3, 3], &e), Some((2, 2)));
        e[1] = 0.0;
        assert_eq!(zero_block_shape(&[3, 3], &e), None);
    }
}
