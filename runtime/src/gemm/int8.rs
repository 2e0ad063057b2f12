//! Integer matrix multiplication for quantized models: `C = bias + A·B` with `A` and `B`
//! int8 codes and `C` wrapping i32, exactly as the interpreter computes it (wrapping makes
//! every summation order give the same bits).
//!
//! Two register-tile formats, chosen once per process from the CPU's features:
//! - **VNNI** (AVX-512 VNNI): `vpdpbusd` multiplies unsigned by signed bytes, four per i32
//!   lane. A's codes are packed shifted by +128 (unsigned), four consecutive `k` per lane;
//!   B's signed codes likewise. The shift adds `128·Σₖ b[k, j]` to every column, which the
//!   epilogue subtracts with the bias: `C = acc − 128·colsum[j] + bias[j]`, exact in
//!   wrapping arithmetic. B's column sums are computed when B is packed (at compile time for
//!   constant weights).
//! - **Pairs** (AVX2 `vpmaddwd`, and the portable fallback): codes sign-extended to i16, two
//!   consecutive `k` per lane, `a₀b₀ + a₁b₁` into i32 with no saturation possible.
//!
//! The whole reduction is one slab (no `kc` split): every output's sum is finished by one
//! microkernel call, so the epilogue runs once. `mc` rows of A are packed at a time; B is
//! packed whole, in `NR`-column panels that threads take in ranges.

use std::sync::OnceLock;

/// How a microkernel wants its operands packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// Four `k` per i32 lane; A unsigned (code + 128), B signed.
    Vnni,
    /// Two `k` per i32 lane, both operands sign-extended to i16.
    Pairs,
}

impl Format {
    /// `k` values per lane.
    fn group(self) -> usize {
        match self {
            Format::Vnni => 4,
            Format::Pairs => 2,
        }
    }

    /// Bytes one code takes once packed.
    fn elem(self) -> usize {
        match self {
            Format::Vnni => 1,
            Format::Pairs => 2,
        }
    }
}

/// A microkernel: `C[i, j] = Apanel · Bpanel + col_add[j] + row_add[i]` for the `MR × NR`
/// tile, over `kg` lane groups.
///
/// # Safety
/// `a` holds `kg·MR` lanes and `b` `kg·NR` lanes of packed codes in the kernel's format,
/// `col_add` holds `NR` i32 and `row_add` `MR`, and C is valid and writable for the tile
/// its strides address.
type Micro = unsafe fn(kg: usize, a: *const u8, b: *const u8, col_add: *const i32, row_add: *const i32, c: *mut i32, rsc: isize, csc: isize);

#[derive(Clone, Copy)]
struct Kernel {
    mr: usize,
    nr: usize,
    format: Format,
    micro: Micro,
    name: &'static str,
}

fn select() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bw") && std::arch::is_x86_feature_detected!("avx512vnni") {
            return Kernel { mr: 8, nr: 32, format: Format::Vnni, micro: x86::micro_vnni_8x32, name: "avx512-vnni 8x32" };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return Kernel { mr: 6, nr: 16, format: Format::Pairs, micro: x86::micro_avx2_6x16, name: "avx2 pmaddwd 6x16" };
        }
    }
    Kernel { mr: 4, nr: 8, format: Format::Pairs, micro: micro_portable_4x8, name: "portable 4x8" }
}

fn kernel() -> Kernel {
    static K: OnceLock<Kernel> = OnceLock::new();
    *K.get_or_init(select)
}

/// Every kernel this CPU can run, best first (tests check each against the naive product).
#[cfg(test)]
fn runnable_kernels() -> Vec<Kernel> {
    let mut all = vec![select()];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && all[0].format != Format::Pairs {
        all.push(Kernel { mr: 6, nr: 16, format: Format::Pairs, micro: x86::micro_avx2_6x16, name: "avx2 pmaddwd 6x16" });
    }
    if all.last().map(|k| k.name) != Some("portable 4x8") {
        all.push(Kernel { mr: 4, nr: 8, format: Format::Pairs, micro: micro_portable_4x8, name: "portable 4x8" });
    }
    all
}

/// The int8 microkernel in use, e.g. `"avx512-vnni 8x32"`.
pub fn int8_microkernel_name() -> &'static str {
    kernel().name
}

/// `k` rounded up to the kernel's lane group.
fn padded_k(kern: Kernel, k: usize) -> usize {
    k.next_multiple_of(kern.format.group())
}

/// Bytes of one packed `NR`-column panel of B.
fn b_panel_bytes(kern: Kernel, k: usize) -> usize {
    padded_k(kern, k) * kern.nr * kern.format.elem()
}

/// Bytes [`pack_b_i8_all`] writes for a `k × n` B: the panels, then one i32 column sum per
/// (padded) column.
pub fn packed_b_i8_len(k: usize, n: usize) -> usize {
    packed_b_len_for(kernel(), k, n)
}

fn packed_b_len_for(kern: Kernel, k: usize, n: usize) -> usize {
    let panels = n.div_ceil(kern.nr);
    panels * b_panel_bytes(kern, k) + panels * kern.nr * 4
}

/// Write code `v` at lane position `(g, lane, q)` of a panel: group `g` of `k`, row or column
/// `lane` of the tile, `q`-th code of the group.
#[inline(always)]
fn put(out: &mut [u8], format: Format, width: usize, g: usize, lane: usize, q: usize, v: i8, unsigned: bool) {
    let at = (g * width + lane) * format.group() + q;
    match format {
        Format::Vnni => out[at] = if unsigned { (v as i32 + 128) as u8 } else { v as u8 },
        Format::Pairs => out[2 * at..2 * at + 2].copy_from_slice(&(v as i16).to_le_bytes()),
    }
}

/// Bytes of one packed `MR`-row panel of A.
fn a_panel_bytes(kern: Kernel, k: usize) -> usize {
    padded_k(kern, k) * kern.mr * kern.format.elem()
}

/// Bytes [`pack_a_i8_all`] writes for an `m × k` A.
pub fn packed_a_i8_len(m: usize, k: usize) -> usize {
    m.div_ceil(kernel().mr) * a_panel_bytes(kernel(), k)
}

/// Pack rows `0..rows` of A (`a[i·rsa + p·csa]`, `p < k`) into `MR`-row panels.
///
/// # Safety
/// A is valid for `i < rows`, `p < k` with its strides; `out` holds the panels.
unsafe fn pack_a(kern: Kernel, rows: usize, k: usize, a: *const i8, rsa: isize, csa: isize, out: &mut [u8]) {
    let (mr, format, kp) = (kern.mr, kern.format, padded_k(kern, k));
    let panel = a_panel_bytes(kern, k);
    for (pi, i0) in (0..rows).step_by(mr).enumerate() {
        let here = mr.min(rows - i0);
        let dst = &mut out[pi * panel..][..panel];
        if format == Format::Vnni && csa == 1 {
            // Rows are runs of codes: each lane is four of them, shifted to unsigned by
            // flipping their top bits (`v + 128` for every i8).
            for i in 0..mr {
                for g in 0..kp / 4 {
                    let mut lane = [0u8; 4];
                    if i < here {
                        for (q, v) in lane.iter_mut().enumerate() {
                            let p = 4 * g + q;
                            // SAFETY: `i0 + i < rows` and `p < k`: inside A.
                            *v = if p < k { unsafe { *a.offset((i0 + i) as isize * rsa + p as isize) as u8 } } else { 0 };
                        }
                    }
                    let lane = u32::from_le_bytes(lane) ^ if i < here { 0x8080_8080 } else { 0 };
                    // Padding rows stay code 0 unshifted: their results are discarded.
                    let at = (g * mr + i) * 4;
                    dst[at..at + 4].copy_from_slice(&lane.to_le_bytes());
                }
            }
            continue;
        }
        if format == Format::Vnni && rsa == 1 {
            // Columns are runs of codes (A is a transposed matrix, say an im2col read with
            // pixels as rows): lane `(g, i)` gathers row `i` from four consecutive columns.
            for g in 0..kp / 4 {
                let mut cols = [std::ptr::null::<i8>(); 4];
                for (q, c) in cols.iter_mut().enumerate() {
                    // SAFETY: column `4g + q < k` of A, from row `i0`.
                    *c = if 4 * g + q < k { unsafe { a.offset(i0 as isize + (4 * g + q) as isize * csa) } } else { std::ptr::null() };
                }
                for i in 0..here {
                    let mut lane = [0u8; 4];
                    for (v, c) in lane.iter_mut().zip(cols) {
                        // SAFETY: row `i0 + i < rows` of a column inside A.
                        *v = if c.is_null() { 0 } else { unsafe { *c.add(i) as u8 } };
                    }
                    let lane = u32::from_le_bytes(lane) ^ 0x8080_8080;
                    let at = (g * mr + i) * 4;
                    dst[at..at + 4].copy_from_slice(&lane.to_le_bytes());
                }
                for i in here..mr {
                    dst[(g * mr + i) * 4..][..4].fill(0);
                }
            }
            continue;
        }
        for i in 0..mr {
            for p in 0..kp {
                // Rows past the end and `k` padding hold code 0 (B's padding is 0 too).
                let v = if i < here && p < k {
                    // SAFETY: `i0 + i < rows` and `p < k`: inside A.
                    unsafe { *a.offset((i0 + i) as isize * rsa + p as isize * csa) }
                } else {
                    0
                };
                put(dst, format, mr, p / format.group(), i, p % format.group(), v, true);
            }
        }
    }
}

/// Pack all of A (`m × k`, strided) once, for [`igemm`] with packed A: constant weights
/// are packed at compile time this way.
///
/// # Safety
/// A is valid for `i < m`, `p < k`; `out` holds [`packed_a_i8_len`] bytes.
pub unsafe fn pack_a_i8_all(m: usize, k: usize, a: *const i8, rsa: isize, csa: isize, out: &mut [u8]) {
    // SAFETY: the caller's contract.
    unsafe { pack_a(kernel(), m, k, a, rsa, csa, out) }
}

/// Pack columns `j0..j0+cols` (`cols ≤ NR`) of B into one panel, and their column sums.
///
/// # Safety
/// B is valid for `p < k`, `j0 ≤ j < j0 + cols` with its strides.
#[allow(clippy::too_many_arguments)]
unsafe fn pack_b_panel(kern: Kernel, k: usize, b: *const i8, rsb: isize, csb: isize, j0: usize, cols: usize, out: &mut [u8], sums: &mut [i32]) {
    let (nr, format, kp) = (kern.nr, kern.format, padded_k(kern, k));
    #[cfg(target_arch = "x86_64")]
    if format == Format::Vnni && csb == 1 {
        // SAFETY: VNNI implies AVX2; rows `p < k` hold the panel's `cols` columns.
        unsafe { x86::pack_b_rows_vnni(k, cols, b.add(j0), rsb, out, sums) };
        return;
    }
    for j in 0..nr {
        let mut sum = 0i32;
        for p in 0..kp {
            let v = if j < cols && p < k {
                // SAFETY: inside B, as the contract says.
                unsafe { *b.offset(p as isize * rsb + (j0 + j) as isize * csb) }
            } else {
                0
            };
            sum = sum.wrapping_add(v as i32);
            put(out, format, nr, p / format.group(), j, p % format.group(), v, false);
        }
        sums[j] = sum;
    }
}

/// Pack all of B (`k × n`, strided) once, for [`igemm`] with packed B: constant weights are
/// packed at compile time this way.
///
/// # Safety
/// B is valid for `p < k`, `j < n`; `out` holds [`packed_b_i8_len`] bytes.
pub unsafe fn pack_b_i8_all(k: usize, n: usize, b: *const i8, rsb: isize, csb: isize, out: &mut [u8]) {
    // SAFETY: the caller's contract.
    unsafe { pack_b_all_for(kernel(), k, n, b, rsb, csb, out) }
}

/// [`pack_b_i8_all`] for a given kernel.
///
/// # Safety
/// As [`pack_b_i8_all`], with `out` holding `packed_b_len_for(kern, k, n)` bytes.
unsafe fn pack_b_all_for(kern: Kernel, k: usize, n: usize, b: *const i8, rsb: isize, csb: isize, out: &mut [u8]) {
    let panels = n.div_ceil(kern.nr);
    let panel = b_panel_bytes(kern, k);
    let (data, sums) = out.split_at_mut(panels * panel);
    let mut s = vec![0i32; kern.nr];
    for (pj, j0) in (0..n).step_by(kern.nr).enumerate() {
        // SAFETY: columns `j0..j0 + cols` are inside B.
        unsafe { pack_b_panel(kern, k, b, rsb, csb, j0, kern.nr.min(n - j0), &mut data[pj * panel..][..panel], &mut s) };
        for (q, v) in s.iter().enumerate() {
            sums[(pj * kern.nr + q) * 4..][..4].copy_from_slice(&v.to_le_bytes());
        }
    }
}

/// Where an operand comes from: a strided matrix of codes, or the packing of
/// [`pack_a_i8_all`] / [`pack_b_i8_all`].
#[derive(Clone, Copy)]
pub enum IntOperand {
    Strided(*const i8, isize, isize),
    Packed(*const u8),
}

/// What is added to every result: `i32` per row or per column (or nothing when null).
#[derive(Clone, Copy)]
pub struct IntBias {
    pub values: *const i32,
    pub per_row: bool,
}

/// Where the product's results go.
#[derive(Clone, Copy)]
pub enum IntOut {
    /// The wrapping i32 accumulators.
    Acc(*mut i32),
    /// int8 codes, each accumulator requantized as it leaves its register tile (by
    /// [`crate::quant::requantize_value`], so exactly as the `requantize` op computes it).
    Codes(*mut i8, Requantize),
}

/// A requantizing epilogue: the scale of result `(i, j)` is `scales[i]` (`per_row`),
/// `scales[j]`, or `scales[0]` when `single`; then `activation` and `out_scale`.
#[derive(Clone, Copy)]
pub struct Requantize {
    pub scales: *const f32,
    pub per_row: bool,
    pub single: bool,
    pub out_scale: f32,
    pub activation: crate::Activation,
}

/// Pointers the tasks of one product share.
#[derive(Clone, Copy)]
struct Operands {
    a: IntOperand,
    b: IntOperand,
    out: IntOut,
    bias: IntBias,
}

/// Bytes of packed A one block takes at most: half of a 512 KiB L2, so that the block stays
/// there while every panel of B passes by it.
pub const A_BLOCK_BYTES: usize = 256 << 10;

/// Products below this many multiply-adds run on one thread.
const MIN_PARALLEL_MACS: usize = 1 << 21;

/// `C = bias + A·B` for `A: m × k` and `B: k × n` int8 codes and `C: m × n` wrapping i32
/// (strides in elements), on up to `threads` threads with `mc` rows of A at a time (0: as
/// many as keep A's block within [`A_BLOCK_BYTES`]). Every thread count gives the same bits.
///
/// # Safety
/// Strided operands are valid for `i < m, p < k` (A) and `p < k, j < n` (B); packed ones
/// hold what [`pack_a_i8_all`]`(m, k, ..)` / [`pack_b_i8_all`]`(k, n, ..)` wrote; C is valid
/// and writable for `i < m, j < n` and overlaps neither; the bias is null or holds `m`
/// (per row) or `n` i32; a requantizing output's scales hold `m` (per row), `n` or 1 f32.
#[allow(clippy::too_many_arguments)]
pub unsafe fn igemm(threads: usize, m: usize, n: usize, k: usize, a: IntOperand, b: IntOperand, out: IntOut, rsc: isize, csc: isize, bias: IntBias, mc: usize) {
    // SAFETY: the caller's contract.
    unsafe { igemm_with(kernel(), threads, [m, n, k], a, b, out, rsc, csc, bias, mc) }
}

/// [`igemm`] on a given kernel (packed operands must come from the same kernel).
///
/// # Safety
/// As [`igemm`].
#[allow(clippy::too_many_arguments)]
unsafe fn igemm_with(kern: Kernel, threads: usize, [m, n, k]: [usize; 3], a: IntOperand, b: IntOperand, out: IntOut, rsc: isize, csc: isize, bias: IntBias, mc: usize) {
    if m == 0 || n == 0 {
        return;
    }
    let panels = n.div_ceil(kern.nr);
    let row_tiles = m.div_ceil(kern.mr);
    let mut threads = threads.max(1).min(panels.max(row_tiles));
    if m * n * k < MIN_PARALLEL_MACS {
        threads = 1;
    }
    // SAFETY: tasks read A, B and the bias and write disjoint tiles of C.
    let shared = unsafe { crate::pool::Shared::new(Operands { a, b, out, bias }) };
    let mc = if mc == 0 { A_BLOCK_BYTES / (padded_k(kern, k) * kern.format.elem()) } else { mc };
    let mc = mc.clamp(1, 1 << 14).next_multiple_of(kern.mr);
    let run = |t: usize| {
        let s = shared.get();
        // Split by column panels when there are enough, else by row tiles (whole panels of
        // packed A either way).
        let (rows, cols) = if panels >= threads {
            let per = panels.div_ceil(threads);
            (0..row_tiles, (t * per).min(panels)..((t + 1) * per).min(panels))
        } else {
            let per = row_tiles.div_ceil(threads);
            ((t * per).min(row_tiles)..((t + 1) * per).min(row_tiles), 0..panels)
        };
        // SAFETY: each task computes its own row tiles × panels of C, inside the product.
        unsafe { igemm_block(kern, [m, n, k], s, rsc, csc, mc / kern.mr, rows, cols) };
    };
    if threads == 1 {
        run(0);
    } else {
        crate::pool::parallel_for(threads, &run);
    }
}

/// Row tiles `tiles` × column panels `panels` of the product: B's panels packed once (unless
/// packed already), then for each block of `mc_tiles` row tiles, A's block packed once
/// (likewise) and every panel multiplied by it.
///
/// # Safety
/// As [`igemm`], for those rows and panels.
#[allow(clippy::too_many_arguments)]
unsafe fn igemm_block(kern: Kernel, [m, n, k]: [usize; 3], s: Operands, rsc: isize, csc: isize, mc_tiles: usize, tiles: std::ops::Range<usize>, panels: std::ops::Range<usize>) {
    let (mr, nr) = (kern.mr, kern.nr);
    let kg = padded_k(kern, k) / kern.format.group();
    let (a_panel, b_panel) = (a_panel_bytes(kern, k), b_panel_bytes(kern, k));
    thread_local! {
        static BUFFERS: std::cell::RefCell<(Vec<u8>, Vec<u8>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    }
    BUFFERS.with(|bufs| {
        let mut bufs = bufs.borrow_mut();
        let (apack, bpack) = &mut *bufs;
        let my_panels = panels.len();
        // B's panels for this task, then their column sums (as `pack_b_i8_all` lays them out).
        let (b_data, b_sums): (*const u8, *const u8) = match s.b {
            IntOperand::Strided(b, rsb, csb) => {
                let len = my_panels * (b_panel + nr * 4);
                // The panels from the buffer's first cache line boundary, as the f32 GEMM's
                // are (`Floats::zeroed_lines`): the kernel loads each step as whole lines.
                if bpack.len() < len + 63 {
                    bpack.resize(len + 63, 0);
                }
                let at = bpack.as_ptr().align_offset(64).min(63);
                let bpack = &mut bpack[at..at + len];
                let (data, sums) = bpack.split_at_mut(my_panels * b_panel);
                let mut col_sums = vec![0i32; nr];
                for (q, pj) in panels.clone().enumerate() {
                    let j0 = pj * nr;
                    // SAFETY: columns `j0..j0 + cols` are inside B.
                    unsafe { pack_b_panel(kern, k, b, rsb, csb, j0, nr.min(n - j0), &mut data[q * b_panel..][..b_panel], &mut col_sums) };
                    for (l, v) in col_sums.iter().enumerate() {
                        sums[(q * nr + l) * 4..][..4].copy_from_slice(&v.to_le_bytes());
                    }
                }
                (bpack.as_ptr(), bpack[my_panels * b_panel..].as_ptr())
            }
            IntOperand::Packed(p) => {
                let total = n.div_ceil(nr);
                // SAFETY: the packing holds every panel, then every column sum.
                unsafe { (p.add(panels.start * b_panel), p.add(total * b_panel + panels.start * nr * 4)) }
            }
        };
        let mut corr = [0i32; 32];
        let mut row_add = [0i32; 8];
        let mut tile = [0i32; 32 * 8];
        for t0 in tiles.clone().step_by(mc_tiles) {
            let t1 = (t0 + mc_tiles).min(tiles.end);
            let (i0, i1) = (t0 * mr, (t1 * mr).min(m));
            let a_block: *const u8 = match s.a {
                IntOperand::Strided(a, rsa, csa) => {
                    let len = (t1 - t0) * a_panel;
                    if apack.len() < len {
                        apack.resize(len, 0);
                    }
                    // SAFETY: rows `i0..i1` are inside A.
                    unsafe { pack_a(kern, i1 - i0, k, a.offset(i0 as isize * rsa), rsa, csa, &mut apack[..len]) };
                    apack.as_ptr()
                }
                // SAFETY: the packing holds every row tile's panel.
                IntOperand::Packed(p) => unsafe { p.add(t0 * a_panel) },
            };
            for (q, pj) in panels.clone().enumerate() {
                let j0 = pj * nr;
                let cols = nr.min(n - j0);
                for (l, v) in corr[..nr].iter_mut().enumerate() {
                    // SAFETY: `nr` sums per panel.
                    let sum = unsafe { std::ptr::read_unaligned((b_sums as *const i32).add(q * nr + l)) };
                    let bias = if s.bias.values.is_null() || s.bias.per_row || j0 + l >= n {
                        0
                    } else {
                        // SAFETY: `n` column biases; `j0 + l < n`.
                        unsafe { *s.bias.values.add(j0 + l) }
                    };
                    *v = match kern.format {
                        Format::Vnni => bias.wrapping_sub(sum.wrapping_mul(128)),
                        Format::Pairs => bias,
                    };
                }
                // SAFETY: panel `q` of this task's B.
                let bp = unsafe { b_data.add(q * b_panel) };
                for t in t0..t1 {
                    let i = t * mr;
                    let rows_here = mr.min(m - i);
                    for (r, v) in row_add[..mr].iter_mut().enumerate() {
                        *v = if s.bias.values.is_null() || !s.bias.per_row || i + r >= m {
                            0
                        } else {
                            // SAFETY: `m` row biases; `i + r < m`.
                            unsafe { *s.bias.values.add(i + r) }
                        };
                    }
                    // SAFETY: row tile `t` of the block.
                    let ap = unsafe { a_block.add((t - t0) * a_panel) };
                    let c = match s.out {
                        IntOut::Acc(c) => c,
                        IntOut::Codes(codes, rq) => {
                            // SAFETY: the stack tile holds MR × NR.
                            unsafe { (kern.micro)(kg, ap, bp, corr.as_ptr(), row_add.as_ptr(), tile.as_mut_ptr(), nr as isize, 1) };
                            // SAFETY: the tile's rows and columns inside the product, and
                            // their scales, as the contract says.
                            unsafe { requantize_tile(kern, &tile, nr, [i, j0], [rows_here, cols], codes, rsc, csc, rq) };
                            continue;
                        }
                    };
                    // SAFETY: the tile's first element is inside C.
                    let cp = unsafe { c.offset(i as isize * rsc + j0 as isize * csc) };
                    if rows_here == mr && cols == nr {
                        // SAFETY: a full tile inside C; the panels hold `kg` lane groups.
                        unsafe { (kern.micro)(kg, ap, bp, corr.as_ptr(), row_add.as_ptr(), cp, rsc, csc) };
                    } else {
                        // Edge tile: computed aside, only what exists copied out.
                        // SAFETY: the stack tile holds MR × NR.
                        unsafe { (kern.micro)(kg, ap, bp, corr.as_ptr(), row_add.as_ptr(), tile.as_mut_ptr(), nr as isize, 1) };
                        for r in 0..rows_here {
                            for j in 0..cols {
                                // SAFETY: `r < rows_here`, `j < cols`: inside C.
                                unsafe { *cp.offset(r as isize * rsc + j as isize * csc) = tile[r * nr + j] };
                            }
                        }
                    }
                }
            }
        }
    });
}

/// Requantize the `rows × cols` corner of a register tile (row stride `nr`, at most 32)
/// whose first result is `(i0, j0)` into the codes at `codes`, with the widest vectors the
/// CPU has: the loops are written for the compiler to vectorize (a full 32-lane row, the
/// activation fixed per loop), compiled once per instruction set.
///
/// # Safety
/// `codes` is writable at `r·rsc + c·csc` for the product's results, and the scales hold
/// what [`Requantize`] says for them.
#[allow(clippy::too_many_arguments)]
unsafe fn requantize_tile(kern: Kernel, tile: &[i32], nr: usize, corner: [usize; 2], size: [usize; 2], codes: *mut i8, rsc: isize, csc: isize, rq: Requantize) {
    // SAFETY (all three): the caller's contract; each variant runs only where its
    // instruction set is present (VNNI kernels imply AVX-512BW, the AVX2 kernel AVX2).
    unsafe {
        #[cfg(target_arch = "x86_64")]
        match (kern.format, kern.mr) {
            (Format::Vnni, _) => return x86::requantize_tile_avx512(tile, nr, corner, size, codes, rsc, csc, rq),
            (Format::Pairs, 6) => return x86::requantize_tile_avx2(tile, nr, corner, size, codes, rsc, csc, rq),
            _ => {}
        }
        requantize_tile_body(tile, nr, corner, size, codes, rsc, csc, rq)
    }
}

/// The body of [`requantize_tile`], inlined into each instruction set's variant.
///
/// # Safety
/// As [`requantize_tile`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn requantize_tile_body(tile: &[i32], nr: usize, [i0, j0]: [usize; 2], [rows, cols]: [usize; 2], codes: *mut i8, rsc: isize, csc: isize, rq: Requantize) {
    use crate::quant::requantize_value;
    use crate::Activation;
    const W: usize = 32;
    // Column scales for the whole row width (lanes past `cols` get 1 and are not stored).
    let mut col_scales = [1.0f32; W];
    if !rq.per_row && !rq.single {
        // SAFETY: `n` column scales; `j0 + cols <= n`.
        col_scales[..cols].copy_from_slice(unsafe { std::slice::from_raw_parts(rq.scales.add(j0), cols) });
    }
    let mut acc = [0i32; W];
    let mut row = [0i8; W];
    for r in 0..rows {
        acc[..nr].copy_from_slice(&tile[r * nr..][..nr]);
        let scales = if rq.single || rq.per_row {
            // SAFETY: one scale, or `m` row scales with `i0 + r < m`.
            [unsafe { *rq.scales.add(if rq.single { 0 } else { i0 + r }) }; W]
        } else {
            col_scales
        };
        // One loop per activation, so each is branch-free and vectorizes.
        macro_rules! requantize_row {
            ($act:expr) => {
                for ((q, &a), &s) in row.iter_mut().zip(&acc).zip(&scales) {
                    *q = requantize_value(a, s, $act, rq.out_scale);
                }
            };
        }
        match rq.activation {
            Activation::None => requantize_row!(Activation::None),
            Activation::Relu => requantize_row!(Activation::Relu),
            Activation::Relu6 => requantize_row!(Activation::Relu6),
        }
        // SAFETY: the caller's contract: row `i0 + r`, columns `j0..j0 + cols` of the result.
        unsafe {
            let dst = codes.offset((i0 + r) as isize * rsc + j0 as isize * csc);
            if csc == 1 {
                std::ptr::copy_nonoverlapping(row.as_ptr(), dst, cols);
            } else {
                for (j, &q) in row[..cols].iter().enumerate() {
                    *dst.offset(j as isize * csc) = q;
                }
            }
        }
    }
}

/// Pairs format in plain Rust: a 4×8 tile.
///
/// # Safety
/// As [`Micro`] with `MR = 4`, `NR = 8` and the Pairs format.
unsafe fn micro_portable_4x8(kg: usize, a: *const u8, b: *const u8, col_add: *const i32, row_add: *const i32, c: *mut i32, rsc: isize, csc: isize) {
    let mut acc = [[0i32; 8]; 4];
    let code = |p: *const u8, at: usize| -> i32 {
        // SAFETY: `at` is inside the panel (the caller's contract).
        unsafe { i16::from_le_bytes([*p.add(2 * at), *p.add(2 * at + 1)]) as i32 }
    };
    for g in 0..kg {
        for (i, row) in acc.iter_mut().enumerate() {
            let (a0, a1) = (code(a, (g * 4 + i) * 2), code(a, (g * 4 + i) * 2 + 1));
            for (j, v) in row.iter_mut().enumerate() {
                let (b0, b1) = (code(b, (g * 8 + j) * 2), code(b, (g * 8 + j) * 2 + 1));
                *v = v.wrapping_add(a0 * b0 + a1 * b1);
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            // SAFETY: C is valid for the 4 × 8 tile; the additions hold 8 and 4 entries.
            unsafe { *c.offset(i as isize * rsc + j as isize * csc) = v.wrapping_add(*col_add.add(j)).wrapping_add(*row_add.add(i)) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// [`super::requantize_tile`] with AVX-512, 16 results per step
    /// ([`crate::quant::x86::Requantize16`]: the codes are `requantize_value`'s bits; the
    /// integer GEMM's test compares them).
    ///
    /// # Safety
    /// As [`super::requantize_tile`]; the CPU has AVX-512F and BW.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn requantize_tile_avx512(tile: &[i32], nr: usize, [i0, j0]: [usize; 2], [rows, cols]: [usize; 2], codes: *mut i8, rsc: isize, csc: isize, rq: super::Requantize) {
        if nr != 32 || csc != 1 {
            // SAFETY: forwarded contract.
            return unsafe { super::requantize_tile_body(tile, nr, [i0, j0], [rows, cols], codes, rsc, csc, rq) };
        }
        // SAFETY: this function has AVX-512F.
        let requantize = unsafe { crate::quant::x86::Requantize16::new(rq.out_scale, rq.activation) };
        // Column scales for the two halves of the row (1 past `cols`: not stored).
        let mut col_scales = [1.0f32; 32];
        if !rq.per_row && !rq.single {
            // SAFETY: `n` column scales; `j0 + cols <= n`.
            col_scales[..cols].copy_from_slice(unsafe { std::slice::from_raw_parts(rq.scales.add(j0), cols) });
        }
        let mut row = [0i8; 32];
        for r in 0..rows {
            let (s0, s1) = if rq.single || rq.per_row {
                // SAFETY: one scale, or `m` row scales with `i0 + r < m`.
                let s = _mm512_set1_ps(unsafe { *rq.scales.add(if rq.single { 0 } else { i0 + r }) });
                (s, s)
            } else {
                // SAFETY: 32 floats.
                unsafe { (_mm512_loadu_ps(col_scales.as_ptr()), _mm512_loadu_ps(col_scales.as_ptr().add(16))) }
            };
            // SAFETY: row `i0 + r` of the result, columns from `j0` (csc 1).
            let dst = unsafe { codes.offset((i0 + r) as isize * rsc + j0 as isize) };
            for (half, s) in [(0usize, s0), (1, s1)] {
                // SAFETY: the tile row holds 32 accumulators.
                let acc = unsafe { _mm512_loadu_si512(tile.as_ptr().add(r * nr + 16 * half) as *const _) };
                // SAFETY: this function has AVX-512F.
                let q = unsafe { requantize.codes(acc, s) };
                // A whole row's halves go straight to C; a partial row's through the row
                // buffer. (Every row through the buffer cost a `memcpy` call of a run-time
                // length per row: a pointwise convolution of 16 into 96 channels over 112²
                // pixels took 500 µs that way, 405–423 storing directly.)
                if cols == 32 {
                    // SAFETY: the row's 32 codes are in the result.
                    unsafe { _mm_storeu_si128(dst.add(16 * half) as *mut __m128i, q) };
                } else {
                    // SAFETY: 16 bytes of the row buffer.
                    unsafe { _mm_storeu_si128(row.as_mut_ptr().add(16 * half) as *mut __m128i, q) };
                }
            }
            if cols < 32 {
                // SAFETY: the caller's contract: row `i0 + r`, columns `j0..j0 + cols` (csc 1).
                unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), dst, cols) };
            }
        }
    }

    /// [`super::requantize_tile_body`] with AVX2.
    ///
    /// # Safety
    /// As [`super::requantize_tile`]; the CPU has AVX2.
    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn requantize_tile_avx2(tile: &[i32], nr: usize, corner: [usize; 2], size: [usize; 2], codes: *mut i8, rsc: isize, csc: isize, rq: super::Requantize) {
        // SAFETY: forwarded contract.
        unsafe { super::requantize_tile_body(tile, nr, corner, size, codes, rsc, csc, rq) }
    }

    /// Pack a 32-column panel of B whose rows are runs of codes (`b[p·rsb + j]`, `j < cols`)
    /// in the VNNI format: for each group of four rows, a byte interleave (16 columns at a
    /// time) makes the four codes of each column one lane. Columns past `cols` are code 0 (a
    /// partial panel's rows are copied into zero-padded rows first). The column sums come
    /// from the lanes: `pmaddubsw` by ones adds code pairs, `pmaddwd` by ones adds the pairs.
    ///
    /// # Safety
    /// Rows `p < k` of B hold `cols ≤ 32` codes from `b + p·rsb`; `out` holds `⌈k/4⌉·128`
    /// bytes and `sums` 32 entries; the CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn pack_b_rows_vnni(k: usize, cols: usize, b: *const i8, rsb: isize, out: &mut [u8], sums: &mut [i32]) {
        let zero = [0i8; 32];
        let mut padded = [[0i8; 32]; 4];
        let groups = k.div_ceil(4);
        assert!(out.len() >= groups * 128 && sums.len() >= 32 && cols <= 32);
        // SAFETY (whole body): the reads are of `cols` codes of rows `p < k` (other rows read
        // `zero`, and partial rows are read through `padded`); the writes stay inside `out`
        // (checked above).
        unsafe {
            let ones8 = _mm_set1_epi8(1);
            let ones16 = _mm_set1_epi16(1);
            let mut acc = [_mm_setzero_si128(); 8];
            for g in 0..groups {
                let mut rows = [zero.as_ptr(); 4];
                for (q, r) in rows.iter_mut().enumerate() {
                    if 4 * g + q < k {
                        let src = b.offset((4 * g + q) as isize * rsb);
                        *r = if cols == 32 {
                            src
                        } else {
                            std::ptr::copy_nonoverlapping(src, padded[q].as_mut_ptr(), cols);
                            padded[q].as_ptr()
                        };
                    }
                }
                for half in 0..2 {
                    let load = |r: *const i8| _mm_loadu_si128(r.add(16 * half) as *const __m128i);
                    let (r0, r1, r2, r3) = (load(rows[0]), load(rows[1]), load(rows[2]), load(rows[3]));
                    let (ab_lo, ab_hi) = (_mm_unpacklo_epi8(r0, r1), _mm_unpackhi_epi8(r0, r1));
                    let (cd_lo, cd_hi) = (_mm_unpacklo_epi8(r2, r3), _mm_unpackhi_epi8(r2, r3));
                    let lanes = [_mm_unpacklo_epi16(ab_lo, cd_lo), _mm_unpackhi_epi16(ab_lo, cd_lo), _mm_unpacklo_epi16(ab_hi, cd_hi), _mm_unpackhi_epi16(ab_hi, cd_hi)];
                    for (v, &x) in lanes.iter().enumerate() {
                        // Columns 16·half + 4v .. +4 of group g.
                        _mm_storeu_si128(out.as_mut_ptr().add(g * 128 + (16 * half + 4 * v) * 4) as *mut __m128i, x);
                        let s = _mm_madd_epi16(_mm_maddubs_epi16(ones8, x), ones16);
                        acc[4 * half + v] = _mm_add_epi32(acc[4 * half + v], s);
                    }
                }
            }
            for (v, a) in acc.iter().enumerate() {
                _mm_storeu_si128(sums.as_mut_ptr().add(4 * v) as *mut __m128i, *a);
            }
        }
    }

    /// 8 rows × 32 columns of i32: 16 zmm accumulators, `vpdpbusd` on four codes per lane.
    ///
    /// # Safety
    /// As [`super::Micro`] with `MR = 8`, `NR = 32` and the VNNI format; the CPU has
    /// AVX-512F, AVX-512BW and AVX-512 VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn micro_vnni_8x32(kg: usize, a: *const u8, b: *const u8, col_add: *const i32, row_add: *const i32, c: *mut i32, rsc: isize, csc: isize) {
        // SAFETY (whole body): the panels hold `kg` groups of 8 (A) and 32 (B) four-byte
        // lanes, the additions 32 and 8 i32, and C is valid for the 8 × 32 tile.
        unsafe {
            let mut acc = [_mm512_setzero_si512(); 16];
            for g in 0..kg {
                let b0 = _mm512_loadu_si512(b.add(g * 128) as *const _);
                let b1 = _mm512_loadu_si512(b.add(g * 128 + 64) as *const _);
                for i in 0..8 {
                    let av = _mm512_set1_epi32(std::ptr::read_unaligned(a.add((g * 8 + i) * 4) as *const i32));
                    acc[2 * i] = _mm512_dpbusd_epi32(acc[2 * i], av, b0);
                    acc[2 * i + 1] = _mm512_dpbusd_epi32(acc[2 * i + 1], av, b1);
                }
            }
            let cols = [_mm512_loadu_si512(col_add as *const _), _mm512_loadu_si512(col_add.add(16) as *const _)];
            let mut lanes = [0i32; 16];
            for i in 0..8 {
                let row = _mm512_set1_epi32(*row_add.add(i));
                for v in 0..2 {
                    let x = _mm512_add_epi32(_mm512_add_epi32(acc[2 * i + v], cols[v]), row);
                    if csc == 1 {
                        _mm512_storeu_si512(c.offset(i as isize * rsc).add(v * 16) as *mut _, x);
                    } else {
                        _mm512_storeu_si512(lanes.as_mut_ptr() as *mut _, x);
                        for (l, &y) in lanes.iter().enumerate() {
                            *c.offset(i as isize * rsc + (v * 16 + l) as isize * csc) = y;
                        }
                    }
                }
            }
        }
    }

    /// 6 rows × 16 columns of i32: 12 ymm accumulators, `vpmaddwd` on two i16 codes per lane.
    ///
    /// # Safety
    /// As [`super::Micro`] with `MR = 6`, `NR = 16` and the Pairs format; the CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn micro_avx2_6x16(kg: usize, a: *const u8, b: *const u8, col_add: *const i32, row_add: *const i32, c: *mut i32, rsc: isize, csc: isize) {
        // SAFETY (whole body): the panels hold `kg` groups of 6 (A) and 16 (B) four-byte
        // lanes, the additions 16 and 6 i32, and C is valid for the 6 × 16 tile.
        unsafe {
            let mut acc = [_mm256_setzero_si256(); 12];
            for g in 0..kg {
                let b0 = _mm256_loadu_si256(b.add(g * 64) as *const _);
                let b1 = _mm256_loadu_si256(b.add(g * 64 + 32) as *const _);
                for i in 0..6 {
                    let av = _mm256_set1_epi32(std::ptr::read_unaligned(a.add((g * 6 + i) * 4) as *const i32));
                    acc[2 * i] = _mm256_add_epi32(acc[2 * i], _mm256_madd_epi16(av, b0));
                    acc[2 * i + 1] = _mm256_add_epi32(acc[2 * i + 1], _mm256_madd_epi16(av, b1));
                }
            }
            let cols = [_mm256_loadu_si256(col_add as *const _), _mm256_loadu_si256(col_add.add(8) as *const _)];
            let mut lanes = [0i32; 8];
            for i in 0..6 {
                let row = _mm256_set1_epi32(*row_add.add(i));
                for v in 0..2 {
                    let x = _mm256_add_epi32(_mm256_add_epi32(acc[2 * i + v], cols[v]), row);
                    if csc == 1 {
                        _mm256_storeu_si256(c.offset(i as isize * rsc).add(v * 8) as *mut _, x);
                    } else {
                        _mm256_storeu_si256(lanes.as_mut_ptr() as *mut _, x);
                        for (l, &y) in lanes.iter().enumerate() {
                            *c.offset(i as isize * rsc + (v * 8 + l) as isize * csc) = y;
                        }
                    }
                }
            }
        }
    }
}

/// Unfold one NCHW image of int8 codes for a convolution: row `(ch·kh + ky)·kw + kx`,
/// column `oy·ow + ox` of `col` (`K × P`, row-major) is the code under tap `(ky, kx)` of
/// output `(oy, ox)` in channel `ch`, or 0 in the padding. Each output row's valid range is
/// computed once, so the copy is a run (a `memcpy` at stride 1) between zero fills.
///
/// Channels are split across up to `threads` threads (each channel's rows of `col` are its
/// own): on one thread the unfolding was a serial part of every two-thread int8
/// convolution (ResNet-18's 56² layers 747 µs on one thread, 620 on two).
///
/// # Safety
/// `input` holds `c·h·w` codes and `col` has room for `c·kh·kw·oh·ow`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn im2col_i8(input: *const i8, c: usize, h: usize, w: usize, kernel: [usize; 2], stride: [usize; 2], dilation: [usize; 2], pad: [usize; 2], out: [usize; 2], col: *mut i8, threads: usize) {
    /// Unfoldings below this many codes run on one thread.
    const MIN_PARALLEL: usize = 1 << 16;
    let per_channel = kernel[0] * kernel[1] * out[0] * out[1];
    let threads = if c * per_channel < MIN_PARALLEL { 1 } else { threads.clamp(1, c.max(1)) };
    // SAFETY: tasks read the image and write disjoint channels' rows of `col`.
    let shared = unsafe { crate::pool::Shared::new((input, col)) };
    crate::pool::parallel_for(threads, &|t| {
        let (input, col) = shared.get();
        // SAFETY: the caller's contract, for channels `c·t/threads..c·(t+1)/threads`.
        unsafe { im2col_i8_channels(input, c, h, w, kernel, stride, dilation, pad, out, col, c * t / threads..c * (t + 1) / threads) };
    });
}

/// Channels `channels` of [`im2col_i8`]'s unfolding.
///
/// # Safety
/// As [`im2col_i8`].
#[allow(clippy::too_many_arguments)]
unsafe fn im2col_i8_channels(input: *const i8, c: usize, h: usize, w: usize, [kh, kw]: [usize; 2], [sh, sw]: [usize; 2], [dh, dw]: [usize; 2], [pt, pl]: [usize; 2], [oh, ow]: [usize; 2], col: *mut i8, channels: std::ops::Range<usize>) {
    let p = oh * ow;
    // SAFETY: `col` has room for `c·kh·kw` rows of `p` codes, of which these channels' rows
    // are written only here; `input` holds the image.
    let (col, input) = unsafe { (std::slice::from_raw_parts_mut(col.add(channels.start * kh * kw * p), channels.len() * kh * kw * p), std::slice::from_raw_parts(input, c * h * w)) };
    // With a column stride, each image row is first split into its `sw` phases (columns
    // `phase, phase + sw, ...`), so that every tap's run of outputs is a contiguous copy
    // out of one phase instead of a byte-by-byte gather. One channel's at a time.
    let phase_w = w.div_ceil(sw);
    let mut phases = vec![0i8; if sw > 1 { h * sw * phase_w } else { 0 }];
    for ch in channels.clone() {
        let plane = &input[ch * h * w..][..h * w];
        if sw > 1 {
            for (row, phased) in plane.chunks_exact(w).zip(phases.chunks_exact_mut(sw * phase_w)) {
                for (x, &v) in row.iter().enumerate() {
                    phased[(x % sw) * phase_w + x / sw] = v;
                }
            }
        }
        let ch_rows = ch - channels.start;
        for ky in 0..kh {
            for kx in 0..kw {
                let row = &mut col[((ch_rows * kh + ky) * kw + kx) * p..][..p];
                // Outputs whose tap column `ox·sw + kx·dw − pl` is inside `0..w`.
                let shift = kx * dw;
                let lo = pl.saturating_sub(shift).div_ceil(sw).min(ow);
                let hi = if w + pl > shift { (w + pl - shift).div_ceil(sw).min(ow) } else { 0 }.max(lo);
                if sw == 1 && sh * w == ow && lo < hi {
                    // Consecutive output rows read consecutive input rows at the same
                    // stride (stride 1, "same" width): the rows inside the image are one
                    // copy, and the columns that wrapped from a neighbouring row are zeroed.
                    let iy_of = |oy: usize| (oy * sh + ky * dh) as isize - pt as isize;
                    let inside = |oy: &usize| (0..h as isize).contains(&iy_of(*oy));
                    let oy0 = (0..oh).find(inside).unwrap_or(oh);
                    let oy1 = (oy0..oh).find(|oy| !inside(oy)).unwrap_or(oh);
                    row[..oy0 * ow].fill(0);
                    row[oy1 * ow..].fill(0);
                    if oy0 < oy1 {
                        let first = lo + shift - pl;
                        let len = (oy1 - 1 - oy0) * ow + (hi - lo);
                        let src = iy_of(oy0) as usize * w + first;
                        row[oy0 * ow + lo..][..len].copy_from_slice(&plane[src..][..len]);
                        for oy in oy0..oy1 {
                            row[oy * ow..][..lo].fill(0);
                            row[oy * ow + hi..][..ow - hi].fill(0);
                        }
                    }
                    continue;
                }
                for oy in 0..oh {
                    let out = &mut row[oy * ow..][..ow];
                    let iy = (oy * sh + ky * dh) as isize - pt as isize;
                    if iy < 0 || iy as usize >= h {
                        out.fill(0);
                        continue;
                    }
                    let src = &plane[iy as usize * w..][..w];
                    out[..lo].fill(0);
                    out[hi..].fill(0);
                    if lo == hi {
                        // This tap sees only padding in every output of the row.
                        continue;
                    }
                    let first = lo * sw + shift - pl;
                    if sw == 1 {
                        out[lo..hi].copy_from_slice(&src[first..first + (hi - lo)]);
                    } else {
                        // Columns `first, first + sw, ...`: consecutive in phase `first % sw`.
                        let phased = &phases[(iy as usize * sw + first % sw) * phase_w..][..phase_w];
                        out[lo..hi].copy_from_slice(&phased[first / sw..][..hi - lo]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[i8], b: &[i8], bias: &[i32], per_row: bool) -> Vec<i32> {
        let mut c = vec![0i32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = if per_row { bias[i] } else { bias[j] };
                for p in 0..k {
                    s = s.wrapping_add(a[i * k + p] as i32 * b[p * n + j] as i32);
                }
                c[i * n + j] = s;
            }
        }
        c
    }

    #[test]
    fn matches_naive_product_with_full_code_range() {
        for &(m, n, k) in &[(1, 1, 1), (7, 33, 5), (17, 65, 300), (64, 10, 513), (9, 40, 3), (100, 3, 64), (130, 70, 300)] {
            // Every code, including -128 (declared i8 tensors may hold it).
            let a: Vec<i8> = (0..m * k).map(|i| ((i * 37 + 11) % 256) as u8 as i8).collect();
            let b: Vec<i8> = (0..k * n).map(|i| ((i * 53 + 7) % 256) as u8 as i8).collect();
            for per_row in [false, true] {
                let bias: Vec<i32> = (0..if per_row { m } else { n }).map(|j| j as i32 * 1000 - 7000).collect();
                let bias_arg = IntBias { values: bias.as_ptr(), per_row };
                let want = naive(m, n, k, &a, &b, &bias, per_row);
                for kern in runnable_kernels() {
                    let name = kern.name;
                    let mut a_packed = vec![0u8; m.div_ceil(kern.mr) * a_panel_bytes(kern, k)];
                    // SAFETY: the buffers have the sizes the calls name.
                    unsafe { pack_a(kern, m, k, a.as_ptr(), k as isize, 1, &mut a_packed) };
                    let mut b_packed = vec![0u8; packed_b_len_for(kern, k, n)];
                    // SAFETY: as above.
                    unsafe { pack_b_all_for(kern, k, n, b.as_ptr(), n as isize, 1, &mut b_packed) };
                    // Each operand also stored transposed, which the packers read another way.
                    let at: Vec<i8> = (0..m * k).map(|idx| a[(idx % m) * k + idx / m]).collect();
                    let bt: Vec<i8> = (0..k * n).map(|idx| b[(idx % k) * n + idx / k]).collect();
                    let a_ops = [IntOperand::Strided(a.as_ptr(), k as isize, 1), IntOperand::Packed(a_packed.as_ptr()), IntOperand::Strided(at.as_ptr(), 1, m as isize)];
                    let b_ops = [IntOperand::Strided(b.as_ptr(), n as isize, 1), IntOperand::Packed(b_packed.as_ptr()), IntOperand::Strided(bt.as_ptr(), 1, k as isize)];
                    for (ai, a_op) in a_ops.into_iter().enumerate() {
                        for (bi, b_op) in b_ops.into_iter().enumerate() {
                            for threads in [1, 2] {
                                for mc in [8, 4096] {
                                    let what = format!("{name}: {m}x{n}x{k}, A packed {ai}, B packed {bi}, bias per row {per_row}, {threads} threads, mc {mc}");
                                    let mut c = vec![0i32; m * n];
                                    // SAFETY: as above.
                                    unsafe { igemm_with(kern, threads, [m, n, k], a_op, b_op, IntOut::Acc(c.as_mut_ptr()), n as isize, 1, bias_arg, mc) };
                                    assert_eq!(c, want, "{what}");
                                    // Requantized in the epilogue: exactly the op's codes,
                                    // scales per row, per column or one.
                                    for (per, single) in [(true, false), (false, false), (false, true)] {
                                        let scales: Vec<f32> = (0..if per { m } else { n }).map(|i| 1e-4 * (1 + i % 7) as f32).collect();
                                        let act = match (per, single) {
                                            (true, _) => crate::Activation::Relu,
                                            (false, false) => crate::Activation::None,
                                            (false, true) => crate::Activation::Relu6,
                                        };
                                        let rq = Requantize { scales: scales.as_ptr(), per_row: per, single, out_scale: 0.37, activation: act };
                                        let mut q = vec![0i8; m * n];
                                        // SAFETY: as above.
                                        unsafe { igemm_with(kern, threads, [m, n, k], a_op, b_op, IntOut::Codes(q.as_mut_ptr(), rq), n as isize, 1, bias_arg, mc) };
                                        let codes: Vec<i8> = want.iter().enumerate().map(|(idx, &v)| crate::quant::requantize_value(v, scales[if single { 0 } else if per { idx / n } else { idx % n }], act, 0.37)).collect();
                                        assert_eq!(q, codes, "{what}, requantized per row {per}, single {single}");
                                    }
                                    let mut ct = vec![0i32; m * n];
                                    // SAFETY: as above; C written transposed.
                                    unsafe { igemm_with(kern, threads, [m, n, k], a_op, b_op, IntOut::Acc(ct.as_mut_ptr()), 1, m as isize, bias_arg, mc) };
                                    let back: Vec<i32> = (0..m * n).map(|idx| ct[(idx % n) * m + idx / n]).collect();
                                    assert_eq!(back, want, "{what}, C transposed");
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn im2col_matches_the_definition_at_every_stride_dilation_and_padding() {
        for &(c, h, w, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr) in &[(2, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1), (3, 7, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1), (1, 9, 9, 3, 3, 2, 3, 2, 1, 2, 0, 1, 3), (2, 5, 6, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0), (1, 4, 4, 5, 5, 1, 1, 1, 1, 3, 3, 3, 3), (1, 1, 1, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2), (2, 3, 2, 3, 5, 2, 2, 1, 1, 1, 4, 1, 4), (2, 6, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1), (1, 7, 6, 5, 3, 1, 1, 2, 1, 4, 1, 4, 1), (1, 3, 4, 3, 3, 1, 1, 1, 1, 3, 1, 0, 1), (1, 5, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0)] {
            let oh = (h + pt + pb - dh * (kh - 1) - 1) / sh + 1;
            let ow = (w + pl + pr - dw * (kw - 1) - 1) / sw + 1;
            let img: Vec<i8> = (0..c * h * w).map(|i| (i % 250) as i8 - 120).collect();
            let mut col = vec![99i8; c * kh * kw * oh * ow];
            // SAFETY: the buffers have the sizes the call names.
            unsafe { im2col_i8(img.as_ptr(), c, h, w, [kh, kw], [sh, sw], [dh, dw], [pt, pl], [oh, ow], col.as_mut_ptr(), 1) };
            // Split by channels (below the threshold too: each share alone).
            let mut shares = vec![98i8; col.len()];
            for (lo, hi) in [(0, c / 2), (c / 2, c)] {
                // SAFETY: as above, for channels `lo..hi`.
                unsafe { im2col_i8_channels(img.as_ptr(), c, h, w, [kh, kw], [sh, sw], [dh, dw], [pt, pl], [oh, ow], shares.as_mut_ptr(), lo..hi) };
            }
            assert_eq!(shares, col, "channel shares, case c{c} h{h} w{w}");
            for ch in 0..c {
                for ky in 0..kh {
                    for kx in 0..kw {
                        for oy in 0..oh {
                            for ox in 0..ow {
                                let (iy, ix) = ((oy * sh + ky * dh) as isize - pt as isize, (ox * sw + kx * dw) as isize - pl as isize);
                                let want = if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w { img[(ch * h + iy as usize) * w + ix as usize] } else { 0 };
                                assert_eq!(col[((ch * kh + ky) * kw + kx) * oh * ow + oy * ow + ox], want, "case c{c} h{h} w{w} k{kh}x{kw} s{sh},{sw} d{dh},{dw} p{pt},{pl}");
                            }
                        }
                    }
                }
            }
        }
    }
}
