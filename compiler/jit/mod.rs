//! The Cranelift JIT: compiles a graph whose weights are bound into native code, one kernel
//! function per op, running over one memory-planned arena.
//!
//! ```
//! use nnc::driver::{build_graph, Source};
//! let src = Source::from_string("m.nn", "model m {\n input x: f32[1, 4]\n output y = relu(x) * 2\n}");
//! let graph = build_graph(&src, None, &Default::default()).unwrap();
//! let exe = nnc::jit::compile(&graph, &Default::default()).unwrap();
//! let mut ws = exe.workspace();
//! let x = nnc_runtime::Tensor::f32(vec![1, 4], vec![-1.0, 0.5, 2.0, -3.0]);
//! let y = exe.run(&mut ws, &[x]).unwrap();
//! assert_eq!(y[0].as_f32().unwrap(), &[0.0, 1.0, 4.0, 0.0]);
//! ```

pub mod kernel;
pub mod lower;
pub mod lower_channels;
pub mod lower_lstm;
pub mod memplan;

use crate::ir::{Graph, Layout, NodeId, NodeKind, ShapeDisplay};
use crate::target::{CpuTarget, Tile};
use std::collections::HashMap;
use crate::ops;
use cranelift_codegen::ir::{AbiParam, InstBuilder, UserFuncName};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module};
use memplan::{Loc, MemoryPlan};
use nnc_runtime::Tensor;

#[derive(Debug, thiserror::Error)]
pub enum JitError {
    #[error("parameter `{0}` has no value; the JIT compiles models whose weights are bound")]
    UnboundParam(String),
    #[error("the JIT computes f32 tensors only; `{0}` is {1} (run it with --backend interp or --backend accel)")]
    UnsupportedDType(String, String),
    #[error("code generation failed for `{node}`: {message}")]
    Codegen { node: String, message: String },
    #[error("the graph breaks an IR invariant, so the JIT will not compile it: {0}")]
    InvalidGraph(String),
    #[error("this CPU is not supported by the JIT: {0}")]
    Host(String),
    #[error("the model has {expected} inputs but {got} were given")]
    InputCount { expected: usize, got: usize },
    #[error("input `{name}` must be {expected}, but the given tensor is {got}")]
    InputMismatch { name: String, expected: String, got: String },
}

type KernelFn = unsafe extern "C" fn(*mut u8);
/// A kernel split into tasks: `f(arena, task, tasks)` computes task `task`'s share.
type TaskFn = unsafe extern "C" fn(*mut u8, i64, i64);

/// One op's compiled code.
#[derive(Clone, Copy)]
enum Compiled {
    Whole(KernelFn),
    /// Run as this many tasks on the worker pool.
    Split(TaskFn, usize),
}

/// Outputs below which a kernel is not split: the hand-off to workers (two channel messages
/// each) costs more than a small elementwise pass.
const SPLIT_MIN_ELEMENTS: usize = 1 << 15;

/// A compiled model: immutable, shareable between threads; each thread runs it with its own
/// [`Workspace`].
pub struct Executable {
    // Kept alive for the code's lifetime; released in `Drop` (a dropped `JITModule` leaks).
    module: Option<JITModule>,
    kernels: Vec<Compiled>,
    /// `(node name, op label)` of each kernel, for profiles.
    kernel_names: Vec<(String, String)>,
    /// Weight buffers the code reads by absolute address; never mutated after compilation.
    consts: Vec<Vec<f32>>,
    arena_bytes: usize,
    lower_bound_bytes: usize,
    inputs: Vec<Binding>,
    outputs: Vec<Binding>,
}

struct Binding {
    name: String,
    loc: Loc,
    dtype: nnc_runtime::DType,
    shape: Vec<usize>,
}

// SAFETY: after `finalize_definitions` the module's code and the constant buffers are only
// read; all mutable state of a run lives in the caller's `Workspace`.
unsafe impl Send for Executable {}
unsafe impl Sync for Executable {}

impl Drop for Executable {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: no kernel can be running: runs borrow `self`, which is being dropped.
            unsafe { m.free_memory() };
        }
    }
}

/// The memory one run needs: the activation arena, allocated once and reused.
pub struct Workspace {
    arena: Vec<Align64>,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Align64([u8; 64]);

impl Executable {
    pub fn workspace(&self) -> Workspace {
        Workspace { arena: vec![Align64([0; 64]); self.arena_bytes.div_ceil(64).max(1)] }
    }

    /// Bytes of activation memory the plan uses.
    pub fn arena_bytes(&self) -> usize {
        self.arena_bytes
    }

    /// The least any plan could use: the peak of simultaneously live activations.
    pub fn arena_lower_bound_bytes(&self) -> usize {
        self.lower_bound_bytes
    }

    /// Run on `inputs` (declaration order); returns the outputs in declaration order.
    pub fn run(&self, ws: &mut Workspace, inputs: &[Tensor]) -> Result<Vec<Tensor>, JitError> {
        self.run_timed(ws, inputs, None)
    }

    /// [`Executable::run`], also timing every kernel: `(node, op, seconds)` in run order.
    pub fn run_profiled(&self, ws: &mut Workspace, inputs: &[Tensor]) -> Result<(Vec<Tensor>, Vec<(String, String, f64)>), JitError> {
        let mut times = Vec::with_capacity(self.kernels.len());
        let out = self.run_timed(ws, inputs, Some(&mut times))?;
        let profile = self.kernel_names.iter().zip(times).map(|((n, op), t)| (n.clone(), op.clone(), t)).collect();
        Ok((out, profile))
    }

    fn run_timed(&self, ws: &mut Workspace, inputs: &[Tensor], mut times: Option<&mut Vec<f64>>) -> Result<Vec<Tensor>, JitError> {
        if inputs.len() != self.inputs.len() {
            return Err(JitError::InputCount { expected: self.inputs.len(), got: inputs.len() });
        }
        if ws.arena.len() * 64 < self.arena_bytes {
            *ws = self.workspace();
        }
        let arena = ws.arena.as_mut_ptr() as *mut u8;
        for (b, t) in self.inputs.iter().zip(inputs) {
            if t.shape() != b.shape.as_slice() || t.dtype() != b.dtype {
                return Err(JitError::InputMismatch { name: b.name.clone(), expected: format!("{}{}", b.dtype, ShapeDisplay(&b.shape)), got: format!("{}{}", t.dtype(), ShapeDisplay(t.shape())) });
            }
            let Loc::Arena(off) = b.loc else { unreachable!("inputs live in the arena") };
            let data = t.as_f32().expect("float inputs checked above");
            // SAFETY: the plan reserved `numel * 4` bytes at `off` inside the arena.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), arena.add(off) as *mut f32, data.len()) };
        }
        // Task bodies receive the arena address as an integer: `usize` is `Sync`.
        let arena_addr = arena as usize;
        for k in &self.kernels {
            let start = times.as_ref().map(|_| std::time::Instant::now());
            // SAFETY: kernels only touch the arena (sized by the plan) and the constants;
            // the tasks of a split kernel write disjoint parts of its result.
            match *k {
                Compiled::Whole(f) => unsafe { f(arena) },
                Compiled::Split(f, tasks) => nnc_runtime::pool::parallel_for(tasks, &|t| unsafe { f(arena_addr as *mut u8, t as i64, tasks as i64) }),
            }
            if let (Some(t), Some(s)) = (times.as_deref_mut(), start) {
                t.push(s.elapsed().as_secs_f64());
            }
        }
        Ok(self
            .outputs
            .iter()
            .map(|b| {
                let n: usize = b.shape.iter().product();
                let mut data = vec![0.0f32; n];
                let src = match b.loc {
                    Loc::Arena(off) => unsafe { arena.add(off) as *const f32 },
                    Loc::Const(c) => self.consts[c].as_ptr(),
                };
                // SAFETY: `src` holds `n` floats (arena slot or constant buffer).
                unsafe { std::ptr::copy_nonoverlapping(src, data.as_mut_ptr(), n) };
                Tensor::from_f32(b.dtype, b.shape.clone(), data).expect("shape and data agree")
            })
            .collect())
    }
}

fn host_module() -> Result<JITModule, JitError> {
    let mut flags = settings::builder();
    let set = |f: &mut settings::Builder, k: &str, v: &str| f.set(k, v).map_err(|e| JitError::Host(e.to_string()));
    set(&mut flags, "opt_level", "speed")?;
    set(&mut flags, "is_pic", "false")?;
    let isa = cranelift_native::builder().map_err(|e| JitError::Host(e.to_string()))?.finish(settings::Flags::new(flags)).map_err(|e| JitError::Host(e.to_string()))?;
    let mut builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
    builder.symbol("nnc_sgemm", nnc_runtime::gemm::nnc_sgemm as *const u8);
    builder.symbol("nnc_im2col", nnc_runtime::gemm::nnc_im2col as *const u8);
    builder.symbol("nnc_sgemm_packed_a", nnc_runtime::gemm::nnc_sgemm_packed_a as *const u8);
    builder.symbol("nnc_sgemm_packed_b", nnc_runtime::gemm::nnc_sgemm_packed_b as *const u8);
    builder.symbol("nnc_sgemm_conv_nhwc", nnc_runtime::gemm::nnc_sgemm_conv_nhwc as *const u8);
    Ok(JITModule::new(builder))
}

/// How to compile.
#[derive(Clone, Copy, Debug)]
pub struct JitOptions {
    /// Let matrix products (convolutions, dense layers, matmuls) call the runtime's GEMM
    /// microkernels (AVX-512/AVX2 where the CPU has them) instead of Cranelift-generated
    /// loops, which Cranelift limits to 128-bit vectors.
    pub ukernels: bool,
    /// Threads to split work across: the runtime GEMM's tiles (with microkernels on), and the
    /// outermost loop of elementwise and channel-vector windowed kernels. Every thread count
    /// gives bit-identical results.
    pub threads: usize,
}

impl Default for JitOptions {
    fn default() -> Self {
        JitOptions { ukernels: true, threads: 1 }
    }
}

/// What to record of the generated code while compiling (`nnc compile --emit clif|asm`).
#[derive(Default)]
pub struct Listing {
    pub clif: bool,
    pub asm: bool,
    pub text: String,
}

/// Compile `graph` (weights bound) to native code.
pub fn compile(graph: &Graph, options: &JitOptions) -> Result<Executable, JitError> {
    compile_with_listing(graph, options, &mut Listing::default())
}

/// [`compile`], appending the Cranelift IR and/or machine code of every kernel to `listing`.
pub fn compile_with_listing(graph: &Graph, options: &JitOptions, listing: &mut Listing) -> Result<Executable, JitError> {
    // Generated code is in bounds only for graphs whose shapes, layouts and fused operands
    // verify; the graph may come from IR text or an embedding application, not only from
    // passes that the debug build checks, so it is verified here in every build.
    crate::ir::verify::verify(graph).map_err(JitError::InvalidGraph)?;
    let schedule = graph.topo_order();
    for &id in &schedule {
        let n = graph.node(id);
        if matches!(n.kind, NodeKind::Param) {
            return Err(JitError::UnboundParam(n.name.clone()));
        }
        // f16/bf16 values would need rounding after every op to match the interpreter.
        if n.ty.dtype != nnc_runtime::DType::F32 {
            return Err(JitError::UnsupportedDType(n.name.clone(), n.ty.dtype.to_string()));
        }
    }
    let target = CpuTarget::host(options.ukernels);
    let tile_of = |id: NodeId| node_tile(graph, id, &target);
    let scratch = |id: NodeId| node_scratch_bytes(graph, id, &target);
    let plan: MemoryPlan = memplan::plan(graph, &schedule, &scratch);
    let consts: Vec<Vec<f32>> = plan.consts.iter().map(|&id| match &graph.node(id).kind {
        NodeKind::Const(t) => t.to_f32_vec(),
        NodeKind::Input { .. } | NodeKind::Param | NodeKind::Op(_) => unreachable!("the plan lists constants only"),
    }).collect();
    let (consts, prepacked) = prepack_weights(graph, &schedule, &plan, consts, options.ukernels, &tile_of);
    let const_addrs: Vec<u64> = consts.iter().map(|c| c.as_ptr() as u64).collect();

    let mut module = host_module()?;
    let ptr = module.target_config().pointer_type();
    let import = |module: &mut JITModule, name: &str, params: usize| {
        let mut sig = module.make_signature();
        sig.params.extend(std::iter::repeat_n(AbiParam::new(ptr), params));
        module.declare_function(name, Linkage::Import, &sig).map_err(|e| JitError::Codegen { node: name.to_string(), message: e.to_string() })
    };
    let sgemm_id = import(&mut module, "nnc_sgemm", 21)?;
    let im2col_id = import(&mut module, "nnc_im2col", 15)?;
    let conv_nhwc_id = import(&mut module, "nnc_sgemm_conv_nhwc", 27)?;
    let packed_id = import(&mut module, "nnc_sgemm_packed_a", 19)?;
    let packed_b_id = import(&mut module, "nnc_sgemm_packed_b", 19)?;
    let frontend_config = module.target_config();
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    let mut ids = Vec::new();
    let mut kernel_names = Vec::new();
    for (index, &id) in schedule.iter().enumerate() {
        let node = graph.node(id);
        let Some(op) = node.op() else { continue };
        if !lower::needs_kernel(op) {
            continue;
        }
        let operand_types = graph.operand_types(id);
        let split = options.threads > 1
            && node.ty.numel() >= SPLIT_MIN_ELEMENTS
            && lower::splits(op, &operand_types, &node.ty, options.ukernels, prepacked.contains_key(&id));
        ctx.func.signature.params.push(AbiParam::new(ptr));
        if split {
            ctx.func.signature.params.extend([AbiParam::new(ptr), AbiParam::new(ptr)]);
        }
        ctx.func.name = UserFuncName::user(0, index as u32);
        {
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            b.seal_block(entry);
            let params = b.block_params(entry).to_vec();
            let arena = params[0];
            let runtime = options.ukernels.then(|| kernel::RuntimeFns {
                sgemm: module.declare_func_in_func(sgemm_id, b.func),
                im2col: module.declare_func_in_func(im2col_id, b.func),
                sgemm_packed_a: module.declare_func_in_func(packed_id, b.func),
                sgemm_packed_b: module.declare_func_in_func(packed_b_id, b.func),
                sgemm_conv_nhwc: module.declare_func_in_func(conv_nhwc_id, b.func),
            });
            let mut k = kernel::Kernel::new(b, arena, &const_addrs, runtime, tile_of(id));
            k.prepacked = prepacked.get(&id).cloned().unwrap_or_default();
            k.threads = options.threads.max(1) as i64;
            if split {
                k.task = Some((params[1], params[2]));
            }
            let operands = graph.operands(id);
            let args: Vec<lower::Arg> = operands.iter().map(|o| lower::Arg { loc: plan.locs[o], ty: &graph.node(*o).ty }).collect();
            let out = lower::Arg { loc: plan.locs[&id], ty: &node.ty };
            lower::lower(&mut k, op, &args, out, plan.scratch.get(&id).copied());
            k.b.ins().return_(&[]);
            k.b.finalize(frontend_config);
        }
        let codegen_err = |e: String| JitError::Codegen { node: node.name.clone(), message: e };
        let header = format!("; kernel k{index}: %{} = {} : {}\n", node.name, op.label(), node.ty);
        if listing.clif {
            listing.text.push_str(&header);
            listing.text.push_str(&ctx.func.display().to_string());
            listing.text.push('\n');
        }
        ctx.set_disasm(listing.asm);
        let fid = module.declare_function(&format!("k{index}"), Linkage::Local, &ctx.func.signature).map_err(|e| codegen_err(e.to_string()))?;
        module.define_function(fid, &mut ctx).map_err(|e| codegen_err(format!("{e:?}")))?;
        if listing.asm {
            listing.text.push_str(&header);
            listing.text.push_str(ctx.compiled_code().and_then(|c| c.vcode.as_deref()).unwrap_or(""));
            listing.text.push('\n');
        }
        module.clear_context(&mut ctx);
        ids.push((fid, split));
        kernel_names.push((node.name.clone(), op.label()));
    }
    module.finalize_definitions().map_err(|e| JitError::Codegen { node: graph.name.clone(), message: e.to_string() })?;
    let tasks = options.threads.max(1);
    let kernels = ids
        .iter()
        .map(|&(f, split)| {
            let code = module.get_finalized_function(f);
            // SAFETY: each kernel was declared with the signature its variant names:
            // `fn(arena)`, or `fn(arena, task, tasks)` when split.
            unsafe {
                if split {
                    Compiled::Split(std::mem::transmute::<*const u8, TaskFn>(code), tasks)
                } else {
                    Compiled::Whole(std::mem::transmute::<*const u8, KernelFn>(code))
                }
            }
        })
        .collect();
    let binding = |id: NodeId, name: &str| Binding { name: name.to_string(), loc: plan.locs[&id], dtype: graph.node(id).ty.dtype, shape: graph.node(id).ty.shape.clone() };
    Ok(Executable {
        module: Some(module),
        kernels,
        kernel_names,
        consts,
        arena_bytes: plan.arena_bytes,
        lower_bound_bytes: plan.lower_bound_bytes,
        inputs: graph.inputs.iter().map(|&i| binding(i, &graph.node(i).name)).collect(),
        outputs: graph.outputs.iter().map(|(name, id)| binding(*id, name)).collect(),
    })
}

/// A node's cache blocking: chosen by `select-tiles`, or derived the same way here (for
/// graphs compiled below the level that runs it).
pub fn node_tile(graph: &Graph, id: NodeId, target: &CpuTarget) -> Tile {
    let node = graph.node(id);
    node.tile.unwrap_or_else(|| {
        let shape = node.op().and_then(|op| lower::gemm_shape(op, &graph.operand_types(id), &node.ty, target.ukernels));
        let [m, n, k] = shape.unwrap_or([usize::MAX / 2; 3]);
        target.gemm_tile(m, n, k)
    })
}

/// Arena bytes a node's kernel needs while it runs. Weights are constants here (bound), or
/// parameters when only planning (they will be).
pub fn node_scratch_bytes(graph: &Graph, id: NodeId, target: &CpuTarget) -> usize {
    let node = graph.node(id);
    let Some(op) = node.op() else { return 0 };
    let weights_constant = graph.operands(id).iter().skip(1).all(|&o| matches!(graph.node(o).kind, NodeKind::Const(_) | NodeKind::Param));
    lower::scratch_bytes(op, &graph.operand_types(id), &node.ty, target.ukernels, &node_tile(graph, id, target), weights_constant)
}

/// Constant convolution weights repacked once, at compile time, in the order their kernels
/// read them: GEMM panels of A for row-major convolutions, and for channels-last ones GEMM
/// panels of B or the depthwise `[tap][channel]` order. Returns the constants with the packed
/// buffers appended, and each convolution's packed buffers (one per group) by address.
fn prepack_weights(graph: &Graph, schedule: &[NodeId], plan: &MemoryPlan, mut consts: Vec<Vec<f32>>, ukernels: bool, tile_of: &dyn Fn(NodeId) -> Tile) -> (Vec<Vec<f32>>, HashMap<NodeId, Vec<u64>>) {
    let mut prepacked = HashMap::new();
    for &id in schedule {
        // An LSTM with constant weights: transposed weights and the summed bias.
        if let Some(ops::Op::Lstm(l)) = graph.node(id).op() {
            let locs: Vec<Option<Loc>> = graph.operands(id)[1..].iter().map(|o| plan.locs.get(o).copied()).collect();
            let consts_at: Vec<usize> = locs.iter().filter_map(|l| match l {
                Some(Loc::Const(c)) => Some(*c),
                _ => None,
            }).collect();
            if consts_at.len() == locs.len() {
                let biases = (consts_at.len() == 4).then(|| (&consts[consts_at[2]][..], &consts[consts_at[3]][..]));
                let packed = lower_lstm::pack_weights(&consts[consts_at[0]], &consts[consts_at[1]], biases, 4 * l.hidden);
                let mut addrs = Vec::new();
                for buf in packed {
                    addrs.push(buf.as_ptr() as u64);
                    consts.push(buf);
                }
                prepacked.insert(id, addrs);
            }
            continue;
        }
        let conv = match graph.node(id).op() {
            Some(ops::Op::Conv2d(c)) => c,
            Some(ops::Op::Fused(f)) => match f.anchor.as_deref() {
                Some(ops::Op::Conv2d(c)) => c,
                _ => continue,
            },
            _ => continue,
        };
        let operands = graph.operands(id);
        let types = graph.operand_types(id);
        let Some(Loc::Const(w)) = plan.locs.get(&operands[1]).copied() else { continue };
        let ws = &types[1].shape;
        let tile = tile_of(id);
        let mut addrs = Vec::new();
        if types[0].layout != Layout::RowMajor {
            let kind = lower_channels::conv_kind(conv, &types, ukernels);
            if let Some(buf) = lower_channels::pack_weights(kind, &consts[w], ws, tile) {
                // The heap buffer does not move when `consts` grows.
                addrs.push(buf.as_ptr() as u64);
                consts.push(buf);
            }
        } else if ukernels && lower::conv_uses_gemm(&types, true) {
            let (fg, kk) = (ws[0] / conv.groups, ws[1] * ws[2] * ws[3]);
            let blk = nnc_runtime::gemm::Blocking { kc: tile.kc, mc: tile.mc, nc: tile.nc };
            for g in 0..conv.groups {
                let mut buf = vec![0.0f32; nnc_runtime::gemm::packed_a_len(fg, kk, blk)];
                // SAFETY: the weight buffer holds `groups·fg × kk` floats, row-major.
                unsafe { nnc_runtime::gemm::pack_a_all(fg, kk, consts[w].as_ptr().add(g * fg * kk), kk as isize, 1, blk, &mut buf) };
                addrs.push(buf.as_ptr() as u64);
                consts.push(buf);
            }
        }
        if !addrs.is_empty() {
            prepacked.insert(id, addrs);
        }
    }
    (consts, prepacked)
}
