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

pub mod abi;
pub mod aot;
pub mod builder;
pub mod epilogue;
pub mod executable;
pub mod lower;
pub mod memplan;
pub mod observe;
pub mod prepack;
pub mod reference;
pub mod runtime_calls;

pub use executable::{Executable, Workspace};
pub use observe::observe;

use crate::ir::{Graph, NodeId, NodeKind};
use crate::kernel_plan::{Kernel, KernelPlan};
use crate::target::CpuTarget;
use cranelift_codegen::ir::{AbiParam, InstBuilder, UserFuncName};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use nnc_runtime::floats::Floats;
use builder::DataAddr;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module};
use executable::{Binding, Compiled, KernelFn, TaskFn};
use memplan::MemoryPlan;
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum JitError {
    #[error("parameter `{0}` has no value; the JIT compiles models whose weights are bound")]
    UnboundParam(String),
    #[error("the JIT computes f32 and int8 tensors; `{0}` is {1} (run it with --backend interp or --backend accel)")]
    UnsupportedDType(String, String),
    #[error("code generation failed for `{node}`: {message}")]
    Codegen { node: String, message: String },
    #[error("the graph breaks an IR invariant, so the JIT will not compile it: {0}")]
    InvalidGraph(String),
    #[error("the model cannot be compiled ahead of time: {0}")]
    NotAheadOfTime(String),
    #[error("this CPU is not supported by the JIT: {0}")]
    Host(String),
    #[error("the model has {expected} inputs but {got} were given")]
    InputCount { expected: usize, got: usize },
    #[error("input `{name}` must be {expected}, but the given tensor is {got}")]
    InputMismatch { name: String, expected: String, got: String },
}

/// Outputs below which a kernel is not split: the hand-off to workers costs more than a small
/// elementwise pass.
const SPLIT_MIN_ELEMENTS: usize = 1 << 15;

/// The same for the runtime's depthwise kernel, whose input comes from a product split
/// across the threads: on one thread it reads the other thread's half of the image from the
/// other core. MobileNetV2's 7²×576 stride-2 layer (28 224 outputs) took 20.7–21.3 µs on
/// one of two threads and 11.5–12.2 µs split.
const DEPTHWISE_SPLIT_MIN_ELEMENTS: usize = 1 << 13;

fn host_module() -> Result<JITModule, JitError> {
    let mut flags = settings::builder();
    let set = |f: &mut settings::Builder, k: &str, v: &str| f.set(k, v).map_err(|e| JitError::Host(e.to_string()));
    set(&mut flags, "opt_level", "speed")?;
    set(&mut flags, "is_pic", "false")?;
    let isa = cranelift_native::builder().map_err(|e| JitError::Host(e.to_string()))?.finish(settings::Flags::new(flags)).map_err(|e| JitError::Host(e.to_string()))?;
    let mut builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
    abi::register_symbols(&mut builder);
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
    /// Let products with pruned constant weights run on the runtime's sparse kernels where the
    /// cost model says they are faster (needs `ukernels`).
    pub sparse: bool,
    /// Kernels to use wherever they can compute a node (`--kernels`).
    pub kernels: crate::kernel_plan::KernelSet,
    /// Compute convolutions inside the depthwise convolutions they feed where
    /// `kernel_plan::fused_producers` allows (off: each in its own kernel, for comparison).
    pub fuse_producers: bool,
    /// Write f32 outputs straight into the tensors `Executable::run` returns (no copy out of
    /// the arena; `memplan::Loc::Output`). Off for C libraries, whose callers may pass
    /// output buffers that overlap their inputs.
    pub outputs_in_place: bool,
    /// Run products of bf16 values on the runtime's bf16 kernel: `None` where it is faster
    /// than the f32 kernel (`nnc_runtime::gemm::bf16_products_pay`), `Some(true)` wherever
    /// the CPU has it (with microkernels on), `Some(false)` never.
    pub bf16_kernel: Option<bool>,
}

impl Default for JitOptions {
    fn default() -> Self {
        JitOptions { ukernels: true, threads: 1, sparse: true, kernels: Default::default(), fuse_producers: true, outputs_in_place: true, bf16_kernel: None }
    }
}

impl JitOptions {
    /// The machine these options compile for.
    pub fn target(&self) -> CpuTarget {
        let host = CpuTarget::host(self.ukernels);
        let bf16_kernel = match self.bf16_kernel {
            None => host.bf16_kernel,
            Some(wanted) => Some(wanted && self.ukernels && nnc_runtime::gemm::bf16_microkernel_name().is_some()),
        };
        CpuTarget { sparse_kernels: self.ukernels && self.sparse, forced_kernels: self.kernels, bf16_kernel, ..host }
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

/// The kernel plan of every op node that runs code (views have none), on `target`.
pub fn plans(graph: &Graph, target: &CpuTarget) -> Result<HashMap<NodeId, KernelPlan>, JitError> {
    let mut plans = HashMap::new();
    let known = crate::kernel_plan::Known::of(graph);
    for id in graph.node_ids() {
        if graph.node(id).op().is_none() {
            continue;
        }
        let plan = KernelPlan::for_node(graph, id, &known, target).map_err(|e| JitError::Codegen { node: graph.node(id).name.clone(), message: e.to_string() })?;
        plans.insert(id, plan);
    }
    Ok(plans)
}

/// A graph's code as far as it does not depend on where the code will live (this process or an
/// object file): the schedule, kernel plans, memory plan and constant buffers, weights packed.
pub(crate) struct Prepared {
    pub schedule: Vec<NodeId>,
    pub plans: HashMap<NodeId, KernelPlan>,
    pub plan: MemoryPlan,
    /// Every constant buffer: the graph's constants, then the packed ones.
    pub consts: Vec<Floats>,
    pub const_addrs: Vec<DataAddr>,
    pub prepacked: HashMap<NodeId, Vec<DataAddr>>,
    /// Boxed: compiled code holds their addresses, which must not move as the list grows.
    #[allow(clippy::vec_box)]
    pub reference_nodes: Vec<Box<reference::ReferenceNode>>,
    /// Depthwise nodes whose kernel computes their producer (a convolution) too (`consumer →
    /// producer`); the producers get no kernel of their own.
    pub fused: HashMap<NodeId, NodeId>,
    /// Head transposes the attention kernels read or write in place, and how
    /// (`kernel_plan::folded_head_transposes`).
    pub folded: HashMap<NodeId, crate::kernel_plan::HeadFold>,
}

/// The memory plan `compile` makes for `graph` (weights bound) with `options`, without
/// generating code or packing weights: what `nnc summary` reports.
pub fn memory_plan(graph: &Graph, options: &JitOptions) -> Result<MemoryPlan, JitError> {
    Ok(plan_kernels_and_memory(graph, options)?.plan)
}

/// The decisions about pairs of nodes made once every node has its own plan: depthwise
/// convolutions whose kernel computes their producer too (`consumer → producer`,
/// `kernel_plan::fused_producers`), and the head transposes the attention kernels read or
/// write in place (`kernel_plan::folded_head_transposes`).
fn pair_decisions(graph: &Graph, plans: &HashMap<NodeId, KernelPlan>, options: &JitOptions) -> (HashMap<NodeId, NodeId>, HashMap<NodeId, crate::kernel_plan::HeadFold>) {
    let fused = if options.fuse_producers { crate::kernel_plan::fused_producers(graph, plans, &options.target()) } else { HashMap::new() };
    (fused, crate::kernel_plan::folded_head_transposes(graph, plans))
}

/// What `compile` decides about pairs of nodes, as a note per node for `--emit ir` (whose
/// nodes record one kernel each): empty where the graph has no plan (unknown kernels).
pub fn pair_notes(graph: &Graph, options: &JitOptions) -> HashMap<NodeId, String> {
    let mut notes = HashMap::new();
    let Ok(plans) = plans(graph, &options.target()) else { return notes };
    let (fused, folded) = pair_decisions(graph, &plans, options);
    let name = |id: NodeId| graph.node(id).name.clone();
    for (consumer, producer) in fused {
        notes.insert(producer, format!("no kernel of its own: %{}'s kernel computes it, a window of rows at a time", name(consumer)));
        notes.insert(consumer, format!("also computes %{}, keeping only a window of its rows", name(producer)));
    }
    let is_attention = |id: NodeId| matches!(graph.node(id).op(), Some(crate::ops::Op::Attention(_)));
    for (t, fold) in folded {
        let operand = graph.operands(t)[0];
        let note = if fold == crate::kernel_plan::HeadFold::Merge {
            format!("no kernel: %{} writes its heads here in place", name(operand))
        } else {
            let mut readers: Vec<String> = graph.users(t).into_iter().filter(|&(u, _)| is_attention(u)).map(|(u, _)| format!("%{}", name(u))).collect();
            readers.dedup();
            format!("no kernel: {} reads the heads in place", readers.join(", "))
        };
        notes.insert(t, note);
    }
    notes
}

/// What [`prepare`] decides before it packs weights.
struct Planned {
    schedule: Vec<NodeId>,
    plans: HashMap<NodeId, KernelPlan>,
    plan: MemoryPlan,
    fused: HashMap<NodeId, NodeId>,
    folded: HashMap<NodeId, crate::kernel_plan::HeadFold>,
}

fn plan_kernels_and_memory(graph: &Graph, options: &JitOptions) -> Result<Planned, JitError> {
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
    }
    let target = options.target();
    let mut plans = plans(graph, &target)?;
    let (fused, folded) = pair_decisions(graph, &plans, options);
    // A folded transpose has no kernel and its operand's memory. (A transpose's loop kernel
    // neither splits nor takes scratch, so only the kernel changes.)
    for t in folded.keys() {
        if let Some(p) = plans.get_mut(t) {
            p.kernel = Kernel::View;
        }
    }
    let mut fusions = memplan::Fusions::of(graph, &fused, options.threads);
    fusions.views.extend(folded.keys().copied());
    let plan: MemoryPlan = memplan::plan(graph, &schedule, &|id| plans.get(&id).map_or(0, |p| p.scratch_bytes), &fusions, options.outputs_in_place);
    Ok(Planned { schedule, plans, plan, fused, folded })
}

pub(crate) fn prepare(graph: &Graph, options: &JitOptions) -> Result<Prepared, JitError> {
    prepare_planned(graph, plan_kernels_and_memory(graph, options)?, true)
}

/// [`prepare`] from its plans. With `own_originals`, every graph constant is copied into the
/// executable's storage; without, each is addressed where `graph` holds it and its storage
/// left empty (addresses valid only while `graph` lives: for a dry run of code generation,
/// see [`compile_with_listing`]). Packed buffers are always owned.
fn prepare_planned(graph: &Graph, planned: Planned, own_originals: bool) -> Result<Prepared, JitError> {
    use std::borrow::Cow;
    let Planned { schedule, plans, plan, fused, folded } = planned;
    let values: Vec<Cow<[f32]>> = plan.consts.iter().map(|&id| match &graph.node(id).kind {
        NodeKind::Const(t) => match t.data() {
            nnc_runtime::tensor::Data::F32(v) => Cow::Borrowed(&v[..]),
            _ => Cow::Owned(executable::const_storage(t)),
        },
        NodeKind::Input { .. } | NodeKind::Param | NodeKind::Op(_) => unreachable!("the plan lists constants only"),
    }).collect();
    let packed = prepack::prepack_weights(graph, &plans, &plan, &values.iter().map(|v| &v[..]).collect::<Vec<_>>());
    let mut consts = Vec::with_capacity(values.len());
    let mut const_addrs = Vec::with_capacity(values.len());
    for v in values {
        // A heap buffer does not move when its owner is moved, so each address is final.
        let (at, storage) = match v {
            Cow::Borrowed(b) if !own_originals => (b.as_ptr(), Floats::new()),
            v => {
                let o = Floats::lines_copy_of(&v);
                (o.as_ptr(), o)
            }
        };
        const_addrs.push(DataAddr(at as u64));
        consts.push(storage);
    }
    let mut prepacked: HashMap<NodeId, Vec<DataAddr>> = HashMap::new();
    for (id, buffers) in packed {
        let addrs: Vec<DataAddr> = buffers.iter().map(|b| DataAddr(b.as_ptr() as u64)).collect();
        const_addrs.extend(addrs.iter().copied());
        consts.extend(buffers);
        prepacked.insert(id, addrs);
    }
    // Reference kernels get their node's description; its address is stable in a Box.
    let mut reference_nodes = Vec::new();
    for &id in &schedule {
        if plans.get(&id).is_some_and(|p| p.prepack == crate::kernel_plan::Prepack::ReferenceNode) {
            debug_assert!(own_originals, "reference kernels address their operands at run time");
            let node = Box::new(reference::ReferenceNode::new(graph, id, &plan, &const_addrs));
            prepacked.insert(id, vec![DataAddr(&*node as *const reference::ReferenceNode as u64)]);
            reference_nodes.push(node);
        }
    }
    Ok(Prepared { schedule, plans, plan, consts, const_addrs, prepacked, reference_nodes, fused, folded })
}

/// Graph constants totalling fewer bytes than this are all copied into the executable; above
/// it, a dry run of code generation finds the ones kernels read (ResNet-18: 44.6 MB of
/// weights, of which kernels read only the biases, the rest through packed copies; copying
/// them took 27 of its 80 ms of compile time, the dry run about 5).
const DRY_RUN_MIN_BYTES: usize = 4 << 20;

/// Give the originals (graph constants) that code was given an address in, and those that
/// are graph outputs, storage of their own, and their final addresses; `requested` sorted.
fn own_requested_originals(graph: &Graph, p: &mut Prepared, requested: &[u64]) {
    for (c, &id) in p.plan.consts.iter().enumerate() {
        let (start, len) = (p.const_addrs[c].0, 4 * graph.node(id).ty.numel() as u64);
        let asked = requested.get(requested.partition_point(|&a| a < start)).is_some_and(|&a| a <= start + len);
        if (asked || graph.is_output(id)) && p.consts[c].is_empty() && len > 0 {
            let NodeKind::Const(t) = &graph.node(id).kind else { unreachable!("the plan lists constants only") };
            p.consts[c] = executable::const_floats(t);
            p.const_addrs[c] = DataAddr(p.consts[c].as_ptr() as u64);
        }
    }
}

/// The namespace `cranelift-module` gives data objects in external names.
const DATA_NAMESPACE: u32 = 1;

/// Constants in an object file: each buffer's data object and its bytes `[start, end)` in
/// this process, and the data objects compiled code refers to (filled by [`define_kernels`]).
pub(crate) struct ObjectData<'d> {
    pub buffers: &'d [(cranelift_module::DataId, u64, u64)],
    pub used: &'d mut std::collections::HashSet<u32>,
}

/// One kernel function defined in a module: the node it computes, and whether it was split
/// into tasks (`fn(arena, task, tasks)` rather than `fn(arena)`).
pub(crate) struct DefinedKernel {
    pub func: cranelift_module::FuncId,
    pub node: NodeId,
    pub split: bool,
    /// Outputs the kernel computes (for how finely a split kernel is cut).
    pub outputs: usize,
    /// The constant addresses its code was given (`KernelBuilder::data_requested`).
    pub data: Vec<u64>,
}

/// Define one function per op that runs code, in schedule order, in `module`. With
/// `object_data` (an object file), constants are addressed through their data symbols, and
/// the symbols the compiled code refers to are added to its set;
/// otherwise by their addresses in this process.
pub(crate) fn define_kernels<M: Module>(module: &mut M, graph: &Graph, options: &JitOptions, prepared: &Prepared, mut object_data: Option<ObjectData>, listing: &mut Listing) -> Result<Vec<DefinedKernel>, JitError> {
    let ptr = module.target_config().pointer_type();
    let imports = abi::Imports::declare(module)?;
    let frontend_config = module.target_config();
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    let mut defined = Vec::new();
    let plan = &prepared.plan;
    let producers: std::collections::HashSet<NodeId> = prepared.fused.values().copied().collect();
    for (index, &id) in prepared.schedule.iter().enumerate() {
        let node = graph.node(id);
        let (Some(op), Some(kp)) = (node.op(), prepared.plans.get(&id)) else { continue };
        if kp.kernel == Kernel::View || producers.contains(&id) {
            continue;
        }
        let producer = prepared.fused.get(&id).copied();
        // A fused pair's runtime kernel splits its rows across threads itself.
        let min = if kp.kernel == Kernel::VectorDepthwise && options.ukernels { DEPTHWISE_SPLIT_MIN_ELEMENTS } else { SPLIT_MIN_ELEMENTS };
        let split = options.threads > 1 && node.ty.numel() >= min && kp.splits && producer.is_none();
        ctx.func.signature.params.push(AbiParam::new(ptr));
        if split {
            ctx.func.signature.params.extend([AbiParam::new(ptr), AbiParam::new(ptr)]);
        }
        ctx.func.name = UserFuncName::user(0, index as u32);
        let data;
        {
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            b.seal_block(entry);
            let params = b.block_params(entry).to_vec();
            let arena = params[0];
            let fns = imports.in_function(module, b.func);
            let spans: Option<Vec<builder::DataSpan>> = object_data.as_ref().map(|o| {
                o.buffers.iter().map(|&(id, start, end)| builder::DataSpan { start, end, symbol: module.declare_data_in_func(id, b.func) }).collect()
            });
            let runtime = options.ukernels.then_some(fns);
            // A fused pair's producer is packed for its own blocking.
            let tile = producer.map_or(kp.tile, |p| prepared.plans[&p].tile);
            let mut k = builder::KernelBuilder::new(b, arena, &prepared.const_addrs, runtime, tile);
            k.object_data = spans.as_deref();
            k.reference_fn = Some(fns.reference);
            k.prepacked = prepared.prepacked.get(&id).cloned().unwrap_or_default();
            k.threads = options.threads.max(1) as i64;
            k.bf16 = kp.bf16;
            if matches!(op, crate::ops::Op::Attention(_)) {
                k.attention_heads = crate::kernel_plan::attention_heads(graph, &prepared.folded, id).map(|h| h as i64);
            }
            if split {
                k.task = Some((params[1], params[2]));
            }
            let operands = graph.operands(id);
            let args: Vec<epilogue::Arg> = operands.iter().map(|o| epilogue::Arg { loc: plan.locs[o], ty: &graph.node(*o).ty }).collect();
            let out = epilogue::Arg { loc: plan.locs[&id], ty: &node.ty };
            match producer {
                Some(p) => {
                    let pnode = graph.node(p);
                    let pargs: Vec<epilogue::Arg> = graph.operands(p).iter().map(|o| epilogue::Arg { loc: plan.locs[o], ty: &graph.node(*o).ty }).collect();
                    let packed = |n: NodeId| prepared.prepacked[&n][0];
                    let producer = lower::channels::FusedConv { op: pnode.op().expect("a producer is an op"), args: &pargs, out: epilogue::Arg { loc: plan.locs[&p], ty: &pnode.ty }, packed: packed(p) };
                    let depthwise = lower::channels::FusedConv { op, args: &args, out, packed: packed(id) };
                    let ring_floats = crate::kernel_plan::ring_floats(graph, id, options.threads);
                    lower::channels::conv_depthwise(&mut k, &producer, &depthwise, ring_floats);
                }
                None => lower::lower(&mut k, kp, op, &args, out, plan.scratch.get(&id).copied()),
            }
            k.b.ins().return_(&[]);
            data = std::mem::take(&mut k.data_requested);
            k.b.finalize(frontend_config);
        }
        let codegen_err = |e: String| JitError::Codegen { node: node.name.clone(), message: e };
        let header = format!("; kernel k{index}: %{} = {} : {} (kernel=\"{}\")\n", node.name, op.label(), node.ty, kp.kernel);
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
        if let Some(o) = object_data.as_mut() {
            // The data symbols the code still refers to after optimization (an operand whose
            // packed copy is what the kernel reads leaves no relocation).
            if let Some(code) = ctx.compiled_code() {
                for reloc in code.buffer.relocs() {
                    if let cranelift_codegen::FinalizedRelocTarget::ExternalName(cranelift_codegen::ir::ExternalName::User(name)) = &reloc.target {
                        let name = &ctx.func.params.user_named_funcs()[*name];
                        if name.namespace == DATA_NAMESPACE {
                            o.used.insert(name.index);
                        }
                    }
                }
            }
        }
        module.clear_context(&mut ctx);
        defined.push(DefinedKernel { func: fid, node: id, split, outputs: node.ty.numel(), data });
    }
    Ok(defined)
}

/// Check that every address a kernel was given lies in (or one past the end of) a constant
/// buffer the executable owns, and free the buffers none lies in: a weight whose kernel
/// reads only its packed copy (every convolution through the GEMM or Winograd, dense layers
/// through the GEMM) is not needed once packing is done (the object writer leaves the same
/// buffers empty, `jit::aot`). Kept besides: constant outputs (copied out by the run), and
/// every buffer when reference kernels run (they address their operands themselves).
/// Returns an address outside every buffer, which would make the code read memory the
/// executable does not hold.
fn keep_read_constants(consts: &mut [Floats], defined: &[DefinedKernel], graph: &Graph, plan: &MemoryPlan, reference_kernels: bool) -> Result<(), u64> {
    let mut spans: Vec<(u64, u64, usize)> = consts.iter().enumerate().map(|(i, c)| (c.as_ptr() as u64, c.as_ptr() as u64 + 4 * c.len() as u64, i)).collect();
    spans.sort_unstable();
    let mut read = vec![false; consts.len()];
    for &a in defined.iter().flat_map(|d| &d.data) {
        // The last buffer starting at or before `a`, and any ending exactly at `a`.
        let at = spans.partition_point(|s| s.0 <= a);
        let mut held = false;
        for s in spans[at.saturating_sub(2)..at].iter().filter(|s| s.0 <= a && a <= s.1) {
            read[s.2] = true;
            held = true;
        }
        if !held {
            return Err(a);
        }
    }
    if reference_kernels {
        return Ok(());
    }
    for (_, id) in &graph.outputs {
        if let memplan::Loc::Const(c) = plan.locs[id] {
            read[c] = true;
        }
    }
    for (c, read) in consts.iter_mut().zip(read) {
        if !read {
            *c = Floats::new();
        }
    }
    Ok(())
}

/// [`compile`], appending the Cranelift IR and/or machine code of every kernel to `listing`.
pub fn compile_with_listing(graph: &Graph, options: &JitOptions, listing: &mut Listing) -> Result<Executable, JitError> {
    let planned = plan_kernels_and_memory(graph, options)?;
    let references = planned.plans.values().any(|p| p.prepack == crate::kernel_plan::Prepack::ReferenceNode);
    let original_bytes: usize = planned.plan.consts.iter().map(|&id| 4 * graph.node(id).ty.numel()).sum();
    let mut prepared = if references || original_bytes < DRY_RUN_MIN_BYTES {
        prepare_planned(graph, planned, true)?
    } else {
        // Generate the code once with the originals where the graph holds them, to learn
        // which ones kernels read; copy only those, then generate it for real.
        let mut p = prepare_planned(graph, planned, false)?;
        let mut scratch = host_module()?;
        let dry = define_kernels(&mut scratch, graph, options, &p, None, &mut Listing::default());
        // SAFETY: no function of the scratch module was finalized or called.
        unsafe { scratch.free_memory() };
        let mut requested: Vec<u64> = dry?.into_iter().flat_map(|d| d.data).collect();
        requested.sort_unstable();
        own_requested_originals(graph, &mut p, &requested);
        p
    };
    let mut module = host_module()?;
    let defined = define_kernels(&mut module, graph, options, &prepared, None, listing)?;
    // Every address a kernel was given must lie in storage the executable owns (the dry run
    // found them all): otherwise refuse the code rather than let it read freed memory.
    if let Err(a) = keep_read_constants(&mut prepared.consts, &defined, graph, &prepared.plan, references) {
        // SAFETY: none of the module's code was finalized or called.
        unsafe { module.free_memory() };
        return Err(JitError::Codegen { node: graph.name.clone(), message: format!("a kernel reads constant data at {a:#x} the executable does not hold") });
    }
    module.finalize_definitions().map_err(|e| JitError::Codegen { node: graph.name.clone(), message: e.to_string() })?;
    let threads = options.threads.max(1);
    let plan = &prepared.plan;
    let kernels = defined
        .iter()
        .map(|d| {
            let code = module.get_finalized_function(d.func);
            // SAFETY: each kernel was declared with the signature its variant names:
            // `fn(arena)`, or `fn(arena, task, tasks)` when split.
            unsafe {
                if d.split {
                    // Tasks of at least `SPLIT_MIN_ELEMENTS` outputs, several per thread.
                    let tasks = threads * (d.outputs / SPLIT_MIN_ELEMENTS).clamp(1, nnc_runtime::pool::TASKS_PER_THREAD);
                    Compiled::Split { f: std::mem::transmute::<*const u8, TaskFn>(code), threads, tasks }
                } else {
                    Compiled::Whole(std::mem::transmute::<*const u8, KernelFn>(code))
                }
            }
        })
        .collect();
    // A fused pair's kernel is labelled with both ops: `conv2d+relu6 > conv2d+relu6`.
    let label = |id: NodeId| graph.node(id).op().map(|op| op.label()).unwrap_or_default();
    let kernel_names = defined
        .iter()
        .map(|d| {
            let op = match prepared.fused.get(&d.node) {
                Some(&producer) => format!("{} > {}", label(producer), label(d.node)),
                None => label(d.node),
            };
            (graph.node(d.node).name.clone(), op)
        })
        .collect();
    // Kernels compute f16/bf16 results in f32; the executable rounds them after the kernel.
    let rounding = defined.iter().map(|d| match (graph.node(d.node).ty.dtype, plan.locs[&d.node]) {
        (nnc_runtime::DType::F16 | nnc_runtime::DType::BF16, memplan::Loc::Arena(off)) => Some((off, graph.node(d.node).ty.numel(), graph.node(d.node).ty.dtype)),
        _ => None,
    }).collect();
    let Prepared { consts, reference_nodes, .. } = prepared;
    let binding = |id: NodeId, name: &str| Binding { name: name.to_string(), loc: plan.locs[&id], dtype: graph.node(id).ty.dtype, shape: graph.node(id).ty.shape.clone() };
    Ok(Executable {
        module: Some(module),
        kernels,
        rounding,
        kernel_names,
        consts,
        arena_bytes: plan.arena_bytes,
        lower_bound_bytes: plan.lower_bound_bytes,
        threads,
        inputs: graph.inputs.iter().map(|&i| binding(i, &graph.node(i).name)).collect(),
        outputs: graph.outputs.iter().map(|(name, id)| binding(*id, name)).collect(),
        reference_nodes,
    })
}
