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

pub fn print_graph(graph: &Graph) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_graph(graph, &mut out);
    out
}

fn write_graph(graph: &Graph, out: &mut String) -> std::fmt::Result {
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
                        write!(out, "const <{} values, density {:.3}>", values.len(), 1.0 - zeros as f64 / values.len() as f64)?;
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
        writeln!(out, " : {}", node.ty)?;
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
