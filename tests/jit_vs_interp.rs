//! The JIT against the reference interpreter: |Δ| ≤ 1e-4·(1 + |ref|) on every example model
//! and on shapes chosen to reach each kernel's edge cases, at -O0 and -O2. (The op fixtures
//! run on the JIT against ONNX Runtime directly, in `reference_fixtures.rs`.)

mod common;

use common::{compare, repo};
use nnc::driver::{build_graph, Source};
use nnc::target::CpuTarget;
use nnc::ir::Graph;
use nnc::{interp, jit, passes, weights};
use nnc_runtime::Tensor;
use rand::{RngExt, SeedableRng};

fn bound(graph: &Graph, weights_file: Option<&std::path::Path>) -> Graph {
    let mut g = graph.clone();
    let w = match weights_file {
        Some(p) => nnc_runtime::weights::read_safetensors(p).unwrap(),
        None => weights::random_weights(&g, 1),
    };
    weights::bind_weights(&mut g, w, "w").unwrap();
    g
}

fn random_inputs(g: &Graph, seed: u64) -> Vec<Tensor> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    g.inputs.iter().map(|&i| {
        let ty = &g.node(i).ty;
        Tensor::f32(ty.shape.clone(), (0..ty.numel()).map(|_| rng.random_range(-1.0f32..1.0)).collect())
    }).collect()
}

/// JIT outputs vs interpreter outputs at each -O level, or a description of the first mismatch.
fn check(name: &str, g: &Graph, inputs: &[Tensor]) -> Option<String> {
    let reference = interp::run(g, inputs).unwrap();
    for (level, ukernels) in [(0u8, false), (0, true), (2, false), (2, true)] {
        let mut opt = g.clone();
        passes::optimize(&mut opt, level, Some(&CpuTarget::host(ukernels)), true, &mut |_, _| {}).unwrap();
        let exe = match jit::compile(&opt, &jit::JitOptions { ukernels, threads: 1, ..Default::default() }) {
            Ok(e) => e,
            Err(e) => return Some(format!("{name} -O{level} ukernels={ukernels}: {e}")),
        };
        let got = exe.run(&mut exe.workspace(), inputs).unwrap();
        if let Some(m) = compare(&got, &reference, 1e-4) {
            return Some(format!("{name} -O{level} ukernels={ukernels}: {m}"));
        }
    }
    None
}

#[test]
fn jit_matches_interpreter_on_every_example() {
    let mut failures = Vec::new();
    for name in ["lenet5", "mlp", "resnet18", "mobilenet_v2", "transformer", "lstm"] {
        let src = Source::read(&repo().join(format!("examples/{name}.nn"))).unwrap();
        let g = bound(&build_graph(&src, None, &Default::default()).unwrap(), None);
        let inputs = random_inputs(&g, 3);
        if let Some(m) = check(name, &g, &inputs) {
            failures.push(m);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Weights read only through their packed copies are not kept: above 4 MiB of constants a
/// dry run of code generation finds the ones kernels read and only those are copied into
/// the executable (a dense layer's 8 MiB of weights: packed, on the GEMM; read in place
/// without microkernels), and the results are the interpreter's either way.
#[test]
fn only_the_constants_kernels_read_are_kept() {
    let src = "model d {\n input x: f32[16, 1024]\n output y = relu(dense(x, units=2048))\n}";
    let g = bound(&build_graph(&Source::from_string("d.nn", src), None, &Default::default()).unwrap(), None);
    let inputs = random_inputs(&g, 4);
    let want = interp::run(&g, &inputs).unwrap();
    let weight_bytes = 4 * 2048 * 1024;
    for ukernels in [true, false] {
        let mut opt = g.clone();
        passes::optimize(&mut opt, 2, Some(&CpuTarget::host(ukernels)), true, &mut |_, _| {}).unwrap();
        let exe = jit::compile(&opt, &jit::JitOptions { ukernels, ..Default::default() }).unwrap();
        let kept = exe.constant_bytes();
        // The packed copy (its panels padded to whole tiles) and the bias; or the weight itself.
        assert!(kept >= weight_bytes && kept < weight_bytes + weight_bytes / 8, "ukernels={ukernels}: {kept} bytes of constants kept");
        let got = exe.run(&mut exe.workspace(), &inputs).unwrap();
        assert_eq!(compare(&got, &want, 1e-4), None, "ukernels={ukernels}");
    }
}

/// Pruned models (90% of each layer's weights zero) on the sparse kernels: the same outputs as
/// the interpreter on the pruned model, on one thread and two (bit for bit), and the sparse
/// kernel really chosen (every example has an ungrouped convolution or dense layer).
#[test]
fn jit_matches_interpreter_on_pruned_examples() {
    let prune = passes::prune::PruneOptions { specs: vec![passes::prune::PruneSpec::Magnitude(0.9)], skip: Vec::new() };
    let mut failures = Vec::new();
    for name in ["lenet5", "mlp", "resnet18", "mobilenet_v2", "transformer", "lstm"] {
        let src = Source::read(&repo().join(format!("examples/{name}.nn"))).unwrap();
        let mut g = bound(&build_graph(&src, None, &Default::default()).unwrap(), None);
        passes::prune::prune(&mut g, &prune).unwrap();
        let inputs = random_inputs(&g, 4);
        if let Some(m) = check(name, &g, &inputs) {
            failures.push(m);
        }
        let mut opt = g.clone();
        passes::optimize(&mut opt, 2, Some(&CpuTarget::host(true)), true, &mut |_, _| {}).unwrap();
        let sparse = opt.node_ids().filter(|&id| opt.node(id).kernel == Some(nnc::kernel_plan::Kernel::Sparse)).count();
        assert!(sparse > 0, "{name}: no product on the sparse kernel");
        let outs: Vec<Vec<Tensor>> = [1, 2].iter().map(|&threads| {
            let exe = jit::compile(&opt, &jit::JitOptions { ukernels: true, threads, ..Default::default() }).unwrap();
            exe.run(&mut exe.workspace(), &inputs).unwrap()
        }).collect();
        assert_eq!(outs[0], outs[1], "{name}: two threads");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn memory_plan_reuses_dead_activations() {
    let src = Source::read(&repo().join("examples/resnet18.nn")).unwrap();
    let mut g = bound(&build_graph(&src, None, &Default::default()).unwrap(), None);
    // -O1: every activation is its own value (no fusion), the harder case for the plan.
    passes::optimize(&mut g, 1, Some(&CpuTarget::host(true)), true, &mut |_, _| {}).unwrap();
    // Without microkernels there is no im2col scratch: the arena holds activations only.
    let exe = jit::compile(&g, &jit::JitOptions { ukernels: false, threads: 1, ..Default::default() }).unwrap();
    let all: usize = g.node_ids().filter(|&i| g.node(i).op().is_some() || g.inputs.contains(&i)).map(|i| g.node(i).ty.size_bytes()).sum();
    assert!(exe.arena_bytes() >= exe.arena_lower_bound_bytes());
    assert!(exe.arena_bytes() * 3 < all, "planned {} of {} activation bytes", exe.arena_bytes(), all);
    assert!(exe.arena_bytes() <= exe.arena_lower_bound_bytes() * 3 / 2, "planned {} for a lower bound of {}", exe.arena_bytes(), exe.arena_lower_bound_bytes());
}

#[test]
fn register_tiled_matmul_handles_slabs_and_remainders() {
    // K = 300 crosses a 256-deep slab; 13 rows and 27 columns leave remainders on both sides
    // of the 6×8 tiles; the batch broadcasts b.
    let src = "model mm {\n input a: f32[2, 13, 300]\n input b: f32[300, 27]\n output c = a @ b\n}";
    let g = build_graph(&Source::from_string("mm.nn", src), None, &Default::default()).unwrap();
    assert_eq!(check("matmul 2x13x300 @ 300x27", &g, &random_inputs(&g, 5)), None);
}

#[test]
fn two_threads_give_bit_identical_results() {
    for name in ["resnet18", "transformer", "mobilenet_v2"] {
        let src = Source::read(&repo().join(format!("examples/{name}.nn"))).unwrap();
        let mut g = bound(&build_graph(&src, None, &Default::default()).unwrap(), None);
        passes::optimize(&mut g, 2, Some(&CpuTarget::host(true)), true, &mut |_, _| {}).unwrap();
        let inputs = random_inputs(&g, 9);
        let outs: Vec<Vec<Tensor>> = [1, 2].iter().map(|&threads| {
            let exe = jit::compile(&g, &jit::JitOptions { ukernels: true, threads, ..Default::default() }).unwrap();
            exe.run(&mut exe.workspace(), &inputs).unwrap()
        }).collect();
        assert_eq!(outs[0], outs[1], "{name}");
    }
}

#[test]
fn large_inputs_and_outputs_are_copied_in_parts_by_every_thread() {
    // 3 × 70 001 floats: past the size from which the run's threads copy inputs and outputs
    // in parts, which for three threads do not fall on rows.
    let src = "model m {\n input x: f32[3, 70001]\n output y = relu(x)\n}";
    let g = bound(&build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap(), None);
    let inputs = random_inputs(&g, 3);
    let want: Vec<f32> = inputs[0].as_f32().unwrap().iter().map(|&v| v.max(0.0)).collect();
    for threads in [1, 2, 3] {
        let exe = jit::compile(&g, &jit::JitOptions { threads, ..Default::default() }).unwrap();
        let out = exe.run(&mut exe.workspace(), &inputs).unwrap();
        assert_eq!(out[0].as_f32().unwrap(), &want[..], "{threads} threads");
    }
}

#[test]
fn run_into_computes_into_the_outputs_of_the_run_before() {
    // y is computed in place where the caller gets it; z is a view of an input, copied out.
    let src = "model m {\n input x: f32[70, 300]\n input w: f32[300, 40]\n output y = relu(x @ w)\n output z = reshape(x, [21000])\n}";
    let g = bound(&build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap(), None);
    let exe = jit::compile(&g, &jit::JitOptions::default()).unwrap();
    let mut ws = exe.workspace();
    let mut outputs = Vec::new();
    let mut addresses = Vec::new();
    for seed in [5, 6, 7] {
        let inputs = random_inputs(&g, seed);
        exe.run_into(&mut ws, &inputs, &mut outputs).unwrap();
        assert_eq!(outputs, exe.run(&mut ws, &inputs).unwrap(), "seed {seed}");
        assert_eq!(compare(&outputs, &interp::run(&g, &inputs).unwrap(), 1e-4), None, "seed {seed}");
        addresses.push(outputs[0].as_f32().unwrap().as_ptr());
    }
    assert!(addresses.iter().all(|&a| a == addresses[0]), "y's memory is reused: {addresses:?}");
    // Tensors that are not this executable's outputs are dropped, not written into; a refused
    // input leaves `outputs` as it was.
    let mut foreign = vec![Tensor::f32(vec![2], vec![1.0, 2.0])];
    let inputs = random_inputs(&g, 8);
    exe.run_into(&mut ws, &inputs, &mut foreign).unwrap();
    assert_eq!(foreign, exe.run(&mut ws, &inputs).unwrap());
    let before = foreign.clone();
    assert!(exe.run_into(&mut ws, &inputs[..1], &mut foreign).is_err());
    assert_eq!(foreign, before);
}

#[test]
fn inputs_only_read_are_used_in_place_and_left_unchanged() {
    // x and w are only read (x also as an output's view), so the run reads them where the
    // caller keeps them instead of copying them into the arena; x + 1 then overwrites a copy.
    for src in ["model m {\n input x: f32[70, 300]\n input w: f32[300, 40]\n output y = relu(x @ w)\n output z = reshape(x, [21000])\n}",
                "model m {\n input x: f32[70, 300]\n input w: f32[300, 40]\n output y = (x + 1) @ w\n}"] {
        let g = bound(&build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap(), None);
        let inputs = random_inputs(&g, 5);
        let before: Vec<Vec<f32>> = inputs.iter().map(|t| t.as_f32().unwrap().to_vec()).collect();
        let want = interp::run(&g, &inputs).unwrap();
        for threads in [1, 2] {
            let exe = jit::compile(&g, &jit::JitOptions { threads, ..Default::default() }).unwrap();
            let mut ws = exe.workspace();
            for _ in 0..2 {
                let got = exe.run(&mut ws, &inputs).unwrap();
                assert_eq!(compare(&got, &want, 1e-4), None, "{threads} threads: {src}");
            }
        }
        let after: Vec<Vec<f32>> = inputs.iter().map(|t| t.as_f32().unwrap().to_vec()).collect();
        assert_eq!(before, after, "{src}");
    }
}

#[test]
fn attention_reads_and_writes_head_transposes_in_place() {
    // Two batches of three heads: the four head transposes fold into the attention kernel
    // (no kernels of their own), causal and not, on every thread count, against the
    // interpreter and bit-equal across thread counts; a transpose read elsewhere stays a copy.
    for (causal, extra) in [("false", ""), ("true", " + transpose(k, perm=[0, 2, 1, 3])")] {
        let src = format!(
            "model m {{\n input x: f32[2, 64, 48]\n q = transpose(reshape(x, [2, 64, 3, 16]), perm=[0, 2, 1, 3])\n k = transpose(reshape(relu(x), [2, 64, 3, 16]), perm=[0, 2, 1, 3])\n v = transpose(reshape(sigmoid(x), [2, 64, 3, 16]), perm=[0, 2, 1, 3])\n a = transpose(attention(q, k, v, causal={causal}), perm=[0, 2, 1, 3])\n output y = reshape(a{extra}, [2, 64, 48])\n}}"
        );
        let g = bound(&build_graph(&Source::from_string("m.nn", &src), None, &Default::default()).unwrap(), None);
        let inputs = random_inputs(&g, 8);
        let reference = interp::run(&g, &inputs).unwrap();
        let mut opt = g.clone();
        passes::optimize(&mut opt, 2, Some(&CpuTarget::host(true)), true, &mut |_, _| {}).unwrap();
        let outs: Vec<Vec<Tensor>> = [1, 2, 3].iter().map(|&threads| {
            let exe = jit::compile(&opt, &jit::JitOptions { threads, ..Default::default() }).unwrap();
            let mut got = Vec::new();
            let profile = exe.run_profiled(&mut exe.workspace(), &inputs, &mut got).unwrap();
            let transposes = profile.iter().filter(|(_, op, _)| op == "transpose").count();
            assert_eq!(transposes, if extra.is_empty() { 0 } else { 2 }, "{src}: {profile:?}");
            assert_eq!(compare(&got, &reference, 1e-4), None, "{src}, {threads} threads");
            got
        }).collect();
        assert!(outs.iter().all(|o| *o == outs[0]), "{src}");
    }
}

#[test]
fn a_head_transpose_between_two_attentions_matches_the_interpreter() {
    // The transpose would both merge the first attention's heads and split them for the
    // second; folded both ways at once it gave wrong values (differential campaign, stream
    // 94, cases 2692 and 2922). Every level on one thread (`check`), and -O2 on two.
    let src = "model m {\n input x: f32[2, 6, 5, 5]\n t = transpose(attention(x, x, x), perm=[0, 2, 1, 3])\n output y = attention(t, t, t) * 1.0\n}";
    let g = bound(&build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap(), None);
    let inputs = random_inputs(&g, 3);
    assert_eq!(check("attention, transpose, attention", &g, &inputs), None);
    let mut opt = g.clone();
    passes::optimize(&mut opt, 2, Some(&CpuTarget::host(true)), true, &mut |_, _| {}).unwrap();
    let exe = jit::compile(&opt, &jit::JitOptions { threads: 2, ..Default::default() }).unwrap();
    let got = exe.run(&mut exe.workspace(), &inputs).unwrap();
    assert_eq!(compare(&got, &interp::run(&g, &inputs).unwrap(), 1e-4), None, "two threads");
}

#[test]
fn convolution_taps_that_only_see_padding_stay_in_bounds() {
    // Kernel tap kx = 0 of a 1×5 "same" convolution over a 1-pixel-wide image lands only in
    // the padding: its range of outputs is empty and must stay so (found by review).
    for src in [
        "model m {\n input x: f32[1, 1, 1, 1]\n output y = conv2d(x, filters=1, kernel=[1, 5], padding=\"same\")\n}",
        "model m {\n input x: f32[1, 4, 2, 2]\n output y = conv2d(x, filters=4, kernel=3, dilation=3, padding=\"same\", groups=4)\n}",
        "model m {\n input x: f32[1, 2, 3, 3]\n output y = conv2d(x, filters=2, kernel=5, padding=4)\n}",
    ] {
        let g = bound(&build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap(), None);
        assert_eq!(check(src, &g, &random_inputs(&g, 2)), None);
    }
}

#[test]
fn unaligned_rows_and_broadcasts() {
    // Rows of 5 floats start at unaligned addresses; the loads must not claim alignment.
    let src = "model m {\n input a: f32[3, 5]\n input b: f32[5]\n output y = softmax(a) + b\n}";
    let g = bound(&build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap(), None);
    assert_eq!(check(src, &g, &random_inputs(&g, 4)), None);
}

#[test]
fn large_pooling_windows_take_the_looped_path() {
    // 6×6 = 36 taps is past the unrolling limit; padding 3 puts whole window rows outside.
    let src = "model p {\n input x: f32[1, 2, 12, 12]\n a = max_pool(x, kernel=6, stride=1, padding=3)\n output y = avg_pool(a, kernel=6, stride=2, padding=2)\n}";
    let g = bound(&build_graph(&Source::from_string("p.nn", src), None, &Default::default()).unwrap(), None);
    assert_eq!(check(src, &g, &random_inputs(&g, 6)), None);
}

/// The channel-vector kernels (NHWC with microkernels, NCHW4c without) on the shapes that
/// stress them: channel counts that are and are not a multiple of four, strides, dilation,
/// padding wider than the window reaches, a batch of two, residual and non-runtime
/// epilogues, and weights computed at run time (no repacked copy). Layout selection must
/// leave row-major order where the target's kernels are faster; the results must match on one
/// thread and two.
#[test]
fn channel_vector_kernels_match_interpreter() {
    for c in [6, 8] {
        let src = format!(
            "model m {{
                input x: f32[2, {c}, 9, 9]
                input big: f32[2, 8, 71, 71]
                input rows: f32[128, 256]
                input wd: f32[{c}, 1, 3, 3]
                input wc: f32[8, {c}, 3, 3]
                a = relu6(conv2d(x, filters={c}, kernel=3, padding=1, groups={c}))
                b = conv2d(a, filters={c}, kernel=3, stride=2, padding=1, groups={c})
                c = gelu(conv2d(a, filters={c}, kernel=5, padding=4, dilation=2, groups={c}))
                d = conv2d(c, wd, padding=1, groups={c}) + a
                e = relu(conv2d(d, filters=24, kernel=1))
                f = conv2d(e, filters=24, kernel=3, padding=1, groups=24)
                g = conv2d(f, filters={c}, kernel=1) + d
                h = conv2d(g, filters=16, kernel=3, stride=2, padding=1)
                i = conv2d(g, wc, padding=1)
                j = conv2d(h, filters=16, kernel=3, padding=1, groups=16)
                output p = flatten(global_avg_pool(j))
                output q = b
                output r = i
                bd = relu6(conv2d(big, filters=8, kernel=3, padding=1, groups=8))
                output s = max_pool(sigmoid(bd) * bd, kernel=3, stride=1, padding=1)
                output t = avg_pool(bd, kernel=3, stride=2, padding=1)
                output v = max_pool(a, kernel=2, stride=2)
                output u = relu(dense(rows, units=256)) + rows
            }}"
        );
        let g = bound(&build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap(), None);
        let inputs = random_inputs(&g, 5);
        let reference = interp::run(&g, &inputs).unwrap();
        for ukernels in [true, false] {
            let mut opt = g.clone();
            passes::optimize(&mut opt, 2, Some(&CpuTarget::host(ukernels)), true, &mut |_, _| {}).unwrap();
            let ir = nnc::ir::print::print_graph(&opt);
            let layout = if ukernels { " nhwc" } else { " nchw4c" };
            if ukernels || c == 8 {
                assert!(ir.matches(layout).count() >= 8, "c={c}: layout selection kept these row-major:\n{ir}");
            }
            let mut one_thread: Option<Vec<Tensor>> = None;
            for threads in [1, 2] {
                let exe = jit::compile(&opt, &jit::JitOptions { ukernels, threads, ..Default::default() }).unwrap();
                let got = exe.run(&mut exe.workspace(), &inputs).unwrap();
                if let Some(m) = compare(&got, &reference, 1e-4) {
                    panic!("c={c} ukernels={ukernels} threads={threads}: {m}\n{ir}");
                }
                // Split kernels compute every element exactly as on one thread.
                match &one_thread {
                    None => one_thread = Some(got),
                    Some(first) => assert!(first.iter().zip(&got).all(|(a, b)| a.to_f32_vec() == b.to_f32_vec()), "c={c} ukernels={ukernels}: 2 threads differ from 1"),
                }
            }
        }
    }
}

/// Pooling in NHWC (the runtime's full-width kernel with microkernels, generated `f32x4`
/// windows without): a NaN anywhere in a max pool's window gives NaN, as on the interpreter
/// (PyTorch's rule); averages and maxima agree elsewhere, on one thread and two, with 20
/// channels (a full vector and a tail on AVX-512 and AVX2 alike).
#[test]
fn nhwc_pooling_propagates_nan_and_matches_the_interpreter() {
    let src = "model m {\n input x: f32[1, 20, 15, 15]\n a = conv2d(x, filters=20, kernel=3, padding=1, groups=20)\n output y = max_pool(a, kernel=3, stride=2, padding=1)\n output z = avg_pool(a, kernel=2, stride=2)\n}";
    let g = bound(&build_graph(&Source::from_string("p.nn", src), None, &Default::default()).unwrap(), None);
    let mut x = random_inputs(&g, 9).remove(0).to_f32_vec();
    // One NaN in channel 3 (a corner), one in channel 17 (the middle of the image).
    x[3 * 225] = f32::NAN;
    x[17 * 225 + 7 * 15 + 7] = f32::NAN;
    let inputs = vec![Tensor::f32(vec![1, 20, 15, 15], x)];
    let want = interp::run(&g, &inputs).unwrap();
    let nan_at = |t: &Tensor| t.to_f32_vec().iter().map(|v| v.is_nan()).collect::<Vec<_>>();
    assert!(nan_at(&want[0]).iter().any(|&n| n), "the interpreter's max pool keeps the NaNs");
    for ukernels in [true, false] {
        let mut opt = g.clone();
        passes::optimize(&mut opt, 2, Some(&CpuTarget::host(ukernels)), true, &mut |_, _| {}).unwrap();
        let ir = nnc::ir::print::print_graph(&opt);
        if ukernels {
            assert!(ir.contains(r#"kernel="channel-vector" : f32[1, 20, 8, 8] nhwc"#), "{ir}");
        }
        for threads in [1, 2] {
            let exe = jit::compile(&opt, &jit::JitOptions { ukernels, threads, ..Default::default() }).unwrap();
            let got = exe.run(&mut exe.workspace(), &inputs).unwrap();
            for (o, (a, b)) in got.iter().zip(&want).enumerate() {
                assert_eq!(nan_at(a), nan_at(b), "output {o}: NaNs differ, ukernels={ukernels} threads={threads}");
                let finite = |t: &Tensor| Tensor::f32(t.shape().to_vec(), t.to_f32_vec().iter().map(|v| if v.is_nan() { 0.0 } else { *v }).collect());
                assert_eq!(compare(&[finite(a)], &[finite(b)], 1e-4), None, "output {o}, ukernels={ukernels} threads={threads}");
            }
        }
    }
}

/// A convolution whose result is large feeding a depthwise one runs as one fused kernel (the
/// result kept as a ring of rows): the same bits as the two kernels apart on every thread
/// count (1×1 and strided 3×3 producers, depthwise stride 2 and dilation, two images, an
/// activation or none), within tolerance of the interpreter, on a smaller arena, and with
/// one kernel fewer per pair.
#[test]
fn fused_conv_depthwise_pairs_match_the_kernels_apart() {
    let src = "model m {
        input x: f32[2, 16, 48, 48]
        e = relu6(conv2d(x, filters=160, kernel=1))
        d = relu6(conv2d(e, filters=160, kernel=3, stride=2, padding=1, groups=160))
        e2 = conv2d(x, filters=144, kernel=1)
        d2 = conv2d(e2, filters=144, kernel=3, padding=2, dilation=2, groups=144)
        s = relu6(conv2d(x, filters=464, kernel=3, stride=2, padding=1))
        ds = conv2d(s, filters=464, kernel=3, padding=1, groups=464)
        output y = flatten(global_avg_pool(d))
        output z = conv2d(d2, filters=8, kernel=1)
        output w = flatten(global_avg_pool(ds))
    }";
    let mut g = bound(&build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap(), None);
    passes::optimize(&mut g, 2, Some(&CpuTarget::host(true)), true, &mut |_, _| {}).unwrap();
    let inputs = random_inputs(&g, 3);
    let reference = interp::run(&g, &inputs).unwrap();
    for threads in [1, 2, 3] {
        let [fused, apart] = [true, false].map(|fuse_producers| jit::compile(&g, &jit::JitOptions { ukernels: true, threads, fuse_producers, ..Default::default() }).unwrap());
        let (mut got, mut want) = (Vec::new(), Vec::new());
        let profile = fused.run_profiled(&mut fused.workspace(), &inputs, &mut got).unwrap();
        let apart_profile = apart.run_profiled(&mut apart.workspace(), &inputs, &mut want).unwrap();
        assert_eq!(got, want, "{threads} threads");
        if let Some(m) = compare(&got, &reference, 1e-4) {
            panic!("{threads} threads: {m}");
        }
        assert_eq!(profile.len() + 3, apart_profile.len(), "{threads} threads: {profile:?}");
        // Stored whole, the producers' results (5.9, 5.3 and 2.1 MB over both images) need
        // more arena than any other values; each band has its own ring (measured: 5.96 MB on
        // one thread, 6.36 on two, 6.63 on three, against 8.18).
        assert!(fused.arena_bytes() < apart.arena_bytes() && (threads > 1 || fused.arena_bytes() * 4 < apart.arena_bytes() * 3), "{threads} threads: {} vs {}", fused.arena_bytes(), apart.arena_bytes());
    }
}

/// The LSTM's vector step on the shapes its fast paths skip: no biases, hidden sizes that
/// leave scalar gate units and whole 32-unit chunks, batch rows.
#[test]
fn lstm_step_shapes_match_interpreter() {
    for (hidden, bias) in [(6, false), (9, true), (40, false)] {
        let src = format!("model m {{\n input x: f32[5, 2, 7]\n output y = lstm(x, hidden={hidden}, bias={bias})\n}}");
        let g = bound(&build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap(), None);
        let inputs = random_inputs(&g, 11);
        if let Some(m) = check(&format!("lstm hidden={hidden} bias={bias}"), &g, &inputs) {
            panic!("{m}");
        }
    }
    // Weights computed at run time: transposed into scratch on every run.
    let src = "model m {\n input x: f32[4, 3, 5]\n input wih: f32[24, 5]\n input whh: f32[24, 6]\n input b: f32[24]\n output y = lstm(x, wih * 0.5, whh, b, b + 1)\n}";
    let g = bound(&build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap(), None);
    let inputs = random_inputs(&g, 12);
    if let Some(m) = check("lstm with computed weights", &g, &inputs) {
        panic!("{m}");
    }
}

/// Fused groups whose extra operands broadcast (a row repeated over the result, or one
/// value): elementwise chains, and products whose epilogue the GEMM cannot take (a row add,
/// GELU), on one thread and two.
#[test]
fn broadcast_epilogues_match_interpreter() {
    let src = "model m {
        input x: f32[6, 10]
        input r: f32[10]
        input s: f32[1]
        c = sigmoid(x * 2 + r) / (s + 3)
        d = gelu(dense(x, units=10) + r)
        output y = relu(d - c) * r
        output z = dense(x, units=40) + 1.5
    }";
    let g = bound(&build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap(), None);
    let inputs = random_inputs(&g, 13);
    if let Some(m) = check("broadcast epilogues", &g, &inputs) {
        panic!("{m}");
    }
    let mut opt = g.clone();
    passes::optimize(&mut opt, 2, Some(&CpuTarget::host(true)), true, &mut |_, _| {}).unwrap();
    let ir = nnc::ir::print::print_graph(&opt);
    assert!(ir.matches("fused(").count() >= 3, "{ir}");
}

/// The JIT verifies what it is given, in every build: graphs from IR text or an embedding
/// application that break an invariant its bounds rely on are refused, not compiled.
#[test]
fn the_jit_refuses_graphs_that_break_its_bounds_invariants() {
    for (what, text, message) in [
        (
            "fused broadcast rows of two lengths (the row loop would read past the shorter)",
            "graph g {\n  %x = input 0 : f32[2, 3, 4]\n  %a = input 1 : f32[3, 4]\n  %b = input 2 : f32[4]\n  %y = fused(%x, %a, %b) epilogue=[\"add\", \"mul\"] : f32[2, 3, 4]\n  output y = %y\n}\n",
            "differ in length",
        ),
        (
            "an lstm with a sixth operand",
            "graph g {\n  %x = input 0 : f32[2, 1, 3]\n  %wi = input 1 : f32[8, 3]\n  %wh = input 2 : f32[8, 2]\n  %bi = input 3 : f32[8]\n  %bh = input 4 : f32[8]\n  %e = input 5 : f32[8]\n  %y = lstm(%x, %wi, %wh, %bi, %bh, %e) hidden=2 : f32[2, 1, 2]\n  output y = %y\n}\n",
            "lstm takes",
        ),
    ] {
        let err = match nnc::ir::parse::parse_graph(text) {
            Err(e) => e.to_string(),
            Ok(g) => match jit::compile(&g, &jit::JitOptions::default()) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{what}: compiled"),
            },
        };
        assert!(err.contains(message), "{what}: {err}");
    }
    // A tile from IR text is bounded as the runtime's blocking is.
    assert!("8x32 kc=256 mc=9223372036854775808 nc=64".parse::<nnc::target::Tile>().is_err());
    assert!("8x32 kc=256 mc=16384 nc=64".parse::<nnc::target::Tile>().is_ok());
}

/// Max pooling's vector bodies (four f32 outputs per step, sixteen int8 codes at stride 1,
/// eight at 2, four at 4) cover only the outputs whose loads stay inside the row; the rest
/// go through the scalar window. Every window, stride and padding on rows just shorter and
/// longer than one step's loads, in f32 and on int8 codes (between two convolutions, so the
/// quantized graph pools their codes), on every executor.
#[test]
fn max_pool_vector_spans_keep_their_loads_inside_each_row() {
    use nnc::testing::differential::{check, Plan};
    for width in [5, 8, 9, 17, 23, 40] {
        let mut src = format!("model p {{\n    input x: f32[1, 2, 3, {width}]\n    param w: f32[8, 2, 1, 1]\n    param v: f32[1, 8, 1, 1]\n    c = conv2d(x, w)\n");
        let mut n = 0;
        for kw in 1..=4usize {
            for sw in 1..=4usize {
                for pl in 0..=kw / 2 {
                    for pr in 0..=kw / 2 {
                        if width + pl + pr < kw {
                            continue;
                        }
                        src += &format!("    output f{n} = max_pool(x, kernel=[1, {kw}], stride=[1, {sw}], padding=[0, {pl}, 0, {pr}])\n");
                        src += &format!("    output q{n} = conv2d(max_pool(c, kernel=[2, {kw}], stride=[1, {sw}], padding=[1, {pl}, 0, {pr}]), v)\n");
                        n += 1;
                    }
                }
            }
        }
        src += "}\n";
        if let Err(f) = check(&src, width as u64, &Plan::full()) {
            panic!("{f}");
        }
    }
}

/// The int8 depthwise kernel's vector body (eight outputs a step, stride 1 or 2) covers only
/// the outputs whose loads stay inside the row, and skips window rows outside the image:
/// windows from 1×1 to 5×5, strides 1 to 3 (3 runs elsewhere), every padding, with and
/// without a bias, on rows shorter and longer than a step's loads, on every executor.
#[test]
fn int8_depthwise_vector_spans_keep_their_loads_inside_each_row() {
    use nnc::testing::differential::{check, Plan};
    for width in [3, 8, 9, 17, 26] {
        let mut src = format!("model d {{\n    input x: f32[2, 3, 5, {width}]\n");
        let mut n = 0;
        for kw in [1usize, 2, 3, 5] {
            for sw in 1..=3usize {
                for pl in 0..=kw / 2 {
                    if width + 2 * pl < kw {
                        continue;
                    }
                    let kh = kw.min(3);
                    src += &format!("    param w{n}: f32[3, 1, {kh}, {kw}]\n    param b{n}: f32[3]\n");
                    let bias = if n % 2 == 0 { format!(", b{n}") } else { String::new() };
                    src += &format!("    output y{n} = conv2d(x, w{n}{bias}, stride=[{}, {sw}], padding=[{}, {pl}], groups=3)\n", 1 + n % 2, kh / 2);
                    n += 1;
                }
            }
        }
        src += "}\n";
        if let Err(f) = check(&src, width as u64, &Plan::full()) {
            panic!("{f}");
        }
    }
}

/// Quantizing NaN, infinities, values far outside the calibrated range, signed zeros and
/// denormals gives the interpreter's codes on the JIT (NaN → 0, saturation at ±127), on the
/// vector path (the first 64 values) and the scalar tail alike, with microkernels on and off.
#[test]
fn int8_codes_of_nan_infinities_and_huge_values_match_the_interpreter() {
    use nnc::passes::{Calibration, PassContext};
    let src = "model q {\n input x: f32[2, 37]\n h = dense(x, units=20)\n output y = dense(relu(h), units=5)\n}";
    let g = bound(&build_graph(&Source::from_string("q.nn", src), None, &Default::default()).unwrap(), None);
    let calibration = Calibration::new(vec![random_inputs(&g, 1)]);
    let mut q = g.clone();
    passes::optimize_with(&mut q, 2, &PassContext { cpu: None, quantize: Some(&calibration), bf16: false, prune: None }, true, &mut |_, _| {}).unwrap();
    let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e30, 0.0, -0.0, 1e-40, -3.3e38, 0.004];
    let x: Vec<f32> = (0..74).map(|i| if i % 3 == 0 { specials[i / 3 % specials.len()] } else { (i as f32 * 0.37).sin() }).collect();
    let inputs = vec![Tensor::f32(vec![2, 37], x)];
    let want = interp::run(&q, &inputs).unwrap();
    for ukernels in [true, false] {
        let exe = jit::compile(&q, &jit::JitOptions { ukernels, threads: 1, ..Default::default() }).unwrap();
        let got = exe.run(&mut exe.workspace(), &inputs).unwrap();
        let bits = |t: &[Tensor]| t.iter().map(|t| t.to_f32_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "ukernels={ukernels}");
    }
}

/// The larger examples quantized to int8 on the JIT (microkernels on, two threads) give the
/// interpreter's bits on the same quantized graph (the CLI test runs LeNet-5 and the MLP in
/// every setting).
#[test]
fn int8_examples_match_the_interpreter_bit_for_bit() {
    use nnc::passes::{Calibration, PassContext};
    for name in ["resnet18", "mobilenet_v2", "transformer"] {
        let src = Source::read(&repo().join(format!("examples/{name}.nn"))).unwrap();
        let g = bound(&build_graph(&src, None, &Default::default()).unwrap(), None);
        let calibration = Calibration::new(vec![random_inputs(&g, 1)]);
        let mut q = g.clone();
        passes::optimize_with(&mut q, 2, &PassContext { cpu: None, quantize: Some(&calibration), bf16: false, prune: None }, true, &mut |_, _| {}).unwrap();
        let inputs = random_inputs(&g, 2);
        let want = interp::run(&q, &inputs).unwrap();
        let exe = jit::compile(&q, &jit::JitOptions { ukernels: true, threads: 2, ..Default::default() }).unwrap();
        let got = exe.run(&mut exe.workspace(), &inputs).unwrap();
        let bits = |t: &[Tensor]| t.iter().map(|t| t.to_f32_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>()).collect::<Vec<_>>();
        assert!(bits(&got) == bits(&want), "{name}: int8 JIT differs from the interpreter");
    }
}

/// How far an f16/bf16 result of the JIT may be from the interpreter's: the kernels compute
/// in f32 in another order, so a value near a rounding boundary can round to the neighbouring
/// f16/bf16 number, and that one-unit step propagates. `units` steps of the dtype's rounding
/// (2^-8 for bf16, 2^-11 for f16) relative to the output's largest magnitude.
fn half_tolerance(dtype: nnc_runtime::DType, units: f32) -> impl Fn(&[Tensor], &[Tensor]) -> Option<String> {
    let u = if dtype == nnc_runtime::DType::BF16 { 2f32.powi(-8) } else { 2f32.powi(-11) };
    move |got: &[Tensor], want: &[Tensor]| {
        for (g, w) in got.iter().zip(want) {
            if g.shape() != w.shape() || g.dtype() != w.dtype() {
                return Some(format!("{} {:?} vs {} {:?}", g.dtype(), g.shape(), w.dtype(), w.shape()));
            }
            let (g, w) = (g.to_f32_vec(), w.to_f32_vec());
            let scale = w.iter().fold(0f32, |m, v| m.max(v.abs()));
            if let Some((i, (a, b))) = g.iter().zip(&w).enumerate().find(|(_, (a, b))| (*a - *b).abs().is_nan() || (*a - *b).abs() > units * u * (1.0 + scale)) {
                return Some(format!("element {i}: {a} vs {b} (largest |ref| {scale})"));
            }
        }
        None
    }
}

/// Models declared in f16 or bf16 run on the JIT: every value it produces is representable in
/// its dtype (kernels compute in f32 and round each result, as the interpreter does), and the
/// outputs are within a few units of the dtype's rounding of the interpreter's on the same
/// optimized graph.
#[test]
fn half_precision_models_match_the_interpreter_within_rounding() {
    use nnc_runtime::DType;
    let mut failures = Vec::new();
    for (dtype, examples) in [(DType::BF16, &["lenet5", "mlp", "resnet18", "mobilenet_v2", "transformer", "lstm"][..]), (DType::F16, &["lenet5", "mobilenet_v2", "transformer", "lstm"][..])] {
        let within = half_tolerance(dtype, 16.0);
        for name in examples {
            let text = std::fs::read_to_string(repo().join(format!("examples/{name}.nn"))).unwrap().replace("f32[", &format!("{dtype}["));
            let g = bound(&build_graph(&Source::from_string(format!("{name}.nn"), &text), None, &Default::default()).unwrap(), None);
            let inputs: Vec<Tensor> = random_inputs(&g, 3).into_iter().map(|t| Tensor::from_f32(dtype, t.shape().to_vec(), t.to_f32_vec()).unwrap()).collect();
            for (level, ukernels) in [(0u8, false), (2, true)] {
                let mut opt = g.clone();
                passes::optimize(&mut opt, level, Some(&CpuTarget::host(ukernels)), true, &mut |_, _| {}).unwrap();
                let want = interp::run(&opt, &inputs).unwrap();
                let exe = jit::compile(&opt, &jit::JitOptions { ukernels, threads: 2, ..Default::default() }).unwrap();
                let got = exe.run(&mut exe.workspace(), &inputs).unwrap();
                let unrounded = got.iter().flat_map(|t| t.to_f32_vec()).find(|&v| dtype.round_f32(v).to_bits() != v.to_bits());
                if let Some(v) = unrounded {
                    failures.push(format!("{dtype} {name} -O{level}: {v} is not a {dtype} value"));
                }
                if let Some(m) = within(&got, &want) {
                    failures.push(format!("{dtype} {name} -O{level} ukernels={ukernels}: {m}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `--quantize bf16` (mixed precision) on the JIT and on the accelerator agrees with the
/// interpreter on the same graph within bf16 rounding, and the mixed-precision graph stays
/// within bf16 rounding of the f32 model.
#[test]
fn bf16_mixed_precision_matches_the_interpreter_on_the_jit_and_the_accelerator() {
    use nnc::passes::PassContext;
    use nnc_runtime::DType;
    let within = half_tolerance(DType::BF16, 16.0);
    let near_f32 = half_tolerance(DType::BF16, 32.0);
    let mut failures = Vec::new();
    for name in ["lenet5", "mlp", "resnet18", "mobilenet_v2", "transformer", "lstm"] {
        let src = Source::read(&repo().join(format!("examples/{name}.nn"))).unwrap();
        let g = bound(&build_graph(&src, None, &Default::default()).unwrap(), None);
        let inputs = random_inputs(&g, 2);
        let f32_out = interp::run(&g, &inputs).unwrap();
        // The products on the bf16 kernel where this CPU has it, and on the f32 kernels
        // (which also opens Winograd and the direct kernel to bf16 convolutions).
        let kernels = if nnc_runtime::gemm::bf16_microkernel_name().is_some() { vec![true, false] } else { vec![false] };
        for bf16_kernel in kernels {
            let options = jit::JitOptions { ukernels: true, threads: 1, bf16_kernel: Some(bf16_kernel), ..Default::default() };
            let mut q = g.clone();
            passes::optimize_with(&mut q, 2, &PassContext { cpu: Some(&options.target()), quantize: None, bf16: true, prune: None }, true, &mut |_, _| {}).unwrap();
            assert!(q.node_ids().any(|id| q.node(id).ty.dtype == DType::BF16), "{name}: nothing became bf16");
            let want = interp::run(&q, &inputs).unwrap();
            if let Some(m) = near_f32(&want, &f32_out) {
                failures.push(format!("{name}: bf16 interpreter vs f32: {m}"));
            }
            let exe = jit::compile(&q, &options).unwrap();
            if let Some(m) = within(&exe.run(&mut exe.workspace(), &inputs).unwrap(), &want) {
                failures.push(format!("{name}: JIT, bf16 kernel {bf16_kernel}: {m}"));
            }
        }
        let mut a = g.clone();
        passes::optimize_with(&mut a, 2, &PassContext { cpu: None, quantize: None, bf16: true, prune: None }, true, &mut |_, _| {}).unwrap();
        let program = nnc::accel::lower(&a, &nnc::accel::AccelConfig::preset("edge").unwrap()).unwrap();
        let got = nnc::accel::run(&program, &inputs).unwrap().outputs;
        if let Some(m) = within(&got, &interp::run(&a, &inputs).unwrap()) {
            failures.push(format!("{name}: accelerator: {m}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `--kernels`: every kernel, asked for by name, computes the nodes it can (and only those)
/// with the interpreter's results, with microkernels on and off; the layout follows the
/// kernel asked for.
#[test]
fn every_kernel_asked_for_by_name_matches_the_interpreter() {
    let src = "model m {\n input x: f32[2, 8, 12, 12]\n c = relu(conv2d(x, filters=16, kernel=3, padding=1))\n d = conv2d(c, filters=16, kernel=3, stride=2, groups=16, padding=1)\n p = max_pool(d, kernel=2)\n h = dense(flatten(p), units=24)\n output y = h\n}";
    let g = bound(&build_graph(&Source::from_string("k.nn", src), None, &Default::default()).unwrap(), None);
    let inputs = random_inputs(&g, 6);
    let want = interp::run(&g, &inputs).unwrap();
    for ukernels in [true, false] {
        for k in nnc::kernel_plan::Kernel::ALL {
            let options = jit::JitOptions { ukernels, kernels: nnc::kernel_plan::KernelSet::default().with(k), ..Default::default() };
            let mut opt = g.clone();
            passes::optimize(&mut opt, 2, Some(&options.target()), true, &mut |_, _| {}).unwrap();
            let exe = jit::compile(&opt, &options).unwrap();
            let got = exe.run(&mut exe.workspace(), &inputs).unwrap();
            assert_eq!(common::compare(&got, &want, 1e-4), None, "{k} ukernels={ukernels}");
        }
    }
    // Asked for, a kernel wins over the cost model wherever it is available.
    let mut opt = g.clone();
    let options = jit::JitOptions { kernels: nnc::kernel_plan::KernelSet::parse("direct,dot").unwrap(), ..Default::default() };
    passes::optimize(&mut opt, 2, Some(&options.target()), true, &mut |_, _| {}).unwrap();
    let kernel = |name: &str| opt.node(opt.by_name(name).unwrap()).kernel.map(|k| k.name());
    assert_eq!(kernel("c.conv2d"), Some("direct"));
    assert_eq!(kernel("h"), Some("dot"));
    // The stride-1 3×3 convolution can run by Winograd (and did, in the loop above).
    let mut opt = g.clone();
    let options = jit::JitOptions { kernels: nnc::kernel_plan::KernelSet::parse("winograd-f4x3").unwrap(), ..Default::default() };
    passes::optimize(&mut opt, 2, Some(&options.target()), true, &mut |_, _| {}).unwrap();
    assert_eq!(opt.node(opt.by_name("c.conv2d").unwrap()).kernel.map(|k| k.name()), Some("winograd-f4x3"));
}

/// `g` optimized and compiled for `threads` threads with `kernel` asked for by name (the
/// test fails unless some node takes it), run on `inputs`.
fn run_with_kernel(g: &Graph, src: &str, kernel: &str, threads: usize, inputs: &[Tensor]) -> Vec<Tensor> {
    let options = jit::JitOptions { threads, kernels: nnc::kernel_plan::KernelSet::parse(kernel).unwrap(), ..Default::default() };
    let mut opt = g.clone();
    passes::optimize(&mut opt, 2, Some(&options.target()), true, &mut |_, _| {}).unwrap();
    assert!(opt.node_ids().any(|id| opt.node(id).kernel.is_some_and(|k| k.name() == kernel)), "{kernel} not chosen:\n{src}");
    let exe = jit::compile(&opt, &options).unwrap();
    exe.run(&mut exe.workspace(), inputs).unwrap()
}

/// Winograd F(4×4, 3×3) and F(2×2, 3×3) on convolutions of random sizes (odd sizes,
/// one-sided and asymmetric padding, batches, bias or none, residual and activation
/// epilogues), each asked for by name so that it runs wherever it can, with one and two
/// threads, against the interpreter.
#[test]
fn winograd_matches_the_interpreter_on_random_convolutions() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20261205);
    for case in 0..24 {
        let (n, c, k) = (rng.random_range(1..3), rng.random_range(1..20), rng.random_range(1..24));
        let (h, w) = (rng.random_range(1..19), rng.random_range(1..19));
        let pad: Vec<usize> = (0..4).map(|_| rng.random_range(0..3)).collect();
        // The output must have at least one row and column.
        if h + pad[0] + pad[2] < 3 || w + pad[1] + pad[3] < 3 {
            continue;
        }
        let bias = rng.random_bool(0.5);
        let tail = match rng.random_range(0..3) {
            0 => "y = c",
            1 => "y = relu(c)",
            _ => "y = relu(c + conv2d(x, filters=K, kernel=3, padding=P, bias=false, name=\"skip\"))",
        };
        let padding = format!("[{}, {}, {}, {}]", pad[0], pad[1], pad[2], pad[3]);
        let tail = tail.replace('P', &padding);
        let src = format!("model m {{\n input x: f32[{n}, {c}, {h}, {w}]\n c = conv2d(x, filters={k}, kernel=3, padding={padding}, bias={bias})\n output {}\n}}", tail.replace('K', &k.to_string()));
        let g = bound(&build_graph(&Source::from_string("w.nn", src.clone()), None, &Default::default()).unwrap_or_else(|d| panic!("{d:?}\n{src}")), None);
        let inputs = random_inputs(&g, case);
        let want = interp::run(&g, &inputs).unwrap();
        for kernel in ["winograd-f4x3", "winograd-f2x3"] {
            // F(2×2) runs on NHWC images only, whose transforms need AVX2 or AVX-512.
            if kernel == "winograd-f2x3" && !nnc_runtime::gemm::winograd::nhwc_available() {
                continue;
            }
            for threads in [1, 2] {
                let got = run_with_kernel(&g, &src, kernel, threads, &inputs);
                assert_eq!(compare(&got, &want, 1e-4), None, "{kernel} threads={threads}\n{src}");
            }
        }
    }
}

/// The direct kernel for few input channels on convolutions of random sizes (one to three
/// channels, oblong windows, dilation, one-sided and asymmetric padding, rows shorter and
/// longer than a vector, batches, bias or none, residual and activation epilogues), chosen
/// by the cost model or asked for by name, with one and two threads, against the
/// interpreter; and a layer large enough to split across the threads.
#[test]
fn direct_rows_matches_the_interpreter_on_random_convolutions() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20261206);
    let mut cases: Vec<String> = Vec::new();
    for _ in 0..40 {
        let (n, c, f) = (rng.random_range(1..3), rng.random_range(1..4), rng.random_range(1..30));
        let (kh, kw) = (rng.random_range(1..6), rng.random_range(1..6));
        // The kernel takes windowed convolutions of few taps.
        if c * kh * kw > nnc::kernel_plan::DIRECT_ROWS_MAX_TAPS || kh * kw == 1 {
            continue;
        }
        let (h, w) = (rng.random_range(1..20), rng.random_range(1..40));
        let dilation = rng.random_range(1..3);
        let pad: Vec<usize> = (0..4).map(|_| rng.random_range(0..3)).collect();
        // The output must have at least one row and column.
        if h + pad[0] + pad[2] < (kh - 1) * dilation + 1 || w + pad[1] + pad[3] < (kw - 1) * dilation + 1 {
            continue;
        }
        let conv = |name: &str, bias: bool| format!("conv2d(x, filters={f}, kernel=[{kh}, {kw}], dilation={dilation}, padding=[{}, {}, {}, {}], bias={bias}, name=\"{name}\")", pad[0], pad[1], pad[2], pad[3]);
        let tail = match rng.random_range(0..3) {
            0 => format!("y = {}", conv("c", rng.random_bool(0.5))),
            1 => format!("y = relu6({})", conv("c", true)),
            _ => format!("y = relu({} + {})", conv("c", rng.random_bool(0.5)), conv("skip", false)),
        };
        cases.push(format!("model m {{\n input x: f32[{n}, {c}, {h}, {w}]\n output {tail}\n}}"));
    }
    assert!(cases.len() >= 12, "{} cases", cases.len());
    cases.push("model m {\n input x: f32[1, 3, 96, 96]\n output y = relu(conv2d(x, filters=64, kernel=3, padding=1, name=\"c\"))\n}".to_string());
    for (case, src) in cases.iter().enumerate() {
        let g = bound(&build_graph(&Source::from_string("d.nn", src.clone()), None, &Default::default()).unwrap_or_else(|d| panic!("{d:?}\n{src}")), None);
        let inputs = random_inputs(&g, case as u64);
        let want = interp::run(&g, &inputs).unwrap();
        let mut bits = None;
        for threads in [1, 2] {
            let got = run_with_kernel(&g, src, "direct-rows", threads, &inputs);
            assert_eq!(compare(&got, &want, 1e-4), None, "threads={threads}\n{src}");
            let these: Vec<u32> = got[0].as_f32().unwrap().iter().map(|v| v.to_bits()).collect();
            assert!(bits.get_or_insert_with(|| these.clone()) == &these, "threads change the bits\n{src}");
        }
    }
}

/// An f32 output is computed in the tensor `run` returns, which starts on a cache line (the
/// kernels' 64-byte stores into a 16-byte-aligned `Vec` straddled lines and cost what the
/// copy out of the arena had); its arena keeps only the address. Values against the
/// interpreter, and the same from a second run on the same workspace.
#[test]
fn outputs_are_computed_in_cache_line_aligned_tensors() {
    let src = "model m {
        input x: f32[37, 64]
        input w: f32[64, 96]
        output y = relu(x @ w)
    }";
    let g = bound(&build_graph(&Source::from_string("m.nn", src), None, &Default::default()).unwrap(), None);
    let inputs = random_inputs(&g, 4);
    let reference = interp::run(&g, &inputs).unwrap();
    for threads in [1, 2] {
        let exe = jit::compile(&g, &jit::JitOptions { threads, ..Default::default() }).unwrap();
        assert!(exe.arena_bytes() < 37 * 96 * 4, "{threads} threads: arena {}", exe.arena_bytes());
        let mut ws = exe.workspace();
        for _ in 0..2 {
            let got = exe.run(&mut ws, &inputs).unwrap();
            assert_eq!(got[0].as_f32().unwrap().as_ptr() as usize % 64, 0, "{threads} threads");
            if let Some(m) = compare(&got, &reference, 1e-4) {
                panic!("{threads} threads: {m}");
            }
        }
    }
}
