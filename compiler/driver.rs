//! The front-end pipeline in one place: source text → AST → typed graph, with diagnostics.
//! The CLI, the tests and embedding applications all go through here.

use crate::diagnostics::Diagnostic;
use crate::elaborate::{self, DimBindings};
use crate::ir::Graph;
use crate::syntax::{self, ast};
use std::path::Path;

/// A source file, checked to be UTF-8.
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn read(path: &Path) -> Result<Source, Diagnostic> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| Diagnostic::error(format!("cannot read {name}: {e}")))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            Diagnostic::error(format!("{name} is not valid UTF-8 (invalid byte at offset {})", e.utf8_error().valid_up_to()))
                .with_help("nnc sources must be UTF-8 text")
        })?;
        Ok(Source { name, text })
    }

    pub fn from_string(name: impl Into<String>, text: impl Into<String>) -> Source {
        Source { name: name.into(), text: text.into() }
    }
}

/// Parse a source; errors are every syntax error found.
pub fn parse(src: &Source) -> Result<ast::File, Vec<Diagnostic>> {
    let (file, diags) = syntax::parse(&src.text);
    if diags.is_empty() {
        Ok(file)
    } else {
        Err(diags)
    }
}

/// Parse and elaborate the selected model.
pub fn build_graph(src: &Source, model: Option<&str>, dims: &DimBindings) -> Result<Graph, Vec<Diagnostic>> {
    let file = parse(src)?;
    let m = elaborate::select_model(&file, model).map_err(|d| vec![d])?;
    elaborate::elaborate(&file, m, dims)
}
