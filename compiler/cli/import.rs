//! `nnc import`: an ONNX model written as `.nn` source and safetensors weights (SPEC §7).

use super::args::ImportArgs;
use super::{write_output, CmdResult, Session};
use crate::diagnostics::Diagnostic;

pub(super) fn import(session: &mut Session, a: &ImportArgs) -> CmdResult {
    let dims = super::pipeline::dims_from_flags(&super::args::CommonArgs { file: a.file.clone(), model: None, dims: a.dims.clone() })?;
    let started = std::time::Instant::now();
    let imported = super::pipeline::import_onnx(&a.file, &dims)?;
    let elapsed = started.elapsed();
    session.source = Some(crate::driver::Source::from_string(format!("{}.nn", imported.model), imported.source.clone()));
    let dir = &a.output_dir;
    std::fs::create_dir_all(dir).map_err(|e| Diagnostic::error(format!("cannot create {}: {e}", dir.display())))?;
    let (nn, weights) = (dir.join(format!("{}.nn", imported.model)), dir.join(format!("{}.safetensors", imported.model)));
    write_output(Some(&nn), &imported.source)?;
    nnc_runtime::weights::write_safetensors(&weights, &imported.weights).map_err(|e| Diagnostic::error(format!("cannot write {}: {e}", weights.display())))?;
    if !imported.activation_scales.is_empty() {
        session.emit(&[Diagnostic::warning(format!(
            "{} is quantized (QuantizeLinear/DequantizeLinear on {} values); the .nn language has no syntax for its scales, so the written model is its float form (weights dequantized)",
            a.file.display(),
            imported.activation_scales.len()
        ))
        .with_help("run the .onnx itself to compute in int8 with the model's scales, or the written .nn with --quantize int8 to calibrate anew")]);
    }
    let statements = imported.source.lines().filter(|l| l.contains(" = ")).count();
    let params: usize = imported.weights.values().map(|t| t.len()).sum();
    outln!("imported {} in {:.0} ms: {statements} statements, {} tensors ({params} values)", a.file.display(), elapsed.as_secs_f64() * 1e3, imported.weights.len());
    outln!("wrote {} and {}", nn.display(), weights.display());
    Ok(())
}
