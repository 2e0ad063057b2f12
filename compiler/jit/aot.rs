//! Ahead-of-time compilation (`nnc compile --emit obj|lib|header`): the JIT's kernels written
//! into an ELF object with `cranelift-object` instead of this process's memory, the weights
//! as read-only data objects (one per buffer; those no code reads after packing, empty), and
//! two C entry points; with the runtime's kernels
//! (`runtime/clib`, built by `build.rs`) it makes a static library a C program links with
//! `cc main.c libM.a -lm -lpthread`.
//!
//! The kernels are the JIT's own (`jit::define_kernels`, same plans, same lowering); only
//! the addressing differs: constants are their data symbols plus an offset
//! (position-independent code) rather than absolute addresses. So the library computes what `nnc run --backend jit`
//! computes, bit for bit, on the same machine: like the JIT it targets the compiling CPU's
//! features (AVX-512 where present), and the library is for that CPU class.

use super::memplan::Loc;
use super::{define_kernels, prepare, JitError, JitOptions, Listing, ObjectData};
use crate::ir::{Graph, NodeId};
use crate::kernel_plan::Prepack;
use cranelift_codegen::ir::{types, AbiParam, InstBuilder, MemFlagsData as MemFlags, UserFuncName};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_module::{DataDescription, Linkage, Module};
use cranelift_object::{ObjectBuilder, ObjectModule};
use nnc_runtime::DType;

/// Constant buffers' data objects are aligned to this (packed panels are
/// read with 64-byte vectors).
const DATA_ALIGN: usize = 64;

/// The runtime kernels as a static library, built by `build.rs` from `runtime/clib`.
#[cfg(nnc_runtime_library)]
const RUNTIME_LIBRARY: Result<&[u8], &str> = Ok(include_bytes!(concat!(env!("OUT_DIR"), "/libnnc_runtime.a")));
#[cfg(not(nnc_runtime_library))]
const RUNTIME_LIBRARY: Result<&[u8], &str> = Err(env!("NNC_RUNTIME_LIBRARY_MISSING"));

/// The C names of a model's entry points and header constants.
struct CNames {
    model: String,
}

impl CNames {
    fn new(graph: &Graph) -> CNames {
        CNames { model: c_identifier(&graph.name) }
    }
    fn run(&self) -> String {
        format!("nnc_{}_run", self.model)
    }
    fn workspace_size(&self) -> String {
        format!("nnc_{}_workspace_size", self.model)
    }
    fn constant(&self, index: usize) -> String {
        format!("nnc_{}_c{index}", self.model)
    }
}

/// `name` with every character C does not allow in an identifier made `_`.
fn c_identifier(name: &str) -> String {
    let mut s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) || s.is_empty() {
        s.insert(0, '_');
    }
    s
}

/// The model's object alone (`--emit obj`): its kernels, its constants and the entry points
/// `nnc_<model>_workspace_size` and `nnc_<model>_run`; the runtime functions it calls
/// (`nnc_gemm`, ...) are left undefined, for the library to provide.
pub fn object(graph: &Graph, options: &JitOptions) -> Result<Vec<u8>, JitError> {
    // One thread: the library has no worker pool, and every thread count computes the same
    // values anyway.
    let options = JitOptions { threads: 1, outputs_in_place: false, ..*options };
    check_interface(graph)?;
    let prepared = prepare(graph, &options)?;
    if let Some((&id, _)) = prepared.plans.iter().find(|(_, p)| p.prepack == Prepack::ReferenceNode) {
        return Err(JitError::NotAheadOfTime(format!("`{}` runs on the interpreter's reference kernel, which exists only inside nnc", graph.node(id).name)));
    }
    let names = CNames::new(graph);
    let mut module = object_module(&names.model)?;
    let codegen = |e: cranelift_module::ModuleError| JitError::Codegen { node: graph.name.clone(), message: e.to_string() };

    // One read-only data object per constant buffer; after code generation, those no code
    // refers to (weights whose packed copies are what the kernels read) are left empty.
    let mut buffers = Vec::with_capacity(prepared.consts.len());
    for (i, c) in prepared.consts.iter().enumerate() {
        let id = module.declare_data(&names.constant(i), Linkage::Local, false, false).map_err(codegen)?;
        let start = c.as_ptr() as u64;
        buffers.push((id, start, start + 4 * c.len() as u64));
    }
    let mut used = std::collections::HashSet::new();
    let kernels = define_kernels(&mut module, graph, &options, &prepared, Some(ObjectData { buffers: &buffers, used: &mut used }), &mut Listing::default())?;
    debug_assert!(kernels.iter().all(|k| !k.split), "one thread never splits");
    let arena_bytes = prepared.plan.arena_bytes;
    let locs: Vec<(Loc, usize)> = graph.inputs.iter().map(|&i| io_slot(graph, &prepared.plan, i)).collect();
    let outs: Vec<(Loc, usize)> = graph.outputs.iter().map(|(_, o)| io_slot(graph, &prepared.plan, *o)).collect();
    let ptr = module.target_config().pointer_type();
    let config = module.target_config();
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();

    // size_t nnc_M_workspace_size(void): the arena and room to align it to 64 bytes.
    ctx.func.signature.returns.push(AbiParam::new(ptr));
    ctx.func.name = UserFuncName::user(1, 0);
    {
        let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let entry = b.create_block();
        b.switch_to_block(entry);
        b.seal_block(entry);
        let size = b.ins().iconst(ptr, (arena_bytes.max(1) + DATA_ALIGN - 1) as i64);
        b.ins().return_(&[size]);
        b.finalize(config);
    }
    let f = module.declare_function(&names.workspace_size(), Linkage::Export, &ctx.func.signature).map_err(codegen)?;
    module.define_function(f, &mut ctx).map_err(codegen)?;
    module.clear_context(&mut ctx);

    let mut sig = module.make_signature();
    sig.returns.push(AbiParam::new(types::I64));
    let cpu_features = module.declare_function("nnc_cpu_features", Linkage::Import, &sig).map_err(codegen)?;

    // int nnc_M_run(void *workspace, const float *const *inputs, float *const *outputs)
    ctx.func.signature.params.extend([AbiParam::new(ptr), AbiParam::new(ptr), AbiParam::new(ptr)]);
    ctx.func.signature.returns.push(AbiParam::new(types::I32));
    ctx.func.name = UserFuncName::user(1, 1);
    {
        let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
        let entry = b.create_block();
        let (fail, work) = (b.create_block(), b.create_block());
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        b.seal_block(entry);
        let [ws, inputs, outputs] = b.block_params(entry).try_into().expect("three parameters");
        // A null workspace or pointer array is refused rather than dereferenced.
        let zero = b.ins().iconst(ptr, 0);
        let any_null = [ws, inputs, outputs].into_iter().fold(None, |acc, p| {
            let null = b.ins().icmp(cranelift_codegen::ir::condcodes::IntCC::Equal, p, zero);
            Some(match acc {
                None => null,
                Some(a) => b.ins().bor(a, null),
            })
        });
        let check_cpu = b.create_block();
        b.ins().brif(any_null.expect("three checks"), fail, &[], check_cpu, &[]);
        // Sealed at the end: the array pointers' checks branch here too.
        b.switch_to_block(fail);
        let one = b.ins().iconst(types::I32, 1);
        b.ins().return_(&[one]);

        // The code and its packed weights are for the compiling CPU's features.
        b.switch_to_block(check_cpu);
        b.seal_block(check_cpu);
        let features = module.declare_func_in_func(cpu_features, b.func);
        let call = b.ins().call(features, &[]);
        let have = b.inst_results(call)[0];
        let other_cpu = b.ins().icmp_imm_s(cranelift_codegen::ir::condcodes::IntCC::NotEqual, have, nnc_runtime::cpu::features() as i64);
        let wrong_cpu = b.create_block();
        b.ins().brif(other_cpu, wrong_cpu, &[], work, &[]);
        b.switch_to_block(wrong_cpu);
        b.seal_block(wrong_cpu);
        let two = b.ins().iconst(types::I32, 2);
        b.ins().return_(&[two]);

        b.switch_to_block(work);
        b.seal_block(work);
        let bumped = b.ins().iadd_imm_s(ws, DATA_ALIGN as i64 - 1);
        let arena = b.ins().band_imm_s(bumped, -(DATA_ALIGN as i64));
        let flags = MemFlags::new().with_notrap();
        // Outputs that are constants are copied from their data objects.
        let mut constant_outputs = std::collections::HashMap::new();
        for &(loc, _) in &outs {
            if let Loc::Const(c) = loc {
                used.insert(buffers[c].0.as_u32());
                constant_outputs.insert(c, module.declare_data_in_func(buffers[c].0, b.func));
            }
        }
        let addr = |b: &mut FunctionBuilder, loc: Loc| match loc {
            Loc::Arena(off) => b.ins().iadd_imm_s(arena, off as i64),
            Loc::Const(c) => b.ins().symbol_value(ptr, constant_outputs[&c]),
            // An output that is a view of an input: the input's own memory.
            Loc::Input(slot) => {
                let at = b.ins().iadd_imm_s(arena, slot as i64);
                b.ins().load(ptr, flags, at, 0)
            }
            Loc::Output(_) => unreachable!("libraries are planned with outputs in the arena"),
        };
        // Every array pointer is checked before anything is written.
        let mut pointers = Vec::new();
        for (list, count) in [(inputs, locs.len()), (outputs, outs.len())] {
            let loaded: Vec<_> = (0..count).map(|i| b.ins().load(ptr, flags, list, 8 * i as i32)).collect();
            for &p in &loaded {
                let null = b.ins().icmp(cranelift_codegen::ir::condcodes::IntCC::Equal, p, zero);
                let next = b.create_block();
                b.ins().brif(null, fail, &[], next, &[]);
                b.switch_to_block(next);
                b.seal_block(next);
            }
            pointers.push(loaded);
        }
        let [input_ptrs, output_ptrs]: [Vec<_>; 2] = pointers.try_into().expect("inputs and outputs");
        for (&(loc, bytes), &src) in locs.iter().zip(&input_ptrs) {
            if let Loc::Input(slot) = loc {
                // Read where the caller keeps it (no kernel writes a bound input).
                let at = b.ins().iadd_imm_s(arena, slot as i64);
                b.ins().store(flags, src, at, 0);
                continue;
            }
            let dst = addr(&mut b, loc);
            let n = b.ins().iconst(ptr, bytes as i64);
            b.call_memcpy(config, dst, src, n);
        }
        for k in &kernels {
            let f = module.declare_func_in_func(k.func, b.func);
            b.ins().call(f, &[arena]);
        }
        for (&(loc, bytes), &dst) in outs.iter().zip(&output_ptrs) {
            let src = addr(&mut b, loc);
            let n = b.ins().iconst(ptr, bytes as i64);
            b.call_memcpy(config, dst, src, n);
        }
        let ok = b.ins().iconst(types::I32, 0);
        b.ins().return_(&[ok]);
        b.seal_block(fail);
        b.finalize(config);
    }
    for ((id, ..), c) in buffers.iter().zip(&prepared.consts) {
        let mut desc = DataDescription::new();
        if used.contains(&id.as_u32()) {
            desc.define(c.iter().flat_map(|v| v.to_le_bytes()).collect());
        } else {
            desc.define_zeroinit(1);
        }
        desc.set_align(DATA_ALIGN as u64);
        module.define_data(*id, &desc).map_err(codegen)?;
    }
    let f = module.declare_function(&names.run(), Linkage::Export, &ctx.func.signature).map_err(codegen)?;
    module.define_function(f, &mut ctx).map_err(|e| JitError::Codegen { node: names.run(), message: format!("{e:?}") })?;
    module.clear_context(&mut ctx);
    module.finish().emit().map_err(|e| JitError::Codegen { node: graph.name.clone(), message: e.to_string() })
}

/// A model input's or output's place and size in bytes.
fn io_slot(graph: &Graph, plan: &super::memplan::MemoryPlan, id: NodeId) -> (Loc, usize) {
    (plan.locs[&id], 4 * graph.node(id).ty.numel())
}

/// The C interface passes f32 arrays; every value a kernel writes must be one the kernel
/// computes exactly (the JIT rounds f16/bf16 results in Rust after the kernel).
fn check_interface(graph: &Graph) -> Result<(), JitError> {
    for &i in &graph.inputs {
        let n = graph.node(i);
        if n.ty.dtype != DType::F32 {
            return Err(JitError::NotAheadOfTime(format!("input `{}` is {}; the C interface takes f32 arrays", n.name, n.ty.dtype)));
        }
    }
    for (name, o) in &graph.outputs {
        let ty = &graph.node(*o).ty;
        if ty.dtype != DType::F32 {
            return Err(JitError::NotAheadOfTime(format!("output `{name}` is {}; the C interface returns f32 arrays", ty.dtype)));
        }
    }
    for id in graph.node_ids() {
        let n = graph.node(id);
        if n.op().is_some() && matches!(n.ty.dtype, DType::F16 | DType::BF16) {
            return Err(JitError::NotAheadOfTime(format!("`{}` is {}; the library computes f32 and int8 values (bf16 weights in products are fine: use --quantize bf16 without bf16 values)", n.name, n.ty.dtype)));
        }
    }
    Ok(())
}

fn object_module(model: &str) -> Result<ObjectModule, JitError> {
    let host = |e: String| JitError::Host(e);
    let mut flags = settings::builder();
    flags.set("opt_level", "speed").map_err(|e| host(e.to_string()))?;
    // Position-independent, so the library links into PIE executables (the default).
    flags.set("is_pic", "true").map_err(|e| host(e.to_string()))?;
    let isa = cranelift_native::builder().map_err(|e| host(e.to_string()))?.finish(settings::Flags::new(flags)).map_err(|e| host(e.to_string()))?;
    let builder = ObjectBuilder::new(isa, format!("nnc_{model}"), cranelift_module::default_libcall_names()).map_err(|e| host(e.to_string()))?;
    Ok(ObjectModule::new(builder))
}

/// The static library (`--emit lib`): the model's object and every member of the runtime's
/// kernel library, with one symbol index over all of them.
pub fn library(graph: &Graph, options: &JitOptions) -> Result<Vec<u8>, JitError> {
    let runtime = RUNTIME_LIBRARY.map_err(|why| JitError::NotAheadOfTime(format!("this nnc was built without the runtime library that --emit lib needs ({why}); --emit obj still works")))?;
    let model = object(graph, options)?;
    let archive = object::read::archive::ArchiveFile::parse(runtime).map_err(|e| JitError::Host(format!("the embedded runtime library is unreadable: {e}")))?;
    let reader = &ar_archive_writer::DEFAULT_OBJECT_READER;
    let mut members = vec![ar_archive_writer::NewArchiveMember::new(model, reader, format!("nnc_{}.o", c_identifier(&graph.name)))];
    for member in archive.members() {
        let member = member.map_err(|e| JitError::Host(format!("the embedded runtime library is unreadable: {e}")))?;
        let name = String::from_utf8_lossy(member.name()).into_owned();
        let data = member.data(runtime).map_err(|e| JitError::Host(format!("the embedded runtime library is unreadable: {e}")))?;
        members.push(ar_archive_writer::NewArchiveMember::new(data, reader, name));
    }
    let mut out = std::io::Cursor::new(Vec::new());
    ar_archive_writer::write_archive_to_stream(&mut out, &members, ar_archive_writer::ArchiveKind::Gnu, false, None).map_err(|e| JitError::Host(format!("writing the archive: {e}")))?;
    Ok(out.into_inner())
}

/// The C header (`--emit header`): the two entry points, and every input's and output's index,
/// name, rank, shape (an initializer list) and element count as macros, which unlike static
/// constants cost nothing and warn about nothing when a program leaves them unused.
pub fn header(graph: &Graph) -> Result<String, JitError> {
    // Macro names are upper case: two names that differ only in case (or in characters C
    // lacks) would define one macro twice.
    for (kind, names) in [("inputs", graph.inputs.iter().map(|&i| graph.node(i).name.clone()).collect::<Vec<_>>()), ("outputs", graph.outputs.iter().map(|(n, _)| n.clone()).collect())] {
        for (i, a) in names.iter().enumerate() {
            if let Some(b) = names[..i].iter().find(|b| c_identifier(b).eq_ignore_ascii_case(&c_identifier(a))) {
                return Err(JitError::NotAheadOfTime(format!("{kind} `{b}` and `{a}` would have the same C name; rename one")));
            }
        }
    }
    let names = CNames::new(graph);
    let m = &names.model;
    let guard = format!("NNC_{}_H", m.to_ascii_uppercase());
    let mut h = String::new();
    h.push_str(&format!("/* The model `{}`, compiled ahead of time by nnc for CPUs with: {}.\n * Link with:\n *   cc main.c lib{}.a -lm -lpthread\n */\n", graph.name, nnc_runtime::cpu::describe(nnc_runtime::cpu::features()), graph.name));
    h.push_str(&format!("#ifndef {guard}\n#define {guard}\n\n#include <stddef.h>\n\n#ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n"));
    h.push_str("/* Bytes of working memory one run needs; any alignment (the run aligns it). One\n * workspace per concurrent run. */\n");
    h.push_str(&format!("size_t {}(void);\n\n", names.workspace_size()));
    h.push_str("/* Run the model: inputs and outputs are C-contiguous f32 arrays in declaration order,\n * shaped as below. Returns 0 on success, 1 if a pointer (an argument, or one of the
 * arrays it lists) is null, 2 if this CPU's features differ from those of the one the library
 * was compiled on (the code and its packed weights are for that CPU). */\n");
    h.push_str(&format!("int {}(void *workspace, const float *const *inputs, float *const *outputs);\n\n", names.run()));
    let mut section = |kind: &str, items: Vec<(String, Vec<usize>)>| {
        let upper = format!("NNC_{}_{}", m.to_ascii_uppercase(), kind.to_ascii_uppercase());
        h.push_str(&format!("#define {upper}S {}\n", items.len()));
        for (i, (name, shape)) in items.iter().enumerate() {
            let c = c_identifier(name);
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            let item = format!("{upper}_{}", c.to_ascii_uppercase());
            h.push_str(&format!("/* {kind} {i}: {name} f32[{}] */\n", dims.join(", ")));
            h.push_str(&format!("#define {item}_INDEX {i}\n"));
            h.push_str(&format!("#define {item}_NAME \"{name}\"\n"));
            h.push_str(&format!("#define {item}_RANK {}\n", shape.len()));
            // A scalar has no shape list (`{}` is not C before C23).
            if !dims.is_empty() {
                h.push_str(&format!("#define {item}_SHAPE {{{}}}\n", dims.join(", ")));
            }
            h.push_str(&format!("#define {item}_SIZE {}\n", shape.iter().product::<usize>()));
        }
        h.push('\n');
    };
    section("input", graph.inputs.iter().map(|&i| (graph.node(i).name.clone(), graph.node(i).ty.shape.clone())).collect());
    section("output", graph.outputs.iter().map(|(n, o)| (n.clone(), graph.node(*o).ty.shape.clone())).collect());
    h.push_str(&format!("#ifdef __cplusplus\n}}\n#endif\n\n#endif /* {guard} */\n"));
    Ok(h)
}
