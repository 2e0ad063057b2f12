//! f32 GEMM throughput of the runtime's microkernel path, square sizes 256–1024, with the
//! cache blocking `select-tiles` derives for this machine, and with the fixed blocking the
//! runtime used before (kc 256, mc 96, nc 2048) for comparison.
//! Then the int8 GEMM (`igemm`) on ResNet-18's 64-filter 3×3 convolution at 56² as the JIT
//! runs it (`[64 × 576]·[576 × 3136]`, A prepacked, B packed per call) and square 1024³,
//! throughput in int8 operations (2 per multiply-add).
//! Then the bf16 GEMM (`Precision::Bf16`, where the CPU has AVX512_BF16) against the f32 one on
//! the same bf16-valued operands: square 1024³ and the transformer's 128×1024×256 product.
//! Then the transformer layer's products as the JIT runs them (weights packed at compile time,
//! the activation read in place, the compiler's blocking), on their own with every operand
//! in cache: the kernel's rate, to set against `cargo bench --bench fma_peak`. In the whole
//! layer (`nnc run --profile`) each product's weights come from L3 on their first use.
//! Then the kernels beside the GEMM (depthwise, pointwise with few filters, batch-1 dense,
//! attention) on the example models' shapes.
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

/// The kernels beside the GEMM, on the example models' shapes: MobileNetV2's 3×3 depthwise
/// convolutions (112²×32; 56²×144 at strides 1 and 2; 14²×576) and its pointwise
/// convolutions with few filters (56²×144 → 24, the image read in place as A), ResNet-18's
/// stem pooling (112²×64, 3×3, stride 2), the MLP's 784→512 layer at batch 1, and the
/// transformer's attention (4 heads, 128 × 128, d 64). Throughput in flops (the pooling:
/// taps).
fn transformer_products(c: &mut Criterion) {
    use nnc_runtime::floats::Floats;
    use nnc_runtime::gemm::pack::{pack_b_all, packed_b_len};
    use nnc_runtime::gemm::sgemm_packed_b;
    let target = CpuTarget::host(true);
    let mut group = c.benchmark_group(format!("transformer products, weights packed ({})", microkernel_name()));
    for (name, m, n, k) in [("q/k/v/out projection 128x256x256", 128usize, 256usize, 256usize), ("linear1 128x1024x256", 128, 1024, 256), ("linear2 128x256x1024", 128, 256, 1024)] {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 17) as f32 / 17.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 13) as f32 / 13.0).collect();
        let t = target.gemm_tile(m, n, k);
        let blk = Blocking { kc: t.kc, mc: t.mc, nc: t.nc };
        // On cache lines, as the executable keeps packed weights.
        let mut packed = Floats::zeroed_lines(packed_b_len(k, n, blk));
        unsafe { pack_b_all(k, n, b.as_ptr(), n as isize, 1, blk, &mut packed) };
        let mut out = Floats::zeroed_lines(m * n);
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        group.bench_function(format!("{name} kc={} mc={} nc={}", blk.kc, blk.mc, blk.nc), |bench| {
            bench.iter(|| unsafe { sgemm_packed_b(m, n, k, black_box(a.as_ptr()), k as isize, 1, packed.as_ptr(), out.as_mut_ptr(), n as isize, 1, false, blk) })
        });
    }
    group.finish();
}

fn other_kernels(c: &mut Criterion) {
    use nnc_runtime::gemm::{attention, depthwise, gemv, pool, Epilogue};
    use nnc_runtime::Activation;
    let mut group = c.benchmark_group("kernels");
    let relu6 = Epilogue { act: Activation::Relu6, ..Epilogue::NONE };
    // MobileNetV2's 3×3 depthwise shapes, on 64-byte-aligned buffers as the JIT's arena
    // gives them (misaligned vectors straddle cache lines and measured up to 25% slower).
    for (hw, ch, stride) in [(112usize, 32usize, 1usize), (56, 144, 1), (56, 144, 2), (14, 576, 1)] {
        let out_hw = (hw - 1) / stride + 1;
        let g = depthwise::Depthwise { n: 1, c: ch, h: hw, w: hw, kh: 3, kw: 3, sh: stride, sw: stride, dh: 1, dw: 1, pt: 1, pl: 1, oh: out_hw, ow: out_hw };
        let aligned = |v: &mut Vec<f32>| v.as_mut_ptr().align_offset(64);
        let mut x: Vec<f32> = (0..hw * hw * ch + 16).map(|i| (i % 7) as f32 * 0.1).collect();
        let mut w: Vec<f32> = (0..9 * ch + 16).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut out = vec![0.0f32; out_hw * out_hw * ch + 16];
        let (xa, wa, oa) = (aligned(&mut x), aligned(&mut w), aligned(&mut out));
        group.throughput(Throughput::Elements((2 * out_hw * out_hw * ch * 9) as u64));
        group.bench_function(format!("depthwise {hw}x{hw}x{ch} 3x3 stride {stride}"), |bench| {
            bench.iter(|| unsafe { depthwise::depthwise(g, 0, out_hw, black_box(x.as_ptr().add(xa)), w.as_ptr().add(wa), out.as_mut_ptr().add(oa), relu6) })
        });
    }
    {
        // ResNet-18's stem pooling.
        let g = pool::Pool { n: 1, c: 64, h: 112, w: 112, kh: 3, kw: 3, sh: 2, sw: 2, pt: 1, pl: 1, oh: 56, ow: 56, max: true };
        let x: Vec<f32> = (0..112 * 112 * 64).map(|i| (i % 7) as f32 * 0.1).collect();
        let mut out = vec![0.0f32; 56 * 56 * 64];
        group.throughput(Throughput::Elements((56 * 56 * 64 * 9) as u64));
        group.bench_function("max pool 112x112x64 3x3 stride 2", |bench| bench.iter(|| unsafe { pool::pool(g, 0, 56, black_box(x.as_ptr()), out.as_mut_ptr()) }));
    }
    {
        let (m, n, k) = (56 * 56usize, 24usize, 144usize);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut out = vec![0.0f32; m * n];
        let target = CpuTarget::host(true);
        let t = target.gemm_tile(m, n, k);
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        group.bench_function("pointwise 56x56 144->24", |bench| bench.iter(|| unsafe { sgemm(m, n, k, black_box(a.as_ptr()), k as isize, 1, b.as_ptr(), n as isize, 1, out.as_mut_ptr(), n as isize, 1, false, Blocking { kc: t.kc, mc: t.mc, nc: t.nc }) }));
    }
    {
        let (units, features) = (512usize, 784usize);
        let x: Vec<f32> = (0..features).map(|i| (i % 7) as f32 * 0.1).collect();
        let w: Vec<f32> = (0..units * features).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut out = vec![0.0f32; units];
        group.throughput(Throughput::Elements((2 * units * features) as u64));
        group.bench_function("gemv 784->512", |bench| bench.iter(|| unsafe { gemv::gemv(1, 1, units, features, black_box(x.as_ptr()), w.as_ptr(), gemv::WeightLayout::RowMajor, out.as_mut_ptr(), Epilogue::NONE) }));
        let blocked = gemv::pack_blocked(units, features, &w);
        group.bench_function("gemv 784->512 blocked", |bench| bench.iter(|| unsafe { gemv::gemv(1, 1, units, features, black_box(x.as_ptr()), blocked.as_ptr(), gemv::WeightLayout::Blocked, out.as_mut_ptr(), Epilogue::NONE) }));
    }
    {
        let a = attention::Attention { shape: nnc_runtime::reference::AttentionShape { batches: 4, sq: 128, sk: 128, d: 64, dv: 64, causal: false }, scale: 0.125, heads: [attention::Heads(1); 4] };
        let q: Vec<f32> = (0..4 * 128 * 64).map(|i| (i % 7) as f32 * 0.1).collect();
        let mut out = vec![0.0f32; q.len()];
        group.throughput(Throughput::Elements((2 * 4 * 128 * 128 * 128) as u64));
        group.bench_function("attention 4x128x128 d64", |bench| bench.iter(|| unsafe { attention::attention(1, a, black_box(q.as_ptr()), q.as_ptr(), q.as_ptr(), out.as_mut_ptr()) }));
    }
    group.finish();
}

criterion_group!(benches, gemm, igemm, bf16_gemm, transformer_products, other_kernels);
criterion_main!(benches);
