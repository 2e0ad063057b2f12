//! Packing: A into `MR`-row panels and B into `NR`-column panels in the order the
//! microkernel reads them (zero-padded), from strided matrices, from a convolution's patches
//! gathered straight from the image, or all at once ahead of time for constant operands.

use super::microkernel::{kernel, kernel_for, Kernel};
use super::Blocking;

/// Pack rows `0..mc` of an `mc × kc` block of A (element `(i, p)` at `a[i*rsa + p*csa]`) into
/// `MR`-row panels: panel-major, then `p`, then the `MR` rows, zero-padded.
///
/// # Safety
/// A is valid for `i < mc`, `p < kc` with its strides.
pub(super) unsafe fn pack_a(mr: usize, mc: usize, kc: usize, a: *const f32, rsa: isize, csa: isize, out: &mut [f32]) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let mut o = 0;
        for i0 in (0..mc).step_by(mr) {
            let rows = mr.min(mc - i0);
            for p in 0..kc {
                for i in 0..mr {
                    out[o] = if i < rows { *a.offset((i0 + i) as isize * rsa + p as isize * csa) } else { 0.0 };
                    o += 1;
                }
            }
        }
    }
}

/// The part of a transposed panel copy (`panel[p·nr + j] = b[j·csb + p]`) done by 16×16
/// register transposes: columns `0..cols/16·16` for steps `0..kc/16·16`, which it returns
/// (`(0, 0)` where the CPU has no AVX-512). With these the transformer layer's attention
/// kernel went from 158–160 to 121–138 µs on the Xeon (with `exp` by `vscalefps`).
///
/// # Safety
/// As [`pack_b`]'s transposed case: `b` valid for `j < cols`, `p < kc` with `csb`, and
/// `panel` for `kc·nr` floats.
unsafe fn transposed_by_blocks(nr: usize, kc: usize, cols: usize, b: *const f32, csb: isize, panel: *mut f32) -> (usize, usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        let (cols16, kc16) = (cols / 16 * 16, kc / 16 * 16);
        for j in (0..cols16).step_by(16) {
            for p in (0..kc16).step_by(16) {
                // SAFETY: the 16 columns from `j` and the 16 steps from `p` exist (the
                // caller's contract), and the CPU has AVX-512F.
                unsafe { x86::transpose_16x16(b.offset(j as isize * csb).add(p), csb, panel.add(p * nr + j), nr) };
            }
        }
        return (cols16, kc16);
    }
    let _ = (nr, kc, cols, b, csb, panel);
    (0, 0)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// `dst[q·lds + r] = src[r·lss + q]` for `r, q < 16`.
    ///
    /// # Safety
    /// `src` valid for 16 floats at each of 16 rows `lss` apart, `dst` (writable) for 16 at
    /// each of 16 rows `lds` apart; the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn transpose_16x16(src: *const f32, lss: isize, dst: *mut f32, lds: usize) {
        // SAFETY (whole body): the caller's contract.
        unsafe {
            let mut r = [_mm512_setzero_ps(); 16];
            for (i, r) in r.iter_mut().enumerate() {
                *r = _mm512_loadu_ps(src.offset(i as isize * lss));
            }
            // Pairs of rows interleaved within each 128-bit lane: `a[2i]` holds elements 0,
            // 1 (4, 5, …) of rows 2i and 2i+1, `a[2i+1]` elements 2, 3.
            let mut a = [_mm512_setzero_ps(); 16];
            for i in 0..8 {
                a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
                a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
            }
            // Quads of rows: `b[4g + c]` holds element c (c + 4, c + 8, c + 12, one per
            // 128-bit lane) of rows 4g..4g+4.
            let mut b = [_mm512_setzero_ps(); 16];
            for g in 0..4 {
                b[4 * g] = _mm512_shuffle_ps::<0x44>(a[4 * g], a[4 * g + 2]);
                b[4 * g + 1] = _mm512_shuffle_ps::<0xEE>(a[4 * g], a[4 * g + 2]);
                b[4 * g + 2] = _mm512_shuffle_ps::<0x44>(a[4 * g + 1], a[4 * g + 3]);
                b[4 * g + 3] = _mm512_shuffle_ps::<0xEE>(a[4 * g + 1], a[4 * g + 3]);
            }
            // Then the 128-bit lanes: element `c + 4l` of all 16 rows is lane `l` of each
            // group's `b[4g + c]`, in group order.
            for c in 0..4 {
                let c0 = _mm512_shuffle_f32x4::<0x88>(b[c], b[4 + c]);
                let c1 = _mm512_shuffle_f32x4::<0xDD>(b[c], b[4 + c]);
                let c2 = _mm512_shuffle_f32x4::<0x88>(b[8 + c], b[12 + c]);
                let c3 = _mm512_shuffle_f32x4::<0xDD>(b[8 + c], b[12 + c]);
                _mm512_storeu_ps(dst.add(c * lds), _mm512_shuffle_f32x4::<0x88>(c0, c2));
                _mm512_storeu_ps(dst.add((c + 4) * lds), _mm512_shuffle_f32x4::<0x88>(c1, c3));
                _mm512_storeu_ps(dst.add((c + 8) * lds), _mm512_shuffle_f32x4::<0xDD>(c0, c2));
                _mm512_storeu_ps(dst.add((c + 12) * lds), _mm512_shuffle_f32x4::<0xDD>(c1, c3));
            }
        }
    }
}

/// Pack a `kc × nc` block of B into `NR`-column panels, zero-padded.
///
/// # Safety
/// B is valid for `p < kc`, `j < nc` with its strides, and `out` holds
/// `⌈nc/nr⌉·nr·kc` floats (full panels are copied without bounds checks).
pub(super) unsafe fn pack_b(nr: usize, kc: usize, nc: usize, b: *const f32, rsb: isize, csb: isize, out: &mut [f32]) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        if csb == 1 {
            return pack_b_rows(nr, kc, nc, b, rsb, out);
        }
        let mut o = 0;
        for j0 in (0..nc).step_by(nr) {
            let cols = nr.min(nc - j0);
            if rsb == 1 {
                // B is the transpose of a row-major matrix (attention's kᵀ): each column is
                // contiguous, so read it in order and write the panel's column (its lines
                // stay in L1); row by row, every read was a new line (24 µs of a transformer
                // layer's 200 µs attention kernel; 15 this way).
                assert!(out.len() >= o + kc * nr);
                let panel = out.as_mut_ptr().add(o);
                // 16 columns at a time by 16×16 register transposes where the CPU has
                // AVX-512; the steps past the last 16 (and the columns of a partial panel)
                // element by element below.
                let done = transposed_by_blocks(nr, kc, cols, b.offset(j0 as isize * csb), csb, panel);
                for j in 0..nr {
                    if j < cols {
                        let col = b.offset((j0 + j) as isize * csb);
                        for p in if j < done.0 { done.1 } else { 0 }..kc {
                            *panel.add(p * nr + j) = *col.add(p);
                        }
                    } else {
                        (0..kc).for_each(|p| *panel.add(p * nr + j) = 0.0);
                    }
                }
                o += kc * nr;
                continue;
            }
            for p in 0..kc {
                let row = b.offset(p as isize * rsb);
                for j in 0..nr {
                    out[o] = if j < cols { *row.offset((j0 + j) as isize * csb) } else { 0.0 };
                    o += 1;
                }
            }
        }
    }
}

/// Rows of B packed together: the rows of a group are copied into every panel before the
/// next group's. Panel by panel, every step of a panel read a new row: with rows 8 KiB apart
/// (2048 columns) each panel walked a page per row of its slab, and packing 2048² took
/// 2.7–3.2 ms against 1.4–1.5 this way (1024²: 0.44–0.54 against 0.34–0.36), whose reads
/// stay within 16 rows at a time. Groups of 8 to 64 rows measured the same.
const PACKED_ROW_GROUP: usize = 16;

/// [`pack_b`] for a row-major B (`csb` = 1), by groups of [`PACKED_ROW_GROUP`] rows.
///
/// # Safety
/// As [`pack_b`] with `csb` = 1.
unsafe fn pack_b_rows(nr: usize, kc: usize, nc: usize, b: *const f32, rsb: isize, out: &mut [f32]) {
    assert!(out.len() >= nc.div_ceil(nr) * nr * kc, "a packed block of B holds its panels");
    let out = out.as_mut_ptr();
    // SAFETY: B holds the `kc × nc` block (the caller's contract), and `out` every panel (the
    // assertion): panel `t` at `t·kc·nr`, step `p` of it `nr` floats at `p·nr`.
    unsafe {
        for p0 in (0..kc).step_by(PACKED_ROW_GROUP) {
            for (t, j0) in (0..nc).step_by(nr).enumerate() {
                let cols = nr.min(nc - j0);
                let panel = out.add(t * kc * nr);
                for p in p0..(p0 + PACKED_ROW_GROUP).min(kc) {
                    let (row, step) = (b.offset(p as isize * rsb).add(j0), panel.add(p * nr));
                    if cols == nr {
                        std::ptr::copy_nonoverlapping(row, step, nr);
                    } else {
                        for j in 0..nr {
                            *step.add(j) = if j < cols { *row.add(j) } else { 0.0 };
                        }
                    }
                }
            }
        }
    }
}

/// Two values of consecutive `k` as the bf16 kernel reads them: one 4-byte element, the
/// lower `k` in the low half. Each keeps its upper 16 bits: exact for bf16 values, which is
/// all a bf16 product is given (other values are truncated, not rounded: rounding here
/// cost 8% of a packing-bound convolution for nothing).
#[inline]
pub(super) fn bf16_pair(lo: f32, hi: f32) -> f32 {
    let half = |v: f32| v.to_bits() >> 16;
    f32::from_bits(half(lo) | half(hi) << 16)
}

/// A panel packed by [`pack_a`] or [`pack_a_patches`] (`src`: `kc` values of `k` per row
/// group of `mr`) as bf16 pairs (`⌈kc/2⌉` per row group), the odd last one paired with 0.
pub(super) fn pair_a_panels(mr: usize, mc: usize, kc: usize, src: &[f32], out: &mut [f32]) {
    let (panels, kp) = (mc.div_ceil(mr), kc.div_ceil(2));
    for panel in 0..panels {
        let (s, o) = (&src[panel * kc * mr..], &mut out[panel * kp * mr..]);
        for p in 0..kp {
            for i in 0..mr {
                let hi = if 2 * p + 1 < kc { s[(2 * p + 1) * mr + i] } else { 0.0 };
                o[p * mr + i] = bf16_pair(s[2 * p * mr + i], hi);
            }
        }
    }
}

/// Pack a `kc × nc` block of B (`kc` values of `k`) into `NR`-column panels of bf16 pairs:
/// panel-major, then each pair of rows, then the `NR` columns, zero-padded.
///
/// # Safety
/// B is valid for `p < kc`, `j < nc` with its strides, and `out` holds
/// `⌈nc/nr⌉·nr·⌈kc/2⌉` elements.
pub(super) unsafe fn pack_b_pairs(nr: usize, kc: usize, nc: usize, b: *const f32, rsb: isize, csb: isize, out: &mut [f32]) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let mut o = 0;
        for j0 in (0..nc).step_by(nr) {
            let cols = nr.min(nc - j0);
            for p in (0..kc).step_by(2) {
                let (lo, hi) = (b.offset(p as isize * rsb), (p + 1 < kc).then(|| b.offset((p + 1) as isize * rsb)));
                for j in 0..nr {
                    out[o] = if j < cols {
                        let at = (j0 + j) as isize * csb;
                        bf16_pair(*lo.offset(at), hi.map_or(0.0, |h| *h.offset(at)))
                    } else {
                        0.0
                    };
                    o += 1;
                }
            }
        }
    }
}

/// Where the A operand comes from.
#[derive(Clone, Copy)]
pub(super) enum ASource {
    Strided(*const f32, isize, isize),
    /// Laid out by [`pack_a_all`].
    Packed(*const f32),
    /// A convolution's patches, gathered from the image as they are packed.
    Patches(ConvPatches),
}

/// The patch matrix of a convolution over one NHWC image, never stored: row `r` is output
/// pixel `row0 + r` (row-major over the output), column `(ky·kw + kx)·c + ch` is channel `ch`
/// of the input pixel under tap `(ky, kx)`, or 0 in the padding. Packing A gathers straight
/// from the image, instead of an im2col pass writing the matrix and packing reading it back.
#[derive(Clone, Copy, Debug)]
pub struct ConvPatches {
    pub input: *const f32,
    pub c: isize,
    pub h: isize,
    pub w: isize,
    pub kh: isize,
    pub kw: isize,
    pub sh: isize,
    pub sw: isize,
    pub dh: isize,
    pub dw: isize,
    pub pt: isize,
    pub pl: isize,
    pub ow: isize,
    pub row0: usize,
}

/// Most rows a patch panel has.
pub(super) const MAX_PATCH_MR: usize = 16;

impl ConvPatches {
    /// Where each of rows `i0..i0+rows` of an `mr`-row tile (`rows ≤ mr ≤ 16`) has its window:
    /// the address of its first tap's first channel (a short tile repeating its last row up to
    /// `mr`). A window wholly inside the image is read there; one that reaches into the padding
    /// is copied into `copies` (the layout, the scratch, and the next free slot, counted up),
    /// or, without copies, makes the answer `None` (the tile is packed instead).
    ///
    /// # Safety
    /// `self.input` holds the NHWC image; with copies, the scratch holds
    /// `layout.floats(*next + mr)` floats, writable, and no other pointer into it is in use for
    /// those slots.
    pub(super) unsafe fn window_rows(&self, i0: usize, rows: usize, mr: usize, mut copies: Option<(&EdgeWindows, *mut f32, &mut usize)>) -> Option<[*const f32; MAX_PATCH_MR]> {
        let mr = mr.min(MAX_PATCH_MR);
        let last = rows.clamp(1, mr) - 1;
        let mut at = [std::ptr::null(); MAX_PATCH_MR];
        // The output pixel of the first row, then stepped (a division per row cost as much as
        // a third of a stem tile's product).
        let pix = (self.row0 + i0) as isize;
        let (mut oy, mut ox) = (pix / self.ow, pix % self.ow);
        for i in 0..mr {
            if i > last {
                // Rows past a short tile's last repeat it (a copy is not made twice).
                at[i] = at[last];
                continue;
            }
            if i > 0 {
                ox += 1;
                if ox == self.ow {
                    (oy, ox) = (oy + 1, 0);
                }
            }
            let (iy, ix) = (oy * self.sh - self.pt, ox * self.sw - self.pl);
            if iy >= 0 && ix >= 0 && iy + (self.kh - 1) * self.dh < self.h && ix + (self.kw - 1) * self.dw < self.w {
                at[i] = self.input.wrapping_offset((iy * self.w + ix) * self.c);
                continue;
            }
            let (layout, scratch, next) = copies.as_mut()?;
            let slot = **next;
            **next += 1;
            let base = scratch.wrapping_add(slot / layout.per_band * layout.band + slot % layout.per_band * layout.span);
            // SAFETY: the slot lies inside the scratch (the caller's contract).
            unsafe { self.copy_window(iy, ix, layout, base) };
            at[i] = base;
        }
        Some(at)
    }

    /// The window at input pixel `(iy, ix)` copied to `dst` in `layout`, zeros where it lies in
    /// the padding.
    ///
    /// # Safety
    /// `dst` is valid for a copy's writes: `kh` rows of `span` floats, `row` apart.
    unsafe fn copy_window(&self, iy: isize, ix: isize, layout: &EdgeWindows, dst: *mut f32) {
        let c = self.c as usize;
        for ky in 0..self.kh {
            let y = iy + ky * self.dh;
            let dst = dst.wrapping_add(ky as usize * layout.row);
            for t in 0..layout.span / c {
                let x = ix + t as isize;
                // SAFETY: the caller's contract for `dst`; the source pixel is inside the image.
                unsafe {
                    if y >= 0 && y < self.h && x >= 0 && x < self.w {
                        std::ptr::copy_nonoverlapping(self.input.offset((y * self.w + x) * self.c), dst.add(t * c), c);
                    } else {
                        std::ptr::write_bytes(dst.add(t * c), 0, c);
                    }
                }
            }
        }
    }

    /// [`ConvPatches::window_rows`] for every `mr`-row tile of rows `i0..i0+mc`, appended to
    /// `out`: the output pixel stepped from tile to tile rather than divided out for each,
    /// and a tile inside one output row kept as its first window and step (a division and
    /// two copies of a pointer array per tile cost a tenth of MobileNetV2's stem).
    pub(super) fn block_windows(&self, i0: usize, mc: usize, mr: usize, out: &mut Vec<TileWindows>) {
        let pix = (self.row0 + i0) as isize;
        let (mut oy, mut ox) = (pix / self.ow, pix % self.ow);
        for ir in (0..mc).step_by(mr) {
            let rows = mr.min(mc - ir);
            let last = rows.clamp(1, mr.min(MAX_PATCH_MR)) - 1;
            let (iy, ix) = (oy * self.sh - self.pt, ox * self.sw - self.pl);
            let inside = ox + (last as isize) < self.ow && iy >= 0 && ix >= 0 && iy + (self.kh - 1) * self.dh < self.h && ix + last as isize * self.sw + (self.kw - 1) * self.dw < self.w;
            out.push(if inside {
                TileWindows::Strided { first: self.input.wrapping_offset((iy * self.w + ix) * self.c), step: self.sw * self.c, last }
            } else {
                // SAFETY: without copies only the image is read.
                unsafe { self.window_rows(i0 + ir, rows, mr, None) }.map_or(TileWindows::Packed, TileWindows::Listed)
            });
            ox += mr as isize;
            while ox >= self.ow {
                ox -= self.ow;
                oy += 1;
            }
        }
    }

    /// How windows that reach into the padding are copied for the in-place kernel (see
    /// [`EdgeWindows`]), or `None` where the image is narrower than one window row.
    pub(super) fn edge_windows(&self) -> Option<EdgeWindows> {
        let span = ((self.kw - 1) * self.dw + 1) * self.c;
        let row = self.dh * self.w * self.c;
        let per_band = if span > 0 { row / span } else { 0 };
        (per_band > 0).then(|| EdgeWindows { span: span as usize, row: row as usize, per_band: per_band as usize, band: ((self.kh - 1) * row + per_band * span) as usize })
    }

    /// For every column `p` of the patch matrix, its element's offset (in floats) from the
    /// first element of a window: tap `(ky, kx)`, channel `ch` is `(ky·dh·w + kx·dw)·c + ch`.
    pub(super) fn tap_offsets(&self, out: &mut Vec<isize>) {
        out.clear();
        for ky in 0..self.kh {
            for kx in 0..self.kw {
                let tap = (ky * self.dh * self.w + kx * self.dw) * self.c;
                out.extend((0..self.c).map(|ch| tap + ch));
            }
        }
    }
}

/// Where a row tile of an implicit GEMM reads its windows.
#[derive(Clone, Copy)]
pub(super) enum TileWindows {
    /// Some reach into the padding: the tile is packed.
    Packed,
    /// Rows `0..=last` at `first + i·step` (one output row), later rows repeating the last.
    Strided { first: *const f32, step: isize, last: usize },
    /// Each row's window, anywhere (a tile across output rows, or with copies).
    Listed([*const f32; MAX_PATCH_MR]),
}

impl TileWindows {
    /// Each row's window, for the in-place microkernel; `None` for a packed tile.
    #[inline]
    pub(super) fn rows(&self) -> Option<[*const f32; MAX_PATCH_MR]> {
        match *self {
            TileWindows::Packed => None,
            TileWindows::Strided { first, step, last } => Some(std::array::from_fn(|i| first.wrapping_offset(i.min(last) as isize * step))),
            TileWindows::Listed(rows) => Some(rows),
        }
    }
}

/// Scratch copies of windows that reach into the padding, laid out like the image around a
/// window (tap rows `dh·w·c` floats apart), so the in-place microkernel reads a copy at the
/// same column offsets as a window inside the image: a tile with one such window (a row's
/// first pixel) reads seven windows in place and one copy, where it was packed whole (for
/// MobileNetV2's stem, 3 channels, that packing cost more than the tiles' products).
/// Copies share bands of `band` floats, `per_band` side by side `span` floats apart in each
/// tap row.
pub(super) struct EdgeWindows {
    /// Floats of one tap row of a window: `((kw − 1)·dw + 1)·c`.
    span: usize,
    /// Floats between tap rows: `dh·w·c`.
    row: usize,
    per_band: usize,
    band: usize,
}

impl EdgeWindows {
    /// Floats of scratch `slots` copies need.
    pub(super) fn floats(&self, slots: usize) -> usize {
        slots.div_ceil(self.per_band) * self.band
    }
}

/// Rows `i0..i0+mc` (in panels of `mr`), columns `pc..pc+kc` of a patch matrix as runs of
/// one tap's consecutive channels, in packing order: `run(rows_at, count)` gets, per row of
/// the panel, the address of the run's first channel (null in the padding and past the
/// last row), and the run's length.
///
/// # Safety
/// `src.input` holds the `h·w·c` floats of the NHWC image whose patches these are.
unsafe fn for_each_tap_run(mr: usize, mc: usize, kc: usize, src: &ConvPatches, i0: usize, pc: usize, mut run: impl FnMut(&[*const f32], usize)) {
    assert!(mr <= MAX_PATCH_MR, "patch packing holds at most {MAX_PATCH_MR} rows per panel");
    let c = src.c as usize;
    for r0 in (0..mc).step_by(mr) {
        let rows = mr.min(mc - r0);
        // Each row's window origin.
        let mut origin = [(0isize, 0isize); MAX_PATCH_MR];
        for (i, org) in origin.iter_mut().enumerate().take(rows) {
            let pix = (src.row0 + i0 + r0 + i) as isize;
            *org = ((pix / src.ow) * src.sh - src.pt, (pix % src.ow) * src.sw - src.pl);
        }
        // The tap and channel of column `k`, stepped along rather than divided out for every
        // run (a stem convolution over 3 channels has a run every 3 columns).
        let mut k = pc;
        let tap = k / c;
        let mut first = k - tap * c;
        let (mut ky, mut kx) = (tap as isize / src.kw, tap as isize % src.kw);
        while k < pc + kc {
            let left = pc + kc - k;
            // Without dilation, the rest of a window row is one run in NHWC (the pixels'
            // channels follow each other) wherever it lies wholly inside the image or wholly
            // in the vertical padding: a 7×7 stem over 3 channels reads 21 floats per run,
            // not 3.
            let mut count = left.min(c - first);
            if first == 0 && src.dw == 1 {
                let taps = ((src.kw - kx) as usize).min(left.div_ceil(c));
                let merged = left.min(taps * c);
                let whole = (0..rows).all(|i| {
                    let (iy, ix) = (origin[i].0 + ky * src.dh, origin[i].1 + kx);
                    iy < 0 || iy >= src.h || (ix >= 0 && ix + taps as isize <= src.w)
                });
                if whole {
                    count = merged;
                }
            }
            let mut rows_at = [std::ptr::null::<f32>(); MAX_PATCH_MR];
            for i in 0..rows {
                let (iy, ix) = (origin[i].0 + ky * src.dh, origin[i].1 + kx * src.dw);
                if iy >= 0 && iy < src.h && ix >= 0 && ix < src.w {
                    // SAFETY: `(iy, ix)` is a pixel of the image, `first < c` a channel;
                    // a merged run stays inside the row (checked above).
                    rows_at[i] = unsafe { src.input.offset((iy * src.w + ix) * src.c + first as isize) };
                }
            }
            run(&rows_at[..mr], count);
            k += count;
            let next = first + count;
            first = next % c;
            kx += (next / c) as isize;
            if kx >= src.kw {
                kx -= src.kw;
                ky += 1;
            }
        }
    }
}

/// Pack rows `i0..i0+mc`, columns `pc..pc+kc` of a patch matrix like [`pack_a`]: per panel,
/// each run of columns that belongs to one tap reads `mr` pixels' channel runs.
///
/// # Safety
/// `src.input` holds the `h·w·c` floats of the NHWC image whose patches these are.
pub(super) unsafe fn pack_a_patches(mr: usize, mc: usize, kc: usize, src: &ConvPatches, i0: usize, pc: usize, out: &mut [f32]) {
    // Every panel is `mr` rows of the `kc` columns: the writes below stay inside.
    assert!(out.len() >= mc.next_multiple_of(mr) * kc, "patch panels need {} floats", mc.next_multiple_of(mr) * kc);
    let dst = out.as_mut_ptr();
    let mut o = 0;
    // SAFETY: the caller upholds the contract in `# Safety` above; each run's rows hold
    // `count` channels from their address; runs cover the panels' `kc` columns exactly, so
    // `o + count·mr` never passes the length asserted above.
    unsafe {
        for_each_tap_run(mr, mc, kc, src, i0, pc, |rows_at, count| {
            let base = dst.add(o);
            for (i, &at) in rows_at.iter().enumerate() {
                if at.is_null() {
                    for ch in 0..count {
                        *base.add(ch * mr + i) = 0.0;
                    }
                } else {
                    for ch in 0..count {
                        *base.add(ch * mr + i) = *at.add(ch);
                    }
                }
            }
            o += count * mr;
        })
    }
}

/// [`pack_a_patches`] straight into the bf16 kernel's pairs, for an image with an even number
/// of channels and a slab starting at an even column: every pair of columns is then two
/// consecutive channels of one tap, read side by side. Writes `⌈kc/2⌉` pairs per row group.
///
/// # Safety
/// As [`pack_a_patches`]; `src.c` and `pc` are even.
pub(super) unsafe fn pack_a_patches_pairs(mr: usize, mc: usize, kc: usize, src: &ConvPatches, i0: usize, pc: usize, out: &mut [f32]) {
    assert!(src.c.rem_euclid(2) == 0 && pc.is_multiple_of(2), "pair packing needs even channels and slabs");
    let mut o = 0;
    // SAFETY: as in `pack_a_patches`. Runs have an even length (as `c` and `pc` are) except a
    // short last slab's, whose odd last channel pairs with 0.
    unsafe {
        for_each_tap_run(mr, mc, kc, src, i0, pc, |rows_at, count| {
            for ch in (0..count).step_by(2) {
                for (slot, &at) in out[o..o + rows_at.len()].iter_mut().zip(rows_at) {
                    *slot = if at.is_null() { 0.0 } else { bf16_pair(*at.add(ch), if ch + 1 < count { *at.add(ch + 1) } else { 0.0 }) };
                }
                o += rows_at.len();
            }
        })
    }
}

/// Where the B operand comes from.
#[derive(Clone, Copy)]
pub(super) enum BSource {
    Strided(*const f32, isize, isize),
    /// Laid out by [`pack_b_all`].
    Packed(*const f32),
    /// Columns `first..first + n` (whole panels of one `nc` block) of a `total`-column B laid
    /// out by [`pack_b_all`]: one thread's share of a product split by columns.
    PackedColumns { b: *const f32, total: usize, first: usize },
}

/// Elements [`pack_b_all_bf16`] writes for a `k × n` matrix: as many as [`pack_b_all`] for
/// `⌈k/2⌉` rows.
pub fn packed_b_bf16_len(k: usize, n: usize, blk: Blocking) -> usize {
    // The bf16 kernel's panels are the wide f32 kernel's.
    packed_len(k.div_ceil(2), n, blk, kernel())
}

/// [`pack_b_all`] in the bf16 kernel's pairs, for [`super::Precision::Bf16`] products.
///
/// # Safety
/// B must be valid for `p < k, j < n`; `out` must hold [`packed_b_bf16_len`] elements.
pub unsafe fn pack_b_all_bf16(k: usize, n: usize, b: *const f32, rsb: isize, csb: isize, blk: Blocking, out: &mut [f32]) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let (mr, nr) = (kernel().mr, kernel().nr);
        let blk = blk.sanitized(mr);
        let kp = k.div_ceil(2);
        for jc in (0..n).step_by(blk.nc) {
            let nc = blk.nc.min(n - jc);
            for pc in (0..kp).step_by(blk.kc) {
                let kc = blk.kc.min(kp - pc);
                let at = packed_b_offset(kp, jc, pc, nc, blk.nc, nr);
                pack_b_pairs(nr, (2 * kc).min(k - 2 * pc), nc, b.offset((2 * pc) as isize * rsb + jc as isize * csb), rsb, csb, &mut out[at..]);
            }
        }
    }
}

/// Floats [`pack_b_all`] writes for a `k × n` matrix.
pub fn packed_b_len(k: usize, n: usize, blk: Blocking) -> usize {
    packed_len(k, n, blk, kernel_for(n))
}

/// Floats a `k × n` matrix takes packed into `kern`'s panels.
fn packed_len(k: usize, n: usize, blk: Blocking, kern: Kernel) -> usize {
    let blk = blk.sanitized(kern.mr);
    (0..n).step_by(blk.nc).map(|jc| blk.nc.min(n - jc).next_multiple_of(kern.nr)).sum::<usize>() * k
}

/// Where the packed `kc` slab at depth `pc` of the `nc` block at column `jc` starts.
pub(super) fn packed_b_offset(k: usize, jc: usize, pc: usize, nc: usize, nc_max: usize, nr: usize) -> usize {
    (jc / nc_max) * nc_max.next_multiple_of(nr) * k + nc.next_multiple_of(nr) * pc
}

/// Pack all of B (`k × n`, strided) once, for [`sgemm_packed_b`] with the same blocking:
/// every `nc` block, every `kc` slab, in the panel order the microkernel reads. Constant
/// right-hand operands (channels-last convolution weights) are packed at compile time.
///
/// # Safety
/// B must be valid for `p < k, j < n`; `out` must hold [`packed_b_len`] floats.
pub unsafe fn pack_b_all(k: usize, n: usize, b: *const f32, rsb: isize, csb: isize, blk: Blocking, out: &mut [f32]) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let (mr, nr) = (kernel_for(n).mr, kernel_for(n).nr);
        let blk = blk.sanitized(mr);
        for jc in (0..n).step_by(blk.nc) {
            let nc = blk.nc.min(n - jc);
            for pc in (0..k).step_by(blk.kc) {
                let kc = blk.kc.min(k - pc);
                let at = packed_b_offset(k, jc, pc, nc, blk.nc, nr);
                pack_b(nr, kc, nc, b.offset(pc as isize * rsb + jc as isize * csb), rsb, csb, &mut out[at..]);
            }
        }
    }
}

/// Rows of A once every `mc` block is padded to whole `MR` panels.
pub(super) fn padded_rows(m: usize, mr: usize, blk: Blocking) -> usize {
    (0..m).step_by(blk.mc).map(|ic| blk.mc.min(m - ic).next_multiple_of(mr)).sum()
}

/// Floats [`pack_a_all`] writes for an `m × k` matrix.
pub fn packed_a_len(m: usize, k: usize, blk: Blocking) -> usize {
    let mr = kernel().mr;
    padded_rows(m, mr, blk.sanitized(mr)) * k
}

/// Elements [`pack_a_all_bf16`] writes for an `m × k` matrix.
pub fn packed_a_bf16_len(m: usize, k: usize, blk: Blocking) -> usize {
    packed_a_len(m, k.div_ceil(2), blk)
}

/// [`pack_a_all`] in the bf16 kernel's pairs, for [`super::Precision::Bf16`] products.
///
/// # Safety
/// A must be valid for `i < m, p < k`; `out` must hold [`packed_a_bf16_len`] elements.
pub unsafe fn pack_a_all_bf16(m: usize, k: usize, a: *const f32, rsa: isize, csa: isize, blk: Blocking, out: &mut [f32]) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let mr = kernel().mr;
        let blk = blk.sanitized(mr);
        let rows = padded_rows(m, mr, blk);
        let kp = k.div_ceil(2);
        let mut wide = Vec::new();
        for pc in (0..kp).step_by(blk.kc) {
            let kc = blk.kc.min(kp - pc);
            let kw = (2 * kc).min(k - 2 * pc);
            for ic in (0..m).step_by(blk.mc) {
                let mc = blk.mc.min(m - ic);
                wide.resize(mc.next_multiple_of(mr) * kw, 0.0);
                pack_a(mr, mc, kw, a.offset(ic as isize * rsa + (2 * pc) as isize * csa), rsa, csa, &mut wide);
                pair_a_panels(mr, mc, kw, &wide, &mut out[rows * pc + ic * kc..]);
            }
        }
    }
}

/// Pack all of A (`m × k`, strided) once, for [`sgemm_packed_a`] with the same blocking:
/// every `kc` slab, every `mc` block, in the panel order the microkernel reads. Constant
/// operands (weights) are packed at compile time this way instead of on every call.
///
/// # Safety
/// A must be valid for `i < m, p < k`; `out` must hold [`packed_a_len`] floats.
pub unsafe fn pack_a_all(m: usize, k: usize, a: *const f32, rsa: isize, csa: isize, blk: Blocking, out: &mut [f32]) {
    // SAFETY: the caller upholds the contract in `# Safety` above.
    unsafe {
        let mr = kernel().mr;
        let blk = blk.sanitized(mr);
        let rows = padded_rows(m, mr, blk);
        for pc in (0..k).step_by(blk.kc) {
            let kc = blk.kc.min(k - pc);
            for ic in (0..m).step_by(blk.mc) {
                let mc = blk.mc.min(m - ic);
                let at = rows * pc + ic * kc;
                pack_a(mr, mc, kc, a.offset(ic as isize * rsa + pc as isize * csa), rsa, csa, &mut out[at..]);
            }
        }
    }
}

