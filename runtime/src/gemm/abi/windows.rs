//! The entry points of the kernels that slide windows over NHWC images or move their
//! pixels: depthwise convolutions (alone and fed by a GEMM convolution), pooling, and RGB
//! planes to channels-last.

use super::ConvNhwcCall;
use crate::gemm::{Blocking, Epilogue};

call_descriptor! {
    /// Output rows `row_lo..row_hi` (counted over all images) of a depthwise convolution of
    /// NHWC images ([`crate::gemm::depthwise`]): `n` images of `c` channels, `h × w` in, `oh × ow`
    /// out, weights `[kh·kw][c]`, then the epilogue (bias per channel, residual shaped like
    /// `out`, activation). Threads call it with disjoint row ranges.
    DepthwiseCall / DepthwiseCallFields {
        n: i64,
        c: i64,
        h: i64,
        w: i64,
        kh: i64,
        kw: i64,
        sh: i64,
        sw: i64,
        dh: i64,
        dw: i64,
        pt: i64,
        pl: i64,
        oh: i64,
        ow: i64,
        x: *const f32,
        weights: *const f32,
        out: *mut f32,
        row_lo: i64,
        row_hi: i64,
        /// Null, or `c` floats.
        bias: *const f32,
        /// Null, or a tensor shaped like `out`.
        residual: *const f32,
        act: i64,
    }
}

impl DepthwiseCall {
    /// The convolution's sizes (negative fields read as 0).
    fn geometry(&self) -> crate::gemm::depthwise::Depthwise {
        let u = |v: i64| v.max(0) as usize;
        crate::gemm::depthwise::Depthwise { n: u(self.n), c: u(self.c), h: u(self.h), w: u(self.w), kh: u(self.kh), kw: u(self.kw), sh: u(self.sh), sw: u(self.sw), dh: u(self.dh), dw: u(self.dw), pt: u(self.pt), pl: u(self.pl), oh: u(self.oh), ow: u(self.ow) }
    }
}

/// The convolution rows of [`DepthwiseCall`].
///
/// # Safety
/// `call` points to a valid [`DepthwiseCall`] whose buffers are as `depthwise::depthwise`
/// requires.
#[no_mangle]
pub unsafe extern "C" fn nnc_depthwise(call: *const DepthwiseCall) {
    // SAFETY: the caller passes a valid descriptor.
    let g = unsafe { *call };
    let u = |v: i64| v.max(0) as usize;
    let geometry = g.geometry();
    let ep = Epilogue::from_abi(g.bias, 0, g.residual, g.act);
    let rows = geometry.n * geometry.oh;
    let (lo, hi) = (u(g.row_lo).min(rows), u(g.row_hi).min(rows));
    // SAFETY: the descriptor's buffers are valid as the contract above says; the rows are
    // clamped to the output.
    unsafe { crate::gemm::depthwise::depthwise(geometry, lo, hi.max(lo), g.x, g.weights, g.out, ep) }
}

call_descriptor! {
    /// Three-channel images from planes to channels-last ([`crate::gemm::layout`]): pixels
    /// `lo..hi`, counted over all images of `hw` pixels.
    RgbToPixelsCall / RgbToPixelsCallFields {
        n: i64,
        hw: i64,
        x: *const f32,
        out: *mut f32,
        lo: i64,
        hi: i64,
    }
}

/// The conversion of [`RgbToPixelsCall`].
///
/// # Safety
/// `call` points to a valid [`RgbToPixelsCall`]: `x` and `out` (not overlapping) hold
/// `n·3·hw` floats.
#[no_mangle]
pub unsafe extern "C" fn nnc_rgb_to_pixels(call: *const RgbToPixelsCall) {
    // SAFETY: the caller passes a valid descriptor.
    let g = unsafe { *call };
    let u = |v: i64| v.max(0) as usize;
    let pixels = u(g.n) * u(g.hw);
    let (lo, hi) = (u(g.lo).min(pixels), u(g.hi).min(pixels));
    // SAFETY: the buffers are as the contract says; the range is clamped to the pixels.
    unsafe { crate::gemm::layout::rgb_planes_to_pixels(u(g.hw), lo, hi.max(lo), g.x, g.out) }
}

call_descriptor! {
    /// Max (`max` 1) or average (0) pooling of NHWC images ([`crate::gemm::pool::pool`]): output
    /// rows `row_lo..row_hi`, counted over all images.
    PoolCall / PoolCallFields {
        n: i64,
        c: i64,
        h: i64,
        w: i64,
        kh: i64,
        kw: i64,
        sh: i64,
        sw: i64,
        pt: i64,
        pl: i64,
        oh: i64,
        ow: i64,
        x: *const f32,
        out: *mut f32,
        row_lo: i64,
        row_hi: i64,
        max: i64,
    }
}

/// The pooling rows of [`PoolCall`].
///
/// # Safety
/// `call` points to a valid [`PoolCall`] whose buffers are as `pool::pool` requires.
#[no_mangle]
pub unsafe extern "C" fn nnc_pool(call: *const PoolCall) {
    // SAFETY: the caller passes a valid descriptor.
    let g = unsafe { *call };
    let u = |v: i64| v.max(0) as usize;
    let geometry = crate::gemm::pool::Pool { n: u(g.n), c: u(g.c), h: u(g.h), w: u(g.w), kh: u(g.kh), kw: u(g.kw), sh: u(g.sh), sw: u(g.sw), pt: u(g.pt), pl: u(g.pl), oh: u(g.oh), ow: u(g.ow), max: g.max != 0 };
    let rows = geometry.n * geometry.oh;
    let (lo, hi) = (u(g.row_lo).min(rows), u(g.row_hi).min(rows));
    // SAFETY: the descriptor's buffers are valid as the contract above says; the rows are
    // clamped to the output, and every tap read is clipped to the image.
    unsafe { crate::gemm::pool::pool(geometry, lo, hi.max(lo), g.x, g.out) }
}

call_descriptor! {
    /// A convolution through the GEMM and the depthwise convolution it feeds, computed
    /// together ([`crate::gemm::conv_depthwise`]): the two descriptors each kernel alone takes.
    /// The convolution's `out` is only room for the ring buffer (`m` pixels of `n` floats):
    /// its contents afterwards are unspecified; the depthwise call's `x` and row range are
    /// ignored (all rows).
    ConvDepthwiseCall / ConvDepthwiseCallFields {
        /// The producer: bias per column, no residual, f32.
        conv: *const ConvNhwcCall,
        depthwise: *const DepthwiseCall,
    }
}

/// The fused convolutions of [`ConvDepthwiseCall`].
///
/// # Safety
/// `call` points to a valid [`ConvDepthwiseCall`] whose two descriptors are valid as
/// [`nnc_gemm_conv_nhwc`] (for every image of the depthwise call) and [`nnc_depthwise`]
/// require and describe the same intermediate (the convolution's `n` and output size are
/// the depthwise input's); the convolution's `out` is writable for `m × n` floats.
#[no_mangle]
pub unsafe extern "C" fn nnc_conv_depthwise(call: *const ConvDepthwiseCall) {
    // SAFETY: the caller passes valid descriptors.
    let (e, d) = unsafe { (*(*call).conv, *(*call).depthwise) };
    let u = |v: i64| v.max(0) as usize;
    let geometry = d.geometry();
    let producer = crate::gemm::conv_depthwise::Producer { patches: e.patches(), b: e.b, blk: Blocking::from_abi(e.kc, e.mc, e.nc), ep: Epilogue::from_abi(e.bias, 0, std::ptr::null(), e.act) };
    let ep = Epilogue::from_abi(d.bias, 0, d.residual, d.act);
    // SAFETY: the descriptors' buffers are valid as the contract above says.
    unsafe { crate::gemm::conv_depthwise::conv_depthwise(geometry, producer, d.weights, d.out, ep, e.out, u(e.m) * u(e.n), u(e.threads).max(1)) }
}
