//! [`Kernel::Dot`]: a dense layer as dot products, for few rows, where a GEMM tile would
//! mostly compute padding (`nnc_runtime::gemm::gemv` with microkernels on, Cranelift's
//! `f32x4` loops without).

use super::super::*;

/// One multiply-accumulate in Cranelift's `f32x4` loops.
const PS_PER_MAC: u64 = 87;
/// The same through the runtime's full-width dot products (`gemm::gemv`, microkernels on):
/// the MLP's 784→512 layer at batch 1.
const PS_PER_MAC_RUNTIME: u64 = 50;

/// A dense layer's estimated time as dot products.
pub(crate) fn dense_ps(macs: u64, target: &CpuTarget) -> u64 {
    macs.saturating_mul(if target.ukernels { PS_PER_MAC_RUNTIME } else { PS_PER_MAC })
}
