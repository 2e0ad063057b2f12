//! Randomly generated valid models (NNSmith-style: each op is chosen so its shape rule holds
//! for the values at hand), written as `.nn` source so the whole front end is exercised.
//! Properties: the model elaborates, the IR verifies and round-trips through its text form,
//! every `-O` level computes what `-O0` computes, and so does the JIT (microkernels on and
//! off), within |Δ| ≤ 1e-4·(1 + |ref|).
//!
//! 200 cases run in the default suite; `NNC_PROPTEST_CASES=5000 cargo test --release --test
//! random_graphs` runs a longer search.

use nnc::driver::{build_graph, Source};
use nnc::target::CpuTarget;
use nnc::ir::{parse::parse_graph, print::print_graph, verify::verify, Graph};
use nnc::{interp, jit, passes, weights};
use nnc_runtime::Tensor;
use proptest::prelude::*;
use rand::{RngExt, SeedableRng};

/// Builds a model statement by statement, tracking every value's shape.
struct Gen {
    lines: Vec<String>,
    values: Vec<(String, Vec<usize>)>,
    next: usize,
}

impl Gen {
    fn fresh(&mut self) -> String {
        self.next += 1;
        format!("v{}", self.next)
    }

    fn push(&mut self, expr: String, shape: Vec<usize>) {
        let name = self.fresh();
        self.lines.push(format!("    {name} = {expr}"));
        self.values.push((name, shape));
    }

    fn list(v: &[usize]) -> String {
        format!("[{}]", v.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
    }

    /// One op applied to value `pick`, chosen by `kind`, with `p` for its parameters.
    fn step(&mut self, kind: u8, pick: u8, p: u8) {
        let (v, shape) = self.values[pick as usize % self.values.len()].clone();
        let rank = shape.len();
        let q = p as usize;
        match kind % 15 {
            0 => {
                let f = ["relu", "sigmoid", "tanh", "gelu", "silu", "abs", "neg", "relu6", "leaky_relu(ALPHA)", "clip(MINMAX)"][q % 10];
                let expr = match f {
                    "leaky_relu(ALPHA)" => format!("leaky_relu({v}, alpha=0.{})", 1 + q % 9),
                    "clip(MINMAX)" => format!("clip({v}, min=-0.5, max=0.{})", 1 + q % 9),
                    _ => format!("{f}({v})"),
                };
                self.push(expr, shape);
            }
            1 => {
                // Another value of the same shape, or a broadcast scalar.
                let same: Vec<String> = self.values.iter().filter(|(_, s)| *s == shape).map(|(n, _)| n.clone()).collect();
                let other = same[q % same.len()].clone();
                let expr = match q % 5 {
                    0 => format!("{v} + {other}"),
                    1 => format!("{v} - {other} * 0.5"),
                    2 => format!("{v} * {other}"),
                    3 => format!("{v} / (abs({other}) + 1)"),
                    _ => format!("sqrt(abs({v}) + 0.5) * 2"),
                };
                self.push(expr, shape);
            }
            2 if rank == 4 => {
                let (c, h, w) = (shape[1], shape[2], shape[3]);
                let kernel = 1 + q % 3;
                // Up to kernel − 1 of padding: on small images some taps see only padding.
                let padding = (q / 3) % kernel;
                let stride = 1 + (q / 6) % 2;
                let groups = if (q / 12) % 2 == 1 { c } else { 1 };
                let filters = if groups == c { c * (1 + q % 2) } else { 1 + q % 4 };
                if h + 2 * padding < kernel || w + 2 * padding < kernel {
                    return self.step(0, pick, p);
                }
                let oh = (h + 2 * padding - kernel) / stride + 1;
                let ow = (w + 2 * padding - kernel) / stride + 1;
                let bias = if q % 5 == 0 { ", bias=false" } else { "" };
                let name = self.fresh();
                self.lines.push(format!("    {name} = conv2d({v}, filters={filters}, kernel={kernel}, stride={stride}, padding={padding}, groups={groups}{bias})"));
                self.values.push((name, vec![shape[0], filters, oh, ow]));
            }
            3 if rank >= 2 => {
                let name = self.fresh();
                self.lines.push(format!("    {name} = batch_norm({v})"));
                self.values.push((name, shape));
            }
            4 if rank == 4 && shape[2] >= 2 && shape[3] >= 2 => {
                let op = if q % 2 == 0 { "max_pool" } else { "avg_pool" };
                let (kernel, stride, padding) = if q % 4 < 2 { (2, 2, 0) } else { (3, 1, 1) };
                let oh = (shape[2] + 2 * padding - kernel) / stride + 1;
                let ow = (shape[3] + 2 * padding - kernel) / stride + 1;
                if shape[2] + 2 * padding < kernel || shape[3] + 2 * padding < kernel {
                    return self.step(0, pick, p);
                }
                self.push(format!("{op}({v}, kernel={kernel}, stride={stride}, padding={padding})"), vec![shape[0], shape[1], oh, ow]);
            }
            5 if rank >= 1 => {
                let axis = q % rank;
                self.push(format!("softmax({v}, axis={axis})"), shape);
            }
            6 if rank >= 1 => {
                let name = self.fresh();
                self.lines.push(format!("    {name} = layer_norm({v})"));
                self.values.push((name, shape));
            }
            7 if rank >= 1 => {
                let units = 1 + q % 5;
                let name = self.fresh();
                let mut out = shape.clone();
                *out.last_mut().unwrap() = units;
                self.lines.push(format!("    {name} = dense({v}, units={units})"));
                self.values.push((name, out));
            }
            8 if rank >= 2 => {
                let mut perm: Vec<usize> = (0..rank).collect();
                perm.rotate_left(1 + q % (rank - 1));
                let out = perm.iter().map(|&a| shape[a]).collect();
                self.push(format!("transpose({v}, perm={})", Self::list(&perm)), out);
            }
            9 if rank >= 1 => {
                let n: usize = shape.iter().product();
                let (expr, out) = if q % 2 == 0 { (format!("reshape({v}, [-1])"), vec![n]) } else { (format!("flatten({v})"), vec![shape[0], n / shape[0]]) };
                self.push(expr, out);
            }
            10 if rank >= 1 => {
                let axis = q % rank;
                let mut out = shape.clone();
                out[axis] *= 2;
                self.push(format!("concat({v}, {v}, axis={axis})"), out);
            }
            11 if rank >= 1 && shape[q % rank] >= 2 => {
                let axis = q % rank;
                let d = shape[axis] as i64;
                let (start, end, step) = match q % 3 {
                    0 => (1, d, 1),
                    1 => (-(d - 1).max(1), 100, 2),
                    _ => (d - 1, -100, -1),
                };
                let n = if step > 0 { ((end.min(d) - start.rem_euclid(d)).max(0) + step - 1) / step } else { d };
                let mut out = shape.clone();
                out[axis] = n as usize;
                if n == 0 {
                    return self.step(0, pick, p);
                }
                self.push(format!("slice({v}, axis={axis}, start={start}, end={end}, step={step})"), out);
            }
            12 if rank == 4 => self.push(format!("global_avg_pool({v})"), vec![shape[0], shape[1], 1, 1]),
            13 if rank >= 2 => {
                let mut perm: Vec<usize> = (0..rank).collect();
                perm.swap(rank - 1, rank - 2);
                let mut out = shape.clone();
                out[rank - 1] = shape[rank - 2];
                self.push(format!("{v} @ transpose({v}, perm={})", Self::list(&perm)), out);
            }
            14 if rank >= 2 => {
                self.push(format!("attention({v}, {v}, {v}, causal={})", q % 2 == 0), shape);
            }
            _ => self.step(0, pick, p),
        }
    }
}

fn model_source(dims: (usize, usize, usize), steps: &[(u8, u8, u8)], outputs: u8) -> String {
    let (c, h, w) = dims;
    let mut g = Gen { lines: Vec::new(), values: vec![("x".into(), vec![1, c, h, w])], next: 0 };
    for &(k, a, b) in steps {
        g.step(k, a, b);
    }
    let mut src = format!("model random {{\n    input x: f32[1, {c}, {h}, {w}]\n{}\n", g.lines.join("\n"));
    let last = g.values.last().unwrap().0.clone();
    src.push_str(&format!("    output out0 = {last} * 1\n"));
    let extra = &g.values[outputs as usize % g.values.len()].0;
    if *extra != last {
        src.push_str(&format!("    output out1 = {extra} + 0\n"));
    }
    src.push_str("}\n");
    src
}

fn random_input(graph: &Graph, seed: u64) -> Vec<Tensor> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    graph.inputs.iter().map(|&id| {
        let ty = &graph.node(id).ty;
        Tensor::f32(ty.shape.clone(), (0..ty.numel()).map(|_| rng.random_range(-1.0f32..1.0)).collect())
    }).collect()
}

fn outputs_at(graph: &Graph, level: u8, seed: u64, inputs: &[Tensor]) -> Result<Vec<Tensor>, TestCaseError> {
    let mut g = graph.clone();
    weights::bind_weights(&mut g, weights::random_weights(graph, seed), "random").map_err(|d| TestCaseError::fail(format!("{d:?}")))?;
    passes::optimize(&mut g, level, Some(&CpuTarget::reference()), true, &mut |_, _| {}).map_err(|e| TestCaseError::fail(e.to_string()))?;
    interp::run(&g, inputs).map_err(|e| TestCaseError::fail(e.to_string()))
}

fn cases() -> u32 {
    std::env::var("NNC_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_models_compile_verify_round_trip_and_optimize_without_changing_results(
        dims in (1usize..4, 3usize..9, 3usize..9),
        steps in prop::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()), 1..14),
        outputs in any::<u8>(),
        seed in 0u64..1000,
    ) {
        let src = model_source(dims, &steps, outputs);
        let graph = build_graph(&Source::from_string("random.nn", src.clone()), None, &Default::default())
            .map_err(|d| TestCaseError::fail(format!("generated model does not compile:\n{src}\n{}", nnc::diagnostics::render(&d, "random.nn", &src, false))))?;
        verify(&graph).map_err(TestCaseError::fail)?;
        let text = print_graph(&graph);
        let back = parse_graph(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(print_graph(&back), text.clone());

        let inputs = random_input(&graph, seed);
        let reference = outputs_at(&graph, 0, seed, &inputs)?;
        let mut results = Vec::new();
        for level in 1..=3 {
            results.push((format!("-O{level}"), outputs_at(&graph, level, seed, &inputs)?));
        }
        // The JIT, with and without microkernels (so with NHWC and with NCHW4c layouts), against
        // the interpreter at -O0.
        for (level, ukernels) in [(0u8, false), (2, false), (2, true)] {
            let mut g = graph.clone();
            weights::bind_weights(&mut g, weights::random_weights(&graph, seed), "random").map_err(|d| TestCaseError::fail(format!("{d:?}")))?;
            passes::optimize(&mut g, level, Some(&CpuTarget::host(ukernels)), true, &mut |_, _| {}).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let exe = jit::compile(&g, &jit::JitOptions { ukernels, threads: if ukernels { 2 } else { 1 } }).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let out = exe.run(&mut exe.workspace(), &inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
            results.push((format!("jit -O{level} ukernels={ukernels}"), out));
        }
        for (what, got) in results {
            for (g, r) in got.iter().zip(&reference) {
                prop_assert_eq!(g.shape(), r.shape());
                for (a, b) in g.to_f32_vec().iter().zip(r.to_f32_vec()) {
                    prop_assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()) || (a.is_nan() && b.is_nan()), "{} gives {} where the interpreter at -O0 gives {}\n{}", what, a, b, src);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// The accelerator against the interpreter on random models: f32 on a small array (many
    /// folds and tiles) within float tolerance, int8 exactly on the quantized graph.
    #[test]
    fn random_models_run_on_the_accelerator_as_in_the_interpreter(
        dims in (1usize..4, 3usize..9, 3usize..9),
        steps in prop::collection::vec((any::<u8>(), any::<u8>(), any::<u8>()), 1..10),
        outputs in any::<u8>(),
        seed in 0u64..1000,
        os in any::<bool>(),
        level in 0u8..3,
    ) {
        let src = model_source(dims, &steps, outputs);
        let graph = build_graph(&Source::from_string("random.nn", src.clone()), None, &Default::default()).map_err(|d| TestCaseError::fail(format!("{d:?}")))?;
        let inputs = random_input(&graph, seed);
        let mut g = graph.clone();
        weights::bind_weights(&mut g, weights::random_weights(&graph, seed), "random").map_err(|d| TestCaseError::fail(format!("{d:?}")))?;
        let reference = interp::run(&g, &inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let small = |dtype: &str| {
            let mut c = nnc::accel::AccelConfig::preset("edge").unwrap();
            for (k, v) in [("rows", "4"), ("cols", "4"), ("scratchpad_kib", "1"), ("accumulator_kib", "1"), ("dtype", dtype), ("dataflow", if os { "\"os\"" } else { "\"ws\"" })] {
                c.set(k, v).unwrap();
            }
            c
        };
        let mut f = g.clone();
        passes::optimize_with(&mut f, level, &passes::PassContext::default(), true, &mut |_, _| {}).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let program = nnc::accel::lower(&f, &small("\"f32\"")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = nnc::accel::run(&program, &inputs).map_err(|e| TestCaseError::fail(e.to_string()))?.outputs;
        for (a, b) in got.iter().zip(&reference) {
            for (x, y) in a.to_f32_vec().iter().zip(b.to_f32_vec()) {
                prop_assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()) || (x.is_nan() && y.is_nan()), "accel f32 gives {} where the interpreter gives {}\n{}", x, y, src);
            }
        }
        let calibration = passes::Calibration { runs: vec![random_input(&graph, seed + 1)] };
        let mut q = g.clone();
        passes::optimize_with(&mut q, level, &passes::PassContext { cpu: None, quantize: Some(&calibration) }, true, &mut |_, _| {}).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let want = interp::run(&q, &inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let program = nnc::accel::lower(&q, &small("\"int8\"")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = nnc::accel::run(&program, &inputs).map_err(|e| TestCaseError::fail(e.to_string()))?.outputs;
        prop_assert!(got.iter().zip(&want).all(|(a, b)| a.shape() == b.shape() && a.to_f32_vec().iter().zip(b.to_f32_vec()).all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))), "int8 accel differs from the interpreter\n{}", src);
    }
}

/// The generator must reach every op it knows, or the property above tests less than it says.
#[test]
fn generator_reaches_every_op() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut all = String::new();
    for _ in 0..300 {
        let steps: Vec<(u8, u8, u8)> = (0..10).map(|_| (rng.random(), rng.random(), rng.random())).collect();
        all.push_str(&model_source((3, 6, 6), &steps, rng.random()));
    }
    for op in ["conv2d(", "batch_norm(", "max_pool(", "avg_pool(", "softmax(", "layer_norm(", "dense(", "transpose(", "reshape(", "flatten(", "concat(", "slice(", "global_avg_pool(", " @ ", "attention(", "gelu(", "leaky_relu(", "clip(", "groups=3", " / "] {
        assert!(all.contains(op), "the generator never produced {op}");
    }
}
