//! The machine's single-core f32 FMA peak at 128, 256 and 512 bits, measured with enough
//! independent FMA chains to hide latency. BENCHMARKS.md states GEMM throughput as a
//! fraction of these. Then the ceiling a GEMM register tile can reach: the AVX-512 8×32
//! tile's step loop (two vector loads of B, eight broadcasts of A, sixteen FMAs per step)
//! on operands that stay in L1, so no memory level limits it; the FMA-only loop has no
//! loads at all. Run: `cargo bench --bench fma_peak`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const ITERS: usize = 1 << 16;
const CHAINS: usize = 12;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{CHAINS, ITERS};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma128() -> f32 {
        let mut acc = [_mm_set1_ps(0.0); CHAINS];
        let (a, b) = (_mm_set1_ps(0.999), _mm_set1_ps(1e-7));
        for _ in 0..ITERS {
            for v in acc.iter_mut() {
                *v = _mm_fmadd_ps(*v, a, b);
            }
        }
        acc.iter().map(|v| _mm_cvtss_f32(*v)).sum()
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma256() -> f32 {
        let mut acc = [_mm256_set1_ps(0.0); CHAINS];
        let (a, b) = (_mm256_set1_ps(0.999), _mm256_set1_ps(1e-7));
        for _ in 0..ITERS {
            for v in acc.iter_mut() {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        acc.iter().map(|v| _mm256_cvtss_f32(*v)).sum()
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma512() -> f32 {
        let mut acc = [_mm512_set1_ps(0.0); CHAINS];
        let (a, b) = (_mm512_set1_ps(0.999), _mm512_set1_ps(1e-7));
        for _ in 0..ITERS {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        acc.iter().map(|v| _mm512_reduce_add_ps(*v)).sum()
    }

    /// Steps of `k` in one tile: the runtime's slabs on the transformer's products.
    pub const TILE_KC: usize = 256;

    /// One 8×32 tile of `C += A·B` over [`TILE_KC`] steps of packed panels (A: 8 floats a
    /// step, B: 32), the step the runtime's AVX-512 microkernel runs; `c` is 8 rows of 32.
    ///
    /// # Safety
    /// `a` holds `8·TILE_KC` floats, `b` `32·TILE_KC` on whole cache lines, `c` 256.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile_8x32(a: *const f32, b: *const f32, c: *mut f32) {
        // SAFETY: the caller's contract covers every offset read and written.
        unsafe {
            let mut acc = [_mm512_setzero_ps(); 16];
            for p in 0..TILE_KC {
                let bv = [_mm512_load_ps(b.add(p * 32)), _mm512_load_ps(b.add(p * 32 + 16))];
                for i in 0..8 {
                    let av = _mm512_set1_ps(*a.add(p * 8 + i));
                    acc[2 * i] = _mm512_fmadd_ps(av, bv[0], acc[2 * i]);
                    acc[2 * i + 1] = _mm512_fmadd_ps(av, bv[1], acc[2 * i + 1]);
                }
            }
            for (j, x) in acc.iter().enumerate() {
                let at = c.add(j * 16);
                _mm512_storeu_ps(at, _mm512_add_ps(_mm512_loadu_ps(at), *x));
            }
        }
    }
}

/// 64-byte aligned floats: the tile loads B as whole cache lines, as packed panels are.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([f32; 16]);

fn peak(c: &mut Criterion) {
    #[cfg(target_arch = "x86_64")]
    {
        let mut g = c.benchmark_group("fma_peak");
        for (bits, lanes, f, ok) in [
            (128, 4, x86::fma128 as unsafe fn() -> f32, std::arch::is_x86_feature_detected!("fma")),
            (256, 8, x86::fma256, std::arch::is_x86_feature_detected!("fma")),
            (512, 16, x86::fma512, std::arch::is_x86_feature_detected!("avx512f")),
        ] {
            if !ok {
                continue;
            }
            // FLOPs: two per lane per FMA.
            g.throughput(Throughput::Elements((ITERS * CHAINS * lanes * 2) as u64));
            g.bench_function(format!("{bits}-bit"), |b| b.iter(|| unsafe { f() }));
        }
        g.finish();
        if std::arch::is_x86_feature_detected!("avx512f") {
            let kc = x86::TILE_KC;
            let a = vec![Line([1e-3; 16]); kc / 2];
            let b = vec![Line([1e-3; 16]); 2 * kc];
            let mut out = vec![Line([0.0; 16]); 16];
            let mut g = c.benchmark_group("gemm_tile_in_l1");
            g.throughput(Throughput::Elements((8 * 32 * kc * 2) as u64));
            g.bench_function("avx512 8x32", |bench| {
                // SAFETY: the buffers hold what `tile_8x32` reads and writes, on cache lines.
                bench.iter(|| unsafe { x86::tile_8x32(a.as_ptr() as *const f32, b.as_ptr() as *const f32, out.as_mut_ptr() as *mut f32) })
            });
            g.finish();
        }
    }
}

criterion_group!(benches, peak);
criterion_main!(benches);
