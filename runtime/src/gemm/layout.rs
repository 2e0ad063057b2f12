//! Three-channel images (RGB) from planes to channels-last: the conversion in front of every
//! convolutional network whose first layer runs in NHWC. Generated code moved one float at a
//! time (54 µs for a 224² image); with AVX-512, sixteen pixels are two permutes per output
//! vector.

/// Pixels `lo..hi` (counted over all images, `hw` pixels each) of `x` (`[n, 3, hw]`) into
/// `out` (`[n, hw, 3]`), with the best kernel for this CPU. Every split of the pixels gives
/// the same result (values are only moved).
///
/// # Safety
/// `x` and `out` (writable, not overlapping) hold `n·3·hw` floats, and `lo ≤ hi ≤ n·hw`.
pub unsafe fn rgb_planes_to_pixels(hw: usize, lo: usize, hi: usize, x: *const f32, out: *mut f32) {
    let mut p = lo;
    while p < hi {
        // One image's share: `[first, last)` of its pixels.
        let (b, first) = (p / hw, p % hw);
        let last = (first + (hi - p)).min(hw);
        let (planes, pixels) = (x.wrapping_add(b * 3 * hw), out.wrapping_add(b * 3 * hw));
        // SAFETY: the caller's contract, for one image's pixels `first..last`.
        unsafe { image(hw, first, last, planes, pixels) };
        p += last - first;
    }
}

/// Pixels `first..last` of one image.
///
/// # Safety
/// As [`rgb_planes_to_pixels`], for one image at `x` and `out`, `first ≤ last ≤ hw`.
unsafe fn image(hw: usize, first: usize, last: usize, x: *const f32, out: *mut f32) {
    let mut p = first;
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the caller's contract; the CPU has AVX-512F.
            p = unsafe { x86::sixteen_at_a_time(hw, first, last, x, out) };
        }
    }
    for p in p..last {
        for c in 0..3 {
            // SAFETY: pixel p < hw of channel c < 3 of this image.
            unsafe { *out.add(3 * p + c) = *x.add(c * hw + p) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Output float `k` of a run of 16 pixels is channel `k % 3` of pixel `k / 3`: for output
    /// vector `j`, the first permute takes the red and green floats from their planes
    /// (index `p`, or 16 + `p` for green) and the second keeps those (index `i`) and takes
    /// the blue ones (16 + `p`).
    const fn indices() -> [[[i32; 16]; 2]; 3] {
        let mut idx = [[[0; 16]; 2]; 3];
        let mut j = 0;
        while j < 3 {
            let mut i = 0;
            while i < 16 {
                let k = 16 * j + i;
                let (p, c) = ((k / 3) as i32, k % 3);
                idx[j][0][i] = match c {
                    0 => p,
                    1 => 16 + p,
                    _ => 0,
                };
                idx[j][1][i] = if c == 2 { 16 + p } else { i as i32 };
                i += 1;
            }
            j += 1;
        }
        idx
    }
    const INDICES: [[[i32; 16]; 2]; 3] = indices();

    /// Whole runs of 16 pixels from `first`; returns where they stop.
    ///
    /// # Safety
    /// As `super::image`; the CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn sixteen_at_a_time(hw: usize, first: usize, last: usize, x: *const f32, out: *mut f32) -> usize {
        // SAFETY: every load reads 16 pixels `p..p + 16 ≤ last` of one plane, every store 48
        // floats of those pixels.
        unsafe {
            let idx: [[__m512i; 2]; 3] = INDICES.map(|pair| pair.map(|v| _mm512_loadu_si512(v.as_ptr().cast())));
            let mut p = first;
            while p + 16 <= last {
                let (r, g, b) = (_mm512_loadu_ps(x.add(p)), _mm512_loadu_ps(x.add(hw + p)), _mm512_loadu_ps(x.add(2 * hw + p)));
                for (j, [first_idx, second_idx]) in idx.iter().enumerate() {
                    let red_green = _mm512_permutex2var_ps(r, *first_idx, g);
                    _mm512_storeu_ps(out.add(3 * p + 16 * j), _mm512_permutex2var_ps(red_green, *second_idx, b));
                }
                p += 16;
            }
            p
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every pixel lands on its channels, for images whose size is and is not a multiple of
    /// 16, two images, and shares that start and end anywhere.
    #[test]
    fn planes_become_pixels_for_every_split() {
        for (n, hw) in [(1, 224 * 224), (2, 37), (2, 48), (1, 5)] {
            let x: Vec<f32> = (0..n * 3 * hw).map(|i| i as f32).collect();
            let mut want = vec![0.0; x.len()];
            for b in 0..n {
                for p in 0..hw {
                    for c in 0..3 {
                        want[(b * hw + p) * 3 + c] = x[(b * 3 + c) * hw + p];
                    }
                }
            }
            let total = n * hw;
            for cuts in [vec![], vec![total / 2], vec![1, 17, total - 3], vec![hw]] {
                let cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= total).collect();
                let mut out = vec![f32::NAN; x.len()];
                let mut lo = 0;
                for &hi in cuts.iter().chain([&total]) {
                    // SAFETY: both buffers hold n·3·hw floats; lo ≤ hi ≤ n·hw.
                    unsafe { super::rgb_planes_to_pixels(hw, lo, hi, x.as_ptr(), out.as_mut_ptr()) };
                    lo = hi;
                }
                assert_eq!(out, want, "n={n} hw={hw} cuts={cuts:?}");
            }
        }
    }
}
