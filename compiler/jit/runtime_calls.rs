//! Calls from generated code into the runtime's kernels (`nnc_gemm`, `nnc_im2col`,
//! `nnc_sparse_gemm`, `nnc_winograd`, ...): each fills its `#[repr(C)]` call descriptor field
//! by field in a stack slot (the `…Fields` struct literal, so no field is forgotten) and calls
//! the entry point with the slot's address.

use super::builder::{GemmOperand, GemmTail, IgemmRequantize, KernelBuilder, I64};
use super::abi::RuntimeFns;
use cranelift_codegen::ir::{FuncRef, InstBuilder, StackSlotData, StackSlotKind, Value};
use nnc_runtime::gemm::{AttentionCall, AttentionCallFields, ConvDepthwiseCall, ConvDepthwiseCallFields, ConvNhwcCall, ConvNhwcCallFields, DepthwiseCall, DepthwiseCallFields, DepthwiseI8Call, DepthwiseI8CallFields, DirectConvCall, DirectConvCallFields, GemvCall, GemvCallFields, GemmCall, GemmCallFields, IgemmCall, IgemmCallFields, Im2colCall, Im2colCallFields, LayerNormCall, LayerNormCallFields, LstmReferenceCall, LstmReferenceCallFields, LstmStepCall, LstmStepCallFields, SoftmaxReferenceCall, SoftmaxReferenceCallFields, PlaneMeansCall, PlaneMeansCallFields, PoolCall, PoolCallFields, QuantizeCall, QuantizeCallFields, RgbToPixelsCall, RgbToPixelsCallFields, SparseCall, SparseCallFields, UnaryReferenceCall, UnaryReferenceCallFields, WinogradCall, WinogradCallFields};

/// The convolution of [`KernelBuilder::conv_depthwise`]: its NHWC input (`chw` per image),
/// window and packed weights.
pub struct ProducerConv {
    pub input: Value,
    pub chw: [i64; 3],
    pub window: [i64; 2],
    pub stride: [i64; 2],
    pub dilation: [i64; 2],
    pub pad: [i64; 2],
    pub packed_b: Value,
}

/// [`KernelBuilder::requantize_fields`]' values.
struct RequantizeFields {
    on: Value,
    scales: Value,
    single: Value,
    out_scale_bits: Value,
    act: Value,
}

impl KernelBuilder<'_> {
    /// Threads and cache blocking, which every runtime GEMM call carries.
    fn gemm_tail(&mut self) -> [Value; 4] {
        let t = self.tile;
        [self.int(self.threads), self.int(t.kc as i64), self.int(t.mc as i64), self.int(t.nc as i64)]
    }

    /// Call a runtime entry point with its call descriptor: each field stored at its offset
    /// in a stack slot of `size` bytes, whose address is the one argument.
    fn call_runtime(&mut self, f: FuncRef, fields: Vec<(usize, Value)>, size: usize) {
        let addr = self.descriptor(fields, size);
        self.b.ins().call(f, &[addr]);
    }

    /// A call descriptor of `size` bytes in a stack slot, each field stored at its offset:
    /// its address.
    fn descriptor(&mut self, fields: Vec<(usize, Value)>, size: usize) -> Value {
        let slot = self.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, size as u32, 3));
        for (offset, v) in fields {
            self.b.ins().stack_store(I64, v, slot, offset as i32);
        }
        self.b.ins().stack_addr(I64, slot, 0)
    }

    fn runtime_fns(&self) -> RuntimeFns {
        self.runtime.expect("runtime kernels are planned only with microkernels on")
    }

    /// `C (+)= A·B` through the runtime's GEMM (`nnc_gemm`), then `tail`; strides in elements.
    pub fn gemm(&mut self, [m, n, k]: [i64; 3], a: GemmOperand, b: GemmOperand, c: (Value, i64, i64), accumulate: bool, tail: &GemmTail) {
        let rt = self.runtime_fns();
        let (a, rsa, csa, a_packed) = self.gemm_operand(a);
        let (b, rsb, csb, b_packed) = self.gemm_operand(b);
        let [threads, kc, mc, nc] = self.gemm_tail();
        let [bias, bias_per_row, residual, act] = self.tail_args(tail);
        let fields = GemmCallFields {
            m: self.int(m),
            n: self.int(n),
            k: self.int(k),
            a,
            rsa,
            csa,
            a_packed,
            b,
            rsb,
            csb,
            b_packed,
            c: c.0,
            rsc: self.int(c.1),
            csc: self.int(c.2),
            accumulate: self.int(accumulate as i64),
            threads,
            kc,
            mc,
            nc,
            bias,
            bias_per_row,
            residual,
            act,
            bf16: self.int(self.bf16 as i64),
        };
        self.call_runtime(rt.gemm, fields.with_offsets(), GemmCall::SIZE);
    }

    /// A GEMM operand as its call fields: pointer, row and column strides, and whether it is
    /// packed (then the strides are unused).
    fn gemm_operand(&mut self, x: GemmOperand) -> (Value, Value, Value, Value) {
        match x {
            GemmOperand::Strided(p, rs, cs) => (p, self.int(rs), self.int(cs), self.int(0)),
            GemmOperand::Packed(p) => (p, self.int(0), self.int(0), self.int(1)),
        }
    }

    /// The requantization fields an int8 kernel's call descriptor carries (`requantize`,
    /// `rq_scales`, `rq_single`, `rq_out_scale_bits`, `rq_act`), zeros without one.
    fn requantize_fields(&mut self, requantize: Option<&IgemmRequantize>) -> RequantizeFields {
        let null = self.int(0);
        RequantizeFields {
            on: self.int(requantize.is_some() as i64),
            scales: requantize.map_or(null, |r| r.scales),
            single: self.int(requantize.is_some_and(|r| r.single) as i64),
            out_scale_bits: self.int(requantize.map_or(0, |r| r.out_scale.to_bits() as i64)),
            act: self.int(requantize.map_or(0, |r| r.activation.code())),
        }
    }

    /// `C = bias + A·B` on int8 codes into wrapping i32 (`nnc_igemm`); strides in elements,
    /// `bias` null or per row (`bias_per_row`) or per column. With `requantize`, C holds
    /// int8 codes, each accumulator requantized as it is stored.
    #[allow(clippy::too_many_arguments)]
    pub fn igemm(&mut self, [m, n, k]: [i64; 3], a: GemmOperand, b: GemmOperand, c: (Value, i64, i64), bias: Option<Value>, bias_per_row: bool, requantize: Option<&IgemmRequantize>) {
        let rt = self.runtime_fns();
        let (a, rsa, csa, a_packed) = self.gemm_operand(a);
        let (b, rsb, csb, b_packed) = self.gemm_operand(b);
        let null = self.int(0);
        let rq = self.requantize_fields(requantize);
        let fields = IgemmCallFields {
            m: self.int(m),
            n: self.int(n),
            k: self.int(k),
            a,
            rsa,
            csa,
            a_packed,
            b,
            rsb,
            csb,
            b_packed,
            c: c.0,
            rsc: self.int(c.1),
            csc: self.int(c.2),
            bias: bias.unwrap_or(null),
            bias_per_row: self.int(bias_per_row as i64),
            threads: self.int(self.threads),
            requantize: rq.on,
            rq_scales: rq.scales,
            rq_per_row: self.int(requantize.is_some_and(|r| r.per_row) as i64),
            rq_single: rq.single,
            rq_out_scale_bits: rq.out_scale_bits,
            rq_act: rq.act,
        };
        self.call_runtime(rt.igemm, fields.with_offsets(), IgemmCall::SIZE);
    }

    /// An int8 depthwise convolution of NCHW planes (`nnc_depthwise_i8`): `[n, c, h, w]` in,
    /// `[oh, ow]` out, window `[kh, kw]`, strides and top/left padding, `bias` null or one
    /// i32 per channel; with `requantize` (its scales one per channel, or single) `out`
    /// gets codes, else the i32 accumulators.
    #[allow(clippy::too_many_arguments)]
    pub fn depthwise_i8(&mut self, [n, c, h, w]: [i64; 4], [oh, ow]: [i64; 2], [kh, kw]: [i64; 2], [sh, sw]: [i64; 2], [pt, pl]: [i64; 2], x: Value, weights: Value, bias: Option<Value>, out: Value, requantize: Option<&IgemmRequantize>) {
        let rt = self.runtime_fns();
        let null = self.int(0);
        let rq = self.requantize_fields(requantize);
        let fields = DepthwiseI8CallFields {
            n: self.int(n),
            c: self.int(c),
            h: self.int(h),
            w: self.int(w),
            kh: self.int(kh),
            kw: self.int(kw),
            sh: self.int(sh),
            sw: self.int(sw),
            pt: self.int(pt),
            pl: self.int(pl),
            oh: self.int(oh),
            ow: self.int(ow),
            x,
            weights,
            bias: bias.unwrap_or(null),
            out,
            threads: self.int(self.threads),
            requantize: rq.on,
            rq_scales: rq.scales,
            rq_single: rq.single,
            rq_out_scale_bits: rq.out_scale_bits,
            rq_act: rq.act,
        };
        self.call_runtime(rt.depthwise_i8, fields.with_offsets(), DepthwiseI8Call::SIZE);
    }

    /// `n` floats at `x` to int8 codes at `scale` in `out` (`nnc_quantize`).
    pub fn quantize_codes(&mut self, x: Value, out: Value, n: i64, scale: f32) {
        let rt = self.runtime_fns();
        let fields = QuantizeCallFields { x, out, n: self.int(n), scale_bits: self.int(scale.to_bits() as i64), threads: self.int(self.threads) };
        self.call_runtime(rt.quantize, fields.with_offsets(), QuantizeCall::SIZE);
    }

    /// The means of `planes` planes of `hw` floats at `x` into `out`, summed in f64 as the
    /// interpreter's `global_avg_pool` (`nnc_plane_means`).
    pub fn plane_means(&mut self, x: Value, out: Value, planes: i64, hw: i64) {
        let rt = self.runtime_fns();
        let fields = PlaneMeansCallFields { x, out, planes: self.int(planes), hw: self.int(hw) };
        self.call_runtime(rt.plane_means, fields.with_offsets(), PlaneMeansCall::SIZE);
    }

    /// Unfold one NCHW image (`nnc_im2col`) into `col`.
    pub fn im2col(&mut self, input: Value, chw: [i64; 3], kernel: [i64; 2], stride: [i64; 2], dilation: [i64; 2], pad: [i64; 2], out: [i64; 2], col: Value) {
        let f = self.runtime_fns().im2col;
        self.call_im2col(f, input, chw, kernel, stride, dilation, pad, out, col);
    }

    /// Unfold one NCHW image of int8 codes (`nnc_im2col_i8`) into `col` (`K × P`).
    pub fn im2col_i8(&mut self, input: Value, chw: [i64; 3], kernel: [i64; 2], stride: [i64; 2], dilation: [i64; 2], pad: [i64; 2], out: [i64; 2], col: Value) {
        let f = self.runtime_fns().im2col_i8;
        self.call_im2col(f, input, chw, kernel, stride, dilation, pad, out, col);
    }

    /// Call an unfolding entry point `f` with its `Im2colCall`.
    #[allow(clippy::too_many_arguments)]
    fn call_im2col(&mut self, f: FuncRef, input: Value, [c, h, w]: [i64; 3], [kh, kw]: [i64; 2], stride: [i64; 2], dilation: [i64; 2], [pt, pl]: [i64; 2], [oh, ow]: [i64; 2], col: Value) {
        let fields = Im2colCallFields {
            input,
            c: self.int(c),
            h: self.int(h),
            w: self.int(w),
            kh: self.int(kh),
            kw: self.int(kw),
            sh: self.int(stride[0]),
            sw: self.int(stride[1]),
            dh: self.int(dilation[0]),
            dw: self.int(dilation[1]),
            pt: self.int(pt),
            pl: self.int(pl),
            oh: self.int(oh),
            ow: self.int(ow),
            col,
            threads: self.int(self.threads),
        };
        self.call_runtime(f, fields.with_offsets(), Im2colCall::SIZE);
    }

    /// An NHWC convolution of one image through the GEMM with patches gathered while packing
    /// (`nnc_gemm_conv_nhwc`): `out[oh·ow, f] = patches · packed_b`, then `tail`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv_nhwc(&mut self, mf: [i64; 2], input: Value, chw: [i64; 3], window: [i64; 2], stride: [i64; 2], dilation: [i64; 2], pad: [i64; 2], ow: i64, packed_b: Value, out: (Value, i64, i64), tail: &GemmTail) {
        let rt = self.runtime_fns();
        let fields = self.conv_nhwc_fields(mf, input, chw, window, stride, dilation, pad, ow, packed_b, out, tail);
        self.call_runtime(rt.conv_nhwc, fields.with_offsets(), ConvNhwcCall::SIZE);
    }

    #[allow(clippy::too_many_arguments)]
    fn conv_nhwc_fields(&mut self, [m, f]: [i64; 2], input: Value, [c, h, w]: [i64; 3], [kh, kw]: [i64; 2], stride: [i64; 2], dilation: [i64; 2], [pt, pl]: [i64; 2], ow: i64, packed_b: Value, out: (Value, i64, i64), tail: &GemmTail) -> ConvNhwcCallFields<Value> {
        let [threads, kc, mc, nc] = self.gemm_tail();
        let [bias, bias_per_row, residual, act] = self.tail_args(tail);
        ConvNhwcCallFields {
            m: self.int(m),
            n: self.int(f),
            input,
            c: self.int(c),
            h: self.int(h),
            w: self.int(w),
            kh: self.int(kh),
            kw: self.int(kw),
            sh: self.int(stride[0]),
            sw: self.int(stride[1]),
            dh: self.int(dilation[0]),
            dw: self.int(dilation[1]),
            pt: self.int(pt),
            pl: self.int(pl),
            ow: self.int(ow),
            b: packed_b,
            out: out.0,
            rsc: self.int(out.1),
            csc: self.int(out.2),
            threads,
            kc,
            mc,
            nc,
            bias,
            bias_per_row,
            residual,
            act,
            bf16: self.int(self.bf16 as i64),
        }
    }

    /// `C = A·B` then `tail` for weights `A: rows × k` compressed at compile time
    /// (`nnc_sparse_gemm`); B and C as (pointer, row stride, column stride) in elements;
    /// `scratch` null unless the runtime needs it for these strides.
    #[allow(clippy::too_many_arguments)]
    pub fn sparse_gemm(&mut self, [rows, k, p]: [i64; 3], a: Value, b: (Value, i64, i64), c: (Value, i64, i64), scratch: Option<Value>, tail: &GemmTail) {
        let rt = self.runtime_fns();
        let [threads, ..] = self.gemm_tail();
        let [bias, bias_per_row, residual, act] = self.tail_args(tail);
        let null = self.int(0);
        let fields = SparseCallFields {
            rows: self.int(rows),
            k: self.int(k),
            p: self.int(p),
            a,
            b: b.0,
            rsb: self.int(b.1),
            csb: self.int(b.2),
            c: c.0,
            rsc: self.int(c.1),
            csc: self.int(c.2),
            scratch: scratch.unwrap_or(null),
            threads,
            bias,
            bias_per_row,
            residual,
            act,
        };
        self.call_runtime(rt.sparse, fields.with_offsets(), SparseCall::SIZE);
    }

    /// One image's stride-1 3×3 convolution by Winograd with `tile` (`nnc_winograd`):
    /// `x[c, h, w]` → `out[k, oh, ow]` (both NHWC with `nhwc`) with `padding` `[top, left,
    /// bottom, right]`, filters transformed for `tile` at compile time at `u`, then `tail`
    /// (its bias per output channel).
    #[allow(clippy::too_many_arguments)]
    pub fn winograd(&mut self, tile: nnc_runtime::gemm::winograd::Tile, [c, h, w, k]: [i64; 4], padding: [i64; 4], nhwc: bool, x: Value, u: Value, out: Value, scratch: Value, tail: &GemmTail) {
        let rt = self.runtime_fns();
        let [threads, ..] = self.gemm_tail();
        let [bias, _, residual, act] = self.tail_args(tail);
        let fields = WinogradCallFields {
            c: self.int(c),
            h: self.int(h),
            w: self.int(w),
            k: self.int(k),
            pad_top: self.int(padding[0]),
            pad_left: self.int(padding[1]),
            pad_bottom: self.int(padding[2]),
            pad_right: self.int(padding[3]),
            x,
            u,
            out,
            scratch,
            threads,
            bias,
            residual,
            act,
            nhwc: self.int(nhwc as i64),
            tile: self.int(tile.output() as i64),
        };
        self.call_runtime(rt.winograd, fields.with_offsets(), WinogradCall::SIZE);
    }

    /// One row-major image's stride-1 convolution with few input channels, computed directly
    /// (`nnc_conv_direct`): `[c, h, w]` in, `f` filters of `[kh, kw]` (row-major `[f, c, kh,
    /// kw]` at `weights`) with dilation and top/left padding, `[oh, ow]` out, then `tail`
    /// (its bias per filter).
    #[allow(clippy::too_many_arguments)]
    pub fn conv_direct(&mut self, [c, h, w, f]: [i64; 4], [kh, kw]: [i64; 2], [dh, dw]: [i64; 2], [pad_top, pad_left]: [i64; 2], [oh, ow]: [i64; 2], x: Value, weights: Value, out: Value, tail: &GemmTail) {
        let rt = self.runtime_fns();
        let [threads, ..] = self.gemm_tail();
        let [bias, _, residual, act] = self.tail_args(tail);
        let fields = DirectConvCallFields {
            c: self.int(c),
            h: self.int(h),
            w: self.int(w),
            f: self.int(f),
            kh: self.int(kh),
            kw: self.int(kw),
            dh: self.int(dh),
            dw: self.int(dw),
            pad_top: self.int(pad_top),
            pad_left: self.int(pad_left),
            oh: self.int(oh),
            ow: self.int(ow),
            x,
            weights,
            out,
            threads,
            bias,
            residual,
            act,
        };
        self.call_runtime(rt.conv_direct, fields.with_offsets(), DirectConvCall::SIZE);
    }

    /// Output rows `rows` (over all images) of an NHWC depthwise convolution
    /// (`nnc_depthwise`): `[n, c, h, w]` in, `[oh, ow]` out, window `[kh, kw]`, weights
    /// `[kh·kw][c]` at `weights`, then `tail` (its bias per channel).
    #[allow(clippy::too_many_arguments)]
    pub fn depthwise_nhwc(&mut self, dims: [i64; 4], out_size: [i64; 2], window: [i64; 2], stride: [i64; 2], dilation: [i64; 2], pad: [i64; 2], x: Value, weights: Value, out: Value, rows: (Value, Value), tail: &GemmTail) {
        let rt = self.runtime_fns();
        let fields = self.depthwise_fields(dims, out_size, window, stride, dilation, pad, x, weights, out, rows, tail);
        self.call_runtime(rt.depthwise, fields.with_offsets(), DepthwiseCall::SIZE);
    }

    /// Pixels `pixels` (counted over all `n` images of `hw` pixels) of three-channel images
    /// `x` from planes to channels-last in `out` (`nnc_rgb_to_pixels`).
    pub fn rgb_to_pixels(&mut self, n: i64, hw: i64, x: Value, out: Value, pixels: (Value, Value)) {
        let rt = self.runtime_fns();
        let fields = RgbToPixelsCallFields { n: self.int(n), hw: self.int(hw), x, out, lo: pixels.0, hi: pixels.1 };
        self.call_runtime(rt.rgb_to_pixels, fields.with_offsets(), RgbToPixelsCall::SIZE);
    }

    /// Rows `rows` (counted over all images) of an NHWC max (`max`) or average pooling of
    /// `x` (`[n, c, h, w]`) into `out` (`[oh, ow]` per image), windows `[kh, kw]` with strides
    /// and top/left padding (`nnc_pool`).
    #[allow(clippy::too_many_arguments)]
    pub fn pool_nhwc(&mut self, [n, c, h, w]: [i64; 4], [oh, ow]: [i64; 2], [kh, kw]: [i64; 2], [sh, sw]: [i64; 2], [pt, pl]: [i64; 2], x: Value, out: Value, rows: (Value, Value), max: bool) {
        let rt = self.runtime_fns();
        let fields = PoolCallFields {
            n: self.int(n),
            c: self.int(c),
            h: self.int(h),
            w: self.int(w),
            kh: self.int(kh),
            kw: self.int(kw),
            sh: self.int(sh),
            sw: self.int(sw),
            pt: self.int(pt),
            pl: self.int(pl),
            oh: self.int(oh),
            ow: self.int(ow),
            x,
            out,
            row_lo: rows.0,
            row_hi: rows.1,
            max: self.int(max as i64),
        };
        self.call_runtime(rt.pool, fields.with_offsets(), PoolCall::SIZE);
    }

    #[allow(clippy::too_many_arguments)]
    fn depthwise_fields(&mut self, [n, c, h, w]: [i64; 4], [oh, ow]: [i64; 2], [kh, kw]: [i64; 2], stride: [i64; 2], dilation: [i64; 2], [pt, pl]: [i64; 2], x: Value, weights: Value, out: Value, rows: (Value, Value), tail: &GemmTail) -> DepthwiseCallFields<Value> {
        let [bias, _, residual, act] = self.tail_args(tail);
        DepthwiseCallFields {
            n: self.int(n),
            c: self.int(c),
            h: self.int(h),
            w: self.int(w),
            kh: self.int(kh),
            kw: self.int(kw),
            sh: self.int(stride[0]),
            sw: self.int(stride[1]),
            dh: self.int(dilation[0]),
            dw: self.int(dilation[1]),
            pt: self.int(pt),
            pl: self.int(pl),
            oh: self.int(oh),
            ow: self.int(ow),
            x,
            weights,
            out,
            row_lo: rows.0,
            row_hi: rows.1,
            bias,
            residual,
            act,
        }
    }

    /// An NHWC convolution of `input` (all `n` images, each `chw`; then `e_tail`, its bias per
    /// column) as [`Self::conv_nhwc`] describes one image, and the NHWC depthwise convolution
    /// of its result as [`Self::depthwise_nhwc`] describes it (all rows, `d_tail`), computed
    /// together (`nnc_conv_depthwise`); `ring` (its address and room in floats) holds the
    /// convolution's rows as the windows need them.
    #[allow(clippy::too_many_arguments)]
    pub fn conv_depthwise(&mut self, conv: ProducerConv, e_tail: &GemmTail, (ring, ring_floats): (Value, i64), dims: [i64; 4], out_size: [i64; 2], window: [i64; 2], stride: [i64; 2], dilation: [i64; 2], pad: [i64; 2], weights: Value, out: Value, d_tail: &GemmTail) {
        let rt = self.runtime_fns();
        let [n, c, _, w] = dims;
        let (lo, hi) = (self.int(0), self.int(n * out_size[0]));
        let d = self.depthwise_fields(dims, out_size, window, stride, dilation, pad, ring, weights, out, (lo, hi), d_tail);
        let d = self.descriptor(d.with_offsets(), DepthwiseCall::SIZE);
        // The ring's room, in pixels (rows of C).
        let e = self.conv_nhwc_fields([ring_floats / c, c], conv.input, conv.chw, conv.window, conv.stride, conv.dilation, conv.pad, w, conv.packed_b, (ring, c, 1), e_tail);
        let e = self.descriptor(e.with_offsets(), ConvNhwcCall::SIZE);
        self.call_runtime(rt.conv_depthwise, ConvDepthwiseCallFields { conv: e, depthwise: d }.with_offsets(), ConvDepthwiseCall::SIZE);
    }

    /// A dense layer `out[rows, units] = x[rows, features] · wᵀ` as dot products
    /// (`nnc_gemv`), `w` row-major `[units, features]` or blocked (`gemv::pack_blocked`),
    /// then `tail` (its bias per unit).
    pub fn gemv(&mut self, [rows, units, features]: [i64; 3], x: Value, (w, blocked): (Value, bool), out: Value, tail: &GemmTail) {
        let rt = self.runtime_fns();
        let [threads, ..] = self.gemm_tail();
        let [bias, _, residual, act] = self.tail_args(tail);
        let blocked = self.int(i64::from(blocked));
        let fields = GemvCallFields { rows: self.int(rows), units: self.int(units), features: self.int(features), x, w, blocked, out, threads, bias, residual, act };
        self.call_runtime(rt.gemv, fields.with_offsets(), GemvCall::SIZE);
    }

    /// Fused attention over `batches` (batch × head) problems (`nnc_attention`), each operand
    /// stored as `attention_heads` says; with `reference`, the interpreter's (contiguous
    /// problems only).
    #[allow(clippy::too_many_arguments)]
    pub fn attention(&mut self, [batches, sq, sk, d, dv]: [i64; 5], q: Value, k: Value, v: Value, out: Value, causal: bool, reference: bool) {
        let rt = self.runtime_fns();
        let [threads, ..] = self.gemm_tail();
        let [hq, hk, hv, ho] = self.attention_heads;
        debug_assert!(!reference || self.attention_heads == [1; 4], "head transposes fold only into the fused attention");
        let fields = AttentionCallFields { batches: self.int(batches), sq: self.int(sq), sk: self.int(sk), d: self.int(d), dv: self.int(dv), q, k, v, out, causal: self.int(causal as i64), threads, heads_q: self.int(hq), heads_k: self.int(hk), heads_v: self.int(hv), heads_out: self.int(ho), reference: self.int(reference as i64) };
        self.call_runtime(rt.attention, fields.with_offsets(), AttentionCall::SIZE);
    }

    /// One LSTM step of one batch row (`nnc_lstm_step`): the gate sums over the transposed
    /// weights `wih: [len_x][4h]`, `whh: [h][4h]` into `gates`, then the cell update.
    #[allow(clippy::too_many_arguments)]
    pub fn lstm_step(&mut self, hidden: i64, bias: Value, (x, wih, len_x): (Value, Value, i64), (h_prev, whh): (Value, Value), gates: Value, cell: Value, out: Value) {
        let rt = self.runtime_fns();
        let fields = LstmStepCallFields { hidden: self.int(hidden), bias, x, wih, len_x: self.int(len_x), h_prev, whh, gates, cell, out };
        self.call_runtime(rt.lstm_step, fields.with_offsets(), LstmStepCall::SIZE);
    }

    /// Layer normalization of `rows` rows of `d` values (`nnc_layer_norm`); with `reference`,
    /// the interpreter's.
    #[allow(clippy::too_many_arguments)]
    pub fn layer_norm(&mut self, [rows, d]: [i64; 2], x: Value, gamma: Value, beta: Value, out: Value, eps: f64, reference: bool) {
        let rt = self.runtime_fns();
        let [threads, ..] = self.gemm_tail();
        let fields = LayerNormCallFields { rows: self.int(rows), d: self.int(d), x, gamma, beta, out, eps_bits: self.int(eps.to_bits() as i64), threads, reference: self.int(reference as i64) };
        self.call_runtime(rt.layer_norm, fields.with_offsets(), LayerNormCall::SIZE);
    }

    /// A whole LSTM layer with the interpreter's bits (`nnc_lstm_reference`): `[steps, batch,
    /// input, hidden]`, the biases `None` where the layer has none.
    #[allow(clippy::too_many_arguments)]
    pub fn lstm_reference(&mut self, [steps, batch, input, hidden]: [i64; 4], x: Value, w_ih: Value, w_hh: Value, biases: Option<(Value, Value)>, out: Value) {
        let rt = self.runtime_fns();
        let (b_ih, b_hh) = biases.unwrap_or_else(|| (self.int(0), self.int(0)));
        let fields = LstmReferenceCallFields { steps: self.int(steps), batch: self.int(batch), input: self.int(input), hidden: self.int(hidden), x, w_ih, w_hh, b_ih, b_hh, out };
        self.call_runtime(rt.lstm_reference, fields.with_offsets(), LstmReferenceCall::SIZE);
    }

    /// Softmax of `outer × inner` lanes of `len` values `inner` apart with the interpreter's
    /// bits (`nnc_softmax_reference`).
    pub fn softmax_reference(&mut self, x: Value, out: Value, [outer, len, inner]: [i64; 3]) {
        let rt = self.runtime_fns();
        let [threads, ..] = self.gemm_tail();
        let fields = SoftmaxReferenceCallFields { x, out, outer: self.int(outer), len: self.int(len), inner: self.int(inner), threads };
        self.call_runtime(rt.softmax_reference, fields.with_offsets(), SoftmaxReferenceCall::SIZE);
    }

    /// `out = f(x)` over `n` floats with the interpreter's bits (`nnc_unary_reference`).
    pub fn unary_reference(&mut self, x: Value, out: Value, n: i64, f: nnc_runtime::reference::Transcendental) {
        let rt = self.runtime_fns();
        let [threads, ..] = self.gemm_tail();
        let (kind, alpha) = f.to_abi();
        let fields = UnaryReferenceCallFields { x, out, n: self.int(n), kind: self.int(kind), alpha_bits: self.int(alpha.to_bits() as i64), threads };
        self.call_runtime(rt.unary_reference, fields.with_offsets(), UnaryReferenceCall::SIZE);
    }

    /// The epilogue fields of a runtime GEMM call: bias, bias per row, residual, activation.
    fn tail_args(&mut self, t: &GemmTail) -> [Value; 4] {
        let null = self.int(0);
        [t.bias.unwrap_or(null), self.int(t.bias_per_row as i64), t.residual.unwrap_or(null), self.int(t.act.code())]
    }
}
