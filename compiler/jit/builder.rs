//! Building blocks for kernels: loops, addressing, and the math the ops need, emitted as
//! Cranelift IR. Everything works on `f32` scalars and on `f32x4` vectors (the widest type
//! Cranelift offers on x86-64), so an op writes its arithmetic once and runs it both in the
//! vector body of a loop and in its scalar remainder. Calls into the runtime's kernels are in
//! `runtime_calls`.

use super::abi::RuntimeFns;
use super::memplan::Loc;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, BlockArg, FuncRef, GlobalValue, InstBuilder, MemFlagsData as MemFlags, Type, Value};
use nnc_runtime::Activation;
use cranelift_frontend::{FunctionBuilder, Variable};

pub const F32: Type = types::F32;
pub const F32X4: Type = types::F32X4;
pub const I64: Type = types::I64;
pub const LANES: i64 = 4;

/// A kernel under construction: one op's function `fn(arena: *mut u8)`.
pub struct KernelBuilder<'a> {
    pub b: FunctionBuilder<'a>,
    arena: Value,
    /// Addresses of the executable's constant buffers.
    consts: &'a [DataAddr],
    /// Set when the code goes into an object file (`jit::aot`): each constant buffer's data
    /// symbol.
    pub object_data: Option<&'a [DataSpan]>,
    /// Runtime functions the kernel may call, when microkernels are on.
    pub runtime: Option<RuntimeFns>,
    /// The reference kernel's entry point (`jit::reference`), always available.
    pub reference_fn: Option<FuncRef>,
    /// For a kernel whose constant weight was packed at compile time (one buffer per group),
    /// the packed buffers' addresses.
    pub prepacked: Vec<DataAddr>,
    /// Threads the runtime GEMM may use.
    pub threads: i64,
    /// Cache blocking for the kernel's matrix products.
    pub tile: crate::target::Tile,
    /// The node's runtime GEMM calls multiply in bf16 (`KernelPlan::bf16`).
    pub bf16: bool,
    /// For an attention kernel: how many heads share each row of its `q`, `k`, `v` and result
    /// (`kernel_plan::attention_heads`; 1: contiguous).
    pub attention_heads: [i64; 4],
    /// For a kernel split across threads: its task index and the task count (function
    /// parameters). Splittable lowerings take their share of the outermost loop from
    /// [`KernelBuilder::split`].
    pub task: Option<(Value, Value)>,
    /// Every constant address the kernel's code was given ([`KernelBuilder::data_addr`]):
    /// the buffers it may read, which the executable keeps.
    pub data_requested: Vec<u64>,
}

/// The address of a byte in one of the model's constant buffers (weights, packed panels, scale
/// tables) as the compiling process holds them. Generated code never embeds it directly but
/// asks [`KernelBuilder::data_addr`], so the same lowering serves the JIT (the address itself)
/// and object files (a relocated symbol plus an offset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataAddr(pub u64);

impl DataAddr {
    pub fn offset(self, bytes: i64) -> DataAddr {
        DataAddr(self.0.wrapping_add_signed(bytes))
    }
}

/// One constant buffer as an object file holds it: its bytes `[start, end)` in the compiling
/// process, and the data symbol (in the function being built) that holds them there.
#[derive(Clone, Copy, Debug)]
pub struct DataSpan {
    pub start: u64,
    pub end: u64,
    pub symbol: GlobalValue,
}

/// The requantizing epilogue of an int8 GEMM call: the scale table's address (or the one
/// scale's, when `single`), whether it runs along C's rows, and what follows the scaling.
#[derive(Clone, Copy)]
pub struct IgemmRequantize {
    pub scales: Value,
    pub per_row: bool,
    pub single: bool,
    pub out_scale: f32,
    pub activation: nnc_runtime::Activation,
}

/// What a runtime GEMM call does to C after the product (`nnc_runtime::gemm::Epilogue`):
/// addresses already offset to the block of C the call computes.
#[derive(Clone, Copy)]
pub struct GemmTail {
    pub bias: Option<Value>,
    pub bias_per_row: bool,
    pub residual: Option<Value>,
    pub act: TailActivation,
}

impl GemmTail {
    pub const NONE: GemmTail = GemmTail { bias: None, bias_per_row: false, residual: None, act: TailActivation::Act(Activation::None) };
}

/// The last step of a runtime epilogue: an activation, or GELU (which the runtime computes
/// with generated code's formula, `nnc_runtime::gemm::Epilogue::gelu`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailActivation {
    Act(Activation),
    Gelu,
}

impl TailActivation {
    /// The code the runtime ABI carries.
    pub fn code(self) -> i64 {
        match self {
            TailActivation::Act(a) => a.code(),
            TailActivation::Gelu => nnc_runtime::gemm::Epilogue::GELU_CODE,
        }
    }
}

/// An operand of a runtime GEMM: strided (base, row stride and column stride in elements),
/// or packed ahead of time in the order the microkernel reads it.
#[derive(Clone, Copy)]
pub enum GemmOperand {
    Strided(Value, i64, i64),
    Packed(Value),
}

fn flags() -> MemFlags {
    // Every address is in bounds by construction (shapes are verified; loop bounds are the
    // shapes), so loads cannot trap. Alignment is not promised: `trusted()` would claim it,
    // and without AVX Cranelift then folds vector loads into SSE operands that fault on
    // unaligned addresses.
    MemFlags::new().with_notrap()
}

impl<'a> KernelBuilder<'a> {
    pub fn new(b: FunctionBuilder<'a>, arena: Value, consts: &'a [DataAddr], runtime: Option<RuntimeFns>, tile: crate::target::Tile) -> KernelBuilder<'a> {
        KernelBuilder { b, arena, consts, object_data: None, runtime, reference_fn: None, prepacked: Vec::new(), threads: 1, tile, bf16: false, attention_heads: [1; 4], task: None, data_requested: Vec::new() }
    }

    /// The address of constant data in the running program.
    pub fn data_addr(&mut self, a: DataAddr) -> Value {
        self.data_requested.push(a.0);
        let Some(spans) = self.object_data else { return self.int(a.0 as i64) };
        // Every address handed out points into (or one past) a constant buffer; inside one
        // wins over one past another that happens to end where it starts.
        let span = spans.iter().find(|s| s.start <= a.0 && a.0 < s.end).or_else(|| spans.iter().find(|s| a.0 == s.end)).expect("a constant address lies in a constant buffer");
        let base = self.b.ins().symbol_value(I64, span.symbol);
        self.b.ins().iadd_imm_s(base, (a.0 - span.start) as i64)
    }

    /// The arena's base address.
    pub fn arena(&self) -> Value {
        self.arena
    }

    /// This task's share `[start, end)` of `lo..hi`: contiguous, starting at a multiple of
    /// `align` from `lo`, the shares of all tasks covering the range exactly once. Without
    /// tasks, the whole range.
    pub fn split(&mut self, lo: i64, hi: i64, align: i64) -> (Value, Value) {
        let Some((t, n)) = self.task else { return (self.int(lo), self.int(hi)) };
        let len = hi - lo;
        let units = self.int((len + align - 1) / align);
        let n1 = self.b.ins().iadd_imm_s(n, -1);
        let per = self.b.ins().iadd(units, n1);
        let per = self.b.ins().udiv(per, n);
        let per = self.b.ins().imul_imm_s(per, align);
        let len_v = self.int(len);
        let start = self.b.ins().imul(t, per);
        let start = self.b.ins().umin(start, len_v);
        let end = self.b.ins().iadd(start, per);
        let end = self.b.ins().umin(end, len_v);
        (self.b.ins().iadd_imm_s(start, lo), self.b.ins().iadd_imm_s(end, lo))
    }

    /// [`KernelBuilder::for_vectorized`] over this task's share of `0..n`.
    pub fn for_vectorized_split(&mut self, n: i64, mut f: impl FnMut(&mut Self, Value, Type)) {
        if self.task.is_none() {
            return self.for_vectorized(n, f);
        }
        let (lo, hi) = self.split(0, n, LANES);
        // Shares start at multiples of four, so only the last has a scalar tail.
        let len = self.b.ins().isub(hi, lo);
        let vec_len = self.b.ins().band_imm_s(len, !(LANES - 1));
        let vec_end = self.b.ins().iadd(lo, vec_len);
        self.for_range(lo, vec_end, LANES, |k, i| f(k, i, F32X4));
        self.for_range(vec_end, hi, 1, |k, i| f(k, i, F32));
    }

    /// Base address of a value.
    pub fn ptr(&mut self, loc: Loc) -> Value {
        match loc {
            Loc::Arena(off) => self.b.ins().iadd_imm_s(self.arena, off as i64),
            Loc::Const(c) => self.data_addr(self.consts[c]),
            // The run wrote the input's address into its slot before any kernel; no kernel
            // writes the slot, so the load may move (out of loops) like arithmetic.
            // The same for an output's storage, bound to the caller's buffer.
            Loc::Input(slot) | Loc::Output(slot) => {
                let at = self.b.ins().iadd_imm_s(self.arena, slot as i64);
                self.b.ins().load(I64, flags().with_readonly().with_can_move(), at, 0)
            }
        }
    }

    pub fn int(&mut self, v: i64) -> Value {
        self.b.ins().iconst(I64, v)
    }

    /// An `f32` constant of type `ty` (splatted for vectors).
    pub fn c(&mut self, ty: Type, v: f32) -> Value {
        let s = self.b.ins().f32const(v);
        if ty == F32 {
            s
        } else {
            self.b.ins().splat(ty, s)
        }
    }

    pub fn var(&mut self, ty: Type, init: Value) -> Variable {
        let v = self.b.declare_var(ty);
        self.b.def_var(v, init);
        v
    }

    /// `for i in (lo..hi).step_by(step)`, testing at the top (which Cranelift folds best).
    pub fn for_range(&mut self, lo: Value, hi: Value, step: i64, mut body: impl FnMut(&mut Self, Value)) {
        let header = self.b.create_block();
        let body_block = self.b.create_block();
        let exit = self.b.create_block();
        self.b.append_block_param(header, I64);
        self.b.ins().jump(header, &[BlockArg::Value(lo)]);
        self.b.switch_to_block(header);
        let i = self.b.block_params(header)[0];
        let more = self.b.ins().icmp(IntCC::SignedLessThan, i, hi);
        self.b.ins().brif(more, body_block, &[], exit, &[]);
        self.b.switch_to_block(body_block);
        self.b.seal_block(body_block);
        body(self, i);
        let next = self.b.ins().iadd_imm_s(i, step);
        self.b.ins().jump(header, &[BlockArg::Value(next)]);
        self.b.seal_block(header);
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
    }

    /// `if cond { then } else { otherwise }`.
    pub fn if_else(&mut self, cond: Value, then: impl FnOnce(&mut Self), otherwise: impl FnOnce(&mut Self)) {
        let (then_block, else_block, merge) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
        self.b.ins().brif(cond, then_block, &[], else_block, &[]);
        self.b.switch_to_block(then_block);
        self.b.seal_block(then_block);
        then(self);
        self.b.ins().jump(merge, &[]);
        self.b.switch_to_block(else_block);
        self.b.seal_block(else_block);
        otherwise(self);
        self.b.ins().jump(merge, &[]);
        self.b.switch_to_block(merge);
        self.b.seal_block(merge);
    }

    /// `for i in lo..hi` with constant bounds.
    pub fn for_const(&mut self, lo: i64, hi: i64, body: impl FnMut(&mut Self, Value)) {
        if lo >= hi {
            return;
        }
        let (l, h) = (self.int(lo), self.int(hi));
        self.for_range(l, h, 1, body);
    }

    /// Runs `f(index, ty)` over `0..n`: in steps of four with `f32x4` while four remain, then
    /// one at a time with `f32`. `index` counts elements.
    pub fn for_vectorized(&mut self, n: i64, mut f: impl FnMut(&mut Self, Value, Type)) {
        let vec_end = n - n % LANES;
        if vec_end > 0 {
            let (l, h) = (self.int(0), self.int(vec_end));
            self.for_range(l, h, LANES, |k, i| f(k, i, F32X4));
        }
        if vec_end < n {
            let (l, h) = (self.int(vec_end), self.int(n));
            self.for_range(l, h, 1, |k, i| f(k, i, F32));
        }
    }

    /// [`KernelBuilder::for_vectorized`] over `0..n` for a run-time `n`.
    pub fn for_vectorized_dyn(&mut self, n: Value, mut f: impl FnMut(&mut Self, Value, Type)) {
        let vec_end = self.b.ins().band_imm_s(n, !(LANES - 1));
        let zero = self.int(0);
        self.for_range(zero, vec_end, LANES, |k, i| f(k, i, F32X4));
        self.for_range(vec_end, n, 1, |k, i| f(k, i, F32));
    }

    /// For an index that may fall outside `0..=last` (a window tap in the padding): whether
    /// it is inside, and the index clamped into range, so the load stays in bounds and the
    /// caller masks the value.
    pub fn clamp_index(&mut self, v: Value, last: i64) -> (Value, Value) {
        let zero = self.int(0);
        let hi = self.int(last);
        let ge = self.b.ins().icmp(IntCC::SignedGreaterThanOrEqual, v, zero);
        let le = self.b.ins().icmp(IntCC::SignedLessThanOrEqual, v, hi);
        let inside = self.b.ins().band(ge, le);
        let clamped = self.b.ins().smax(v, zero);
        (inside, self.b.ins().smin(clamped, hi))
    }

    /// Largest lane of an `f32x4` (NaN if any lane is NaN).
    pub fn hmax(&mut self, v: Value) -> Value {
        let lanes: Vec<Value> = (0..4u8).map(|l| self.b.ins().extractlane(v, l)).collect();
        let a = self.b.ins().fmax(lanes[0], lanes[1]);
        let b = self.b.ins().fmax(lanes[2], lanes[3]);
        self.b.ins().fmax(a, b)
    }

    /// `base + index * 4`
    pub fn elem(&mut self, base: Value, index: Value) -> Value {
        let bytes = self.b.ins().ishl_imm_s(index, 2);
        self.b.ins().iadd(base, bytes)
    }

    /// Load an `f32` or `f32x4` at element `index` of `base`.
    pub fn load(&mut self, ty: Type, base: Value, index: Value) -> Value {
        let p = self.elem(base, index);
        self.b.ins().load(ty, flags(), p, 0)
    }

    pub fn store(&mut self, v: Value, base: Value, index: Value) {
        let p = self.elem(base, index);
        self.b.ins().store(flags(), v, p, 0);
    }

    /// Load at constant element `index` of `base`, from memory the kernel never writes (its
    /// input operands and constants). The load is then a pure value to Cranelift, which
    /// places it next to its use instead of in program order: a value used once folds into
    /// its FMA as a memory operand, and a run of loads no longer piles up in registers ahead
    /// of the arithmetic. Its address depends on the loop variables in scope, so it is never
    /// placed where they are not yet defined.
    pub fn load_input_at(&mut self, ty: Type, base: Value, index: i64) -> Value {
        let (at, offset) = self.address_at(base, index);
        self.b.ins().load(ty, flags().with_readonly().with_can_move(), at, offset)
    }

    /// Store at constant element `index` of `base`.
    pub fn store_at(&mut self, v: Value, base: Value, index: i64) {
        let (at, offset) = self.address_at(base, index);
        self.b.ins().store(flags(), v, at, offset);
    }

    /// Load at constant element `index` of `base`.
    pub fn load_at(&mut self, ty: Type, base: Value, index: i64) -> Value {
        let (at, offset) = self.address_at(base, index);
        self.b.ins().load(ty, flags(), at, offset)
    }

    /// Element `index` of `base` as an address and an instruction displacement; past the
    /// 32-bit displacement, the address computed in 64 bits.
    fn address_at(&mut self, base: Value, index: i64) -> (Value, i32) {
        match i32::try_from(index * 4) {
            Ok(offset) => (base, offset),
            Err(_) => {
                let i = self.int(index);
                (self.elem(base, i), 0)
            }
        }
    }

    /// `a*b + c`
    pub fn fma(&mut self, a: Value, b: Value, c: Value) -> Value {
        self.b.ins().fma(a, b, c)
    }

    /// `cond ? a : b` for scalars or lanes; `cond` comes from [`KernelBuilder::cmp`].
    pub fn select(&mut self, ty: Type, cond: Value, a: Value, b: Value) -> Value {
        if ty == F32 {
            self.b.ins().select(cond, a, b)
        } else {
            let mask = self.b.ins().bitcast(F32X4, MemFlags::new(), cond);
            self.b.ins().bitselect(mask, a, b)
        }
    }

    pub fn cmp(&mut self, cc: FloatCC, a: Value, b: Value) -> Value {
        self.b.ins().fcmp(cc, a, b)
    }

    /// `x < lo ? lo : x`, keeping NaN (unlike `fmax`, and one instruction cheaper).
    pub fn max_keep_nan(&mut self, ty: Type, x: Value, lo: Value) -> Value {
        let below = self.cmp(FloatCC::LessThan, x, lo);
        self.select(ty, below, lo, x)
    }

    /// `x > hi ? hi : x`, keeping NaN.
    pub fn min_keep_nan(&mut self, ty: Type, x: Value, hi: Value) -> Value {
        let above = self.cmp(FloatCC::GreaterThan, x, hi);
        self.select(ty, above, hi, x)
    }

    /// The larger of two values, NaN if either is NaN (PyTorch's `max`).
    pub fn max_nan(&mut self, x: Value, y: Value) -> Value {
        self.b.ins().fmax(x, y)
    }

    /// Horizontal sum of an `f32x4` (or, wrapping, an `i32x4`): `(l0 + l1) + (l2 + l3)`.
    pub fn hsum(&mut self, v: Value) -> Value {
        let lanes: Vec<Value> = (0..4u8).map(|l| self.b.ins().extractlane(v, l)).collect();
        let float = self.b.func.dfg.value_type(v).lane_type().is_float();
        let mut add = |x, y| if float { self.b.ins().fadd(x, y) } else { self.b.ins().iadd(x, y) };
        let (a, b) = (add(lanes[0], lanes[1]), add(lanes[2], lanes[3]));
        add(a, b)
    }

    /// `exp(x)` by range reduction and a degree-6 polynomial (Cephes `expf` coefficients):
    /// `x = n·ln2 + r`, `|r| ≤ ln2/2`, `exp(x) = 2ⁿ·p(r)`. Relative error ≤ 2e-7 (1.2e-7
    /// measured) wherever the result is a normal f32. 2ⁿ is applied as two factors
    /// 2^⌊n/2⌋·2^⌈n/2⌉, each a normal f32, so the whole f32 range comes out as f32 rounds it:
    /// subnormal results below -87.3, zero below -104, and inf above ln(f32::MAX) ≈ 88.72,
    /// as the interpreter gives. NaN stays NaN.
    pub fn exp(&mut self, ty: Type, x: Value) -> Value {
        // Clamping keeps n within ±150, so both halves of 2ⁿ are normal; the clamped ends
        // still round to 0 and to inf.
        let lo = self.c(ty, -104.0);
        let hi = self.c(ty, 89.0);
        let x = self.b.ins().fmax(x, lo);
        let x = self.b.ins().fmin(x, hi);
        let log2e = self.c(ty, std::f32::consts::LOG2_E);
        let t = self.b.ins().fmul(x, log2e);
        let n = self.b.ins().nearest(t);
        // r = x - n·ln2, with ln2 split in two so n·ln2_hi is exact.
        let ln2_hi = self.c(ty, 0.693_359_4);
        let ln2_lo = self.c(ty, -2.121_944_4e-4);
        let nh = self.b.ins().fneg(n);
        let r = self.fma(nh, ln2_hi, x);
        let r = self.fma(nh, ln2_lo, r);
        let coeffs = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 5e-1];
        let mut p = self.c(ty, coeffs[0]);
        for &c in &coeffs[1..] {
            let cv = self.c(ty, c);
            p = self.fma(p, r, cv);
        }
        let r2 = self.b.ins().fmul(r, r);
        let one = self.c(ty, 1.0);
        let r1 = self.b.ins().fadd(r, one);
        let poly = self.fma(p, r2, r1);
        // 2ⁿ from the exponent bits.
        let (ity, bias) = if ty == F32 { (types::I32, self.b.ins().iconst(types::I32, 127)) } else {
            let s = self.b.ins().iconst(types::I32, 127);
            (types::I32X4, self.b.ins().splat(types::I32X4, s))
        };
        let ni = self.b.ins().fcvt_to_sint_sat(ity, n);
        let n_lo = self.b.ins().sshr_imm_s(ni, 1);
        let n_hi = self.b.ins().isub(ni, n_lo);
        let mut result = poly;
        for half in [n_lo, n_hi] {
            let e = self.b.ins().iadd(half, bias);
            let bits = self.b.ins().ishl_imm_s(e, 23);
            let scale = self.b.ins().bitcast(ty, MemFlags::new(), bits);
            result = self.b.ins().fmul(result, scale);
        }
        result
    }

    /// `1 / (1 + exp(-x))`
    pub fn sigmoid(&mut self, ty: Type, x: Value) -> Value {
        let nx = self.b.ins().fneg(x);
        let e = self.exp(ty, nx);
        let one = self.c(ty, 1.0);
        let d = self.b.ins().fadd(one, e);
        self.b.ins().fdiv(one, d)
    }

    /// `2·sigmoid(2x) − 1`: absolute error ≤ 3e-7 (sigmoid itself ≤ 2e-7; both measured by
    /// `tests/jit_math.rs`).
    pub fn tanh(&mut self, ty: Type, x: Value) -> Value {
        let two = self.c(ty, 2.0);
        let x2 = self.b.ins().fmul(x, two);
        let s = self.sigmoid(ty, x2);
        let one = self.c(ty, 1.0);
        let neg_one = self.b.ins().fneg(one);
        self.fma(s, two, neg_one)
    }

    /// `erf(x)` (Abramowitz & Stegun 7.1.28: `1 − (1 + a₁x + … + a₆x⁶)⁻¹⁶` for `x ≥ 0`):
    /// absolute error ≤ 3e-7 plus f32 rounding, no `exp`; GELU built on it stays within
    /// 1e-6 on [-20, 20]. The runtime's GELU epilogue (`simd::Lanes::gelu`) computes the
    /// same operations, so fused and unfused GELU give the same bits.
    pub fn erf(&mut self, ty: Type, x: Value) -> Value {
        let ax = self.b.ins().fabs(x);
        let one = self.c(ty, 1.0);
        let a = nnc_runtime::gemm::ERF_COEFFS;
        let mut poly = self.c(ty, a[0]);
        for &c in &a[1..] {
            let cv = self.c(ty, c);
            poly = self.fma(poly, ax, cv);
        }
        for _ in 0..4 {
            poly = self.b.ins().fmul(poly, poly);
        }
        let inv = self.b.ins().fdiv(one, poly);
        let y = self.b.ins().fsub(one, inv);
        // erf is odd. (`fcopysign` has no f32x4 lowering on x86-64.)
        let zero = self.c(ty, 0.0);
        let negative = self.cmp(FloatCC::LessThan, x, zero);
        let ny = self.b.ins().fneg(y);
        self.select(ty, negative, ny, y)
    }
}
/// Strides of `shape` read as a broadcast operand of a result with `out.len()` axes: 0 on
/// broadcast axes.
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<i64> {
    let s = crate::ops::strides(shape);
    let pad = out.len() - shape.len();
    (0..out.len()).map(|d| if d < pad || shape[d - pad] == 1 { 0 } else { s[d - pad] as i64 }).collect()
}

/// Nested loops over all axes of `shape` but the last, calling `f` with each operand's
/// element offset for the start of the row (`stride_sets[j]` are operand j's strides).
pub fn for_rows(k: &mut KernelBuilder, shape: &[usize], stride_sets: &[Vec<i64>], f: &mut dyn FnMut(&mut KernelBuilder, &[Value])) {
    fn go(k: &mut KernelBuilder, shape: &[usize], axis: usize, stride_sets: &[Vec<i64>], offsets: Vec<Value>, f: &mut dyn FnMut(&mut KernelBuilder, &[Value])) {
        if axis + 1 >= shape.len() {
            f(k, &offsets);
            return;
        }
        k.for_const(0, shape[axis] as i64, |k, i| {
            let next: Vec<Value> = offsets.iter().zip(stride_sets).map(|(&o, s)| {
                let step = k.b.ins().imul_imm_s(i, s[axis]);
                k.b.ins().iadd(o, step)
            }).collect();
            go(k, shape, axis + 1, stride_sets, next, f);
        });
    }
    let zero = k.int(0);
    go(k, shape, 0, stride_sets, vec![zero; stride_sets.len()], f);
}
