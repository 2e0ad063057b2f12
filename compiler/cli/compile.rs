//! `nnc compile`: every `--emit` form.

use super::args::{self, Emit, Target, WeightArgs};
use super::pipeline::{accel_config, accel_program, bind_params, graph_for, jit_options, load, optimize};
use super::{write_output, CmdResult, Session};
use crate::accel;
use crate::diagnostics::Diagnostic;
use crate::elaborate::DimBindings;
use crate::ir::print;
use crate::jit;

pub(super) fn compile(session: &mut Session, a: &args::CompileArgs) -> CmdResult {
    let for_accel = a.opt.target == Target::Accel || a.emit == Emit::Isa;
    if for_accel && matches!(a.emit, Emit::Clif | Emit::Asm) {
        return Err(Diagnostic::error(format!("--emit {} lists CPU code; the accelerator's program is `--emit isa`", if a.emit == Emit::Clif { "clif" } else { "asm" })).into());
    }
    let text = match a.emit {
        Emit::Obj | Emit::Lib => {
            let mut graph = graph_for(session, &a.common, &DimBindings::new())?;
            // The weights become the library's data: synthetic ones only when asked for.
            bind_params(session, &mut graph, &a.weights, true)?;
            optimize(session, &mut graph, &a.opt, Some(&super::pipeline::cpu_target(&a.opt)))?;
            let options = jit_options(&a.opt);
            let (bytes, default_name) = if a.emit == Emit::Obj {
                (jit::aot::object(&graph, &options), format!("{}.o", graph.name))
            } else {
                (jit::aot::library(&graph, &options), format!("lib{}.a", graph.name))
            };
            let bytes = bytes.map_err(|e| Diagnostic::error(e.to_string()))?;
            // Binary output never goes to a terminal: without `-o` it is written next to the
            // current directory under the name C toolchains expect.
            let path = a.output.clone().unwrap_or_else(|| default_name.into());
            std::fs::write(&path, bytes).map_err(|e| Diagnostic::error(format!("cannot write {}: {e}", path.display())))?;
            if a.output.is_none() {
                eprintln!("wrote {}", path.display());
            }
            return Ok(());
        }
        Emit::Header => jit::aot::header(&graph_for(session, &a.common, &DimBindings::new())?).map_err(|e| Diagnostic::error(e.to_string()))?,
        Emit::Clif | Emit::Asm => {
            let mut graph = graph_for(session, &a.common, &DimBindings::new())?;
            // Weights are baked into the code; without a file, listings use random ones.
            let w = WeightArgs { weights: a.weights.weights.clone(), random_weights: a.weights.random_weights.or(if session.imported_weights.is_some() { None } else { Some(0) }) };
            bind_params(session, &mut graph, &w, false)?;
            optimize(session, &mut graph, &a.opt, Some(&super::pipeline::cpu_target(&a.opt)))?;
            let mut listing = jit::Listing { clif: a.emit == Emit::Clif, asm: a.emit == Emit::Asm, text: String::new() };
            jit::compile_with_listing(&graph, &jit_options(&a.opt), &mut listing).map_err(|e| Diagnostic::error(e.to_string()))?;
            listing.text
        }
        Emit::Isa => {
            let config = accel_config(&a.accel)?;
            let mut graph = graph_for(session, &a.common, &DimBindings::new())?;
            let w = WeightArgs { weights: a.weights.weights.clone(), random_weights: a.weights.random_weights.or(if session.imported_weights.is_some() { None } else { Some(0) }) };
            bind_params(session, &mut graph, &w, false)?;
            optimize(session, &mut graph, &super::pipeline::blocks_for_array(&a.opt, &config), None)?;
            let program = accel_program(&graph, &config)?;
            if let Some(out) = &a.output {
                if out.extension().is_some_and(|e| e == "bin") {
                    return std::fs::write(out, accel::report::binary(&program)).map_err(|e| Diagnostic::error(format!("cannot write {}: {e}", out.display())).into());
                }
            }
            accel::report::listing(&program)
        }
        Emit::Ast => {
            let file = load(session, &a.common)?;
            format!("{file:#?}\n")
        }
        Emit::IrRaw => print::print_graph(&graph_for(session, &a.common, &DimBindings::new())?),
        Emit::Ir | Emit::Dot => {
            let mut graph = graph_for(session, &a.common, &DimBindings::new())?;
            bind_params(session, &mut graph, &a.weights, false)?;
            let cpu = (!for_accel).then(|| super::pipeline::cpu_target(&a.opt));
            optimize(session, &mut graph, &a.opt, cpu.as_ref())?;
            if a.emit == Emit::Ir {
                if !for_accel && plan_needs_weights(&graph) {
                    eprintln!("note: no weights bound (`--weights` or `--random-weights`): arithmetic on the weights (folded batch norms) is not folded into constants and Winograd, which needs constant filters, is not chosen; `nnc run` binds weights, so its plan differs");
                }
                // What the JIT decides about pairs of nodes, beyond each node's kernel.
                let notes = if for_accel { Default::default() } else { crate::jit::pair_notes(&graph, &super::pipeline::jit_options(&a.opt)) };
                print::print_graph_with_notes(&graph, &notes)
            } else {
                print::print_dot(&graph)
            }
        }
    };
    write_output(a.output.as_deref(), &text)
}

/// Whether the optimized `graph` differs visibly from what `nnc run` compiles because its
/// weights are unbound parameters: some op computes on parameters alone (what binding them
/// would fold into a constant, such as a batch norm's scale), or a convolution Winograd
/// could compute has a parameter as its filters.
fn plan_needs_weights(graph: &crate::ir::Graph) -> bool {
    use crate::ir::NodeKind;
    let mut from_params = std::collections::HashSet::new();
    for id in graph.topo_order() {
        let node = graph.node(id);
        let derived = match node.kind {
            NodeKind::Param => true,
            NodeKind::Op(_) => {
                let operands = graph.operands(id);
                !operands.is_empty() && operands.iter().all(|o| from_params.contains(o) || matches!(graph.node(*o).kind, NodeKind::Const(_)))
                    && operands.iter().any(|o| from_params.contains(o))
            }
            NodeKind::Const(_) | NodeKind::Input { .. } => false,
        };
        if derived {
            if matches!(node.kind, NodeKind::Op(_)) {
                return true;
            }
            from_params.insert(id);
        }
        let winograd_shaped = node.op().and_then(|op| op.product()).is_some_and(|p| match p {
            crate::ops::Product::Conv2d(c) => graph.operand_types(id).get(1).is_some_and(|w| crate::kernel_plan::winograd_shaped(&c, w)),
            _ => false,
        });
        if winograd_shaped && graph.operands(id).get(1).is_some_and(|w| matches!(graph.node(*w).kind, NodeKind::Param)) {
            return true;
        }
    }
    false
}
