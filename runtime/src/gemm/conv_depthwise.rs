//! A convolution through the GEMM and the depthwise convolution it feeds, computed together
//! (MobileNet's stem and expansions, each followed by a depthwise layer).
//!
//! Apart, the producer writes its whole result (4.8 MB for MobileNetV2's 112²×96
//! expansion) and the depthwise convolution reads it back, both from beyond L2; together,
//! each task keeps only the input rows its next output row's window needs, in a ring of
//! window-height rows that stays in L2. The producer's rows are computed by the same GEMM as
//! its kernel alone (row ranges of one product give the same bits as the whole product: a
//! 1×1 convolution multiplies the pixels, others read their patches in place), and the
//! depthwise rows by the same depthwise kernel, so the result is bit-identical to the two
//! kernels run one after the other, for every thread count.
//!
//! Tasks take contiguous bands of output rows, each with its own ring; a band's first rows
//! recompute the producer rows the band before it also needed (window height − stride rows
//! per band), so there are few bands: one per thread ([`bands`]), each thread's own unless
//! another finished first and took it (see `pool::parallel_tasks`).

use super::depthwise::{depthwise_row_from_lines, Depthwise, MAX_RING_WINDOW};
use super::pack::{ASource, BSource, ConvPatches};
use super::{gemm, Blocking, Epilogue, Precision};

/// The convolution feeding the depthwise one: `e[b, iy, ix, :] = epilogue(patch(b, iy, ix)
/// · B)` over the NHWC images at `patches.input` (`patches.row0` unused), whose output
/// width `patches.ow` is the depthwise input's `w`; B (`kh·kw·c_in × c`) packed by
/// `pack_b_all` with `blk`.
#[derive(Clone, Copy, Debug)]
pub struct Producer {
    pub patches: ConvPatches,
    pub b: *const f32,
    pub blk: Blocking,
    pub ep: Epilogue,
}

impl Producer {
    /// A 1×1, stride-1, unpadded window: the patches are the pixels themselves.
    fn pointwise(&self) -> bool {
        let p = &self.patches;
        p.kh == 1 && p.kw == 1 && p.sh == 1 && p.sw == 1 && p.pt == 0 && p.pl == 0 && p.ow == p.w
    }

    /// Rows `iy..iy + len` of image `b`'s result into `out` (`c` floats per pixel).
    ///
    /// # Safety
    /// As [`conv_depthwise`]; the rows are the producer's, `out` has room for them.
    unsafe fn rows(&self, g: &Depthwise, b: usize, iy: usize, len: usize, out: *mut f32) {
        let p = &self.patches;
        let (cin, image) = (p.c as usize, (p.h * p.w * p.c) as usize);
        let input = p.input.wrapping_add(b * image);
        let a = if self.pointwise() {
            ASource::Strided(input.wrapping_add(iy * g.w * cin), cin as isize, 1)
        } else {
            ASource::Patches(ConvPatches { input, row0: iy * g.w, ..*p })
        };
        let k = (p.kh * p.kw) as usize * cin;
        // SAFETY: the caller's contract.
        unsafe { gemm(len * g.w, g.c, k, a, BSource::Packed(self.b), out, g.c as isize, 1, false, self.blk, self.ep, Precision::F32) }
    }
}

/// The bands `out_rows` output rows are cut into on `threads` threads, each with its own
/// ring: one per thread (fewer where there are fewer rows). Two per thread let a thread
/// that finished first take the other's second band, but every band recomputes the producer
/// rows its window shares with the band before: on the Xeon, MobileNetV2 on two threads
/// measured 2.99 → 2.86 and 2.94 → 2.77 ms with one band each (8 alternations twice; arena
/// 2.68 → 2.30 MiB); on Zen 4 the same change had measured 3.62–4.40 against 3.70–4.54 ms,
/// within that host's noise. (Three bands on two threads had left one thread a band
/// behind: MobileNetV2's 28-row layer ran only 1.42× faster on two threads than on one.)
pub fn bands(threads: usize, out_rows: usize) -> usize {
    threads.min(out_rows).max(1)
}

/// Rows of the ring one task keeps: the window's height in input rows (`kh` taps `dh`
/// apart), or the image's `h` rows if fewer.
pub fn ring_rows(kh: usize, dh: usize, h: usize) -> usize {
    ((kh.max(1) - 1) * dh + 1).min(h.max(1))
}

/// `out = depthwise(producer(x))` (see the module documentation), on up to `threads`
/// threads, with `ring` (at least [`ring_rows`] input rows of `w·c` floats, once per band
/// that fits) as the only storage of the producer's result.
///
/// # Safety
/// `g` and the depthwise weights `wt`, `out` and `ep` are as [`super::depthwise::depthwise`]
/// requires, with `g.c` the producer's filters and `g.h`, `g.w` its output size; the
/// producer's images hold `n·h·w·c_in` floats (its `patches`' sizes), a window that gives
/// `g.h × g.w` pixels, `e.b` the packing of its weights with `e.blk`, `e.ep`'s bias `c`
/// floats (per column, no residual); `ring` holds `ring_floats` writable
/// floats, at least `ring_rows(kh, dh, h)·w·c`, overlapping nothing else; `kh ≤
/// MAX_RING_WINDOW`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn conv_depthwise(g: Depthwise, e: Producer, wt: *const f32, out: *mut f32, ep: Epilogue, ring: *mut f32, ring_floats: usize, threads: usize) {
    let row_floats = g.w * g.c;
    let task_floats = ring_rows(g.kh, g.dh, g.h) * row_floats;
    let rows = g.n * g.oh;
    let tasks = bands(threads, rows).min(ring_floats / task_floats.max(1));
    if tasks == 0 || g.kh > MAX_RING_WINDOW {
        // Not a call the JIT makes (it plans the ring and fuses only such windows): refuse
        // loudly rather than write outside the ring.
        super::refuse_call(&format!("conv_depthwise with a ring of {ring_floats} floats for {task_floats} per task and {} window rows", g.kh));
    }
    // SAFETY: tasks write disjoint bands of `out` and their own share of the ring, and read
    // the rest; everything outlives the call.
    let shared = unsafe { crate::pool::Shared::new((e, wt, out, ep, ring)) };
    crate::pool::parallel_tasks(threads.min(tasks), tasks, &|t| {
        let (e, wt, out, ep, ring) = shared.get();
        // SAFETY: the caller's contract; task `t`'s ring share is inside `ring_floats`.
        unsafe { band(&g, &e, rows * t / tasks, rows * (t + 1) / tasks, wt, out, ep, ring.add(t * task_floats)) };
    });
}

/// Output rows `lo..hi`, producer rows computed into `ring` as the windows reach them.
///
/// # Safety
/// As [`conv_depthwise`], `ring` holding `ring_rows(g.kh, g.dh, g.h)·w·c` floats.
#[allow(clippy::too_many_arguments)]
unsafe fn band(g: &Depthwise, e: &Producer, lo: usize, hi: usize, wt: *const f32, out: *mut f32, ep: Epilogue, ring: *mut f32) {
    let span = ring_rows(g.kh, g.dh, g.h);
    let window = (g.kh - 1) * g.dh + 1;
    let row_floats = g.w * g.c;
    // The image whose rows the ring holds, and the next of its rows to compute.
    let (mut image, mut next) = (usize::MAX, 0);
    for r in lo..hi {
        let (b, oy) = (r / g.oh, r % g.oh);
        // The window's input rows inside the image: `[need_lo, need_hi)`.
        let top = oy * g.sh;
        let need_lo = top.saturating_sub(g.pt).min(g.h);
        let need_hi = (top + window).saturating_sub(g.pt).min(g.h);
        next = if b == image { next.max(need_lo) } else { need_lo };
        image = b;
        // Row `iy` lives in slot `iy mod span`: the window's rows are distinct slots, and a
        // new row overwrites only one the windows have passed.
        while next < need_hi {
            let slot = next % span;
            let len = (need_hi - next).min(span - slot);
            // SAFETY: rows `next..next + len` are the producer's, slots `slot..slot + len`
            // inside the ring.
            unsafe { e.rows(g, b, next, len, ring.add(slot * row_floats)) };
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

    /// Against the two kernels run apart (the producer by the GEMM into a whole tensor, then
    /// the depthwise kernel), bit for bit: 1×1 producers and a strided, padded 3×3 one (its
    /// patches read in place and, at the borders, packed), depthwise strides 1 and 2 with
    /// padding, two images, rings for one to three threads (bands that start mid-image and
    /// cross images), each the size the JIT plans.
    #[test]
    fn matches_the_two_kernels_apart() {
        // n, cin, c, producer (input size, kernel, stride, pad), depthwise (kernel, stride, pad)
        let cases = [
            (1, 16, 96, (13, 11), (1, 1, 0), (3, 2, 1)),
            (2, 24, 40, (9, 8), (1, 1, 0), (3, 1, 1)),
            (1, 8, 19, (7, 10), (1, 1, 0), (5, 1, 2)),
            (1, 12, 32, (6, 6), (1, 1, 0), (3, 2, 0)),
            (2, 3, 32, (17, 15), (3, 2, 1), (3, 1, 1)),
        ];
        for (n, cin, c, (ih, iw), (pk, ps, pp), (k, s, p)) in cases {
            let (h, w) = ((ih + 2 * pp - pk) / ps + 1, (iw + 2 * pp - pk) / ps + 1);
            let oh = (h + 2 * p - k) / s + 1;
            let ow = (w + 2 * p - k) / s + 1;
            let g = Depthwise { n, c, h, w, kh: k, kw: k, sh: s, sw: s, dh: 1, dw: 1, pt: p, pl: p, oh, ow };
            let x: Vec<f32> = (0..n * ih * iw * cin).map(|i| ((i * 7 % 23) as f32 - 11.0) / 9.0).collect();
            let kk = pk * pk * cin;
            let bm: Vec<f32> = (0..kk * c).map(|i| ((i * 5 % 17) as f32 - 8.0) / 13.0).collect();
            let bias_e: Vec<f32> = (0..c).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
            let wt: Vec<f32> = (0..k * k * c).map(|i| ((i * 3 % 11) as f32 - 5.0) / 7.0).collect();
            let bias_d: Vec<f32> = (0..c).map(|i| (i % 5) as f32 * 0.2 - 0.4).collect();
            // Slabs of 8 along k: products whose sums cross slabs too.
            let blk = Blocking { kc: 8, mc: 32, nc: 64 };
            let mut packed = vec![0.0f32; packed_b_len(kk, c, blk)];
            unsafe { pack_b_all(kk, c, bm.as_ptr(), c as isize, 1, blk, &mut packed) };
            let e_ep = Epilogue { bias: bias_e.as_ptr(), bias_per_row: false, residual: std::ptr::null(), act: Activation::Relu6, gelu: false };
            let d_ep = Epilogue { bias: bias_d.as_ptr(), act: Activation::Relu6, ..e_ep };
            let i = |v: usize| v as isize;
            let patches = ConvPatches { input: x.as_ptr(), c: i(cin), h: i(ih), w: i(iw), kh: i(pk), kw: i(pk), sh: i(ps), sw: i(ps), dh: 1, dw: 1, pt: i(pp), pl: i(pp), ow: i(w), row0: 0 };
            let e = Producer { patches, b: packed.as_ptr(), blk, ep: e_ep };
            // The producer alone, as its own kernel runs it: one product per image.
            let mut produced = vec![0.0f32; n * h * w * c];
            for b in 0..n {
                let a = if e.pointwise() { ASource::Strided(x[b * ih * iw * cin..].as_ptr(), cin as isize, 1) } else { ASource::Patches(ConvPatches { input: x[b * ih * iw * cin..].as_ptr(), ..patches }) };
                unsafe { gemm(h * w, c, kk, a, BSource::Packed(packed.as_ptr()), produced[b * h * w * c..].as_mut_ptr(), c as isize, 1, false, blk, e_ep, Precision::F32) };
            }
            let mut want = vec![0.0f32; n * oh * ow * c];
            unsafe { crate::gemm::depthwise::depthwise(g, 0, n * oh, produced.as_ptr(), wt.as_ptr(), want.as_mut_ptr(), d_ep) };
            for threads in 1..=3 {
                // The ring the JIT plans: window-height rows per band.
                let mut ring = vec![f32::NAN; (bands(threads, n * oh) * ring_rows(k, 1, h)).min(n * h) * w * c];
                let mut got = vec![f32::NAN; want.len()];
                unsafe { conv_depthwise(g, e, wt.as_ptr(), got.as_mut_ptr(), d_ep, ring.as_mut_ptr(), ring.len(), threads) };
                if let Some(i) = (0..want.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
                    panic!("{g:?}, {threads} threads: element {i}: {} vs {}", got[i], want[i]);
                }
            }
        }
    }
}
