//! The runtime entry points generated code calls: their symbols, bound to the Rust functions
//! of `nnc_runtime::gemm`, and their Cranelift signatures.

use super::builder::RuntimeFns;
use super::JitError;
use cranelift_codegen::ir::{AbiParam, Function};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module};

/// Each entry point: its symbol, its address, and how many pointer-sized arguments it takes.
const ENTRY_POINTS: [(&str, *const u8, usize); 5] = [
    ("nnc_sgemm", nnc_runtime::gemm::nnc_sgemm as *const u8, 21),
    ("nnc_im2col", nnc_runtime::gemm::nnc_im2col as *const u8, 15),
    ("nnc_sgemm_packed_a", nnc_runtime::gemm::nnc_sgemm_packed_a as *const u8, 19),
    ("nnc_sgemm_packed_b", nnc_runtime::gemm::nnc_sgemm_packed_b as *const u8, 19),
    ("nnc_sgemm_conv_nhwc", nnc_runtime::gemm::nnc_sgemm_conv_nhwc as *const u8, 27),
];

/// Make the entry points resolvable by the module being built.
pub fn register_symbols(builder: &mut JITBuilder) {
    for (name, addr, _) in ENTRY_POINTS {
        builder.symbol(name, addr);
    }
}

/// The entry points declared in a module, to be imported into each kernel function.
pub struct Imports([FuncId; 5]);

impl Imports {
    pub fn declare(module: &mut JITModule) -> Result<Imports, JitError> {
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
    pub fn in_function(&self, module: &mut JITModule, func: &mut Function) -> RuntimeFns {
        let [sgemm, im2col, sgemm_packed_a, sgemm_packed_b, sgemm_conv_nhwc] = self.0.map(|id| module.declare_func_in_func(id, func));
        RuntimeFns { sgemm, im2col, sgemm_packed_a, sgemm_packed_b, sgemm_conv_nhwc }
    }
}
