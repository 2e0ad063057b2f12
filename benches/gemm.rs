//! f32 GEMM throughput of the runtime's microkernel path, square sizes 256–1024, with the
//! cache blocking `select-tiles` derives for this machine, and with the fixed blocking the
//! runtime used before (kc 256, mc 96, nc 2048) for comparison.
//! Run: `cargo bench --bench gemm`. GFLOP/s = 2·n³ / time.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nnc::target::CpuTarget;
use nnc_runtime::gemm::{microkernel_name, sgemm, Blocking};
use std::hint::black_box;

fn gemm(c: &mut Criterion) {
    let target = CpuTarget::host(true);
    let mut group = c.benchmark_group(format!("sgemm ({})", microkernel_name()));
    for n in [256usize, 512, 1024] {
        let a: Vec<f32> = (0..n * n).map(|i| (i % 17) as f32 / 17.0).collect();
        let b: Vec<f32> = (0..n * n).map(|i| (i % 13) as f32 / 13.0).collect();
        let mut out = vec![0.0f32; n * n];
        group.throughput(Throughput::Elements((2 * n * n * n) as u64));
        let t = target.gemm_tile(n, n, n);
        let analytic = Blocking { kc: t.kc, mc: t.mc, nc: t.nc };
        let fixed = Blocking { kc: 256, mc: 96, nc: 2048 };
        for (name, blk) in [("analytic", analytic), ("fixed", fixed)] {
            group.bench_function(format!("{n} {name}"), |bench| {
                bench.iter(|| unsafe { sgemm(n, n, n, black_box(a.as_ptr()), n as isize, 1, b.as_ptr(), n as isize, 1, out.as_mut_ptr(), n as isize, 1, false, blk) })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, gemm);
criterion_main!(benches);
