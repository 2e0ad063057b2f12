//! `nnc check` and `nnc summary`.

use super::args::CommonArgs;
use super::pipeline::{dims_from_flags, graph_for, load};
use super::{CmdResult, Session};
use crate::elaborate::{self, DimBindings};
use crate::summary;
use crate::syntax::ast;

/// `check` type-checks models with symbolic dimensions too: those not bound by `--dim` are
/// taken as 1 (a batch of one), which is what a reader of the model would try first.
pub(super) fn check(session: &mut Session, a: &CommonArgs) -> CmdResult {
    let file = load(session, a)?;
    let model = elaborate::select_model(&file, a.model.as_deref())?;
    let mut dims = dims_from_flags(a)?;
    for (_, ty) in elaborate::declared_inputs(model) {
        for d in &ty.dims {
            if let ast::Dim::Symbol(s) = d {
                dims.entry(s.name.clone()).or_insert(1);
            }
        }
    }
    elaborate::elaborate(&file, model, &dims)?;
    Ok(())
}

pub(super) fn summary(session: &mut Session, a: &CommonArgs) -> CmdResult {
    let graph = graph_for(session, a, &DimBindings::new())?;
    print!("{}", summary::summarize(&graph).render());
    Ok(())
}
