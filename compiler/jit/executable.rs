//! A compiled model and the memory it runs in: [`Executable`] (immutable, shareable between
//! threads) and [`Workspace`] (one run's activation arena).

use super::memplan::Loc;
use super::JitError;
use crate::ir::ShapeDisplay;
use cranelift_jit::JITModule;
use nnc_runtime::floats::UnwrittenLines;
use nnc_runtime::tensor::Data;
use nnc_runtime::Tensor;

pub(super) type KernelFn = unsafe extern "C" fn(*mut u8);

/// A kernel split into tasks: `f(arena, task, tasks)` computes task `task`'s share.
pub(super) type TaskFn = unsafe extern "C" fn(*mut u8, i64, i64);

/// One op's compiled code.
#[derive(Clone, Copy)]
pub(super) enum Compiled {
    Whole(KernelFn),
    /// Run as `tasks` tasks on up to `threads` threads of the worker pool.
    Split { f: TaskFn, threads: usize, tasks: usize },
}

/// A compiled model: immutable, shareable between threads; each thread runs it with its own
/// [`Workspace`].
pub struct Executable {
    // Kept alive for the code's lifetime; released in `Drop` (a dropped `JITModule` leaks).
    pub(super) module: Option<JITModule>,
    pub(super) kernels: Vec<Compiled>,
    /// Per kernel: the f16/bf16 result it computed in f32, to round in place after it runs
    /// (`(arena offset, elements, dtype)`), so every value is representable in its dtype as
    /// the interpreter's are.
    pub(super) rounding: Vec<Option<(usize, usize, nnc_runtime::DType)>>,
    /// `(node name, op label)` of each kernel, for profiles.
    pub(super) kernel_names: Vec<(String, String)>,
    /// Weight buffers the code reads by absolute address; never mutated after compilation.
    pub(super) consts: Vec<nnc_runtime::floats::Floats>,
    pub(super) arena_bytes: usize,
    pub(super) lower_bound_bytes: usize,
    /// Threads the kernels split across, which also copy large inputs and outputs.
    pub(super) threads: usize,
    pub(super) inputs: Vec<Binding>,
    pub(super) outputs: Vec<Binding>,
    /// The nodes reference kernels run, whose addresses the code holds: kept alive, never
    /// read from Rust. Boxed so those addresses stay put while the list grows.
    #[allow(dead_code, clippy::vec_box)]
    pub(super) reference_nodes: Vec<Box<super::reference::ReferenceNode>>,
}

pub(super) struct Binding {
    pub(super) name: String,
    pub(super) loc: Loc,
    pub(super) dtype: nnc_runtime::DType,
    pub(super) shape: Vec<usize>,
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
    pub(super) arena: Vec<Align64>,
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct Align64([u8; 64]);

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

    /// Bytes of constant data the executable keeps: weights as its kernels read them (packed
    /// where the plan packs them; the originals then freed), biases, scale tables.
    pub fn constant_bytes(&self) -> usize {
        self.consts.iter().map(|c| 4 * c.len()).sum()
    }

    /// Run on `inputs` (declaration order); returns the outputs in declaration order.
    pub fn run(&self, ws: &mut Workspace, inputs: &[Tensor]) -> Result<Vec<Tensor>, JitError> {
        let mut outputs = Vec::new();
        self.run_timed(ws, inputs, &mut outputs, None)?;
        Ok(outputs)
    }

    /// [`Executable::run`], computing the outputs into `outputs` and replacing its contents
    /// with them. A tensor there that an earlier run of this executable returned, at the same
    /// position, lends its memory to the new result, so a loop that runs the model again and
    /// again allocates nothing for its outputs, as ONNX Runtime's I/O binding and OpenVINO's
    /// infer requests do. Any other contents are dropped. On an error `outputs` is unchanged
    /// if the inputs were refused.
    pub fn run_into(&self, ws: &mut Workspace, inputs: &[Tensor], outputs: &mut Vec<Tensor>) -> Result<(), JitError> {
        self.run_timed(ws, inputs, outputs, None)
    }

    /// [`Executable::run_into`], also timing every kernel: `(node, op, seconds)` in run order.
    pub fn run_profiled(&self, ws: &mut Workspace, inputs: &[Tensor], outputs: &mut Vec<Tensor>) -> Result<Vec<(String, String, f64)>, JitError> {
        let mut times = Vec::with_capacity(self.kernels.len());
        self.run_timed(ws, inputs, outputs, Some(&mut times))?;
        Ok(self.kernel_names.iter().zip(times).map(|((n, op), t)| (n.clone(), op.clone(), t)).collect())
    }

    fn run_timed(&self, ws: &mut Workspace, inputs: &[Tensor], outputs: &mut Vec<Tensor>, mut times: Option<&mut Vec<f64>>) -> Result<(), JitError> {
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
            let data = t.as_f32().expect("float inputs checked above");
            match b.loc {
                // SAFETY: the plan reserved `numel * 4` bytes at `off` inside the arena.
                Loc::Arena(off) => unsafe { copy_floats(self.threads, data.as_ptr(), arena.add(off) as *mut f32, data.len()) },
                // Read in place: kernels only read it (the plan binds no input a kernel
                // writes over), `inputs` outlives the run, and its shape was checked above.
                // SAFETY: the plan reserved the 8-byte slot inside the arena.
                Loc::Input(slot) => unsafe { (arena.add(slot) as *mut *const f32).write_unaligned(data.as_ptr()) },
                Loc::Const(_) | Loc::Output(_) => unreachable!("inputs are neither constants nor outputs' storage"),
            }
        }
        // Outputs computed where the caller gets them: each one's buffer, its address in the
        // slot the kernels read it from. The buffers start on cache lines, as arena slots do:
        // the kernels' 64-byte stores into a `Vec<f32>` (16-byte aligned) would each straddle
        // two lines, which cost the 1024³ product what the copy out of the arena did.
        let mut earlier = std::mem::take(outputs).into_iter();
        let mut placed: Vec<Option<UnwrittenLines>> = self
            .outputs
            .iter()
            .map(|b| {
                let earlier = earlier.next().filter(|t| t.dtype() == b.dtype && t.shape() == b.shape.as_slice());
                let Loc::Output(slot) = b.loc else { return None };
                // One vector more, as an arena slot has: kernels may store whole vectors past
                // a value's last element.
                let (len, extra) = (b.shape.iter().product(), 16);
                let reclaimed = earlier.and_then(|t| match t.into_data() {
                    Data::F32(floats) => UnwrittenLines::reclaim(floats, len, extra),
                    Data::I8(_) | Data::I32(_) => None,
                });
                let mut room = reclaimed.unwrap_or_else(|| UnwrittenLines::new(len, extra));
                // SAFETY: the plan reserved the 8-byte slot inside the arena.
                unsafe { (arena.add(slot) as *mut *mut f32).write_unaligned(room.as_mut_ptr()) };
                Some(room)
            })
            .collect();
        // Task bodies receive the arena address as an integer: `usize` is `Sync`.
        let arena_addr = arena as usize;
        for (k, round) in self.kernels.iter().zip(&self.rounding) {
            let start = times.as_ref().map(|_| std::time::Instant::now());
            // SAFETY: kernels only touch the arena (sized by the plan) and the constants;
            // the tasks of a split kernel write disjoint parts of its result.
            match *k {
                Compiled::Whole(f) => unsafe { f(arena) },
                Compiled::Split { f, threads, tasks } => nnc_runtime::pool::parallel_tasks(threads, tasks, &|t| unsafe { f(arena_addr as *mut u8, t as i64, tasks as i64) }),
            }
            if let Some((off, len, dtype)) = *round {
                // SAFETY: the plan reserved `len` f32 words at `off` for this result, and no
                // kernel is running.
                dtype.round_slice(unsafe { std::slice::from_raw_parts_mut(arena.add(off) as *mut f32, len) });
            }
            if let (Some(t), Some(s)) = (times.as_deref_mut(), start) {
                t.push(s.elapsed().as_secs_f64());
            }
        }
        *outputs = self
            .outputs
            .iter()
            .zip(&mut placed)
            .map(|(b, placed)| {
                let n: usize = b.shape.iter().product();
                if let Some(room) = placed.take() {
                    // SAFETY: the kernels wrote all `n` floats of the output (every value is
                    // computed whole).
                    let values = unsafe { room.assume_written() };
                    return Tensor::from_floats(b.dtype, b.shape.clone(), values).expect("shape and data agree");
                }
                let src: *const u8 = match b.loc {
                    // SAFETY: the plan placed the value inside the arena.
                    Loc::Arena(off) => unsafe { arena.add(off) },
                    Loc::Const(c) => self.consts[c].as_ptr() as *const u8,
                    // SAFETY: the slot holds the bound input's address, written above.
                    Loc::Input(slot) => unsafe { (arena.add(slot) as *const *const u8).read_unaligned() },
                    Loc::Output(_) => unreachable!("taken above"),
                };
                if matches!(b.dtype, nnc_runtime::DType::F32 | nnc_runtime::DType::F16 | nnc_runtime::DType::BF16) {
                    // Floats are stored as f32 words, 4-byte aligned: one copy (a large
                    // output's three passes through bytes cost 4% of a 1024² product).
                    // SAFETY: `src` holds the value's `n` f32 words (arena slot, constant
                    // buffer or a bound input's tensor, all f32-aligned).
                    let mut values = Vec::with_capacity(n);
                    // SAFETY: `values` has room for `n` floats, all written by the copy.
                    unsafe {
                        copy_floats(self.threads, src as *const f32, values.as_mut_ptr(), n);
                        values.set_len(n);
                    }
                    return Tensor::from_f32(b.dtype, b.shape.clone(), values).expect("shape and data agree");
                }
                let mut bytes = vec![0u8; n * super::lower::int8::stored_bytes(b.dtype)];
                // SAFETY: `src` holds the value's `n` elements (arena slot or constant buffer).
                unsafe { std::ptr::copy_nonoverlapping(src, bytes.as_mut_ptr(), bytes.len()) };
                tensor_from_bytes(b.dtype, b.shape.clone(), &bytes)
            })
            .collect();
        Ok(())
    }
}

/// Inputs and outputs at least this many floats (256 KiB) are copied by all the run's threads.
const SPLIT_COPY_MIN_FLOATS: usize = 1 << 16;

/// Copy `n` floats from `src` to `dst`, split across `threads` threads in contiguous parts
/// when large. Thread `t` copies the `t`-th part (see `nnc_runtime::pool::parallel_tasks`),
/// the rows that the kernels' row splits give it to read from an input or that it wrote to
/// an output, so those stay in its own caches. A 1024² input copied by the caller alone was
/// read from the caller's cache by the other thread, across core complexes when the host
/// puts this VM's two vCPUs in different ones: the 1024³ product on two threads took
/// 12.2–12.5 ms there with one copying thread, 10.96–10.99 with two (10.5–10.7 → 10.2–10.5
/// ms when the vCPUs share a complex).
///
/// # Safety
/// `src` and `dst` hold `n` floats and do not overlap.
unsafe fn copy_floats(threads: usize, src: *const f32, dst: *mut f32, n: usize) {
    if threads <= 1 || n < SPLIT_COPY_MIN_FLOATS {
        // SAFETY: the caller's.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, n) };
        return;
    }
    // Addresses cross into the tasks as integers: `usize` is `Sync`.
    let (src, dst) = (src as usize, dst as usize);
    nnc_runtime::pool::parallel_tasks(threads, threads, &|t| {
        let (lo, hi) = (n * t / threads, n * (t + 1) / threads);
        // SAFETY: the parts are disjoint and inside both buffers.
        unsafe { std::ptr::copy_nonoverlapping((src as *const f32).add(lo), (dst as *mut f32).add(lo), hi - lo) };
    });
}

/// [`const_storage`] on cache lines, as the executable keeps its constants (f32 data copied
/// once).
pub(super) fn const_floats(t: &Tensor) -> nnc_runtime::floats::Floats {
    match t.data() {
        nnc_runtime::tensor::Data::F32(v) => nnc_runtime::floats::Floats::lines_copy_of(v),
        _ => nnc_runtime::floats::Floats::lines_copy_of(&const_storage(t)),
    }
}

/// A constant's elements as the JIT stores them, in a buffer of f32 words (4-byte aligned):
/// floats as f32, int8 codes one byte each, i32 as themselves.
pub(super) fn const_storage(t: &Tensor) -> Vec<f32> {
    use nnc_runtime::tensor::Data;
    let bytes: Vec<u8> = match t.data() {
        Data::F32(v) => return v.to_vec(),
        Data::I8(v) => v.iter().map(|&x| x as u8).collect(),
        Data::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    };
    bytes.chunks(4).map(|c| {
        let mut w = [0u8; 4];
        w[..c.len()].copy_from_slice(c);
        f32::from_le_bytes(w)
    }).collect()
}

/// A tensor of `dtype` from the bytes the JIT stored it in.
pub(super) fn tensor_from_bytes(dtype: nnc_runtime::DType, shape: Vec<usize>, bytes: &[u8]) -> Tensor {
    use nnc_runtime::DType;
    match dtype {
        DType::I8 => Tensor::from_i8(shape, bytes.iter().map(|&b| b as i8).collect()),
        DType::I32 => Tensor::from_i32(shape, bytes.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()),
        DType::F32 | DType::F16 | DType::BF16 => Tensor::from_f32(dtype, shape, bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()),
    }
    .expect("shape and data agree")
}
