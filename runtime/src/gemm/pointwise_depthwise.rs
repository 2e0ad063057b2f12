//! A pointwise (1×1) convolution and the depthwise convolution it feeds, computed together
//! (MobileNet's expansion then depthwise layers).
//!
//! Apart, the expansion writes its whole result (4.8 MB for MobileNetV2's 112²×96) and the
//! depthwise convolution reads it back, both from beyond L2; together, each task keeps only
//! the input rows its next output row's window needs, in a ring of window-height rows that
//! stays in L2. The expansion's rows are computed by the same GEMM as the pointwise kernel
//! alone (row ranges of one product give the same bits as the whole product), and the
//! depthwise rows by the same depthwise kernel, so the result is bit-identical to the two
//! kernels run one after the other, for every thread count.
//!
//! Tasks take contiguous bands of output rows; a band's first rows recompute the expansion
//! rows the band before it also needed (window height − stride rows per band), so there is
//! one band per thread.

use super::depthwise::{depthwise_row_from_lines, Depthwise, MAX_RING_WINDOW};
use super::pack::{ASource, BSource};
use super::{gemm, Blocking, Epilogue, Precision};

/// The expansion feeding the depthwise convolution: `e[b, iy, ix, :] = epilogue(x[b, iy, ix,
/// :] · B)`, B (`cin × c`) packed by `pack_b_all` with `blk`.
#[derive(Clone, Copy, Debug)]
pub struct Expansion {
    pub x: *const f32,
    pub cin: usize,
    pub b: *const f32,
    pub blk: Blocking,
    pub ep: Epilogue,
}

/// Rows of the ring one task keeps: the window's height in input rows (`kh` taps `dh`
/// apart), or the image's `h` rows if fewer.
pub fn ring_rows(kh: usize, dh: usize, h: usize) -> usize {
    ((kh.max(1) - 1) * dh + 1).min(h.max(1))
}

/// `out = depthwise(expansion(x))` (see the module documentation), on up to `threads` threads,
/// with `ring` (at least [`ring_rows`] input rows of `w·c` floats, once per thread that
/// fits) as the only storage of the expansion.
///
/// # Safety
/// `g` and the depthwise weights `wt`, `out` and `ep` are as [`super::depthwise::depthwise`]
/// requires, with `g.c` the expansion's channels and `g.h`, `g.w` its (and `x`'s) size;
/// `e.x` holds `n·h·w·cin` floats, `e.b` the packing of a `cin × c` matrix with `e.blk`,
/// `e.ep`'s bias `c` floats (per column, no residual); `ring` holds `ring_floats` writable
/// floats, at least `ring_rows(kh, dh, h)·w·c`, overlapping nothing else; `kh ≤
/// MAX_RING_WINDOW`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn pointwise_depthwise(g: Depthwise, e: Expansion, wt: *const f32, out: *mut f32, ep: Epilogue, ring: *mut f32, ring_floats: usize, threads: usize) {
    let row_floats = g.w * g.c;
    let task_floats = ring_rows(g.kh, g.dh, g.h) * row_floats;
    let rows = g.n * g.oh;
    let tasks = threads.min(ring_floats / task_floats.max(1)).min(rows);
    if tasks == 0 || g.kh > MAX_RING_WINDOW {
        // Not a call the JIT makes (it plans the ring and fuses only such windows): refuse
        // loudly rather than write outside the ring.
        eprintln!("nnc runtime: pointwise_depthwise with a ring of {ring_floats} floats for {task_floats} per task and {} window rows", g.kh);
        std::process::abort();
    }
    // SAFETY: tasks write disjoint bands of `out` and their own share of the ring, and read
    // the rest; everything outlives the call.
    let shared = unsafe { crate::pool::Shared::new((e, wt, out, ep, ring)) };
    crate::pool::parallel_tasks(tasks, tasks, &|t| {
        let (e, wt, out, ep, ring) = shared.get();
        // SAFETY: the caller's contract; task `t`'s ring share is inside `ring_floats`.
        unsafe { band(&g, &e, rows * t / tasks, rows * (t + 1) / tasks, wt, out, ep, ring.add(t * task_floats)) };
    });
}

/// Output rows `lo..hi`, expansion rows computed into `ring` as the windows reach them.
///
/// # Safety
/// As [`pointwise_depthwise`], `ring` holding `ring_rows(g.kh, g.dh, g.h)·w·c` floats.
#[allow(clippy::too_many_arguments)]
unsafe fn band(g: &Depthwise, e: &Expansion, lo: usize, hi: usize, wt: *const f32, out: *mut f32, ep: Epilogue, ring: *mut f32) {
    let span = ring_rows(g.kh, g.dh, g.h);
    let row_floats = g.w * g.c;
    // The image whose rows the ring holds, and the next of its rows to compute.
    let (mut image, mut next) = (usize::MAX, 0);
    for r in lo..hi {
        let (b, oy) = (r / g.oh, r % g.oh);
        // The window's input rows inside the image: `[need_lo, need_hi)`.
        let top = oy * g.sh;
        let need_lo = top.saturating_sub(g.pt).min(g.h);
        let need_hi = (top + span).saturating_sub(g.pt).min(g.h);
        next = if b == image { next.max(need_lo) } else { need_lo };
        image = b;
        // Row `iy` lives in slot `iy mod span`: the window's rows are distinct slots, and a
        // new row overwrites only one the windows have passed.
        while next < need_hi {
            let slot = next % span;
            let len = (need_hi - next).min(span - slot);
            // SAFETY: rows `next..next + len` of image `b` are inside `x`, slots
            // `slot..slot + len` inside the ring.
            unsafe {
                let a = ASource::Strided(e.x.add((b * g.h + next) * g.w * e.cin), e.cin as isize, 1);
                gemm(len * g.w, g.c, e.cin, a, BSource::Packed(e.b), ring.add(slot * row_floats), g.c as isize, 1, false, e.blk, e.ep, Precision::F32);
            }
            next += len;
        }
        // The tap rows inside the image, all in the ring now (the others are never read).
        let lines = std::array::from_fn(|ky| match (top + ky * g.dh).checked_sub(g.pt) {
            Some(iy) if iy < g.h && ky < g.kh => ring.wrapping_add((iy % span) * row_floats).cast_const(),
            _ => std::ptr::null(),
        });
        // SAFETY: as above; `kh ≤ MAX_RING_WINDOW` (checked on entry).
        unsafe { depthwise_row_from_lines(*g, r, lines, wt, out, ep) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::{pack_b_all, packed_b_len, Activation};

    /// Against the two kernels run apart (the expansion by the GEMM into a whole tensor, then
    /// the depthwise kernel), bit for bit: strides 1 and 2, padding, two images, rings for
    /// one to three threads (bands that start mid-image and cross images), each the size the
    /// JIT plans.
    #[test]
    fn matches_the_two_kernels_apart() {
        // n, cin, c, h, w, k, stride, pad
        for (n, cin, c, h, w, k, s, p) in [(1, 16, 96, 13, 11, 3, 2, 1), (2, 24, 40, 9, 8, 3, 1, 1), (1, 8, 19, 7, 10, 5, 1, 2), (1, 12, 32, 6, 6, 3, 2, 0)] {
            let oh = (h + 2 * p - k) / s + 1;
            let ow = (w + 2 * p - k) / s + 1;
            let g = Depthwise { n, c, h, w, kh: k, kw: k, sh: s, sw: s, dh: 1, dw: 1, pt: p, pl: p, oh, ow };
            let x: Vec<f32> = (0..n * h * w * cin).map(|i| ((i * 7 % 23) as f32 - 11.0) / 9.0).collect();
            let bm: Vec<f32> = (0..cin * c).map(|i| ((i * 5 % 17) as f32 - 8.0) / 13.0).collect();
            let bias_e: Vec<f32> = (0..c).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
            let wt: Vec<f32> = (0..k * k * c).map(|i| ((i * 3 % 11) as f32 - 5.0) / 7.0).collect();
            let bias_d: Vec<f32> = (0..c).map(|i| (i % 5) as f32 * 0.2 - 0.4).collect();
            // Slabs of 8 along k: products whose sums cross slabs too.
            let blk = Blocking { kc: 8, mc: 32, nc: 64 };
            let mut packed = vec![0.0f32; packed_b_len(cin, c, blk)];
            unsafe { pack_b_all(cin, c, bm.as_ptr(), c as isize, 1, blk, &mut packed) };
            let e_ep = Epilogue { bias: bias_e.as_ptr(), bias_per_row: false, residual: std::ptr::null(), act: Activation::Relu6, gelu: false };
            let d_ep = Epilogue { bias: bias_d.as_ptr(), act: Activation::Relu6, ..e_ep };
            let mut expanded = vec![0.0f32; n * h * w * c];
            unsafe { gemm(n * h * w, c, cin, ASource::Strided(x.as_ptr(), cin as isize, 1), BSource::Packed(packed.as_ptr()), expanded.as_mut_ptr(), c as isize, 1, false, blk, e_ep, Precision::F32) };
            let mut want = vec![0.0f32; n * oh * ow * c];
            unsafe { crate::gemm::depthwise::depthwise(g, 0, n * oh, expanded.as_ptr(), wt.as_ptr(), want.as_mut_ptr(), d_ep) };
            let e = Expansion { x: x.as_ptr(), cin, b: packed.as_ptr(), blk, ep: e_ep };
            for threads in 1..=3 {
                // The ring the JIT plans: window-height rows per thread.
                let mut ring = vec![f32::NAN; (threads * ring_rows(k, 1, h)).min(n * h) * w * c];
                let mut got = vec![f32::NAN; want.len()];
                unsafe { pointwise_depthwise(g, e, wt.as_ptr(), got.as_mut_ptr(), d_ep, ring.as_mut_ptr(), ring.len(), threads) };
                if let Some(i) = (0..want.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
                    panic!("{g:?}, {threads} threads: element {i}: {} vs {}", got[i], want[i]);
                }
            }
        }
    }
}
