//! The machine's single-core f32 FMA peak at 128, 256 and 512 bits, measured with enough
//! independent FMA chains to hide latency. BENCHMARKS.md states GEMM throughput as a
//! fraction of these. Run: `cargo bench --bench fma_peak`.

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
}

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
    }
}

criterion_group!(benches, peak);
criterion_main!(benches);
