//! The runtime's kernel entry points (`nnc_gemm`, `nnc_im2col`, ...) as a C static library.
//!
//! `build.rs` of the `nnc` package builds this crate (release) and embeds the archive in the
//! compiler; `nnc compile --emit lib` copies its members next to the compiled model, so a C
//! program links one archive and nothing else. The entry points are `#[no_mangle]` in
//! `nnc_runtime::gemm::abi`; naming them here keeps them in the archive.
pub use nnc_runtime::cpu::nnc_cpu_features;
pub use nnc_runtime::gemm::{nnc_attention, nnc_conv_depthwise, nnc_conv_direct, nnc_depthwise, nnc_depthwise_i8, nnc_gemm, nnc_gemv, nnc_gemm_conv_nhwc, nnc_igemm, nnc_im2col, nnc_im2col_i8, nnc_layer_norm, nnc_lstm_reference, nnc_lstm_step, nnc_plane_means, nnc_pool, nnc_quantize, nnc_rgb_to_pixels, nnc_softmax_reference, nnc_sparse_gemm, nnc_unary_reference, nnc_winograd};
