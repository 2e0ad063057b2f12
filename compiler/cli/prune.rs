//! `nnc prune`: the pruned model as files (SPEC §5). Unstructured and block pruning keep the
//! architecture, so the model's source is written unchanged and the weights file carries the
//! zeros; structured pruning (`channels:F`) shrinks layers, so the model is written flat from
//! the pruned graph (`ir::source`), each layer at its new size under its old parameter
//! names. Running the written pair without `--prune` gives the pruned run's outputs.

use super::args::PruneCmdArgs;
use super::check::density_table;
use super::pipeline::{bind_params, load_with_unbound_dims_as_one};
use super::{write_output, CmdResult, Session};
use crate::diagnostics::Diagnostic;
use crate::ir::NodeKind;
use crate::passes;
use std::collections::BTreeMap;

pub(super) fn prune(session: &mut Session, a: &PruneCmdArgs) -> CmdResult {
    let opts = a.prune.options();
    if opts.is_empty() {
        return Err(Diagnostic::error("nnc prune needs at least one --prune SPEC (magnitude:F, global:F, channels:F or blocks:F[:RxC])").into());
    }
    // Weight shapes do not depend on a batch.
    let (file, dims) = load_with_unbound_dims_as_one(session, &a.common)?;
    let mut graph = crate::driver::elaborate(&file, a.common.model.as_deref(), &dims)?;
    let params = graph.param_names();
    bind_params(session, &mut graph, &a.weights, true)?;
    passes::prune::check(&graph, &opts).map_err(Diagnostic::error)?;
    let original = graph.clone();
    passes::prune::prune(&mut graph, &opts).map_err(Diagnostic::error)?;
    let mut tensors = BTreeMap::new();
    for id in graph.node_ids() {
        let node = graph.node(id);
        if let (NodeKind::Const(t), true) = (&node.kind, params.contains(&node.name)) {
            tensors.insert(node.name.clone(), t.clone());
        }
    }
    let dir = &a.output_dir;
    std::fs::create_dir_all(dir).map_err(|e| Diagnostic::error(format!("cannot create {}: {e}", dir.display())))?;
    let original_source = session.source.as_ref().expect("the source was read");
    let source = if opts.specs.iter().any(|s| matches!(s, passes::prune::PruneSpec::Channels(_))) {
        let specs = opts.specs.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ");
        let header = format!("Written by `nnc prune` ({specs}) from {}: each layer at its pruned size, under its original parameter names.", original_source.name);
        // Input sizes left symbolic stay so (those bound by `--dim` are written as bound).
        let model = crate::elaborate::select_model(&file, a.common.model.as_deref())?;
        let flags = super::pipeline::dims_from_flags(&a.common)?;
        let symbolic = crate::elaborate::declared_inputs(model)
            .into_iter()
            .map(|(name, ty)| (name.name.clone(), ty.dims.iter().map(|d| match d {
                crate::syntax::ast::Dim::Symbol(s) if !flags.contains_key(&s.name) => Some(s.name.clone()),
                _ => None,
            }).collect()))
            .collect();
        crate::ir::source::to_source(&graph, &header, &symbolic).map_err(|e| Diagnostic::error(format!("cannot write the pruned model as .nn source: {e}")))?
    } else {
        original_source.text.clone()
    };
    let (nn, weights) = (dir.join(format!("{}.nn", graph.name)), dir.join(format!("{}.safetensors", graph.name)));
    write_output(Some(&nn), &source)?;
    nnc_runtime::weights::write_safetensors(&weights, &tensors).map_err(|e| Diagnostic::error(format!("cannot write {}: {e}", weights.display())))?;
    out!("{}", density_table(&original, &graph, &opts));
    outln!("wrote {} and {} ({} tensors)", nn.display(), weights.display(), tensors.len());
    Ok(())
}
