//! The reference kernel: the interpreter's semantics for one node. The kernel plan chooses
//! it only for float ops inside quantized graphs whose native kernels round differently from
//! the interpreter (SPEC §5 asks for its bits there). Where the runtime carries those
//! semantics (`nnc_runtime::reference`: transcendental activations, layer normalization,
//! softmax, attention, the LSTM; `kernel_plan::RuntimeReference`), the kernel calls the runtime, as the
//! interpreter does; for every other op, generated code calls back into the interpreter
//! (`Op::eval`), which exists only inside nnc. Everything it touches is the node's own
//! operands and result.

use super::builder::KernelBuilder;
use super::epilogue::Arg;
use super::lower::int8::stored_bytes;
use super::memplan::{Loc, MemoryPlan};
use crate::ir::{Graph, NodeId, TensorType};
use crate::kernel_plan::RuntimeReference;
use crate::ops::Op;
use cranelift_codegen::ir::InstBuilder;
use nnc_runtime::Tensor;

/// Where a value lives while the executable runs.
#[derive(Clone, Copy, Debug)]
enum Place {
    /// A byte offset into the arena.
    Arena(usize),
    /// A constant buffer's absolute address.
    Absolute(u64),
    /// A bound input or output: its address is in the arena at this byte offset
    /// (`Loc::Input`, `Loc::Output`).
    Indirect(usize),
}

impl Place {
    /// The value's first byte in a run on `arena`.
    ///
    /// # Safety
    /// `arena` is the running executable's arena, its slots written.
    unsafe fn at(self, arena: *mut u8) -> *mut u8 {
        match self {
            // SAFETY: the plan placed the value inside the arena.
            Place::Arena(off) => unsafe { arena.add(off) },
            Place::Absolute(addr) => addr as *mut u8,
            // SAFETY: the run wrote the value's address into its slot inside the arena.
            Place::Indirect(slot) => unsafe { (arena.add(slot) as *const *mut u8).read_unaligned() },
        }
    }
}

/// One node as the reference kernel runs it: its op, and where its operands and result are.
/// Owned by the executable, which hands its address to the generated code.
#[derive(Debug)]
pub struct ReferenceNode {
    op: Op,
    inputs: Vec<(Place, TensorType)>,
    out: (Place, TensorType),
}

impl ReferenceNode {
    /// Node `id`, placed by `plan`, with constants at `const_addrs`.
    pub fn new(graph: &Graph, id: NodeId, plan: &MemoryPlan, const_addrs: &[super::builder::DataAddr]) -> ReferenceNode {
        let place = |loc: Loc| match loc {
            Loc::Arena(off) => Place::Arena(off),
            Loc::Const(c) => Place::Absolute(const_addrs[c].0),
            Loc::Input(slot) | Loc::Output(slot) => Place::Indirect(slot),
        };
        let inputs = graph.operands(id).iter().map(|o| (place(plan.locs[o]), graph.node(*o).ty.clone())).collect();
        let node = graph.node(id);
        ReferenceNode { op: node.op().expect("an op").clone(), inputs, out: (place(plan.locs[&id]), node.ty.clone()) }
    }
}

/// Emit a call to the runtime's definition of `op` (one that
/// `kernel_plan::reference_in_runtime` accepts: a `RuntimeReference`), reading the node's operands where the
/// memory plan put them.
pub fn emit_runtime(k: &mut KernelBuilder, op: &Op, args: &[Arg], out: Arg) {
    let carried = RuntimeReference::of(op).expect("the plan sends only ops the runtime carries here");
    match carried {
        RuntimeReference::Unary(f) => {
            let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
            k.unary_reference(x, o, out.ty.numel() as i64, f);
        }
        RuntimeReference::LayerNorm(ln) => super::lower::norm::layer_norm_runtime(k, ln, args, out, true),
        RuntimeReference::Attention(a) => super::lower::attention::attention_runtime(k, a, args, out, true),
        RuntimeReference::Softmax(sm) => {
            let shape = &args[0].ty.shape;
            let (outer, inner): (usize, usize) = (shape[..sm.axis].iter().product(), shape[sm.axis + 1..].iter().product());
            let (x, o) = (k.ptr(args[0].loc), k.ptr(out.loc));
            k.softmax_reference(x, o, [outer, shape[sm.axis], inner].map(|v| v as i64));
        }
        RuntimeReference::Lstm(l) => {
            let x = &args[0].ty.shape;
            let ptrs: Vec<_> = args.iter().map(|a| k.ptr(a.loc)).collect();
            let biases = (ptrs.len() == 5).then(|| (ptrs[3], ptrs[4]));
            let o = k.ptr(out.loc);
            k.lstm_reference([x[0], x[1], x[2], l.hidden].map(|v| v as i64), ptrs[0], ptrs[1], ptrs[2], biases, o);
        }
    }
}

/// Emit the call `nnc_reference_kernel(node, arena)`.
pub fn emit(k: &mut KernelBuilder, node: crate::jit::builder::DataAddr) {
    let f = k.reference_fn.expect("the reference kernel is always imported");
    // A host pointer: reference kernels run in the JIT only (`jit::aot` refuses them).
    let node = k.int(node.0 as i64);
    let arena = k.arena();
    k.b.ins().call(f, &[node, arena]);
}

/// Run one node through its interpreter semantics on the arena.
///
/// # Safety
/// `node` is a live [`ReferenceNode`] of the executable running, and `arena` its
/// workspace's arena, at least as large as the memory plan says: every operand's and the
/// result's bytes lie inside it (or inside the executable's constant buffers).
pub unsafe extern "C" fn nnc_reference_kernel(node: *const ReferenceNode, arena: *mut u8) {
    // SAFETY: the caller passes a live node.
    let node = unsafe { &*node };
    let read = |place: Place, ty: &TensorType| -> Tensor {
        let bytes = ty.numel() * stored_bytes(ty.dtype);
        // SAFETY: the caller's contract.
        let src = unsafe { place.at(arena) } as *const u8;
        // SAFETY: the value's bytes are where the plan put them.
        let data = unsafe { std::slice::from_raw_parts(src, bytes) };
        super::executable::tensor_from_bytes(ty.dtype, ty.shape.clone(), data)
    };
    let inputs: Vec<Tensor> = node.inputs.iter().map(|(p, ty)| read(*p, ty)).collect();
    let refs: Vec<&Tensor> = inputs.iter().collect();
    let (out, ty) = &node.out;
    let result = node.op.eval(&refs, ty);
    let bytes = super::executable::const_storage(&result);
    let len = ty.numel() * stored_bytes(ty.dtype);
    // SAFETY: the result's `len` bytes lie at its place (inside the arena, or the caller's
    // output buffer); `bytes` holds at least that many (f32 words, the last possibly padded).
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr() as *const u8, out.at(arena), len) };
}
