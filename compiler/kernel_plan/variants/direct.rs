//! The convolutions without microkernels: [`Kernel::Direct`] (row-major loops over each tap's
//! valid output range), [`Kernel::Nchw4cBlocked`] (four filters per vector, register-blocked
//! over pixels) and [`Kernel::VectorDirect`] (scalar loops in a channel-vector layout).

/// One multiply-accumulate of a dense convolution without microkernels, row-major (direct
/// loops) and NCHW4c (register-blocked). Kernels priced nowhere else cost the former.
const PS_PER_MAC_NCHW: u64 = 640;
const PS_PER_MAC_NCHW4C: u64 = 100;

/// An ungrouped convolution's estimated time in the direct loops.
pub(crate) fn conv_ps(macs: u64) -> u64 {
    macs.saturating_mul(PS_PER_MAC_NCHW)
}

/// The same register-blocked in NCHW4c.
pub(crate) fn nchw4c_conv_ps(macs: u64) -> u64 {
    macs.saturating_mul(PS_PER_MAC_NCHW4C)
}
