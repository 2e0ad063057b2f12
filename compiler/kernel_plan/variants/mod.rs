//! The kernel variants with a rule or a price of their own, one file each: when the variant
//! applies, and what it costs in picoseconds measured on this code generator (BENCHMARKS.md,
//! "Layouts" and the sections each constant names). Only what differs between competing
//! kernels is priced. The code a variant names lives in the runtime (`nnc_runtime::gemm::*`)
//! and the JIT's lowering (`jit/lower`); [`super::select`] lists each node's candidates and
//! asks these files, and [`super::cost`] sends each kernel to its own price.

use crate::ir::TensorType;
use crate::target::CpuTarget;
use nnc_runtime::DType;

/// Whether a product of operands of these types computes in f32 on the f32 kernels, as the
/// f32-only variants (Winograd, the direct kernel for few channels) need: f32 operands, or
/// bf16 ones where the target runs bf16 products on the f32 kernel (the values widen
/// exactly, and the result is rounded to bf16 after the kernel, as every bf16 result is).
pub(crate) fn products_in_f32(types: &[&TensorType], target: &CpuTarget) -> bool {
    let all = |dtype: DType| types[..2].iter().all(|t| t.dtype == dtype);
    all(DType::F32) || (all(DType::BF16) && !target.bf16_products())
}

pub(super) mod depthwise;
pub(super) mod direct;
pub(super) mod direct_rows;
pub(super) mod dot;
pub(super) mod gemm;
pub(super) mod pool;
pub(super) mod sparse;
pub(super) mod winograd;

/// Operands of a product on `image` (an input) and `weights` (a constant leaf), as the
/// variants' tests price them.
#[cfg(test)]
fn test_operands<'a>(image: &'a TensorType, weights: &'a TensorType, weight_density: Option<f64>) -> super::Operands<'a> {
    super::Operands { types: vec![image, weights], constant: vec![false, true], interpreter_bits: false, weight_density, weight_is_leaf: true }
}

