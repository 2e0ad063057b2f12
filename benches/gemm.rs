//! f32 GEMM throughput of the runtime's microkernel path, square sizes 256–1024, with the
//! cache blocking `select-tiles` derives for this machine, and with the fixed blocking the
//! runtime used before (kc 256, mc 96, nc 2048) for comparison.
//! Then the int8 GEMM (`igemm`) on ResNet-18's 64-filter 3×3 convolution at 56² as the JIT
//! runs it (`[64 × 576]·[576 × 3136]`, A prepacked, B packed per call) and square 1024³,
//! throughput in int8 operations (2 per multiply-add).
//! Then the bf16 GEMM (`Precision::Bf16`, where the CPU has AVX512_BF16) against the f32 one on
//! the same bf16-valued operands: square 1024³ and the transformer's 128×1024×256 product.
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

fn igemm(c: &mut Criterion) {
    use nnc_runtime::gemm::int8::{igemm, int8_microkernel_name, pack_a_i8_all, packed_a_i8_len, IntBias, IntOperand, IntOut};
    let mut group = c.benchmark_group(format!("igemm ({})", int8_microkernel_name()));
    for (name, m, n, k) in [("resnet18 layer1 conv", 64usize, 3136usize, 576usize), ("1024", 1024, 1024, 1024), ("64x64x512 (cache-resident)", 64, 64, 512)] {
        let a: Vec<i8> = (0..m * k).map(|i| (i % 251) as u8 as i8).collect();
        let b: Vec<i8> = (0..k * n).map(|i| (i % 241) as u8 as i8).collect();
        let mut packed = vec![0u8; packed_a_i8_len(m, k)];
        unsafe { pack_a_i8_all(m, k, a.as_ptr(), k as isize, 1, &mut packed) };
        let mut out = vec![0i32; m * n];
        let no_bias = IntBias { values: std::ptr::null(), per_row: false };
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        group.bench_function(name, |bench| {
            bench.iter(|| unsafe { igemm(1, m, n, k, IntOperand::Packed(packed.as_ptr()), IntOperand::Strided(black_box(b.as_ptr()), n as isize, 1), IntOut::Acc(out.as_mut_ptr()), n as isize, 1, no_bias, 0) })
        });
    }
    group.finish();
}

fn bf16_gemm(c: &mut Criterion) {
    use nnc_runtime::gemm::{bf16_microkernel_name, gemm_in, Precision};
    let Some(kernel) = bf16_microkernel_name() else {
        eprintln!("no AVX512_BF16 on this CPU: bf16 products run on the f32 kernel");
        return;
    };
    let target = CpuTarget::host(true);
    let mut group = c.benchmark_group(format!("bf16 gemm ({kernel})"));
    for (name, m, n, k) in [("1024", 1024usize, 1024usize, 1024usize), ("transformer 128x1024x256", 128, 1024, 256)] {
        let round = |v: f32| nnc_runtime::dtype::round_bf16(v);
        let a: Vec<f32> = (0..m * k).map(|i| round((i % 17) as f32 / 17.0)).collect();
        let b: Vec<f32> = (0..k * n).map(|i| round((i % 13) as f32 / 13.0)).collect();
        let mut out = vec![0.0f32; m * n];
        let t = target.gemm_tile(m, n, k);
        let blk = Blocking { kc: t.kc, mc: t.mc, nc: t.nc };
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        for precision in [Precision::F32, Precision::Bf16] {
            group.bench_function(format!("{name} {precision:?}"), |bench| {
                bench.iter(|| unsafe { gemm_in(precision, m, n, k, black_box(a.as_ptr()), k as isize, 1, b.as_ptr(), n as isize, 1, out.as_mut_ptr(), n as isize, 1, false, blk) })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, gemm, igemm, bf16_gemm);
criterion_main!(benches);
