//! The optimization pipeline: one readable list of passes, each gated by the `-O` level at
//! which it starts to run.
//!
//! Every pass is a free function `fn(&mut Graph) -> bool` (true if it changed anything) in its
//! own file. Passes never change a graph's inputs or outputs, nor the values the outputs take
//! (up to float rounding). The verifier runs after every pass in debug builds and tests.

mod eliminate_dead_code;
mod fold_batch_norm;
mod fold_constants;
mod fuse_epilogues;

pub use eliminate_dead_code::eliminate_dead_code;
pub use fold_batch_norm::fold_batch_norm;
pub use fold_constants::fold_constants;
pub use fuse_epilogues::fuse_epilogues;

#[cfg(test)]
mod filetests;
#[cfg(test)]
pub mod testing;

use crate::ir::{verify::verify, Graph};

pub struct Pass {
    /// The name `--dump-after` takes.
    pub name: &'static str,
    /// The lowest `-O` level that runs it.
    pub min_opt_level: u8,
    pub run: fn(&mut Graph) -> bool,
}

/// The pipeline, in order.
pub const PIPELINE: &[Pass] = &[
    Pass { name: "fold-batch-norm", min_opt_level: 2, run: fold_batch_norm },
    Pass { name: "fold-constants", min_opt_level: 1, run: fold_constants },
    Pass { name: "fuse-epilogues", min_opt_level: 2, run: fuse_epilogues },
    Pass { name: "eliminate-dead-code", min_opt_level: 1, run: eliminate_dead_code },
];

pub fn pass_names() -> Vec<&'static str> {
    PIPELINE.iter().map(|p| p.name).collect()
}

/// A pass left the graph broken: a compiler bug, reported with what the verifier found.
#[derive(Debug, thiserror::Error)]
#[error("internal compiler error: the IR is invalid after pass `{pass}`:\n{problems}")]
pub struct PassError {
    pub pass: &'static str,
    pub problems: String,
}

/// Run every pass enabled at `opt_level`; `after_pass` sees the graph after each one (the
/// `--dump-after` hook). `verify_each` runs the verifier after every pass.
pub fn optimize(graph: &mut Graph, opt_level: u8, verify_each: bool, after_pass: &mut dyn FnMut(&str, &Graph)) -> Result<(), PassError> {
    for pass in PIPELINE.iter().filter(|p| opt_level >= p.min_opt_level) {
        (pass.run)(graph);
        if verify_each {
            verify(graph).map_err(|problems| PassError { pass: pass.name, problems })?;
        }
        after_pass(pass.name, graph);
    }
    Ok(())
}
