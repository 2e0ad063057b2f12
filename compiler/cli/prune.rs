//! `nnc prune`: the pruned model as files (SPEC §5). Unstructured and block pruning keep the
//! architecture, so the model's source is written unchanged and the weights file carries the
//! zeros; running the written pair without `--prune` gives the pruned run's outputs.

use super::args::PruneCmdArgs;
use super::check::density_table;
use super::pipeline::{bind_params, graph_for, load};
use super::{write_output, CmdResult, Session};
use crate::diagnostics::Diagnostic;
use crate::elaborate::{self, DimBindings};
use crate::ir::NodeKind;
use crate::passes;
use crate::syntax::ast;
use std::collections::BTreeMap;

pub(super) fn prune(session: &mut Session, a: &PruneCmdArgs) -> CmdResult {
    let opts = a.prune.options();
    if opts.is_empty() {
        return Err(Diagnostic::error("nnc prune needs at least one --prune SPEC (magnitude:F, global:F or blocks:F[:RxC])").into());
    }
    // Weight shapes do not depend on a batch: symbolic input dimensions not bound by --dim
    // are taken as 1, as `nnc check` does.
    let file = load(session, &a.common)?;
    let model = elaborate::select_model(&file, a.common.model.as_deref())?;
    let mut ones = DimBindings::new();
    for (_, ty) in elaborate::declared_inputs(model) {
        for d in &ty.dims {
            if let ast::Dim::Symbol(s) = d {
                ones.insert(s.name.clone(), 1);
            }
        }
    }
    for (name, _) in &a.common.dims {
        ones.remove(name);
    }
    let mut graph = graph_for(session, &a.common, &ones)?;
    let params = graph.param_names();
    bind_params(session, &mut graph, &a.weights, true)?;
    passes::prune::check(&graph, &opts).map_err(Diagnostic::error)?;
    passes::prune::prune(&mut graph, &opts);
    let mut tensors = BTreeMap::new();
    for id in graph.node_ids() {
        let node = graph.node(id);
        if let (NodeKind::Const(t), true) = (&node.kind, params.contains(&node.name)) {
            tensors.insert(node.name.clone(), t.clone());
        }
    }
    let dir = &a.output_dir;
    std::fs::create_dir_all(dir).map_err(|e| Diagnostic::error(format!("cannot create {}: {e}", dir.display())))?;
    let source = session.source.as_ref().expect("the source was read").text.clone();
    let (nn, weights) = (dir.join(format!("{}.nn", graph.name)), dir.join(format!("{}.safetensors", graph.name)));
    write_output(Some(&nn), &source)?;
    nnc_runtime::weights::write_safetensors(&weights, &tensors).map_err(|e| Diagnostic::error(format!("cannot write {}: {e}", weights.display())))?;
    print!("{}", density_table(&graph, &opts));
    println!("wrote {} and {} ({} tensors)", nn.display(), weights.display(), tensors.len());
    Ok(())
}
