//! [`Kernel::Sparse`]: products over pruned weights' nonzeros only
//! (`nnc_runtime::gemm::sparse`).

use super::super::*;

/// Measured on ResNet-18's convolutions, the transformer's and the MLP's dense layers at
/// 50–90% sparsity (BENCHMARKS.md, "Pruning"): each nonzero weight costs a fixed part per
/// pass over B (its row of B comes from L2 or beyond) plus one multiply-accumulate per column
/// it is broadcast over; with few columns each nonzero is one gathered multiply-accumulate;
/// unfolding (im2col) and transposing cost per element moved.
const PS_PER_NONZERO: u64 = 2000;
const PS_PER_MAC: u64 = 40;
const GATHER_PS_PER_MAC: u64 = 265;
const PS_PER_MOVED: u64 = 250;

/// Whether it can compute this product: an f32 row-major convolution (ungrouped) or dense
/// layer whose weights are a constant with zeros, on a target with the runtime's kernels.
pub(crate) fn applies(product: &Product, operands: &Operands, target: &CpuTarget) -> bool {
    let types = &operands.types;
    let f32s = types[..2].iter().all(|t| t.dtype == nnc_runtime::DType::F32);
    let shape = match product {
        Product::Conv2d(c) => c.groups == 1 && types[0].layout == Layout::RowMajor,
        Product::Dense(_) => true,
        Product::MatMul(_) => false,
    };
    target.sparse_kernels && f32s && shape && operands.constant.get(1) == Some(&true) && operands.weight_density.is_some_and(|d| d < 1.0)
}

/// The product's estimated time with this fraction of its weights nonzero (`t`: its own
/// operands' types).
pub(crate) fn estimated_ps(product: &Product, t: &[&TensorType], out: &TensorType, density: f64) -> u64 {
    let nonzero_macs = (product.macs(t, out) as f64 * density) as u64;
    let nonzeros = (t[1].numel() as f64 * density) as u64;
    // Each nonzero broadcast over `columns` of B: a fixed part and its multiply-adds.
    let broadcast = |columns: usize| nonzeros.saturating_mul(PS_PER_NONZERO + columns as u64 * PS_PER_MAC);
    match product {
        Product::Conv2d(c) => {
            let (images, pixels) = (t[0].shape[0] as u64, out.shape[2] * out.shape[3]);
            let unfolded = if conv_is_pointwise(c, t) { 0 } else { (reduction(t) * pixels) as u64 };
            images.saturating_mul(broadcast(pixels).saturating_add(unfolded.saturating_mul(PS_PER_MOVED)))
        }
        Product::Dense(_) | Product::MatMul(_) => {
            let (units, features) = (t[1].shape[0], t[1].shape[1]);
            let rows = t[0].numel() / features;
            if rows <= nnc_runtime::gemm::sparse::GATHER_MAX_COLUMNS {
                nonzero_macs.saturating_mul(GATHER_PS_PER_MAC)
            } else {
                let moved = ((features + 2 * units) * rows) as u64;
                broadcast(rows).saturating_add(moved.saturating_mul(PS_PER_MOVED))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dense layer's sparse price falls with its density and crosses the GEMM's (the
    /// transformer's 256→1024 layer over 128 rows: sparse below 10%, dense at 90%); the gather
    /// form prices a single row by its nonzeros alone.
    #[test]
    fn a_dense_layer_prices_below_the_gemm_only_when_mostly_zeros() {
        let dense = Product::Dense(crate::ops::Dense);
        let (x, w, out) = (TensorType::f32(vec![128, 256]), TensorType::f32(vec![1024, 256]), TensorType::f32(vec![128, 1024]));
        let gemm = super::super::gemm::dense_ps(dense.macs(&[&x, &w], &out));
        let [sparse10, sparse90] = [0.1, 0.9].map(|density| estimated_ps(&dense, &[&x, &w], &out, density));
        assert!(sparse10 < gemm && gemm < sparse90, "10%: {sparse10}, 90%: {sparse90}, GEMM {gemm} ps");
        let (row, row_out) = (TensorType::f32(vec![1, 256]), TensorType::f32(vec![1, 1024]));
        assert_eq!(estimated_ps(&dense, &[&row, &w], &row_out, 0.5), (256 * 1024 / 2) as u64 * GATHER_PS_PER_MAC);
        assert!(!applies(&dense, &super::super::test_operands(&x, &w, Some(1.0)), &CpuTarget::reference()), "no zeros, no sparse kernel");
        assert!(applies(&dense, &super::super::test_operands(&x, &w, Some(0.5)), &CpuTarget::reference()));
    }
}
