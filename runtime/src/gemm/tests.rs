//! The GEMM against a naive product, the entry points against the safe API.
use super::*;
use super::pack::*;

fn naive(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a[i * k + p] as f64 * b[p * n + j] as f64).sum::<f64>() as f32;
        }
    }
    c
}

/// The patch matrix written out, the reference for gathering while packing: row
/// `oy·ow + ox`, column `(ky·kw + kx)·c + ch`.
#[allow(clippy::too_many_arguments)]
fn im2col_nhwc(input: &[f32], c: i64, h: i64, w: i64, kh: i64, kw: i64, sh: i64, sw: i64, dh: i64, dw: i64, pt: i64, pl: i64, oh: i64, ow: i64) -> Vec<f32> {
    let mut col = Vec::new();
    for oy in 0..oh {
        for ox in 0..ow {
            for ky in 0..kh {
                for kx in 0..kw {
                    let (iy, ix) = (oy * sh + ky * dh - pt, ox * sw + kx * dw - pl);
                    for ch in 0..c {
                        let inside = iy >= 0 && iy < h && ix >= 0 && ix < w;
                        col.push(if inside { input[((iy * w + ix) * c + ch) as usize] } else { 0.0 });
                    }
                }
            }
        }
    }
    col
}

/// `nnc_gemm` through its call descriptor: A and B as `(pointer, row stride, column stride,
/// packed)`.
#[allow(clippy::too_many_arguments)]
fn entry_gemm(m: usize, n: usize, k: usize, a: (*const f32, i64, i64, bool), b: (*const f32, i64, i64, bool), c: &mut [f32], threads: i64, blk: Blocking, bias: *const f32, bias_per_row: bool, residual: *const f32, act: Activation) {
    let call = GemmCall {
        m: m as i64,
        n: n as i64,
        k: k as i64,
        a: a.0,
        rsa: a.1,
        csa: a.2,
        a_packed: a.3 as i64,
        b: b.0,
        rsb: b.1,
        csb: b.2,
        b_packed: b.3 as i64,
        c: c.as_mut_ptr(),
        rsc: n as i64,
        csc: 1,
        accumulate: 0,
        threads,
        kc: blk.kc as i64,
        mc: blk.mc as i64,
        nc: blk.nc as i64,
        bias,
        bias_per_row: bias_per_row as i64,
        residual,
        act: act.code(),
        bf16: 0,
    };
    // SAFETY: the operands are the test's own buffers, of the sizes the descriptor names.
    unsafe { nnc_gemm(&call) }
}

#[test]
fn patches_gathered_while_packing_match_im2col() {
    // 5 channels, 20×18, 3×3 window, stride 2, dilation 1 and 2, padding 1; a 3×2 window
    // without padding, whose 17-pixel output rows make tiles wrap from one row to the next
    // inside the image; and a pointwise window without stride or padding (the image read in
    // place as A); 2 threads split the pixels. Tiles whose windows lie inside the image are
    // read in place, the others with copies of their windows in the padding (5 channels:
    // short patch rows), or packed (32 channels: long rows; and a 2-pixel-wide image,
    // narrower than the window): all must give the im2col product bit for bit.
    let shapes = [(5i64, 20i64, 18i64), (32, 9, 11), (5, 7, 2)];
    let windows = [(1, 1, 3i64, 3i64, 2i64, 1i64, 1i64, 2i64), (2, 2, 3, 3, 2, 1, 1, 2), (1, 1, 3, 2, 1, 1, 0, 0), (1, 1, 1, 1, 1, 1, 0, 0), (1, 1, 3, 3, 1, 1, 1, 1)];
    for ((c, h, w), (dh, dw, kh, kw, sh, sw, pt, pl)) in shapes.into_iter().flat_map(|s| windows.into_iter().map(move |win| (s, win))) {
        if w + 2 * pl < dw * (kw - 1) + 1 || h + 2 * pt < dh * (kh - 1) + 1 {
            continue;
        }
        let oh = (h + 2 * pt - dh * (kh - 1) - 1) / sh + 1;
        let ow = (w + 2 * pl - dw * (kw - 1) - 1) / sw + 1;
        let (m, k, n) = ((oh * ow) as usize, (kh * kw * c) as usize, 300usize);
        let input: Vec<f32> = (0..h * w * c).map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 13) as f32 - 6.0) / 7.0).collect();
        let blk = Blocking { kc: 16, mc: 8, nc: 64 };
        let mut packed_b = vec![0.0f32; packed_b_len(k, n, blk)];
        unsafe { pack_b_all(k, n, b.as_ptr(), n as isize, 1, blk, &mut packed_b) };
        let col = im2col_nhwc(&input, c, h, w, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow);
        let mut want = vec![0.0f32; m * n];
        unsafe { sgemm_packed_b(m, n, k, col.as_ptr(), k as isize, 1, packed_b.as_ptr(), want.as_mut_ptr(), n as isize, 1, false, blk) };
        for threads in [1, 2] {
            let mut got = vec![0.0f32; m * n];
            let call = ConvNhwcCall { m: m as i64, n: n as i64, input: input.as_ptr(), c, h, w, kh, kw, sh, sw, dh, dw, pt, pl, ow, b: packed_b.as_ptr(), out: got.as_mut_ptr(), rsc: n as i64, csc: 1, threads, kc: 16, mc: 8, nc: 64, bias: std::ptr::null(), bias_per_row: 0, residual: std::ptr::null(), act: 0, bf16: 0 };
            // SAFETY: the test's own buffers, of the sizes the descriptor names.
            unsafe { nnc_gemm_conv_nhwc(&call) };
            assert_eq!(got, want, "{c}×{h}×{w}, window {kh}×{kw} dilation {dh} stride {sh}×{sw} padding {pt}/{pl}, {threads} threads");
        }
    }
}

#[test]
fn matches_naive_product_on_awkward_sizes() {
    // Small blocks cut every product into several slabs and blocks; large ones do not.
    for blk in [Blocking { kc: 64, mc: 20, nc: 96 }, Blocking { kc: 256, mc: 1792, nc: 4096 }] {
        // 10 and 16 columns run on the narrow tile where the CPU has one, 24 and 48 on the
        // 24-wide one where it has that; 7, 17, 49 and 100 rows (and 4) on tiles of fewer rows.
        for &(m, n, k) in &[(1, 1, 1), (7, 33, 5), (17, 65, 300), (100, 10, 513), (40, 16, 37), (49, 70, 130), (4, 40, 33), (1, 1000, 64), (64, 1, 64), (300, 160, 50), (50, 24, 40), (19, 48, 70)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect();
            let want = naive(m, n, k, &a, &b);
            let mut c = vec![1.0f32; m * n];
            unsafe { sgemm(m, n, k, a.as_ptr(), k as isize, 1, b.as_ptr(), n as isize, 1, c.as_mut_ptr(), n as isize, 1, false, blk) };
            for (x, y) in c.iter().zip(&want) {
                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{m}x{n}x{k} {blk:?}: {x} vs {y}");
            }
            // Accumulating adds to C; a transposed view of B (column stride n → 1) works too.
            let mut bt = vec![0.0f32; k * n];
            for p in 0..k {
                for j in 0..n {
                    bt[j * k + p] = b[p * n + j];
                }
            }
            let mut c2 = vec![1.0f32; m * n];
            unsafe { sgemm(m, n, k, a.as_ptr(), k as isize, 1, bt.as_ptr(), 1, k as isize, c2.as_mut_ptr(), n as isize, 1, true, blk) };
            for (x, y) in c2.iter().zip(&want) {
                assert!((x - (y + 1.0)).abs() <= 1e-4 * (2.0 + y.abs()), "{m}x{n}x{k} accumulate: {x} vs {}", y + 1.0);
            }
            // A packed once ahead of time gives the same product.
            let mut packed = vec![0.0f32; packed_a_len(m, k, blk)];
            unsafe { pack_a_all(m, k, a.as_ptr(), k as isize, 1, blk, &mut packed) };
            let mut c3 = vec![0.0f32; m * n];
            unsafe { sgemm_packed_a(m, n, k, packed.as_ptr(), b.as_ptr(), n as isize, 1, c3.as_mut_ptr(), n as isize, 1, false, blk) };
            assert_eq!(c3, c, "{m}x{n}x{k} packed A");
            // Two threads give the very same bits.
            let mut c4 = vec![0.0f32; m * n];
            let null = std::ptr::null();
            entry_gemm(m, n, k, (a.as_ptr(), k as i64, 1, false), (b.as_ptr(), n as i64, 1, false), &mut c4, 2, blk, null, false, null, Activation::None);
            assert_eq!(c4, c, "{m}x{n}x{k} two threads");
            // So does B packed ahead of time, on one thread or two (split by rows).
            let mut packed_b = vec![0.0f32; packed_b_len(k, n, blk)];
            unsafe { pack_b_all(k, n, b.as_ptr(), n as isize, 1, blk, &mut packed_b) };
            let mut c5 = vec![0.0f32; m * n];
            unsafe { sgemm_packed_b(m, n, k, a.as_ptr(), k as isize, 1, packed_b.as_ptr(), c5.as_mut_ptr(), n as isize, 1, false, blk) };
            assert_eq!(c5, c, "{m}x{n}x{k} packed B");
            let mut c6 = vec![0.0f32; m * n];
            entry_gemm(m, n, k, (a.as_ptr(), k as i64, 1, false), (packed_b.as_ptr(), 0, 0, true), &mut c6, 2, blk, null, false, null, Activation::None);
            assert_eq!(c6, c, "{m}x{n}x{k} packed B, two threads");
            // The epilogue: bias per row or column, residual, activation, on both
            // splits of the work; exactly what applying them to C afterwards gives.
            let bias: Vec<f32> = (0..m.max(n)).map(|i| (i % 7) as f32 - 3.0).collect();
            let residual: Vec<f32> = (0..m * n).map(|i| (i % 5) as f32 * 0.5 - 1.0).collect();
            for (per_row, act) in [(true, Activation::Relu6), (false, Activation::Relu)] {
                let want: Vec<f32> = (0..m * n)
                    .map(|idx| {
                        let v = c[idx] + bias[if per_row { idx / n } else { idx % n }] + residual[idx];
                        match act {
                            Activation::Relu6 => v.clamp(0.0, 6.0),
                            _ => v.max(0.0),
                        }
                    })
                    .collect();
                let (bp, rp) = (bias.as_ptr(), residual.as_ptr());
                let mut c7 = vec![0.0f32; m * n];
                entry_gemm(m, n, k, (a.as_ptr(), k as i64, 1, false), (b.as_ptr(), n as i64, 1, false), &mut c7, 2, blk, bp, per_row, rp, act);
                assert_eq!(c7, want, "{m}x{n}x{k} epilogue by columns");
                let mut c8 = vec![0.0f32; m * n];
                entry_gemm(m, n, k, (a.as_ptr(), k as i64, 1, false), (packed_b.as_ptr(), 0, 0, true), &mut c8, 2, blk, bp, per_row, rp, act);
                assert_eq!(c8, want, "{m}x{n}x{k} epilogue by rows");
            }
        }
    }
}

#[test]
fn packed_b_split_by_columns_gives_the_same_bits() {
    // B bigger than `PACKED_COLUMNS_MIN_B` and wider than A is tall: each thread takes whole
    // panels of B (520 columns: the last panel partial), through several slabs; 49 rows run
    // on 7-row tiles. The product, with bias, residual and activation, must match one
    // thread's bit for bit on 2 and 3 threads; with `nc` narrower than B it goes by rows.
    let (m, n, k) = (49usize, 520usize, 600usize);
    let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect();
    let bias: Vec<f32> = (0..n).map(|i| (i % 7) as f32 - 3.0).collect();
    let residual: Vec<f32> = (0..m * n).map(|i| (i % 5) as f32 * 0.5 - 1.0).collect();
    let want = naive(m, n, k, &a, &b);
    for (blk, by_columns) in [(Blocking { kc: 128, mc: 56, nc: 4096 }, true), (Blocking { kc: 600, mc: 64, nc: 96 }, false)] {
        assert_eq!(packed_b_split_by_columns(m, n, k, blk, Precision::F32), by_columns);
        let mut packed_b = vec![0.0f32; packed_b_len(k, n, blk)];
        unsafe { pack_b_all(k, n, b.as_ptr(), n as isize, 1, blk, &mut packed_b) };
        let run = |threads: i64| {
            let mut c = vec![0.0f32; m * n];
            entry_gemm(m, n, k, (a.as_ptr(), k as i64, 1, false), (packed_b.as_ptr(), 0, 0, true), &mut c, threads, blk, bias.as_ptr(), false, residual.as_ptr(), Activation::Relu);
            c
        };
        let one = run(1);
        for (idx, (x, y)) in one.iter().zip(&want).enumerate() {
            let y = (y + bias[idx % n] + residual[idx]).max(0.0);
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{blk:?} at {idx}: {x} vs {y}");
        }
        for threads in [2, 3] {
            assert_eq!(run(threads), one, "{blk:?}, {threads} threads");
        }
    }
}

#[test]
fn row_major_a_packed_when_its_block_spans_far_gives_the_same_bits() {
    // 1100 rows 1024 floats apart: a block of them spans 4.3 MiB, over `A_IN_PLACE_SPAN_MAX`,
    // so A is packed; a block of 96 rows spans 384 KiB and is read in place. Only the first
    // 40 floats of each row are the operand. Every element's sum runs in the same order
    // either way, so the products agree bit for bit (and with the naive one within rounding).
    let (m, n, k, rsa) = (1100usize, 70usize, 40usize, 1024usize);
    let a_wide: Vec<f32> = (0..m * rsa).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
    let a: Vec<f32> = (0..m * k).map(|i| a_wide[(i / k) * rsa + i % k]).collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect();
    let want = naive(m, n, k, &a, &b);
    let run = |mc: usize| {
        let mut c = vec![0.0f32; m * n];
        unsafe { sgemm(m, n, k, a_wide.as_ptr(), rsa as isize, 1, b.as_ptr(), n as isize, 1, c.as_mut_ptr(), n as isize, 1, false, Blocking { kc: 32, mc, nc: 4096 }) };
        c
    };
    assert!(1100 * rsa * 4 > A_IN_PLACE_SPAN_MAX && 96 * rsa * 4 <= A_IN_PLACE_SPAN_MAX);
    let (packed, in_place) = (run(1104), run(96));
    assert_eq!(packed, in_place);
    for (x, y) in packed.iter().zip(&want) {
        assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
    }
}

/// bf16 products go to the bf16 kernel only where the CPU has one, and the measurement
/// behind that choice is made once: asking again gives the same answer.
#[test]
fn the_bf16_kernel_is_chosen_only_where_it_exists_and_once() {
    let pays = super::bf16_products_pay();
    assert!(!pays || bf16_microkernel_name().is_some());
    assert_eq!((0..3).map(|_| super::bf16_products_pay()).collect::<Vec<_>>(), [pays; 3]);
}

/// The bf16 kernel, where the CPU has one, against the f32 product of the bf16-rounded
/// operands: every product of two bf16 values is exact in f32, so the two differ only in
/// summation order. Every source of A and B (strided, transposed, packed ahead, gathered
/// patches), odd `k` (a pair's upper half is zero), several slabs, and two threads.
#[test]
fn bf16_kernel_matches_the_f32_product_of_the_rounded_operands() {
    if bf16_microkernel_name().is_none() {
        eprintln!("no AVX512_BF16 on this CPU: bf16 products run on the f32 kernel");
        return;
    }
    let round = |v: Vec<f32>| v.into_iter().map(crate::dtype::round_bf16).collect::<Vec<f32>>();
    let close = |got: &[f32], want: &[f32], what: &str| {
        for (x, y) in got.iter().zip(want) {
            assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{what}: {x} vs {y}");
        }
    };
    for blk in [Blocking { kc: 16, mc: 16, nc: 64 }, Blocking { kc: 256, mc: 1792, nc: 4096 }] {
        for &(m, n, k) in &[(1, 1, 1), (7, 33, 5), (17, 65, 301), (100, 10, 513), (1, 1000, 64), (64, 1, 63)] {
            let a = round((0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect());
            let b = round((0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect());
            let want = naive(m, n, k, &a, &b);
            let what = format!("{m}x{n}x{k} {blk:?}");
            let mut c = vec![1.0f32; m * n];
            unsafe { gemm_in(Precision::Bf16, m, n, k, a.as_ptr(), k as isize, 1, b.as_ptr(), n as isize, 1, c.as_mut_ptr(), n as isize, 1, false, blk) };
            close(&c, &want, &what);
            let bt: Vec<f32> = (0..k * n).map(|i| b[(i % k) * n + i / k]).collect();
            let mut c2 = vec![0.0f32; m * n];
            unsafe { gemm_in(Precision::Bf16, m, n, k, a.as_ptr(), k as isize, 1, bt.as_ptr(), 1, k as isize, c2.as_mut_ptr(), n as isize, 1, false, blk) };
            assert_eq!(c2, c, "{what} transposed B");
            let mut packed_a = vec![0.0f32; packed_a_bf16_len(m, k, blk)];
            unsafe { pack_a_all_bf16(m, k, a.as_ptr(), k as isize, 1, blk, &mut packed_a) };
            let mut packed_b = vec![0.0f32; packed_b_bf16_len(k, n, blk)];
            unsafe { pack_b_all_bf16(k, n, b.as_ptr(), n as isize, 1, blk, &mut packed_b) };
            // The epilogue runs once the last slab is in: a per-row bias shows it did.
            let bias: Vec<f32> = (0..m).map(|i| i as f32).collect();
            let c: Vec<f32> = c.iter().enumerate().map(|(idx, v)| v + bias[idx / n]).collect();
            for (a_src, b_src, threads) in [(true, false, 1), (false, true, 2), (false, false, 2)] {
                let mut got = vec![0.0f32; m * n];
                let a_arg = if a_src { (packed_a.as_ptr(), 0, 0, true) } else { (a.as_ptr(), k as i64, 1, false) };
                let b_arg = if b_src { (packed_b.as_ptr(), 0, 0, true) } else { (b.as_ptr(), n as i64, 1, false) };
                let call = GemmCall { m: m as i64, n: n as i64, k: k as i64, a: a_arg.0, rsa: a_arg.1, csa: a_arg.2, a_packed: a_arg.3 as i64, b: b_arg.0, rsb: b_arg.1, csb: b_arg.2, b_packed: b_arg.3 as i64, c: got.as_mut_ptr(), rsc: n as i64, csc: 1, accumulate: 0, threads, kc: blk.kc as i64, mc: blk.mc as i64, nc: blk.nc as i64, bias: bias.as_ptr(), bias_per_row: 1, residual: std::ptr::null(), act: 0, bf16: 1 };
                // SAFETY: the test's own buffers, of the sizes the descriptor names.
                unsafe { nnc_gemm(&call) };
                assert_eq!(got, c, "{what}: packed A {a_src}, packed B {b_src}, {threads} threads");
            }
        }
    }
    // Patches gathered while packing: with 5 channels pairs straddle taps (packed in f32,
    // then paired); with 6 each pair is two channels of one tap (packed as pairs directly).
    for c in [5i64, 6] {
    let (h, w, kh, kw, sh, sw, dh, dw, pt, pl) = (9i64, 8i64, 3i64, 3i64, 1i64, 2i64, 1i64, 1i64, 1i64, 1i64);
    let oh = (h + 2 * pt - dh * (kh - 1) - 1) / sh + 1;
    let ow = (w + 2 * pl - dw * (kw - 1) - 1) / sw + 1;
    let (m, k, n) = ((oh * ow) as usize, (kh * kw * c) as usize, 40usize);
    let input = round((0..h * w * c).map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0).collect());
    let b = round((0..k * n).map(|i| ((i * 5 % 13) as f32 - 6.0) / 7.0).collect());
    let blk = Blocking { kc: 8, mc: 16, nc: 64 };
    let mut packed_b = vec![0.0f32; packed_b_bf16_len(k, n, blk)];
    unsafe { pack_b_all_bf16(k, n, b.as_ptr(), n as isize, 1, blk, &mut packed_b) };
    let want = naive(m, n, k, &im2col_nhwc(&input, c, h, w, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow), &b);
    let mut got = vec![0.0f32; m * n];
    let call = ConvNhwcCall { m: m as i64, n: n as i64, input: input.as_ptr(), c, h, w, kh, kw, sh, sw, dh, dw, pt, pl, ow, b: packed_b.as_ptr(), out: got.as_mut_ptr(), rsc: n as i64, csc: 1, threads: 2, kc: 8, mc: 16, nc: 64, bias: std::ptr::null(), bias_per_row: 0, residual: std::ptr::null(), act: 0, bf16: 1 };
    // SAFETY: the test's own buffers, of the sizes the descriptor names.
    unsafe { nnc_gemm_conv_nhwc(&call) };
    close(&got, &want, &format!("patches of {c} channels"));
    }
}

/// `nnc_im2col` (NCHW, row `(ch·kh + ky)·kw + kx`, column `oy·ow + ox`) against the
/// definition, over strides, dilations and paddings that put taps past either edge, including
/// windows wider than the image.
#[test]
fn nchw_im2col_matches_its_definition() {
    for &(c, h, w, kh, kw, sh, sw, dh, dw, pt, pl) in &[
        (2i64, 5i64, 7i64, 3i64, 3i64, 1i64, 1i64, 1i64, 1i64, 1i64, 1i64),
        (3, 9, 8, 7, 7, 2, 2, 1, 1, 3, 3),
        (1, 6, 6, 3, 5, 2, 3, 2, 1, 2, 4),
        (2, 4, 3, 1, 1, 2, 2, 1, 1, 0, 0),
        (1, 3, 2, 3, 6, 1, 1, 1, 1, 1, 5),
        (64, 20, 20, 3, 3, 1, 1, 1, 1, 1, 1),
    ] {
        let (pb, pr) = (pt, pl);
        let oh = (h + pt + pb - dh * (kh - 1) - 1) / sh + 1;
        let ow = (w + pl + pr - dw * (kw - 1) - 1) / sw + 1;
        let input: Vec<f32> = (0..c * h * w).map(|i| i as f32 + 1.0).collect();
        let mut want = Vec::new();
        for ch in 0..c {
            for ky in 0..kh {
                for kx in 0..kw {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let (iy, ix) = (oy * sh + ky * dh - pt, ox * sw + kx * dw - pl);
                            let inside = iy >= 0 && iy < h && ix >= 0 && ix < w;
                            want.push(if inside { input[((ch * h + iy) * w + ix) as usize] } else { 0.0 });
                        }
                    }
                }
            }
        }
        let mut col = vec![f32::NAN; want.len()];
        for threads in [1, 2] {
            col.fill(f32::NAN);
            let call = Im2colCall { input: input.as_ptr() as *const u8, c, h, w, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow, col: col.as_mut_ptr() as *mut u8, threads };
            unsafe { nnc_im2col(&call) };
            assert_eq!(col, want, "c{c} {h}x{w} k{kh}x{kw} s{sh}x{sw} d{dh}x{dw} p{pt},{pl}, {threads} thread(s)");
        }
    }
}

#[test]
fn register_epilogue_keeps_nan_and_negative_zero_and_stores_only_the_tile() {
    // 11 × 37: edge tiles in both directions (8×32 and 6×16 register tiles), C's padding
    // columns guarded by a sentinel that must survive; k = 1 so C = A·B is exact.
    let (m, n, k, ldc) = (11usize, 37usize, 1usize, 40usize);
    let mut a: Vec<f32> = (0..m).map(|i| i as f32 - 5.0).collect();
    a[3] = f32::NAN;
    a[5] = -0.0;
    let b: Vec<f32> = (0..n).map(|j| if j % 2 == 0 { 1.5 } else { -2.0 }).collect();
    for act in [Activation::None, Activation::Relu, Activation::Relu6] {
        let mut c = vec![7.25f32; m * ldc];
        let call = GemmCall { m: m as i64, n: n as i64, k: k as i64, a: a.as_ptr(), rsa: 1, csa: 1, a_packed: 0, b: b.as_ptr(), rsb: n as i64, csb: 1, b_packed: 0, c: c.as_mut_ptr(), rsc: ldc as i64, csc: 1, accumulate: 0, threads: 1, kc: 8, mc: 8, nc: 32, bias: std::ptr::null(), bias_per_row: 0, residual: std::ptr::null(), act: act.code(), bf16: 0 };
        // SAFETY: the test's own buffers, of the sizes the descriptor names.
        unsafe { nnc_gemm(&call) };
        for i in 0..m {
            for j in 0..ldc {
                let got = c[i * ldc + j];
                if j >= n {
                    assert_eq!(got, 7.25, "column {j} is outside C");
                    continue;
                }
                // A sum starts from +0, as the interpreter's does: −0·x sums to +0.
                let want = act.apply(0.0 + a[i] * b[j]);
                assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "{act:?} ({i}, {j}): {got} vs {want}");
            }
        }
    }
}

#[test]
fn gelu_epilogue_matches_the_exact_function() {
    // C = A·B over a range of values, then GELU in the registers (row-major C) and in the
    // scalar epilogue (a transposed C), against 0.5·x·(1 + erf(x/√2)) in f64.
    let (m, n, k) = (9usize, 40usize, 1usize);
    let a: Vec<f32> = (0..m).map(|i| i as f32 - 4.0).collect();
    let b: Vec<f32> = (0..n).map(|j| (j as f32 - 20.0) / 7.0).collect();
    let exact = |x: f64| 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2));
    for transposed in [false, true] {
        let mut c = vec![f32::NAN; m * n];
        let (rsc, csc) = if transposed { (1, m as i64) } else { (n as i64, 1) };
        let call = GemmCall { m: m as i64, n: n as i64, k: k as i64, a: a.as_ptr(), rsa: 1, csa: 1, a_packed: 0, b: b.as_ptr(), rsb: n as i64, csb: 1, b_packed: 0, c: c.as_mut_ptr(), rsc, csc, accumulate: 0, threads: 1, kc: 8, mc: 8, nc: 32, bias: std::ptr::null(), bias_per_row: 0, residual: std::ptr::null(), act: Epilogue::GELU_CODE, bf16: 0 };
        // SAFETY: the test's own buffers, of the sizes the descriptor names.
        unsafe { nnc_gemm(&call) };
        for i in 0..m {
            for j in 0..n {
                let x = (a[i] * b[j]) as f64;
                let got = c[i * rsc as usize + j * csc as usize] as f64;
                assert!((got - exact(x)).abs() <= 1e-6 * (1.0 + x.abs()), "transposed {transposed}, x = {x}: {got} vs {}", exact(x));
            }
        }
    }
}

/// erf in f64 (Abramowitz and Stegun 7.1.28 is not precise enough; this is a series and a
/// continued fraction, good to 1e-12 on the range the test uses).
fn erf(x: f64) -> f64 {
    if x.abs() < 3.0 {
        // Maclaurin series.
        let mut sum = 0.0;
        let mut term = x;
        let mut nfact = 1.0;
        for n in 0..60 {
            if n > 0 {
                nfact *= n as f64;
                term = (-1.0f64).powi(n) * x.powi(2 * n + 1) / nfact;
            }
            sum += term / (2 * n + 1) as f64;
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    } else {
        x.signum() * (1.0 - (-x * x).exp() / (x.abs() * std::f64::consts::PI.sqrt()) * (1.0 - 1.0 / (2.0 * x * x)))
    }
}

/// A transposed B (attention's `kᵀ`: columns contiguous) packs to the panels an element-by-
/// element copy makes, whole 16×16 blocks by register transposes and the rest by elements:
/// steps and columns that are and are not multiples of 16, partial last panels of fewer and
/// of more than 16 columns, 32- and 24-wide panels.
#[test]
fn transposed_b_packs_like_an_element_copy() {
    for (nr, kc, nc, csb) in [(32, 64usize, 128usize, 64isize), (32, 37, 45, 40), (32, 16, 32, 256), (32, 5, 70, 7), (32, 33, 52, 33), (24, 40, 61, 41)] {
        let b: Vec<f32> = (0..nc * csb as usize).map(|i| i as f32 * 0.5 - 3.0).collect();
        let len = nc.next_multiple_of(nr) * kc;
        let mut got = vec![f32::NAN; len];
        unsafe { pack_b(nr, kc, nc, b.as_ptr(), 1, csb, &mut got) };
        let mut want = vec![0.0f32; len];
        for j0 in (0..nc).step_by(nr) {
            for p in 0..kc {
                for j in 0..nr {
                    if j0 + j < nc {
                        want[j0 * kc + p * nr + j] = b[(j0 + j) * csb as usize + p];
                    }
                }
            }
        }
        assert_eq!(got, want, "kc {kc}, nc {nc}");
    }
}

/// A row-major B packed by groups of rows: the element copy's panels, with row groups that
/// end mid-panel, partial last panels and strides wider than the block.
#[test]
fn row_major_b_packs_like_an_element_copy() {
    for (nr, kc, nc, rsb) in [(32, 64usize, 128usize, 128isize), (32, 37, 45, 50), (32, 16, 32, 32), (32, 5, 70, 70), (16, 33, 52, 60), (24, 40, 61, 61), (32, 2048, 96, 100)] {
        let b: Vec<f32> = (0..kc * rsb as usize).map(|i| i as f32 * 0.5 - 3.0).collect();
        let len = nc.next_multiple_of(nr) * kc;
        let mut got = vec![f32::NAN; len];
        unsafe { pack_b(nr, kc, nc, b.as_ptr(), rsb, 1, &mut got) };
        let mut want = vec![0.0f32; len];
        for j0 in (0..nc).step_by(nr) {
            for p in 0..kc {
                for j in 0..nr {
                    if j0 + j < nc {
                        want[j0 * kc + p * nr + j] = b[p * rsb as usize + j0 + j];
                    }
                }
            }
        }
        assert_eq!(got, want, "kc {kc}, nc {nc}");
    }
}
