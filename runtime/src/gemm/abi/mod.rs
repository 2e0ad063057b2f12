//! The C ABI that generated code calls: one entry point per runtime kernel, each taking one
//! `#[repr(C)]` call descriptor whose every field is 8 bytes (an `i64` or a pointer).
//!
//! Each descriptor is declared once, by [`call_descriptor!`], which also makes its twin
//! `…Fields<T>`: the same fields as values of the caller's type, listed with their byte
//! offsets. The JIT fills a `…Fields<cranelift Value>` (a struct literal, so the compiler
//! insists on every field) and stores each at its offset in a stack slot; the Rust side
//! reads the descriptor. Both sides therefore agree on the layout by construction.

use super::int8::{igemm, im2col_i8, IntBias, IntOperand, IntOut, Requantize};
use super::int8_depthwise::{depthwise_i8, DepthwiseI8};
use super::pack::{ASource, BSource};
use super::{gemm_threaded, Blocking, ConvPatches, Epilogue};

/// Declares a call descriptor and its field list; see the module documentation.
macro_rules! call_descriptor {
    ($(#[$doc:meta])* $name:ident / $fields:ident { $($(#[$fdoc:meta])* $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: $ty),*
        }

        /// The fields of the descriptor as values of the caller's type.
        pub struct $fields<T> {
            $(pub $field: T),*
        }

        impl<T> $fields<T> {
            /// Every field with its byte offset in the descriptor.
            pub fn with_offsets(self) -> Vec<(usize, T)> {
                vec![$((std::mem::offset_of!($name, $field), self.$field)),*]
            }
        }

        impl $name {
            /// Bytes of the descriptor.
            pub const SIZE: usize = std::mem::size_of::<$name>();
        }

        // Every field is one 8-byte slot: generated code stores them as i64.
        const _: () = assert!(std::mem::size_of::<$name>() == 8 * [$(stringify!($field)),*].len());
    };
}

call_descriptor! {
    /// `C (+)= A·B` for `A: m × k`, `B: k × n`, `C: m × n` (strides in elements), then the
    /// epilogue, on up to `threads` threads with the given cache blocking.
    GemmCall / GemmCallFields {
        m: i64,
        n: i64,
        k: i64,
        /// A, strided by `rsa`, `csa`; or, when `a_packed` is 1, packed by `pack_a_all` with
        /// this blocking (the strides are then ignored).
        a: *const f32,
        rsa: i64,
        csa: i64,
        a_packed: i64,
        /// B, likewise (`pack_b_all`).
        b: *const f32,
        rsb: i64,
        csb: i64,
        b_packed: i64,
        c: *mut f32,
        rsc: i64,
        csc: i64,
        /// 1: add to C; 0: overwrite it.
        accumulate: i64,
        threads: i64,
        kc: i64,
        mc: i64,
        nc: i64,
        /// Null, or `m` floats (`bias_per_row` 1) or `n` floats (0).
        bias: *const f32,
        bias_per_row: i64,
        /// Null, or a matrix with C's strides added after the bias.
        residual: *const f32,
        /// `Activation::code`.
        act: i64,
        /// 1: multiply in bf16 ([`super::Precision::Bf16`]; packed operands in its pairs);
        /// 0: f32.
        bf16: i64,
    }
}

call_descriptor! {
    /// A convolution over one NHWC image as `out[P, F] = patches[P, kh·kw·c] · B`: the
    /// patches gathered from the image while A is packed ([`ConvPatches`]), B packed by
    /// `pack_b_all`, then the epilogue as in [`GemmCall`].
    ConvNhwcCall / ConvNhwcCallFields {
        /// Output pixels `oh·ow`.
        m: i64,
        /// Filters.
        n: i64,
        input: *const f32,
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
        ow: i64,
        b: *const f32,
        out: *mut f32,
        rsc: i64,
        csc: i64,
        threads: i64,
        kc: i64,
        mc: i64,
        nc: i64,
        bias: *const f32,
        bias_per_row: i64,
        residual: *const f32,
        act: i64,
        /// As in [`GemmCall`].
        bf16: i64,
    }
}

call_descriptor! {
    /// `C = A·B`, then the epilogue, for weights `A: rows × k` stored as compressed sparse
    /// rows (`sparse::encode_csr`), `B: k × p` and `C: rows × p` (strides in elements), on
    /// up to `threads` threads (`sparse::spmm`).
    SparseCall / SparseCallFields {
        rows: i64,
        k: i64,
        p: i64,
        a: *const f32,
        b: *const f32,
        rsb: i64,
        csb: i64,
        c: *mut f32,
        rsc: i64,
        csc: i64,
        /// Room for `sparse::spmm_scratch_floats` floats (null when that is 0).
        scratch: *mut f32,
        threads: i64,
        /// As in [`GemmCall`].
        bias: *const f32,
        bias_per_row: i64,
        residual: *const f32,
        act: i64,
    }
}

call_descriptor! {
    /// Unfold one NCHW image for a convolution as a matrix product: row `(ch·kh + ky)·kw + kx`,
    /// column `oy·ow + ox` of `col` is the input pixel under tap `(ky, kx)` of output
    /// `(oy, ox)` in channel `ch`, or 0 where the tap falls in the padding. The elements are
    /// f32 for `nnc_im2col` and int8 codes for `nnc_im2col_i8`.
    Im2colCall / Im2colCallFields {
        input: *const u8,
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
        col: *mut u8,
        /// Threads to split the channels across.
        threads: i64,
    }
}

call_descriptor! {
    /// `C = bias + A·B` for int8 codes `A: m × k`, `B: k × n` and wrapping i32 `C: m × n`
    /// (strides in elements), on up to `threads` threads.
    IgemmCall / IgemmCallFields {
        m: i64,
        n: i64,
        k: i64,
        /// A, strided by `rsa`, `csa`; or, when `a_packed` is 1, packed by `pack_a_i8_all`.
        a: *const i8,
        rsa: i64,
        csa: i64,
        a_packed: i64,
        /// B, likewise (`pack_b_i8_all`).
        b: *const i8,
        rsb: i64,
        csb: i64,
        b_packed: i64,
        /// The i32 results; or, when `requantize` is 1, the int8 codes.
        c: *mut i32,
        rsc: i64,
        csc: i64,
        /// Null, or `m` i32 (`bias_per_row` 1) or `n` i32 (0).
        bias: *const i32,
        bias_per_row: i64,
        threads: i64,
        /// 1: requantize every result into an int8 code as it is stored.
        requantize: i64,
        /// The requantization's scales: `m` f32 (`rq_per_row` 1), `n` (0), or one
        /// (`rq_single` 1).
        rq_scales: *const f32,
        rq_per_row: i64,
        rq_single: i64,
        /// The output scale, as the bits of an f32.
        rq_out_scale_bits: i64,
        /// `Activation::code`.
        rq_act: i64,
    }
}

/// [`super::sgemm`] (and its packed forms) with the epilogue, as generated code calls it.
///
/// # Safety
/// `call` points to a valid [`GemmCall`] whose A, B, C, bias and residual are valid for the
/// elements their sizes and strides address (packed operands as their packing wrote them,
/// for this blocking), C writable and overlapping neither A nor B.
#[no_mangle]
pub unsafe extern "C" fn nnc_gemm(call: *const GemmCall) {
    // SAFETY: the caller passes a valid descriptor.
    let g = unsafe { *call };
    let a = if g.a_packed != 0 { ASource::Packed(g.a) } else { ASource::Strided(g.a, g.rsa as isize, g.csa as isize) };
    let b = if g.b_packed != 0 { BSource::Packed(g.b) } else { BSource::Strided(g.b, g.rsb as isize, g.csb as isize) };
    let ep = Epilogue::from_abi(g.bias, g.bias_per_row, g.residual, g.act);
    // SAFETY: the descriptor's operands are valid as the contract above says.
    unsafe { gemm_threaded(g.threads.max(1) as usize, g.m as usize, g.n as usize, g.k as usize, a, b, g.c, g.rsc as isize, g.csc as isize, g.accumulate != 0, Blocking::from_abi(g.kc, g.mc, g.nc), ep, precision(g.bf16)) }
}

impl ConvNhwcCall {
    /// The image's patches as the GEMM reads them (from the first output pixel).
    fn patches(&self) -> ConvPatches {
        let i = |v: i64| v as isize;
        ConvPatches { input: self.input, c: i(self.c), h: i(self.h), w: i(self.w), kh: i(self.kh), kw: i(self.kw), sh: i(self.sh), sw: i(self.sw), dh: i(self.dh), dw: i(self.dw), pt: i(self.pt), pl: i(self.pl), ow: i(self.ow), row0: 0 }
    }
}

/// The convolution of [`ConvNhwcCall`].
///
/// # Safety
/// `call` points to a valid [`ConvNhwcCall`]: `input` holds `h·w·c` floats, `b` the
/// packing of a `(kh·kw·c) × n` matrix with this blocking, `out` has room for `m × n` with the
/// given strides, and bias and residual are as in [`GemmCall`].
#[no_mangle]
pub unsafe extern "C" fn nnc_gemm_conv_nhwc(call: *const ConvNhwcCall) {
    // SAFETY: the caller passes a valid descriptor.
    let g = unsafe { *call };
    let patches = g.patches();
    let k = (g.kh * g.kw * g.c) as usize;
    let ep = Epilogue::from_abi(g.bias, g.bias_per_row, g.residual, g.act);
    // A pointwise convolution without stride or padding multiplies the image itself: its
    // patch matrix is the `h·w × c` image, row-major.
    let pointwise = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pt == 0 && g.pl == 0 && g.ow == g.w && g.m == g.h * g.w;
    let a = if pointwise { ASource::Strided(g.input, g.c as isize, 1) } else { ASource::Patches(patches) };
    // SAFETY: the descriptor's operands are valid as the contract above says.
    unsafe { gemm_threaded(g.threads.max(1) as usize, g.m as usize, g.n as usize, k, a, BSource::Packed(g.b), g.out, g.rsc as isize, g.csc as isize, false, Blocking::from_abi(g.kc, g.mc, g.nc), ep, precision(g.bf16)) }
}

/// A descriptor's `bf16` flag. Code asks for bf16 only where [`super::bf16_microkernel_name`]
/// said the CPU has the kernel, and packs for it accordingly.
fn precision(bf16: i64) -> super::Precision {
    if bf16 != 0 {
        super::Precision::Bf16
    } else {
        super::Precision::F32
    }
}

/// The unfolding of [`Im2colCall`].
///
/// # Safety
/// `call` points to a valid [`Im2colCall`]: `input` holds `c·h·w` floats and `col` has room
/// for `c·kh·kw·oh·ow`.
#[no_mangle]
pub unsafe extern "C" fn nnc_im2col(call: *const Im2colCall) {
    // SAFETY: the caller passes a valid descriptor.
    let g = unsafe { *call };
    // Each channel's rows of `col` are its own: channels split across threads.
    let per_channel = (g.kh * g.kw * g.oh * g.ow).max(1);
    let threads = if g.c * per_channel < MIN_PARALLEL_IM2COL { 1 } else { g.threads.clamp(1, g.c.max(1)) };
    // SAFETY: tasks read the input and write disjoint rows of `col`.
    let shared = unsafe { crate::pool::Shared::new(g) };
    crate::pool::parallel_for(threads as usize, &|t| {
        let g = shared.get();
        // Even shares: `c·t/threads` up to `c·(t+1)/threads`.
        let (lo, hi) = (g.c * t as i64 / threads, g.c * (t as i64 + 1) / threads);
        // SAFETY: the caller's contract, for channels `lo..hi`.
        unsafe { im2col_channels(&g, lo..hi) };
    });
}

/// Unfoldings below this many elements run on one thread.
const MIN_PARALLEL_IM2COL: i64 = 1 << 16;

/// Channels `channels` of [`nnc_im2col`]'s unfolding.
///
/// # Safety
/// As [`nnc_im2col`], for those channels of the image.
unsafe fn im2col_channels(g: &Im2colCall, channels: std::ops::Range<i64>) {
    let (h, w, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow) = (g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl, g.oh, g.ow);
    // SAFETY: every read is of a pixel inside the image (`iy` checked, `ix = ox·sw + x0` in
    // `0..w` exactly for `ox` in `lo..hi`) and every write one of channel `ch`'s
    // `kh·kw·oh·ow` floats of `col`, row by row in order.
    unsafe {
        let mut o = (g.col as *mut f32).offset((channels.start * kh * kw * oh * ow) as isize);
        for ch in channels {
            let plane = (g.input as *const f32).offset((ch * h * w) as isize);
            for ky in 0..kh {
                for kx in 0..kw {
                    for oy in 0..oh {
                        let iy = oy * sh + ky * dh - pt;
                        if iy < 0 || iy >= h {
                            std::ptr::write_bytes(o, 0, ow as usize);
                            o = o.add(ow as usize);
                            continue;
                        }
                        let row = plane.offset((iy * w) as isize);
                        // Outputs whose tap lands inside the row: `lo..hi` (zeros either side).
                        let x0 = kx * dw - pl;
                        let lo = if x0 >= 0 { 0 } else { (-x0 + sw - 1) / sw }.min(ow);
                        let hi = if x0 >= w { 0 } else { ((w - 1 - x0) / sw + 1).clamp(lo, ow) };
                        std::ptr::write_bytes(o, 0, lo as usize);
                        if hi == lo {
                            // No tap of this row lands inside it (and `lo + x0` may lie
                            // outside the row, so no pointer is formed from it).
                        } else if sw == 1 {
                            std::ptr::copy_nonoverlapping(row.offset((lo + x0) as isize), o.offset(lo as isize), (hi - lo) as usize);
                        } else {
                            for ox in lo..hi {
                                *o.offset(ox as isize) = *row.offset((ox * sw + x0) as isize);
                            }
                        }
                        std::ptr::write_bytes(o.offset(hi as isize), 0, (ow - hi) as usize);
                        o = o.add(ow as usize);
                    }
                }
            }
        }
    }
}

/// Where an int8 kernel's results go: codes requantized by `rq` when `requantize` is 1
/// (the output then holds codes), else the i32 accumulators.
fn int_out(out: *mut i32, requantize: i64, rq: Requantize) -> IntOut {
    if requantize != 0 { IntOut::Codes(out as *mut i8, rq) } else { IntOut::Acc(out) }
}

/// The int8 product of [`IgemmCall`].
///
/// # Safety
/// `call` points to a valid [`IgemmCall`] whose A, B, C and bias are valid for the elements
/// their sizes and strides address (packed operands as `pack_a_i8_all` / `pack_b_i8_all`
/// wrote them), C writable and overlapping neither A nor B.
#[no_mangle]
pub unsafe extern "C" fn nnc_igemm(call: *const IgemmCall) {
    // SAFETY: the caller passes a valid descriptor.
    let g = unsafe { *call };
    let operand = |p: *const i8, rs: i64, cs: i64, packed: i64| if packed != 0 { IntOperand::Packed(p as *const u8) } else { IntOperand::Strided(p, rs as isize, cs as isize) };
    let a = operand(g.a, g.rsa, g.csa, g.a_packed);
    let b = operand(g.b, g.rsb, g.csb, g.b_packed);
    let bias = IntBias { values: g.bias, per_row: g.bias_per_row != 0 };
    let out = int_out(g.c, g.requantize, Requantize { scales: g.rq_scales, per_row: g.rq_per_row != 0, single: g.rq_single != 0, out_scale: f32::from_bits(g.rq_out_scale_bits as u32), activation: crate::Activation::from_code(g.rq_act) });
    // SAFETY: the descriptor's operands are valid as the contract above says.
    unsafe { igemm(g.threads.max(1) as usize, g.m as usize, g.n as usize, g.k as usize, a, b, out, g.rsc as isize, g.csc as isize, bias, 0) }
}

/// The unfolding of [`Im2colCall`] for int8 codes.
///
/// # Safety
/// `call` points to a valid [`Im2colCall`]: `input` holds `c·h·w` codes and `col` has room
/// for `c·kh·kw·oh·ow`.
#[no_mangle]
pub unsafe extern "C" fn nnc_im2col_i8(call: *const Im2colCall) {
    // SAFETY: the caller passes a valid descriptor.
    let g = unsafe { *call };
    let u = |v: i64| v as usize;
    // SAFETY: the buffers are as the contract above says.
    unsafe { im2col_i8(g.input as *const i8, u(g.c), u(g.h), u(g.w), [u(g.kh), u(g.kw)], [u(g.sh), u(g.sw)], [u(g.dh), u(g.dw)], [u(g.pt), u(g.pl)], [u(g.oh), u(g.ow)], g.col as *mut i8, g.threads.max(1) as usize) }
}

call_descriptor! {
    /// An int8 depthwise convolution of NCHW planes ([`crate::gemm::int8_depthwise`]): `n`
    /// images of `c` channels, `h × w` in, `oh × ow` out, one `kh × kw` filter of codes per
    /// channel, undilated, on up to `threads` threads.
    DepthwiseI8Call / DepthwiseI8CallFields {
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
        x: *const i8,
        weights: *const i8,
        /// Null, or `c` i32.
        bias: *const i32,
        /// The i32 accumulators; or, when `requantize` is 1, the int8 codes.
        out: *mut i32,
        threads: i64,
        requantize: i64,
        /// The requantization's scales: one per channel, or one (`rq_single` 1).
        rq_scales: *const f32,
        rq_single: i64,
        /// The output scale, as the bits of an f32.
        rq_out_scale_bits: i64,
        /// `Activation::code`.
        rq_act: i64,
    }
}

/// The convolution of [`DepthwiseI8Call`]. Sizes the kernel cannot compute (a stride or
/// window of 0, more taps than its sums hold exactly) end the process: the compiler never
/// passes them.
///
/// # Safety
/// `call` points to a valid [`DepthwiseI8Call`]: `x` holds `n·c·h·w` codes, `weights`
/// `c·kh·kw`, `out` (writable, overlapping neither) `n·c·oh·ow` results, and the bias and
/// scales what the descriptor says.
#[no_mangle]
pub unsafe extern "C" fn nnc_depthwise_i8(call: *const DepthwiseI8Call) {
    // SAFETY: the caller passes a valid descriptor.
    let d = unsafe { *call };
    let u = |v: i64| v.max(0) as usize;
    let g = DepthwiseI8 { n: u(d.n), c: u(d.c), h: u(d.h), w: u(d.w), kh: u(d.kh), kw: u(d.kw), sh: u(d.sh), sw: u(d.sw), pt: u(d.pt), pl: u(d.pl), oh: u(d.oh), ow: u(d.ow) };
    if !g.is_valid() {
        super::refuse_call("int8 depthwise convolution with sizes it cannot compute");
    }
    let out = int_out(d.out, d.requantize, Requantize { scales: d.rq_scales, per_row: true, single: d.rq_single != 0, out_scale: f32::from_bits(d.rq_out_scale_bits as u32), activation: crate::Activation::from_code(d.rq_act) });
    // SAFETY: the descriptor's buffers are valid as the contract above says.
    unsafe { depthwise_i8(g, u(d.threads).max(1), d.x, d.weights, d.bias, out) }
}

call_descriptor! {
    /// `n` floats to int8 codes at one scale ([`crate::quant::quantize_slice`]), on up to
    /// `threads` threads.
    QuantizeCall / QuantizeCallFields {
        x: *const f32,
        out: *mut i8,
        n: i64,
        /// The scale, as the bits of an f32.
        scale_bits: i64,
        threads: i64,
    }
}

/// The conversion of [`QuantizeCall`].
///
/// # Safety
/// `call` points to a valid [`QuantizeCall`]: `x` holds `n` floats and `out` (writable,
/// overlapping nothing `x` holds) `n` codes.
#[no_mangle]
pub unsafe extern "C" fn nnc_quantize(call: *const QuantizeCall) {
    // SAFETY: the caller passes a valid descriptor.
    let d = unsafe { *call };
    // SAFETY: the buffers are as the contract above says.
    unsafe { crate::quant::quantize_slice(d.x, d.n.max(0) as usize, f32::from_bits(d.scale_bits as u32), d.out, d.threads.max(1) as usize) }
}

call_descriptor! {
    /// The means of `planes` consecutive planes of `hw` floats
    /// ([`crate::gemm::pool::plane_mean`]).
    PlaneMeansCall / PlaneMeansCallFields {
        x: *const f32,
        out: *mut f32,
        planes: i64,
        hw: i64,
    }
}

/// The means of [`PlaneMeansCall`], one plane after another.
///
/// # Safety
/// `call` points to a valid [`PlaneMeansCall`]: `x` holds `planes·hw` floats and `out`
/// (writable, not overlapping `x`) `planes`.
#[no_mangle]
pub unsafe extern "C" fn nnc_plane_means(call: *const PlaneMeansCall) {
    // SAFETY: the caller passes a valid descriptor.
    let d = unsafe { *call };
    let (planes, hw) = (d.planes.max(0) as usize, d.hw.max(0) as usize);
    for p in 0..planes {
        // SAFETY: plane `p` and its mean are inside the buffers, as the contract says.
        unsafe { *d.out.add(p) = crate::gemm::pool::plane_mean(std::slice::from_raw_parts(d.x.add(p * hw), hw)) };
    }
}

/// The sparse-weight product of [`SparseCall`].
///
/// # Safety
/// `call` points to a valid [`SparseCall`]: `a` is an encoding of a `rows × k` matrix by
/// `sparse::encode_csr`, B and C are valid for the elements their sizes and strides address,
/// C writable and overlapping neither B nor the scratch, the scratch as large as
/// `sparse::spmm_scratch_floats` says, and bias and residual as in [`GemmCall`].
#[no_mangle]
pub unsafe extern "C" fn nnc_sparse_gemm(call: *const SparseCall) {
    // SAFETY: the caller passes a valid descriptor.
    let g = unsafe { *call };
    let ep = Epilogue::from_abi(g.bias, g.bias_per_row, g.residual, g.act);
    let u = |v: i64| v as usize;
    // SAFETY: the descriptor's operands are valid as the contract above says.
    unsafe { super::sparse::spmm(u(g.threads.max(1)), u(g.rows), u(g.k), u(g.p), g.a, g.b, g.rsb as isize, g.csb as isize, g.c, g.rsc as isize, g.csc as isize, g.scratch, ep) }
}

call_descriptor! {
    /// A stride-1 3×3 convolution of one image by Winograd F(4×4, 3×3) or, NHWC only,
    /// F(2×2, 3×3) ([`super::winograd`]):
    /// `out[k, oh, ow] = conv(x[c, h, w])` (or, with `nhwc`, `out[oh, ow, k] =
    /// conv(x[h, w, c])`) with zero padding, then the epilogue (bias per output channel,
    /// residual with `out`'s layout, activation).
    WinogradCall / WinogradCallFields {
        c: i64,
        h: i64,
        w: i64,
        k: i64,
        pad_top: i64,
        pad_left: i64,
        pad_bottom: i64,
        pad_right: i64,
        x: *const f32,
        /// `winograd::transform_filters` (`transform_filters_nhwc` with `nhwc`) of the
        /// `[k, c, 3, 3]` filter.
        u: *const f32,
        out: *mut f32,
        /// `winograd::scratch_floats` floats.
        scratch: *mut f32,
        threads: i64,
        /// Null, or `k` floats.
        bias: *const f32,
        /// Null, or a tensor shaped like `out`.
        residual: *const f32,
        act: i64,
        /// Nonzero: NHWC image, output and residual (`winograd::conv3x3_nhwc`, only where
        /// `winograd::nhwc_available`).
        nhwc: i64,
        /// The output tile's side: 4 (F(4×4, 3×3)) or, with `nhwc`, 2 (F(2×2, 3×3)); `u` is
        /// transformed for it.
        tile: i64,
    }
}

/// The convolution of [`WinogradCall`].
///
/// # Safety
/// `call` points to a valid [`WinogradCall`] whose buffers are as `winograd::conv3x3`
/// requires.
#[no_mangle]
pub unsafe extern "C" fn nnc_winograd(call: *const WinogradCall) {
    // SAFETY: the caller passes a valid descriptor.
    let g = unsafe { *call };
    let u = |v: i64| v as usize;
    let (threads, pad) = (u(g.threads.max(1)), [u(g.pad_top), u(g.pad_left), u(g.pad_bottom), u(g.pad_right)]);
    // SAFETY: the descriptor's buffers are valid as the contract above says.
    unsafe {
        if g.nhwc != 0 {
            let ep = Epilogue::from_abi(g.bias, 0, g.residual, g.act);
            let tile = match g.tile {
                2 => super::winograd::Tile::F2,
                4 => super::winograd::Tile::F4,
                // Not a call the JIT makes: refuse loudly rather than read filters packed for
                // another tile.
                t => super::refuse_call(&format!("nnc_winograd with an output tile of {t}")),
            };
            super::winograd::conv3x3_nhwc(tile, threads, u(g.c), u(g.h), u(g.w), u(g.k), pad, g.x, g.u, g.out, g.scratch, ep)
        } else {
            if g.tile != 4 {
                super::refuse_call(&format!("nnc_winograd on a row-major image with an output tile of {}", g.tile));
            }
            let ep = Epilogue::from_abi(g.bias, 1, g.residual, g.act);
            super::winograd::conv3x3(threads, u(g.c), u(g.h), u(g.w), u(g.k), pad, g.x, g.u, g.out, g.scratch, ep)
        }
    }
}

call_descriptor! {
    /// A stride-1 convolution of one row-major image with few input channels, computed
    /// directly ([`super::conv_direct`]): `out[f, oh, ow] = conv(x[c, h, w])` with zero
    /// padding, then the epilogue (bias per filter, residual shaped like `out`, activation).
    DirectConvCall / DirectConvCallFields {
        c: i64,
        h: i64,
        w: i64,
        f: i64,
        kh: i64,
        kw: i64,
        dh: i64,
        dw: i64,
        pad_top: i64,
        pad_left: i64,
        oh: i64,
        ow: i64,
        x: *const f32,
        /// `[f, c, kh, kw]`, row-major.
        weights: *const f32,
        out: *mut f32,
        threads: i64,
        /// Null, or `f` floats.
        bias: *const f32,
        /// Null, or a tensor shaped like `out`.
        residual: *const f32,
        act: i64,
    }
}

/// The convolution of [`DirectConvCall`].
///
/// # Safety
/// `call` points to a valid [`DirectConvCall`] whose buffers and geometry are as
/// `conv_direct::conv_direct` requires.
#[no_mangle]
pub unsafe extern "C" fn nnc_conv_direct(call: *const DirectConvCall) {
    // SAFETY: the caller passes a valid descriptor.
    let g = unsafe { *call };
    let u = |v: i64| v.max(0) as usize;
    let geometry = super::conv_direct::DirectConv { c: u(g.c), h: u(g.h), w: u(g.w), f: u(g.f), kh: u(g.kh).max(1), kw: u(g.kw).max(1), dh: u(g.dh).max(1), dw: u(g.dw).max(1), pt: u(g.pad_top), pl: u(g.pad_left), oh: u(g.oh), ow: u(g.ow) };
    let ep = Epilogue::from_abi(g.bias, 1, g.residual, g.act);
    // SAFETY: the descriptor's buffers are valid as the contract above says.
    unsafe { super::conv_direct::conv_direct(u(g.threads).max(1), geometry, g.x, g.weights, g.out, ep) }
}

mod rows;
mod windows;
pub use rows::*;
pub use windows::*;
