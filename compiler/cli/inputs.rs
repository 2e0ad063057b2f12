//! Model inputs from `--input` (files, or seeded random data), symbolic dimensions bound from
//! their shapes, and outputs printed or written as `.npy`.

use super::args::{self, InputArgs};
use super::{tensor_text, write_output, CmdResult, Failure, Session};
use crate::diagnostics::Diagnostic;
use crate::elaborate::{self, DimBindings};
use crate::ir::Graph;
use crate::syntax::ast;
use nnc_runtime::npy::{read_npy, write_npy};
use nnc_runtime::Tensor;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeMap;
use std::path::Path;

/// An `--input` value before the model's types are known.
pub(super) enum InputValue {
    File(Tensor),
    Random(u64),
}

/// Read `--input` files, check the names against the model's declared inputs, and bind
/// symbolic dimensions from the files' shapes.
/// With `random_missing`, inputs not given are seeded random data (for `nnc sim`).
pub(super) fn read_inputs(session: &Session, model: &ast::Model, io: &InputArgs, dims: &mut DimBindings, random_missing: bool) -> Result<BTreeMap<String, InputValue>, Failure> {
    let declared = elaborate::declared_inputs(model);
    let names = || declared.iter().map(|(n, _)| format!("`{}`", n.name)).collect::<Vec<_>>().join(", ");
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for spec in &io.inputs {
        let name = spec.name.as_str();
        let Some((_, ty)) = declared.iter().find(|(n, _)| n.name == name) else {
            errors.push(Diagnostic::error(format!("--input names `{name}`, but model `{}` has no such input", model.name.name)).with_note(format!("its inputs are {}", names())));
            continue;
        };
        if out.contains_key(name) {
            errors.push(Diagnostic::error(format!("--input `{name}` is given twice")));
            continue;
        }
        let value = match &spec.source {
            args::InputSource::Random(seed) => InputValue::Random(*seed),
            args::InputSource::File(path) => match read_npy(path) {
                Ok(arr) => {
                    let file = path.display().to_string();
                    if arr.converted_from_f64 {
                        session.emit(&[Diagnostic::warning(format!("{file}: f64 data converted to f32"))]);
                    }
                    if let Err(d) = bind_dims_from_shape(name, &file, ty, arr.tensor.shape(), dims) {
                        errors.push(d);
                        continue;
                    }
                    InputValue::File(arr.tensor)
                }
                Err(e) => {
                    errors.push(Diagnostic::error(e.to_string()));
                    continue;
                }
            },
        };
        out.insert(name.to_string(), value);
    }
    let missing: Vec<String> = declared.iter().filter(|(n, _)| !out.contains_key(&n.name)).map(|(n, _)| format!("`{}`", n.name)).collect();
    if errors.is_empty() && !missing.is_empty() && random_missing {
        // Simulation is about time and energy: seeded data stands in for what is not given.
        session.emit(&[Diagnostic::warning(format!("no --input for {}: using seeded random data (`random:0`)", missing.join(", ")))]);
        for (n, _) in &declared {
            out.entry(n.name.clone()).or_insert(InputValue::Random(0));
        }
        return Ok(out);
    }
    if errors.is_empty() && !missing.is_empty() {
        errors.push(
            Diagnostic::error(format!("no value for input{} {}", if missing.len() == 1 { "" } else { "s" }, missing.join(", ")))
                .with_help("give each input with `--input NAME=FILE.npy`, or `--input NAME=random:SEED` for seeded random data"),
        );
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors.into())
    }
}

pub(super) fn bind_dims_from_shape(name: &str, file: &str, ty: &ast::TypeExpr, shape: &[usize], dims: &mut DimBindings) -> Result<(), Diagnostic> {
    let declared: Vec<String> = ty.dims.iter().map(|d| match d {
        ast::Dim::Fixed(t, _) => t.clone(),
        ast::Dim::Symbol(s) => s.name.clone(),
    }).collect();
    let mismatch = || Diagnostic::error(format!("{file} has shape {}, but input `{name}` is declared [{}]", crate::ir::ShapeDisplay(shape), declared.join(", ")));
    if shape.len() != ty.dims.len() {
        return Err(mismatch());
    }
    for (d, &size) in ty.dims.iter().zip(shape) {
        match d {
            ast::Dim::Fixed(t, _) => {
                if t.parse::<usize>().ok() != Some(size) {
                    return Err(mismatch());
                }
            }
            ast::Dim::Symbol(s) if size == 0 => {
                return Err(Diagnostic::error(format!("{file} gives `{}` = 0; dimensions must be at least 1", s.name)));
            }
            ast::Dim::Symbol(s) => match dims.get(&s.name) {
                Some(&bound) if bound != size => {
                    return Err(Diagnostic::error(format!("{file} gives `{}` = {size}, but it is already bound to {bound}", s.name)).with_help("every use of a symbolic dimension must have the same size"));
                }
                Some(_) => {}
                None => {
                    dims.insert(s.name.clone(), size);
                }
            },
        }
    }
    Ok(())
}

/// Turn input sources into tensors of the graph's input types.
pub(super) fn materialize_inputs(graph: &Graph, sources: BTreeMap<String, InputValue>) -> Result<Vec<Tensor>, Failure> {
    let mut sources = sources;
    let mut out = Vec::with_capacity(graph.inputs.len());
    for &id in &graph.inputs {
        let node = graph.node(id);
        let ty = &node.ty;
        if !ty.dtype.is_float() {
            return Err(Diagnostic::error(format!("input `{}` is declared {}; nnc runs float inputs only", node.name, ty.dtype)).with_help("declare it f32").into());
        }
        let t = match sources.remove(&node.name).expect("read_inputs checked every input is given") {
            InputValue::File(t) => Tensor::from_f32(ty.dtype, ty.shape.clone(), t.to_f32_vec()).map_err(|e| Diagnostic::error(format!("input `{}`: {e}", node.name)))?,
            InputValue::Random(seed) => random_tensor(ty, seed),
        };
        out.push(t);
    }
    Ok(out)
}


/// Seeded uniform [-1, 1) data of a float type: `--input NAME=random:SEED`, and the
/// calibration fallback.
pub(super) fn random_tensor(ty: &crate::ir::TensorType, seed: u64) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let data = (0..ty.numel()).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Tensor::from_f32(ty.dtype, ty.shape.clone(), data).expect("the shape was checked when the graph was built")
}

/// One random tensor per graph input, all from `seed`'s stream of seeds.
pub(super) fn random_tensors(graph: &Graph, seed: u64) -> Vec<Tensor> {
    graph.inputs.iter().enumerate().map(|(i, &id)| random_tensor(&graph.node(id).ty, seed.wrapping_add((i as u64).wrapping_mul(0x9e37_79b9)))).collect()
}

pub(super) fn emit_outputs(graph: &Graph, outputs: &[Tensor], dir: Option<&Path>) -> CmdResult {
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| Diagnostic::error(format!("cannot create {}: {e}", dir.display())))?;
            for ((name, _), t) in graph.outputs.iter().zip(outputs) {
                let path = dir.join(format!("{name}.npy"));
                write_npy(&path, t).map_err(|e| Diagnostic::error(format!("cannot write {}: {e}", path.display())))?;
            }
            Ok(())
        }
        None => {
            let mut text = String::new();
            for ((name, id), t) in graph.outputs.iter().zip(outputs) {
                let ty = &graph.node(*id).ty;
                text.push_str(&format!("{name}: {}{}\n{}\n", ty.dtype, crate::ir::ShapeDisplay(&ty.shape), tensor_text::format_tensor(t)));
            }
            write_output(None, &text)
        }
    }
}
