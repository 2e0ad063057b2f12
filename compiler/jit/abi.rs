//! The runtime entry points generated code calls: their symbols, bound to the Rust functions
//! of `nnc_runtime::gemm::abi`, and their one Cranelift signature: each takes the address of
//! its `#[repr(C)]` call descriptor (`GemmCall`, `ConvNhwcCall`, `Im2colCall`, `IgemmCall`, `DepthwiseI8Call`, `QuantizeCall`, `PlaneMeansCall`, `SparseCall`, `WinogradCall`, `DirectConvCall`, `DepthwiseCall`, `ConvDepthwiseCall`, `PoolCall`, `RgbToPixelsCall`, `GemvCall`, `AttentionCall`, `LstmStepCall`, `LayerNormCall`, `UnaryReferenceCall`, `LstmReferenceCall`, `SoftmaxReferenceCall`),
//! which `builder::KernelBuilder` fills field by field at the offsets the runtime declares.

use super::JitError;
use cranelift_codegen::ir::{AbiParam, FuncRef, Function};
use cranelift_jit::JITBuilder;
use cranelift_module::{FuncId, Linkage, Module};

/// Each entry point: its symbol, its address, and how many pointer arguments it takes (a
/// call descriptor; the reference kernel also takes the arena).
const ENTRY_POINTS: [(&str, *const u8, usize); 23] = [
    ("nnc_gemm", nnc_runtime::gemm::nnc_gemm as *const u8, 1),
    ("nnc_gemm_conv_nhwc", nnc_runtime::gemm::nnc_gemm_conv_nhwc as *const u8, 1),
    ("nnc_im2col", nnc_runtime::gemm::nnc_im2col as *const u8, 1),
    ("nnc_igemm", nnc_runtime::gemm::nnc_igemm as *const u8, 1),
    ("nnc_im2col_i8", nnc_runtime::gemm::nnc_im2col_i8 as *const u8, 1),
    ("nnc_depthwise_i8", nnc_runtime::gemm::nnc_depthwise_i8 as *const u8, 1),
    ("nnc_quantize", nnc_runtime::gemm::nnc_quantize as *const u8, 1),
    ("nnc_plane_means", nnc_runtime::gemm::nnc_plane_means as *const u8, 1),
    ("nnc_sparse_gemm", nnc_runtime::gemm::nnc_sparse_gemm as *const u8, 1),
    ("nnc_winograd", nnc_runtime::gemm::nnc_winograd as *const u8, 1),
    ("nnc_conv_direct", nnc_runtime::gemm::nnc_conv_direct as *const u8, 1),
    ("nnc_depthwise", nnc_runtime::gemm::nnc_depthwise as *const u8, 1),
    ("nnc_conv_depthwise", nnc_runtime::gemm::nnc_conv_depthwise as *const u8, 1),
    ("nnc_pool", nnc_runtime::gemm::nnc_pool as *const u8, 1),
    ("nnc_rgb_to_pixels", nnc_runtime::gemm::nnc_rgb_to_pixels as *const u8, 1),
    ("nnc_gemv", nnc_runtime::gemm::nnc_gemv as *const u8, 1),
    ("nnc_attention", nnc_runtime::gemm::nnc_attention as *const u8, 1),
    ("nnc_lstm_step", nnc_runtime::gemm::nnc_lstm_step as *const u8, 1),
    ("nnc_layer_norm", nnc_runtime::gemm::nnc_layer_norm as *const u8, 1),
    ("nnc_unary_reference", nnc_runtime::gemm::nnc_unary_reference as *const u8, 1),
    ("nnc_lstm_reference", nnc_runtime::gemm::nnc_lstm_reference as *const u8, 1),
    ("nnc_softmax_reference", nnc_runtime::gemm::nnc_softmax_reference as *const u8, 1),
    ("nnc_reference_kernel", super::reference::nnc_reference_kernel as *const u8, 2),
];

/// The entry points as a kernel function refers to them, in [`ENTRY_POINTS`] order.
#[derive(Clone, Copy)]
pub struct RuntimeFns {
    /// `nnc_gemm(&GemmCall)`: any product, with A and/or B packed, and its epilogue.
    pub gemm: FuncRef,
    /// `nnc_gemm_conv_nhwc(&ConvNhwcCall)`: an NHWC convolution through the GEMM.
    pub conv_nhwc: FuncRef,
    /// `nnc_im2col(&Im2colCall)`: one image unfolded for a row-major convolution.
    pub im2col: FuncRef,
    /// `nnc_igemm(&IgemmCall)`: an int8 product into wrapping i32.
    pub igemm: FuncRef,
    /// `nnc_im2col_i8(&Im2colCall)`: one image of int8 codes unfolded.
    pub im2col_i8: FuncRef,
    /// `nnc_depthwise_i8(&DepthwiseI8Call)`: an int8 depthwise convolution of NCHW planes,
    /// requantized or not.
    pub depthwise_i8: FuncRef,
    /// `nnc_quantize(&QuantizeCall)`: floats to int8 codes at one scale.
    pub quantize: FuncRef,
    /// `nnc_plane_means(&PlaneMeansCall)`: planes' means summed in f64, as the interpreter's.
    pub plane_means: FuncRef,
    /// `nnc_sparse_gemm(&SparseCall)`: a product with compressed sparse weights.
    pub sparse: FuncRef,
    /// `nnc_winograd(&WinogradCall)`: one image's 3×3 convolution by Winograd F(4×4, 3×3) or F(2×2, 3×3).
    pub winograd: FuncRef,
    /// `nnc_conv_direct(&DirectConvCall)`: one image's convolution with few input channels,
    /// computed directly.
    pub conv_direct: FuncRef,
    /// `nnc_depthwise(&DepthwiseCall)`: rows of an NHWC depthwise convolution.
    pub depthwise: FuncRef,
    /// `nnc_conv_depthwise(&ConvDepthwiseCall)`: a convolution through the GEMM and the
    /// depthwise one it feeds, its result kept in a ring of rows.
    pub conv_depthwise: FuncRef,
    /// `nnc_pool(&PoolCall)`: rows of an NHWC max or average pooling.
    pub pool: FuncRef,
    /// `nnc_rgb_to_pixels(&RgbToPixelsCall)`: three-channel images from planes to NHWC.
    pub rgb_to_pixels: FuncRef,
    /// `nnc_gemv(&GemvCall)`: a dense layer on few rows as dot products.
    pub gemv: FuncRef,
    /// `nnc_attention(&AttentionCall)`: fused attention, score blocks kept in cache.
    pub attention: FuncRef,
    /// `nnc_lstm_step(&LstmStepCall)`: one LSTM step of one batch row.
    pub lstm_step: FuncRef,
    /// `nnc_layer_norm(&LayerNormCall)`: layer normalization over the last axis.
    pub layer_norm: FuncRef,
    /// `nnc_unary_reference(&UnaryReferenceCall)`: a transcendental activation with the
    /// interpreter's bits.
    pub unary_reference: FuncRef,
    /// `nnc_lstm_reference(&LstmReferenceCall)`: an LSTM layer with the interpreter's bits.
    pub lstm_reference: FuncRef,
    /// `nnc_softmax_reference(&SoftmaxReferenceCall)`: softmax along an axis with the
    /// interpreter's bits.
    pub softmax_reference: FuncRef,
    /// `nnc_reference_kernel(&ReferenceNode, arena)`: an op's interpreter semantics.
    pub reference: FuncRef,
}

/// Make the entry points resolvable by the module being built.
pub fn register_symbols(builder: &mut JITBuilder) {
    for (name, addr, _) in ENTRY_POINTS {
        builder.symbol(name, addr);
    }
}

/// The entry points declared in a module, to be imported into each kernel function.
pub struct Imports([FuncId; 23]);

impl Imports {
    /// Declare every entry point as `fn(descriptor: *const _, ...)`.
    pub fn declare<M: Module>(module: &mut M) -> Result<Imports, JitError> {
        let ptr = module.target_config().pointer_type();
        let mut ids = Vec::with_capacity(ENTRY_POINTS.len());
        for (name, _, params) in ENTRY_POINTS {
            let mut sig = module.make_signature();
            sig.params.extend(std::iter::repeat_n(AbiParam::new(ptr), params));
            ids.push(module.declare_function(name, Linkage::Import, &sig).map_err(|e| JitError::Codegen { node: name.to_string(), message: e.to_string() })?);
        }
        Ok(Imports(ids.try_into().expect("one id per entry point")))
    }

    /// References to the entry points from inside `func`.
    pub fn in_function<M: Module>(&self, module: &mut M, func: &mut Function) -> RuntimeFns {
        let [gemm, conv_nhwc, im2col, igemm, im2col_i8, depthwise_i8, quantize, plane_means, sparse, winograd, conv_direct, depthwise, conv_depthwise, pool, rgb_to_pixels, gemv, attention, lstm_step, layer_norm, unary_reference, lstm_reference, softmax_reference, reference] = self.0.map(|id| module.declare_func_in_func(id, func));
        RuntimeFns { gemm, conv_nhwc, im2col, igemm, im2col_i8, depthwise_i8, quantize, plane_means, sparse, winograd, conv_direct, depthwise, conv_depthwise, pool, rgb_to_pixels, gemv, attention, lstm_step, layer_norm, unary_reference, lstm_reference, softmax_reference, reference }
    }
}
