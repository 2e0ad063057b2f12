//! Winograd convolution (Lavin & Gray, 2016): a stride-1 3×3 convolution as matrix products
//! on transformed tiles. F(4×4, 3×3) ([`Tile::F4`]) takes 36 products, 2.25 multiplications
//! per output instead of 9; F(2×2, 3×3) ([`Tile::F2`], NHWC images only) 16 products, 4 per
//! output, with transformed filters 16/9 of the filters' size instead of 4× (see [`Tile`]).
//!
//! Per image, with `C` input and `K` output channels and the output cut into `T` tiles of
//! 4×4:
//! 1. input transform: each channel's 6×6 input patch of each tile, `Bᵀ d B` → `V[ξ][c][t]`
//!    (36 matrices `C × T`);
//! 2. 36 GEMMs, `U = G g Gᵀ` the filters transformed and packed at compile time
//!    ([`transform_filters`]) so that no call repacks them (deep layers have few tiles and
//!    many filters: repacking `K × C` for four tiles would cost more than the product). The
//!    wider side of the product goes where the microkernel's register tile is wide
//!    ([`filters_left`]): `M[ξ] = U[ξ] · V[ξ]` (`K × C` by `C × T`, filters as packed A) with
//!    many tiles, `M[ξ]ᵀ = V[ξ]ᵀ · U[ξ]ᵀ` (filters as packed B) with few;
//! 3. output transform: `Aᵀ m A` of each tile's 36 values → the 4×4 outputs inside the image;
//!    then the GEMM epilogue (bias per channel, residual, activation) on the image's result.
//!
//! (F(2×2, 3×3) likewise, with 4×4 input tiles, 16 matrices and 2×2 outputs.)
//!
//! F(4×4)'s points are 0, ±1, ±2 and ∞ (the matrices below), F(2×2)'s 0, ±1 and ∞. Their
//! transforms lose a few bits against direct summation; the tests bound the difference
//! against an f64 direct convolution.

use super::epilogue::Epilogue;
use super::pack::{ASource, BSource};
use super::{gemm_threaded, Blocking, Precision};

/// F(4×4, 3×3)'s input tile side, output tile side, and transformed points per tile (the
/// row-major kernel's only tile; the most points of any tile).
const IN: usize = 6;
const OUT: usize = 4;
const POINTS: usize = IN * IN;

/// The output tile of a Winograd convolution, F(m×m, 3×3).
///
/// F(4×4) needs the fewest multiplications, but its transformed filters are four times the
/// filters: on images with few tiles and many channels (ResNet-18's 7×7×512 layers: 4 tiles,
/// 38 MB of transformed filters a layer) streaming them costs more than the products save.
/// F(2×2) reads 16/9 of the filters (17 MB there) for 4 multiplications per output, less
/// than half the GEMM's 9.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tile {
    /// F(4×4, 3×3): 6×6 input tiles, 36 points.
    F4,
    /// F(2×2, 3×3): 4×4 input tiles, 16 points.
    F2,
}

impl Tile {
    /// Side of the output tile.
    pub const fn output(self) -> usize {
        match self {
            Tile::F4 => 4,
            Tile::F2 => 2,
        }
    }

    /// Side of the input tile (the output's plus the window's 2).
    pub const fn input(self) -> usize {
        self.output() + 2
    }

    /// Transformed points per tile: products per block of tiles.
    pub const fn points(self) -> usize {
        self.input() * self.input()
    }
}

const BT: [[f32; 6]; 6] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];

/// `G·v` for the filter transform's
/// `G = [[1/4, 0, 0], [-1/6, -1/6, -1/6], [-1/6, 1/6, -1/6], [1/24, 1/12, 1/6], [1/24, -1/12, 1/6], [0, 0, 1]]`.
/// Multiplications by the reciprocals rather than divisions (this runs for every filter at
/// compile time); in f64, the difference never reaches the f32 result's rounding.
#[inline(always)]
fn g_times([a, b, c]: [f64; 3]) -> [f64; 6] {
    const SIXTH: f64 = 1.0 / 6.0;
    let (even, odd) = (a + c, b);
    let (outer, inner) = (a * (1.0 / 24.0) + c * SIXTH, b * (1.0 / 12.0));
    [a * 0.25, -(even + odd) * SIXTH, -(even - odd) * SIXTH, outer + inner, outer - inner, c]
}

const AT: [[f32; 6]; 4] = [[1.0, 1.0, 1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, 2.0, -2.0, 0.0], [0.0, 1.0, 1.0, 4.0, 4.0, 0.0], [0.0, 1.0, -1.0, 8.0, -8.0, 1.0]];

/// Tiles of an output of `oh × ow`.
pub fn tiles(tile: Tile, oh: usize, ow: usize) -> usize {
    oh.div_ceil(tile.output()) * ow.div_ceil(tile.output())
}

/// The cache blocking of the points' products, fixed because their B panels are packed at compile
/// time for it.
const BLOCKING: Blocking = Blocking { kc: 256, mc: 96, nc: 2048 };

/// Whether the filters are the products' left operand (`M = U·V`, `K × T`), for blocks of
/// `t` tiles and `k` filters; else the right one (`Mᵀ = Vᵀ·Uᵀ`, `T × K`). Measured on ResNet-18's
/// layers: 56×56 (196 tiles, 64 filters) runs 20% faster with the filters left, 7×7 (4 tiles)
/// 4× faster with them right.
pub fn filters_left(k: usize, t: usize) -> bool {
    t >= k
}

/// Floats of one point's packed filters.
fn packed_point_len(c: usize, k: usize, left: bool) -> usize {
    if left {
        super::pack::packed_a_len(k, c, BLOCKING)
    } else {
        super::pack::packed_b_len(c, k, BLOCKING)
    }
}

/// Tiles transformed and multiplied together: the scratch stays small (ResNet-18's arena is
/// no larger than with the GEMM) and a block's transformed tiles stay in L2. Blocks of 32,
/// 64 and 128 tiles ran ResNet-18 alike (35.5–36.6 ms), all faster than one block per image
/// (38.3 ms), once the points' matrices were padded ([`point_stride`]).
#[cfg(not(test))]
const TILE_BLOCK: usize = 64;
/// Small in unit tests, so that they run images of several blocks.
#[cfg(test)]
const TILE_BLOCK: usize = 32;

/// The fewest tiles per thread of an image split across threads by tiles (see
/// `nhwc::tiles_per_task`). Counted in tiles whatever their size: split by tiles, each
/// thread reads every point's filters once for its tiles, so the work that pays for that
/// read is its tiles' share of each point's product (measured with F(4×4); F(2×2) is
/// chosen only for images below it).
const MIN_TILES_PER_THREAD: usize = 24;

/// Floats between consecutive points' matrices of `rows × block` in the scratch: padded by a
/// cache line so that a tile's values, one per point, do not fall in one cache set
/// (with 128 tiles and 64 channels the points were exactly 32 KiB apart, and layers ran 1.8×
/// slower).
fn point_stride(rows: usize, block: usize) -> usize {
    rows * block + 16
}

/// Tiles in each block (the last may have fewer) for an output of `oh × ow`.
pub fn block_tiles(tile: Tile, oh: usize, ow: usize) -> usize {
    tiles(tile, oh, ow).min(TILE_BLOCK)
}

/// Floats of scratch one image needs: one block's transformed input and products.
pub fn scratch_floats(tile: Tile, c: usize, k: usize, oh: usize, ow: usize) -> usize {
    let block = block_tiles(tile, oh, ow);
    tile.points() * (point_stride(c, block) + point_stride(k, block))
}

/// `G g Gᵀ` of every filter of `w` (`[k, c, 3, 3]`, row-major), in f64 then rounded once,
/// for each of the 36 points packed as the GEMM operand [`filters_left`] says for an
/// output of `oh × ow`: `U` (`K × C`) in A panels, or `Uᵀ` (`C × K`) in B panels.
pub fn transform_filters(w: &[f32], k: usize, c: usize, oh: usize, ow: usize) -> Vec<f32> {
    transform_filters_as(w, k, c, filters_left(k, block_tiles(Tile::F4, oh, ow)))
}

/// [`transform_filters`] for [`conv3x3_nhwc`] with `tile`: every point's `Uᵀ` (`C × K`) in
/// B panels.
pub fn transform_filters_nhwc(w: &[f32], k: usize, c: usize, tile: Tile) -> Vec<f32> {
    let mut packed = vec![0.0f32; transformed_filters_nhwc_len(k, c, tile)];
    transform_filters_nhwc_into(w, k, c, tile, &mut packed);
    packed
}

/// Floats [`transform_filters_nhwc`] makes of `k` filters of `c` channels.
pub fn transformed_filters_nhwc_len(k: usize, c: usize, tile: Tile) -> usize {
    tile.points() * packed_point_len(c, k, false)
}

/// [`transform_filters_nhwc`] into `out`, [`transformed_filters_nhwc_len`] long, in storage
/// the caller chose (the compiler's is on cache lines). Every element is written, the
/// panels' padding included.
pub fn transform_filters_nhwc_into(w: &[f32], k: usize, c: usize, tile: Tile, out: &mut [f32]) {
    assert_eq!(w.len(), k * c * 9, "a [k, c, 3, 3] filter");
    assert_eq!(out.len(), transformed_filters_nhwc_len(k, c, tile), "room for the transformed filters");
    transform_filters_right(w, k, c, tile, out)
}

/// [`transform_filters`] with the filters as the products' left operand or not.
fn transform_filters_as(w: &[f32], k: usize, c: usize, left: bool) -> Vec<f32> {
    assert_eq!(w.len(), k * c * 9, "a [k, c, 3, 3] filter");
    if !left {
        return transform_filters_nhwc(w, k, c, Tile::F4);
    }
    // Each point's matrix, row-major in the orientation its packing reads contiguously.
    let mut u = vec![0.0f32; POINTS * k * c];
    // Filters are transformed a few at a time into a buffer that stays in L2, then spread to
    // the 36 matrices: writing 36 streams across megabytes directly was 3× slower.
    const FILTERS: usize = 16;
    // Points a cache line more than their matrices apart: 36 matrices of 16×512 floats
    // exactly 32 KiB apart put every value's 36 writes in one L1 set (94 ms for 512×512
    // filters, against 8 padded).
    let ps = FILTERS * c + 16;
    let mut local = vec![0.0f32; POINTS * ps];
    for f0 in (0..k).step_by(FILTERS) {
        let fb = FILTERS.min(k - f0);
        // Laid out as the matrices are: [p][fi][ch] (left) or [p][ch][fi] (right), the
        // innermost loop walking the innermost index (the other order wrote 36 cache lines
        // per filter value, megabytes apart: 87 ms for 512×512 filters).
        let (outer, inner) = if left { (fb, c) } else { (c, fb) };
        for o in 0..outer {
            for i in 0..inner {
                let (fi, ch) = if left { (o, i) } else { (i, o) };
                let g = &w[((f0 + fi) * c + ch) * 9..][..9];
                for (p, v) in transform_filter(Tile::F4, g).into_iter().enumerate() {
                    let at = p * ps + if left { fi * c + ch } else { ch * FILTERS + fi };
                    local[at] = v;
                }
            }
        }
        for p in 0..POINTS {
            let matrix = &mut u[p * k * c..][..k * c];
            if left {
                for fi in 0..fb {
                    matrix[(f0 + fi) * c..][..c].copy_from_slice(&local[p * ps + fi * c..][..c]);
                }
            } else {
                for ch in 0..c {
                    matrix[ch * k + f0..][..fb].copy_from_slice(&local[p * ps + ch * FILTERS..][..fb]);
                }
            }
        }
    }
    let len = packed_point_len(c, k, left);
    let mut packed = vec![0.0f32; POINTS * len];
    for (p, out) in packed.chunks_exact_mut(len).enumerate() {
        let up = u[p * k * c..].as_ptr();
        // SAFETY: point p's row-major `k × c` (left) or `c × k` matrix; `out` has the
        // packed length.
        unsafe {
            if left {
                super::pack::pack_a_all(k, c, up, c as isize, 1, BLOCKING, out);
            } else {
                super::pack::pack_b_all(c, k, up, k as isize, 1, BLOCKING, out);
            }
        }
    }
    packed
}

/// The filters' transforms as B panels (`Uᵀ`, `C × K` per point), one panel of filters at a
/// time: each panel's `C × NR` block of every point is transformed into a buffer, then
/// packed straight to its place (going through the whole `C × K` matrices first took
/// 100 ms for 512×512 filters).
fn transform_filters_right(w: &[f32], k: usize, c: usize, tile: Tile, packed: &mut [f32]) {
    let kern = super::microkernel::kernel_for(k);
    let (nr, blk) = (kern.nr, BLOCKING.sanitized(kern.mr));
    let (len, points) = (packed_point_len(c, k, false), tile.points());
    // Points a cache line more than their blocks apart, so that one filter value's writes
    // (one per point) do not share an L1 set.
    let ps = c * nr + 16;
    let mut local = vec![0.0f32; points * ps];
    for f0 in (0..k).step_by(nr) {
        let fb = nr.min(k - f0);
        for ch in 0..c {
            for fi in 0..fb {
                for (p, v) in transform_filter(tile, &w[((f0 + fi) * c + ch) * 9..][..9]).into_iter().take(points).enumerate() {
                    local[p * ps + ch * nr + fi] = v;
                }
            }
        }
        // Where `pack_b_all` puts these columns: their `nc` block, each `kc` slab, panel.
        let jc = f0 / blk.nc * blk.nc;
        let nc = blk.nc.min(k - jc);
        for p in 0..points {
            for pc in (0..c).step_by(blk.kc) {
                let kc = blk.kc.min(c - pc);
                let at = p * len + super::pack::packed_b_offset(c, jc, pc, nc, blk.nc, nr) + (f0 - jc) * kc;
                // SAFETY: the block holds `kc` rows of `nr` floats from row `pc` (its first
                // `fb` columns written); the panel's place lies inside point p's packing.
                unsafe { super::pack::pack_b(nr, kc, fb, local[p * ps + pc * nr..].as_ptr(), nr as isize, 1, &mut packed[at..]) };
            }
        }
    }
}

/// `G·v` for F(2×2, 3×3)'s `G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]`,
/// padded to F(4×4)'s six values.
#[inline(always)]
fn g_times_f2([a, b, c]: [f64; 3]) -> [f64; 6] {
    [a, (a + b + c) * 0.5, (a - b + c) * 0.5, c, 0.0, 0.0]
}

/// `G g Gᵀ` of one 3×3 filter for `tile`, point-major (`tile.points()` values, the rest
/// zero), computed in f64 and rounded once.
fn transform_filter(tile: Tile, g: &[f32]) -> [f32; POINTS] {
    match tile {
        Tile::F4 => transform_filter_as::<6>(g, g_times),
        Tile::F2 => transform_filter_as::<4>(g, g_times_f2),
    }
}

/// [`transform_filter`] for a tile of input side `SIDE` whose `G·v` is `g_times` (inlined:
/// compile time transforms every filter of the model, 2.4 million of them in ResNet-18).
#[inline(always)]
fn transform_filter_as<const SIDE: usize>(g: &[f32], g_times: impl Fn([f64; 3]) -> [f64; 6]) -> [f32; POINTS] {
    // G g (SIDE×3), then (G g) Gᵀ (SIDE×SIDE).
    let mut gg = [[0.0f64; 3]; SIDE];
    for j in 0..3 {
        let col = g_times([g[j] as f64, g[3 + j] as f64, g[6 + j] as f64]);
        for i in 0..SIDE {
            gg[i][j] = col[i];
        }
    }
    let mut u = [0.0f32; POINTS];
    for (i, row) in gg.iter().enumerate() {
        let t = g_times(*row);
        for j in 0..SIDE {
            u[i * SIDE + j] = t[j] as f32;
        }
    }
    u
}

/// One image by F(4×4, 3×3): `out[K, oh, ow] = conv3x3(x[C, h, w])` with zero padding
/// `[top, left, bottom, right]`, then `ep` on the `K × oh·ow` result (bias per row).
///
/// # Safety
/// `x` holds `c·h·w` floats; `u` is [`transform_filters`] of a `[k, c, 3, 3]` filter, made on
/// this CPU (its panels are the running microkernel's); `out`
/// holds `k·oh·ow` writable floats where `oh = h + top + bottom - 2` and `ow` likewise (both
/// positive); `scratch` holds [`scratch_floats`]`(Tile::F4, ..)` writable floats; none of the writable
/// buffers overlap each other or the inputs; `ep`'s bias holds `k` floats and its residual is
/// valid like `out`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn conv3x3(threads: usize, c: usize, h: usize, w: usize, k: usize, pad: [usize; 4], x: *const f32, u: *const f32, out: *mut f32, scratch: *mut f32, ep: Epilogue) {
    let (oh, ow) = (h + pad[0] + pad[2] - 2, w + pad[1] + pad[3] - 2);
    let (th, tw) = (oh.div_ceil(OUT), ow.div_ceil(OUT));
    let t = th * tw;
    let block = t.min(TILE_BLOCK);
    let v = scratch;
    // SAFETY: the scratch holds 36·(c + k)·block floats.
    let (vs, ms) = (point_stride(c, block), point_stride(k, block));
    let m = unsafe { scratch.add(POINTS * vs) };
    let threads = threads.max(1);
    let left = filters_left(k, block);
    let len = packed_point_len(c, k, left);
    // Pointers cross into the worker closures as integers (`usize` is `Sync`).
    let (xa, va, ma, ua, oa) = (x as usize, v as usize, m as usize, u as usize, out as usize);
    // Blocks of tiles, so that the scratch stays bounded whatever the image size.
    for t0 in (0..t).step_by(block) {
        let tb = block.min(t - t0);
        let tiles = Tiles { th, tw, t0, tb };
        // 1. Input transform, channels split across threads.
        crate::pool::parallel_for(threads.min(c), &|task| {
            let (lo, hi) = share(c, threads.min(c), task);
            for ch in lo..hi {
                // SAFETY: channel `ch` of x and of V's 36 matrices; tasks take disjoint channels.
                unsafe { input_transform(xa as *const f32, va as *mut f32, vs, ch, h, w, pad, tiles) };
            }
        });
        // 2. The 36 products, `M[p] (k × tb) = U[p] · V[p]` or `M[p]ᵀ (tb × k) = V[p]ᵀ ·
        //    U[p]ᵀ`, the points split across threads (each product alone is usually below the
        //    GEMM's threshold for splitting).
        crate::pool::parallel_tasks(threads, POINTS, &|p| {
            // SAFETY: U[p] (or its transpose) is packed at `u + p·len`; V[p] is c × tb; M[p]
            // has k·tb floats; all inside their buffers, and tasks write disjoint points.
            unsafe {
                let (filters, v, mp) = ((ua as *const f32).add(p * len), (va as *const f32).add(p * vs), (ma as *mut f32).add(p * ms));
                if left {
                    gemm_threaded(1, k, tb, c, ASource::Packed(filters), BSource::Strided(v, tb as isize, 1), mp, tb as isize, 1, false, BLOCKING, Epilogue::NONE, Precision::F32);
                } else {
                    gemm_threaded(1, tb, k, c, ASource::Strided(v, 1, tb as isize), BSource::Packed(filters), mp, k as isize, 1, false, BLOCKING, Epilogue::NONE, Precision::F32);
                }
            }
        });
        // 3. Output transform, output channels split across threads.
        crate::pool::parallel_for(threads.min(k), &|task| {
            let (lo, hi) = share(k, threads.min(k), task);
            for f in lo..hi {
                // SAFETY: channel `f` of M's matrices and of out; tasks take disjoint channels.
                unsafe { output_transform(ma as *const f32, oa as *mut f32, ms, f, k, oh, ow, tiles, left) };
            }
        });
    }
    // 4. The epilogue, once the whole image is there.
    if !ep.is_none() {
        // SAFETY: tasks only read the bias and residual, and write disjoint channels of out.
        let ep = unsafe { crate::pool::Shared::new(ep) };
        crate::pool::parallel_for(threads.min(k), &|task| {
            let ep = ep.get();
            let (lo, hi) = share(k, threads.min(k), task);
            for f in lo..hi {
                // SAFETY: channel `f` of out, whole; tasks take disjoint channels.
                unsafe { ep.apply((oa as *mut f32).add(f * oh * ow), f, 0, 1, oh * ow, (oh * ow) as isize, 1) };
            }
        });
    }
}

/// A block of tiles: tiles `t0..t0 + tb` of a `th × tw` grid, in row-major order.
#[derive(Clone, Copy)]
struct Tiles {
    th: usize,
    tw: usize,
    t0: usize,
    tb: usize,
}

/// Task `task`'s share `[lo, hi)` of `n` items split evenly into `tasks`.
fn share(n: usize, tasks: usize, task: usize) -> (usize, usize) {
    (n * task / tasks, n * (task + 1) / tasks)
}

/// `Bᵀ d B` for every tile of channel `ch`.
///
/// # Safety
/// As [`conv3x3`]; `ch < c`.
#[allow(clippy::too_many_arguments)]
unsafe fn input_transform(x: *const f32, v: *mut f32, stride: usize, ch: usize, h: usize, w: usize, pad: [usize; 4], tiles: Tiles) {
    let t = tiles.tb;
    // SAFETY: channel `ch`'s plane.
    let plane = unsafe { std::slice::from_raw_parts(x.add(ch * h * w), h * w) };
    debug_assert!(tiles.t0 + tiles.tb <= tiles.th * tiles.tw);
    for tile in 0..tiles.tb {
        let (ty, tx) = ((tiles.t0 + tile) / tiles.tw, (tiles.t0 + tile) % tiles.tw);
        {
            // The 6×6 patch, zero outside the image.
            let mut d = [[0.0f32; IN]; IN];
            let (y0, x0) = ((ty * OUT) as isize - pad[0] as isize, (tx * OUT) as isize - pad[1] as isize);
            for (i, row) in d.iter_mut().enumerate() {
                let y = y0 + i as isize;
                if y < 0 || y >= h as isize {
                    continue;
                }
                let line = &plane[y as usize * w..][..w];
                for (j, e) in row.iter_mut().enumerate() {
                    let xx = x0 + j as isize;
                    if xx >= 0 && xx < w as isize {
                        *e = line[xx as usize];
                    }
                }
            }
            // Bᵀ d, then (Bᵀ d) B.
            let mut bd = [[0.0f32; IN]; IN];
            for i in 0..IN {
                for j in 0..IN {
                    bd[i][j] = (0..IN).map(|m| BT[i][m] * d[m][j]).sum();
                }
            }
            for i in 0..IN {
                for j in 0..IN {
                    let val: f32 = (0..IN).map(|m| bd[i][m] * BT[j][m]).sum();
                    // SAFETY: point (i, j)'s matrix, row ch, column tile.
                    unsafe { *v.add((i * IN + j) * stride + ch * t + tile) = val };
                }
            }
        }
    }
}

/// `Aᵀ m A` for every tile of output channel `f`, stored where it falls inside the image.
///
/// # Safety
/// As [`conv3x3`]; `f < k`.
#[allow(clippy::too_many_arguments)]
unsafe fn output_transform(m: *const f32, out: *mut f32, stride: usize, f: usize, k: usize, oh: usize, ow: usize, tiles: Tiles, left: bool) {
    let t = tiles.tb;
    for tile in 0..tiles.tb {
        let (ty, tx) = ((tiles.t0 + tile) / tiles.tw, (tiles.t0 + tile) % tiles.tw);
        {
            let mut mt = [[0.0f32; IN]; IN];
            for (i, row) in mt.iter_mut().enumerate() {
                for (j, e) in row.iter_mut().enumerate() {
                    // SAFETY: point (i, j)'s product, `k × t` or `t × k`, at (f, tile).
                    let at = (i * IN + j) * stride + if left { f * t + tile } else { tile * k + f };
                    *e = unsafe { *m.add(at) };
                }
            }
            let mut am = [[0.0f32; IN]; OUT];
            for i in 0..OUT {
                for j in 0..IN {
                    am[i][j] = (0..IN).map(|q| AT[i][q] * mt[q][j]).sum();
                }
            }
            for i in 0..OUT {
                let y = ty * OUT + i;
                if y >= oh {
                    break;
                }
                for j in 0..OUT {
                    let xx = tx * OUT + j;
                    if xx >= ow {
                        break;
                    }
                    let val: f32 = (0..IN).map(|q| am[i][q] * AT[j][q]).sum();
                    // SAFETY: (f, y, xx) is inside the output.
                    unsafe { *out.add(f * oh * ow + y * ow + xx) = val };
                }
            }
        }
    }
}

/// Whether this CPU runs [`conv3x3_nhwc`] (its transforms are vector code: AVX-512 or AVX2).
pub fn nhwc_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f") || (std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// One NHWC image by `tile`: `out[oh, ow, K] = conv3x3(x[h, w, C])` with zero padding
/// `[top, left, bottom, right]`, then `ep` (bias per channel, residual shaped like `out`,
/// activation) as each output vector is stored. The transforms run on vectors of channels
/// (every tile's channels are contiguous in NHWC), the products (one per point) are
/// `M[ξ] = V[ξ] · U[ξ]ᵀ` (`tiles × C` by `C × K`, the image side read in place, the filters
/// packed at compile time by [`transform_filters_nhwc`]).
///
/// # Safety
/// As [`conv3x3`] with NHWC `x`, `out` and residual, `u` from [`transform_filters_nhwc`]
/// with the same `tile`, `scratch` of [`scratch_floats`] for it, and [`nhwc_available`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn conv3x3_nhwc(tile: Tile, threads: usize, c: usize, h: usize, w: usize, k: usize, pad: [usize; 4], x: *const f32, u: *const f32, out: *mut f32, scratch: *mut f32, ep: Epilogue) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: forwarded contract; each variant runs only where its features exist.
    unsafe {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return nhwc::conv_avx512(tile, threads, c, h, w, k, pad, x, u, out, scratch, ep);
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return nhwc::conv_avx2(tile, threads, c, h, w, k, pad, x, u, out, scratch, ep);
        }
    }
    let _ = tile;
    unreachable!("conv3x3_nhwc is used only where nhwc_available() holds");
}

#[cfg(target_arch = "x86_64")]
mod nhwc {
    use std::arch::x86_64::*;

    use super::super::simd::Lanes;
    use super::super::{gemm_threaded, ASource, BSource, Epilogue, Precision};
    use super::{packed_point_len, point_stride, share, Tile, BLOCKING, MIN_TILES_PER_THREAD, TILE_BLOCK};

    /// # Safety
    /// As [`super::conv3x3_nhwc`]; the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn conv_avx512(tile: Tile, threads: usize, c: usize, h: usize, w: usize, k: usize, pad: [usize; 4], x: *const f32, u: *const f32, out: *mut f32, scratch: *mut f32, ep: Epilogue) {
        // SAFETY: forwarded contract; the transforms have the feature they need.
        unsafe {
            match tile {
                Tile::F4 => conv::<6, 4>(threads, c, h, w, k, pad, x, u, out, scratch, ep, [input_avx512::<F4, 6, 4>, output_avx512::<F4, 6, 4>]),
                Tile::F2 => conv::<4, 2>(threads, c, h, w, k, pad, x, u, out, scratch, ep, [input_avx512::<F2, 4, 2>, output_avx512::<F2, 4, 2>]),
            }
        }
    }

    /// # Safety
    /// As [`super::conv3x3_nhwc`]; the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn conv_avx2(tile: Tile, threads: usize, c: usize, h: usize, w: usize, k: usize, pad: [usize; 4], x: *const f32, u: *const f32, out: *mut f32, scratch: *mut f32, ep: Epilogue) {
        // SAFETY: forwarded contract; the transforms have the features they need.
        unsafe {
            match tile {
                Tile::F4 => conv::<6, 4>(threads, c, h, w, k, pad, x, u, out, scratch, ep, [input_avx2::<F4, 6, 4>, output_avx2::<F4, 6, 4>]),
                Tile::F2 => conv::<4, 2>(threads, c, h, w, k, pad, x, u, out, scratch, ep, [input_avx2::<F2, 4, 2>, output_avx2::<F2, 4, 2>]),
            }
        }
    }

    /// One tile size's transforms on vectors: `Bᵀ d` of `IN` input vectors (a column or a row
    /// of the patch), `Aᵀ m` of `IN` products into `OUT` outputs.
    trait Transforms<const IN: usize, const OUT: usize> {
        /// # Safety
        /// The CPU has `V`'s unit.
        unsafe fn bt<V: Lanes>(d: [V; IN]) -> [V; IN];
        /// # Safety
        /// The CPU has `V`'s unit.
        unsafe fn at<V: Lanes>(m: [V; IN]) -> [V; OUT];
    }

    /// F(4×4, 3×3).
    struct F4;
    /// F(2×2, 3×3).
    struct F2;

    /// Tiles `t0 + lo .. t0 + hi` through a transform: the input one (`m` is V and `stride`
    /// its point stride; `out` unused) or the output one (`m` is M). Worker tasks call these
    /// through pointers: closures do not inherit a function's target features, so the
    /// vector code lives in functions that have them.
    type Transform = unsafe fn(g: &Image, x: *const f32, m: *mut f32, stride: usize, out: *mut f32, ep: &Epilogue, t0: usize, lo: usize, hi: usize);

    macro_rules! transforms {
        ($feature:literal, $v:ty, $input:ident, $output:ident) => {
            /// # Safety
            /// As [`input_tile`] for each tile; the CPU has the feature.
            #[target_feature(enable = $feature)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn $input<T: Transforms<IN, OUT>, const IN: usize, const OUT: usize>(g: &Image, x: *const f32, v: *mut f32, vs: usize, _: *mut f32, _: &Epilogue, t0: usize, lo: usize, hi: usize) {
                for tile in lo..hi {
                    // SAFETY: forwarded contract.
                    unsafe { input_tile::<$v, T, IN, OUT>(g, x, v, vs, t0, tile) };
                }
            }

            /// # Safety
            /// As [`output_tile`] for each tile; the CPU has the feature.
            #[target_feature(enable = $feature)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn $output<T: Transforms<IN, OUT>, const IN: usize, const OUT: usize>(g: &Image, _: *const f32, m: *mut f32, ms: usize, out: *mut f32, ep: &Epilogue, t0: usize, lo: usize, hi: usize) {
                for tile in lo..hi {
                    // SAFETY: forwarded contract.
                    unsafe { output_tile::<$v, T, IN, OUT>(g, m, ms, out, ep, t0, tile) };
                }
            }
        };
    }
    transforms!("avx512f", __m512, input_avx512, output_avx512);
    transforms!("avx2,fma", __m256, input_avx2, output_avx2);

    /// The tiles each task takes when the threads split an image of `t` tiles by tiles, each
    /// task taking its tiles through the transforms and all the points' products, rather than
    /// splitting each block's steps (tiles for the transforms, points for the products); or
    /// `None` for the latter. Split by points, every block's transformed tiles and products
    /// pass between the threads twice, which costs little when the cores share a cache but
    /// much when the host puts them in different core complexes: five 28×28×128
    /// convolutions in a row took 506–585 µs each there on two threads split by points
    /// (578 on one thread), 336–371 split by tiles (300 against 349–358 when the cores
    /// share a complex, and a tie inside ResNet-18). Split by tiles, each thread reads
    /// every point's filters once per task rather than half of them once per block, so an
    /// image needs [`MIN_TILES_PER_THREAD`] tiles per thread: ResNet-18's 14×14 layers (16
    /// tiles, 9 MiB of filters) took 2.0 → 2.3 ms split by tiles in one complex, 2.5 → 3.2
    /// apart. Images of more than a block per thread take blocks of tiles, several tasks per
    /// thread; smaller ones one task per thread.
    fn tiles_per_task(t: usize, threads: usize) -> Option<usize> {
        if threads < 2 || t < threads * MIN_TILES_PER_THREAD {
            return None;
        }
        Some(if t >= threads * TILE_BLOCK { TILE_BLOCK / threads } else { t.div_ceil(threads) })
    }

    /// One point's product for `tb` tiles: `M (tb × k) = V (tb × c) · U`, `U` the point's
    /// filters packed as B panels.
    ///
    /// # Safety
    /// `v`, `u` and `m` hold what those shapes say; `m` is writable and overlaps neither.
    unsafe fn point_product(tb: usize, c: usize, k: usize, v: *const f32, u: *const f32, m: *mut f32) {
        // SAFETY: the caller's.
        unsafe { gemm_threaded(1, tb, k, c, ASource::Strided(v, c as isize, 1), BSource::Packed(u), m, k as isize, 1, false, BLOCKING, Epilogue::NONE, Precision::F32) }
    }

    /// The image's geometry, shared by the transforms.
    #[derive(Clone, Copy)]
    struct Image {
        c: usize,
        h: usize,
        w: usize,
        k: usize,
        oh: usize,
        ow: usize,
        tw: usize,
        pad: [usize; 4],
    }

    /// # Safety
    /// As [`super::conv3x3_nhwc`] for the tile of input side `IN` and output side `OUT`; the
    /// CPU runs `input` and `output`, that tile's transforms.
    #[allow(clippy::too_many_arguments)]
    unsafe fn conv<const IN: usize, const OUT: usize>(threads: usize, c: usize, h: usize, w: usize, k: usize, pad: [usize; 4], x: *const f32, u: *const f32, out: *mut f32, scratch: *mut f32, ep: Epilogue, [input, output]: [Transform; 2]) {
        const { assert!(IN == OUT + 2) };
        let points = IN * IN;
        let (oh, ow) = (h + pad[0] + pad[2] - 2, w + pad[1] + pad[3] - 2);
        let (th, tw) = (oh.div_ceil(OUT), ow.div_ceil(OUT));
        let t = th * tw;
        let block = t.min(TILE_BLOCK);
        let img = Image { c, h, w, k, oh, ow, tw, pad };
        let (vs, ms) = (point_stride(c, block), point_stride(k, block));
        let len = packed_point_len(c, k, false);
        let threads = threads.max(1);
        // SAFETY (whole body): the scratch holds `points` matrices of `block` rows for V
        // (C wide) and for M (K wide), padded as `point_stride` says; tasks write disjoint
        // tiles (transforms) or points (products).
        unsafe {
            let m = scratch.add(points * vs);
            let shared = crate::pool::Shared::new((x, u, out, scratch, m, ep));
            if let Some(rows) = tiles_per_task(t, threads) {
                // Each task takes its tiles through all three steps in matrices of its
                // thread's own. In the shared scratch, the threads' rows of each point's
                // matrix lay side by side, and with the cores in different complexes five
                // 56×56×64 layers in a row took as long on two threads as on one (631–648 µs
                // each against 650; 365–391 with buffers of their own, and 370 → 337 in one
                // complex).
                thread_local! {
                    static MATRICES: std::cell::RefCell<crate::floats::Floats> = const { std::cell::RefCell::new(crate::floats::Floats::new()) };
                }
                let (tvs, tms) = (point_stride(c, rows), point_stride(k, rows));
                crate::pool::parallel_tasks(threads, t.div_ceil(rows), &|task| {
                    let (x, u, out, _, _, ep) = shared.get();
                    let (t0, tb) = (task * rows, rows.min(t - task * rows));
                    MATRICES.with(|buf| {
                        let mut buf = buf.borrow_mut();
                        buf.ensure_lines(points * (tvs + tms));
                        let (v, m) = buf.split_at_mut(points * tvs);
                        let (v, m) = (v.as_mut_ptr(), m.as_mut_ptr());
                        input(&img, x, v, tvs, out, &ep, t0, 0, tb);
                        for p in 0..points {
                            point_product(tb, c, k, v.add(p * tvs), u.add(p * len), m.add(p * tms));
                        }
                        output(&img, x, m, tms, out, &ep, t0, 0, tb);
                    });
                });
                return;
            }
            for t0 in (0..t).step_by(block) {
                let tb = block.min(t - t0);
                // Several tasks per thread (see `parallel_tasks`): tiles in
                // ranges, the points' products one each.
                let tasks = (threads * crate::pool::TASKS_PER_THREAD).min(tb).max(threads);
                crate::pool::parallel_tasks(threads, tasks, &|task| {
                    let (x, _, out, v, _, ep) = shared.get();
                    let (lo, hi) = share(tb, tasks, task);
                    input(&img, x, v, vs, out, &ep, t0, lo, hi);
                });
                crate::pool::parallel_tasks(threads, points, &|p| {
                    let (_, u, _, v, m, _) = shared.get();
                    point_product(tb, c, k, v.add(p * vs), u.add(p * len), m.add(p * ms));
                });
                crate::pool::parallel_tasks(threads, tasks, &|task| {
                    let (x, _, out, _, m, ep) = shared.get();
                    let (lo, hi) = share(tb, tasks, task);
                    output(&img, x, m, ms, out, &ep, t0, lo, hi);
                });
            }
        }
    }

    /// `Bᵀ` and `Aᵀ` as the matrices `BT` and `AT` above, in adds and multiply-adds.
    impl Transforms<6, 4> for F4 {
        #[inline(always)]
        unsafe fn bt<V: Lanes>(d: [V; 6]) -> [V; 6] {
            // SAFETY: the caller's.
            unsafe {
                // (A closure for the constants would not inherit the target features.)
                let (two, four, m4, m5) = (V::splat(2.0), V::splat(4.0), V::splat(-4.0), V::splat(-5.0));
                [
                    V::fma(four, d[0], V::fma(m5, d[2], d[4])),
                    V::fma(m4, V::add(d[1], d[2]), V::add(d[3], d[4])),
                    V::fma(four, V::sub(d[1], d[2]), V::sub(d[4], d[3])),
                    V::fma(two, V::sub(d[3], d[1]), V::sub(d[4], d[2])),
                    V::fma(two, V::sub(d[1], d[3]), V::sub(d[4], d[2])),
                    V::fma(four, d[1], V::fma(m5, d[3], d[5])),
                ]
            }
        }

        #[inline(always)]
        unsafe fn at<V: Lanes>(m: [V; 6]) -> [V; 4] {
            // SAFETY: the caller's.
            unsafe {
                let (d12, s12, d34, s34) = (V::sub(m[1], m[2]), V::add(m[1], m[2]), V::sub(m[3], m[4]), V::add(m[3], m[4]));
                [V::add(V::add(m[0], s12), s34), V::fma(V::splat(2.0), d34, d12), V::fma(V::splat(4.0), s34, s12), V::add(V::fma(V::splat(8.0), d34, d12), m[5])]
            }
        }
    }

    /// `Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]`,
    /// `Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]`.
    impl Transforms<4, 2> for F2 {
        #[inline(always)]
        unsafe fn bt<V: Lanes>(d: [V; 4]) -> [V; 4] {
            // SAFETY: the caller's.
            unsafe { [V::sub(d[0], d[2]), V::add(d[1], d[2]), V::sub(d[2], d[1]), V::sub(d[1], d[3])] }
        }

        #[inline(always)]
        unsafe fn at<V: Lanes>(m: [V; 4]) -> [V; 2] {
            // SAFETY: the caller's.
            unsafe { [V::add(V::add(m[0], m[1]), m[2]), V::sub(V::sub(m[1], m[2]), m[3])] }
        }
    }

    /// Tile `t0 + tile`'s `IN`×`IN` patch (zero outside the image), `Bᵀ d B`, into row
    /// `tile` of the `IN²` matrices `V[ξ]` (`C` wide), a vector of channels at a time.
    ///
    /// # Safety
    /// As [`conv`]; the tile exists.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // `i` picks the row of every column's transform
    unsafe fn input_tile<V: Lanes, T: Transforms<IN, OUT>, const IN: usize, const OUT: usize>(g: &Image, x: *const f32, v: *mut f32, vs: usize, t0: usize, tile: usize) {
        let (ty, tx) = ((t0 + tile) / g.tw, (t0 + tile) % g.tw);
        let (y0, x0) = ((ty * OUT) as isize - g.pad[0] as isize, (tx * OUT) as isize - g.pad[1] as isize);
        let inside = |o: isize, i: usize, len: usize| o + i as isize >= 0 && ((o + i as isize) as usize) < len;
        // SAFETY (whole body): only pixels inside the image are read, `lanes` channels from
        // `cb`; rows of V hold `C` floats.
        unsafe {
            for cb in (0..g.c).step_by(V::W) {
                let lanes = (g.c - cb).min(V::W);
                // Bᵀ of each column of the patch.
                let mut cols = [[V::zero(); IN]; IN];
                for (j, col) in cols.iter_mut().enumerate() {
                    let mut d = [V::zero(); IN];
                    if inside(x0, j, g.w) {
                        for (i, e) in d.iter_mut().enumerate() {
                            if inside(y0, i, g.h) {
                                let at = (((y0 + i as isize) as usize * g.w) + (x0 + j as isize) as usize) * g.c + cb;
                                *e = V::load_n(x.add(at), lanes);
                            }
                        }
                    }
                    *col = T::bt(d);
                }
                // Then B: Bᵀ of each row of the result.
                for i in 0..IN {
                    let row = T::bt(std::array::from_fn(|j| cols[j][i]));
                    for (j, e) in row.into_iter().enumerate() {
                        e.store_n(v.add((i * IN + j) * vs + tile * g.c + cb), lanes);
                    }
                }
            }
        }
    }

    /// Row `tile` of the `IN²` products `M[ξ]` (`K` wide), `Aᵀ m A`, then the epilogue, into
    /// the tile's outputs that lie inside the image, a vector of channels at a time.
    ///
    /// # Safety
    /// As [`conv`]; the tile exists.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // `r` picks the row of every column's transform
    unsafe fn output_tile<V: Lanes, T: Transforms<IN, OUT>, const IN: usize, const OUT: usize>(g: &Image, m: *const f32, ms: usize, out: *mut f32, ep: &Epilogue, t0: usize, tile: usize) {
        let (ty, tx) = ((t0 + tile) / g.tw, (t0 + tile) % g.tw);
        let (rows, cols) = ((g.oh - ty * OUT).min(OUT), (g.ow - tx * OUT).min(OUT));
        // SAFETY (whole body): M's rows hold `K` floats; outputs, bias and residual are
        // read and written only inside the image, `lanes` channels from `fb`.
        unsafe {
            for fb in (0..g.k).step_by(V::W) {
                let lanes = (g.k - fb).min(V::W);
                // Aᵀ of each column of the tile's IN×IN products.
                let mut columns = [[V::zero(); OUT]; IN];
                for (j, col) in columns.iter_mut().enumerate() {
                    let mut mv = [V::zero(); IN];
                    for (i, e) in mv.iter_mut().enumerate() {
                        *e = V::load_n(m.add((i * IN + j) * ms + tile * g.k + fb), lanes);
                    }
                    *col = T::at(mv);
                }
                let bias = if ep.bias.is_null() { V::zero() } else { V::load_n(ep.bias.add(fb), lanes) };
                for r in 0..rows {
                    let o = T::at(std::array::from_fn(|j| columns[j][r]));
                    for (q, &val) in o.iter().enumerate().take(cols) {
                        let at = ((ty * OUT + r) * g.ow + tx * OUT + q) * g.k + fb;
                        let mut y = V::add(val, bias);
                        if !ep.residual.is_null() {
                            y = V::add(y, V::load_n(ep.residual.add(at), lanes));
                        }
                        V::activate(y, ep.act, ep.gelu).store_n(out.add(at), lanes);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct convolution in f64: the reference.
    fn direct(x: &[f32], wt: &[f32], c: usize, h: usize, w: usize, k: usize, pad: [usize; 4]) -> Vec<f64> {
        let (oh, ow) = (h + pad[0] + pad[2] - 2, w + pad[1] + pad[3] - 2);
        let mut out = vec![0.0; k * oh * ow];
        for f in 0..k {
            for y in 0..oh {
                for xx in 0..ow {
                    let mut s = 0.0f64;
                    for ch in 0..c {
                        for i in 0..3 {
                            for j in 0..3 {
                                let (iy, ix) = (y as isize + i as isize - pad[0] as isize, xx as isize + j as isize - pad[1] as isize);
                                if iy >= 0 && iy < h as isize && ix >= 0 && ix < w as isize {
                                    s += x[ch * h * w + iy as usize * w + ix as usize] as f64 * wt[((f * c + ch) * 3 + i) * 3 + j] as f64;
                                }
                            }
                        }
                    }
                    out[f * oh * ow + y * ow + xx] = s;
                }
            }
        }
        out
    }

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_a_direct_convolution_on_odd_sizes_and_padding() {
        for &(c, h, w, k, pad, threads) in &[(1, 6, 6, 1, [0, 0, 0, 0], 1), (3, 7, 9, 5, [1, 1, 1, 1], 1), (8, 13, 11, 16, [1, 0, 2, 1], 2), (16, 4, 4, 7, [1, 1, 1, 1], 3), (5, 3, 3, 2, [2, 2, 2, 2], 1), (4, 20, 20, 3, [1, 1, 1, 1], 2), (3, 30, 26, 5, [1, 1, 1, 1], 2), (2, 40, 9, 40, [0, 1, 2, 0], 1), (3, 26, 30, 40, [1, 1, 1, 1], 2), (2, 5, 4, 3, [3, 0, 1, 4], 1)] {
            let x = values(c * h * w, 1);
            let wt = values(k * c * 9, 2);
            let bias = values(k, 3);
            let u = transform_filters(&wt, k, c, h + pad[0] + pad[2] - 2, w + pad[1] + pad[3] - 2);
            let (oh, ow) = (h + pad[0] + pad[2] - 2, w + pad[1] + pad[3] - 2);
            let mut out = vec![f32::NAN; k * oh * ow];
            let mut scratch = vec![f32::NAN; scratch_floats(Tile::F4, c, k, oh, ow)];
            let ep = Epilogue { bias: bias.as_ptr(), bias_per_row: true, residual: std::ptr::null(), act: crate::Activation::Relu, gelu: false };
            // SAFETY: every buffer is as large as `conv3x3` asks.
            unsafe { conv3x3(threads, c, h, w, k, pad, x.as_ptr(), u.as_ptr(), out.as_mut_ptr(), scratch.as_mut_ptr(), ep) };
            let want = direct(&x, &wt, c, h, w, k, pad);
            for (i, (&g, &r)) in out.iter().zip(&want).enumerate() {
                let r = (r + bias[i / (oh * ow)] as f64).max(0.0);
                // Inputs in [-1, 1): the transforms' rounding stays far below 1e-4 per term.
                assert!((g as f64 - r).abs() <= 1e-4 * (1.0 + r.abs()) * (c as f64).sqrt(), "{c}x{h}x{w}->{k} pad {pad:?}: [{i}] {g} vs {r}");
            }
        }
    }

    #[test]
    fn nhwc_matches_a_direct_convolution_on_odd_sizes_and_padding() {
        if !nhwc_available() {
            return;
        }
        // Both tiles. Channel counts below, at and past a vector (tails), several tile blocks,
        // a residual; the last two split by tiles in blocks on 2 and 3 threads and in one task
        // per thread on one thread more, and 3×30×26 in one task per thread on 2 threads and
        // by points on 3 (F(4×4); F(2×2) has four times the tiles, so splits by tiles more
        // often), all of which must give the same bits.
        for tile in [Tile::F4, Tile::F2] {
            for &(c, h, w, k, pad, threads) in &[(1, 6, 6, 1, [0, 0, 0, 0], 1), (3, 7, 9, 5, [1, 1, 1, 1], 1), (17, 13, 11, 16, [1, 0, 2, 1], 2), (16, 4, 4, 7, [1, 1, 1, 1], 3), (5, 3, 3, 2, [2, 2, 2, 2], 1), (33, 20, 20, 40, [1, 1, 1, 1], 2), (3, 30, 26, 5, [1, 1, 1, 1], 2), (2, 5, 4, 3, [3, 0, 1, 4], 1), (9, 34, 38, 12, [1, 1, 1, 1], 2), (20, 42, 38, 17, [0, 1, 1, 0], 3)] {
                let x = values(c * h * w, 1);
                let wt = values(k * c * 9, 2);
                let bias = values(k, 3);
                let (oh, ow) = (h + pad[0] + pad[2] - 2, w + pad[1] + pad[3] - 2);
                let residual = values(k * oh * ow, 4);
                // NHWC copies of the image, and of the residual.
                let mut xh = vec![0.0f32; c * h * w];
                for ch in 0..c {
                    for p in 0..h * w {
                        xh[p * c + ch] = x[ch * h * w + p];
                    }
                }
                let u = transform_filters_nhwc(&wt, k, c, tile);
                let mut out = vec![f32::NAN; k * oh * ow];
                let mut scratch = vec![f32::NAN; scratch_floats(tile, c, k, oh, ow)];
                let ep = Epilogue { bias: bias.as_ptr(), bias_per_row: false, residual: residual.as_ptr(), act: crate::Activation::Relu, gelu: false };
                // SAFETY: every buffer is as large as `conv3x3_nhwc` asks.
                unsafe { conv3x3_nhwc(tile, threads, c, h, w, k, pad, xh.as_ptr(), u.as_ptr(), out.as_mut_ptr(), scratch.as_mut_ptr(), ep) };
                let want = direct(&x, &wt, c, h, w, k, pad);
                for p in 0..oh * ow {
                    for f in 0..k {
                        let (g, i) = (out[p * k + f], p * k + f);
                        let r = (want[f * oh * ow + p] + bias[f] as f64 + residual[i] as f64).max(0.0);
                        assert!((g as f64 - r).abs() <= 1e-4 * (1.0 + r.abs()) * (c as f64).sqrt(), "{tile:?} {c}x{h}x{w}->{k} pad {pad:?}: pixel {p} filter {f}: {g} vs {r}");
                    }
                }
                // Every thread count gives the same bits.
                let mut again = vec![f32::NAN; k * oh * ow];
                unsafe { conv3x3_nhwc(tile, threads + 1, c, h, w, k, pad, xh.as_ptr(), u.as_ptr(), again.as_mut_ptr(), scratch.as_mut_ptr(), ep) };
                assert_eq!(out, again);
                // The AVX2 transforms, which dispatch skips on an AVX-512 CPU, called directly.
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    let mut narrow = vec![f32::NAN; k * oh * ow];
                    // SAFETY: as above; the CPU has AVX2 and FMA.
                    unsafe { nhwc::conv_avx2(tile, threads, c, h, w, k, pad, xh.as_ptr(), u.as_ptr(), narrow.as_mut_ptr(), scratch.as_mut_ptr(), ep) };
                    for (i, (&g, &r)) in narrow.iter().zip(&out).enumerate() {
                        assert!((g - r).abs() <= 1e-5 * (1.0 + r.abs()), "{tile:?} avx2 [{i}]: {g} vs {r}");
                    }
                }
            }
        }
    }

    /// F(2×2)'s filter transform against `G g Gᵀ` written out by hand for one filter.
    #[test]
    fn f2_filter_transform_is_g_g_gt() {
        let g = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
        let gm = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];
        let u = transform_filter(Tile::F2, &g);
        for i in 0..4 {
            for j in 0..4 {
                let mut want = 0.0f64;
                for a in 0..3 {
                    for b in 0..3 {
                        want += gm[i][a] * g[a * 3 + b] as f64 * gm[j][b];
                    }
                }
                assert_eq!(u[i * 4 + j], want as f32, "point ({i}, {j})");
            }
        }
        assert!(u[16..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn thread_counts_agree_bit_for_bit() {
        let (c, h, w, k) = (8, 10, 10, 12);
        let x = values(c * h * w, 4);
        let u = transform_filters(&values(k * c * 9, 5), k, c, h, w);
        let run = |threads: usize| {
            let mut out = vec![0.0f32; k * h * w];
            let mut scratch = vec![0.0f32; scratch_floats(Tile::F4, c, k, h, w)];
            // SAFETY: buffers sized as `conv3x3` asks.
            unsafe { conv3x3(threads, c, h, w, k, [1, 1, 1, 1], x.as_ptr(), u.as_ptr(), out.as_mut_ptr(), scratch.as_mut_ptr(), Epilogue::NONE) };
            out
        };
        assert_eq!(run(1), run(2));
        assert_eq!(run(1), run(4));
    }
}

#[cfg(test)]
mod timing {
    #[test]
    #[ignore = "timing, run by hand"]
    fn filter_transform_time() {
        for &(k, c) in &[(64, 64), (128, 128), (256, 256)] {
            let w = vec![0.5f32; k * c * 9];
            let t = std::time::Instant::now();
            let p = super::transform_filters(&w, k, c, 14, 14);
            let q = super::transform_filters(&w, k, c, 56, 56);
            eprintln!("{k}x{c}: {:?} for both orientations ({} {})", t.elapsed(), p.len(), q.len());
        }
        for tile in [super::Tile::F4, super::Tile::F2] {
            let (k, c) = (512, 512);
            let w = vec![0.5f32; k * c * 9];
            let t = std::time::Instant::now();
            let u = super::transform_filters_nhwc(&w, k, c, tile);
            eprintln!("NHWC {tile:?} {k}x{c}: {:?} ({} floats)", t.elapsed(), u.len());
        }
    }
}
