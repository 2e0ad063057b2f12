//! The differential check: one model on every executor nnc has, each compared with the
//! reference interpreter on the unoptimized graph. Floats must agree within
//! |Δ| ≤ 1e-4·(1 + |ref|) plus what the graph itself makes of rounding (below); int8
//! executions (the accelerator's and the JIT's) must give the interpreter's bits on the same
//! quantized graph; bf16 mixed precision on the JIT must agree with the interpreter on the
//! same bf16 graph within what bf16 rounding flips make of it (below); a JIT run on two
//! threads must give the one-thread bits.
//!
//! Executors round differently (f32 against f64 accumulation, fused multiply-adds, other
//! summation orders, polynomial `exp`), and some graphs amplify a few ulps into large
//! differences: a `layer_norm` over nearly equal values divides their rounding noise by
//! √eps. A fixed tolerance would then fail correct backends, and a loose one would pass
//! wrong ones. So the check measures each graph's sensitivity: it runs the interpreter twice
//! more with every op's result jittered by up to 2⁻²⁰ relative (8 ulps), and allows 16 times
//! the largest jitter-induced difference of each element on top of the fixed tolerance.
//! For bf16 graphs the kernels' f32 arithmetic, rounded once per op, can land on the other
//! side of a bf16 rounding boundary than the interpreter's, a step of one bf16 unit (up to
//! 2⁻⁷ relative), so the jitter there moves every bf16 result by up to 2⁻⁷ (then rounds
//! it) and the fixed part of the tolerance is 2⁻⁷ too: one flip of an output itself.
//! Values beyond ±1e15 anywhere in the reference (or infinite or NaN) are outside what any
//! tolerance can promise, since f32 and f64 intermediates overflow at different points;
//! for those models only counts, shapes and thread determinism are compared, and the check
//! reports that it did so.
//!
//! Results are compared count first, then shape and dtype, then element by element, so an
//! executor that drops an output or an element cannot pass.

use crate::accel::{self, AccelConfig};
use crate::driver::{build_graph, Source};
use crate::ir::{parse::parse_graph, print::print_graph, verify::verify, Graph};
use crate::passes::{self, Calibration, PassContext};
use crate::target::CpuTarget;
use crate::{interp, jit, weights};
use nnc_runtime::Tensor;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeMap;

/// Which executors to run, each at some `-O` levels.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// The interpreter on graphs optimized at these levels (with the CPU passes, whose layouts
    /// the interpreter must ignore).
    pub interp_levels: Vec<u8>,
    /// The JIT: `(level, microkernels, threads)`.
    pub jit: Vec<(u8, bool, usize)>,
    /// The accelerator in f32 on a 4×4 array with 1 KiB memories (many folds and tiles):
    /// `(level, output-stationary)`.
    pub accel: Vec<(u8, bool)>,
    /// int8: the quantized graph on the interpreter and on the accelerator, which must
    /// agree exactly: `(level, output-stationary)`.
    pub int8: Vec<(u8, bool)>,
    /// int8 on the JIT, bit for bit with the interpreter on the same quantized graph:
    /// `(level, microkernels, threads)`.
    pub int8_jit: Vec<(u8, bool, usize)>,
    /// bf16 mixed precision (`--quantize bf16`) on the JIT against the interpreter on the
    /// same graph: `(level, microkernels, threads)`.
    pub bf16_jit: Vec<(u8, bool, usize)>,
    /// Prune the model's weights this way first (every executor, the reference too, runs the
    /// pruned model), so that the sparse kernels and the accelerator's skipped folds are
    /// checked as well.
    pub prune: Option<passes::prune::PruneSpec>,
}

impl Plan {
    /// The plan's float executors, in the order [`check`] runs them.
    pub fn executors(&self) -> Vec<Executor> {
        let interp = self.interp_levels.iter().map(|&level| Executor::Interp { level });
        let jit = self.jit.iter().map(|&(level, ukernels, threads)| Executor::Jit { level, ukernels, threads });
        let accel = self.accel.iter().map(|&(level, os)| Executor::Accel { level, os });
        interp.chain(jit).chain(accel).collect()
    }

    /// Every executor at every level: interp -O1…-O3; JIT -O0…-O3 with microkernels on and
    /// off, on one and two threads; the accelerator (ws and os) in f32 and int8 at -O0…-O3.
    pub fn full() -> Plan {
        let levels = 0..=3u8;
        Plan {
            interp_levels: vec![1, 2, 3],
            jit: levels.clone().flat_map(|l| [(l, true, 1), (l, true, 2), (l, false, 1), (l, false, 2)]).collect(),
            accel: levels.clone().flat_map(|l| [(l, false), (l, true)]).collect(),
            int8: levels.clone().flat_map(|l| [(l, false), (l, true)]).collect(),
            int8_jit: levels.clone().flat_map(|l| [(l, true, 1), (l, true, 2), (l, false, 1), (l, false, 2)]).collect(),
            bf16_jit: levels.flat_map(|l| [(l, true, 1), (l, false, 2)]).collect(),
            prune: None,
        }
    }

    /// A cheap slice of [`Plan::full`] chosen by `choice`: every executor once, at levels,
    /// microkernel settings, thread counts and dataflows that vary with `choice`, so that a
    /// few hundred cases cover the whole plan.
    pub fn sampled(choice: u64) -> Plan {
        let level = (choice % 4) as u8;
        let other = ((choice / 4) % 4) as u8;
        let ukernels = (choice / 16).is_multiple_of(2);
        let threads = 1 + ((choice / 32) % 2) as usize;
        let os = (choice / 64).is_multiple_of(2);
        Plan {
            interp_levels: vec![level.max(1)],
            jit: vec![(level, ukernels, threads), (other, !ukernels, 3 - threads)],
            accel: vec![(other, os)],
            int8: vec![(level, !os)],
            int8_jit: vec![(other, ukernels, threads)],
            bf16_jit: vec![(level, !ukernels, threads)],
            // One case in four with most weights zero (at 85% the sparse kernels win for most
            // products the generator makes), one in four with half the channels removed.
            prune: match (choice / 128) % 4 {
                0 => Some(passes::prune::PruneSpec::Magnitude(0.85)),
                1 => Some(passes::prune::PruneSpec::Channels(0.5)),
                _ => None,
            },
        }
    }
}

/// One float executor of a [`Plan`]: how it optimizes a bound graph and runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Executor {
    /// The interpreter on the graph optimized at `level` with the CPU passes.
    Interp { level: u8 },
    Jit { level: u8, ukernels: bool, threads: usize },
    /// The accelerator in f32 on a 4×4 array with 1 KiB memories (many folds and tiles).
    Accel { level: u8, os: bool },
}

impl Executor {
    /// Optimize `bound` (a graph with its weights) for this executor and run it.
    pub fn run(&self, bound: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, String> {
        let optimized = |level: u8, cx: &PassContext| -> Result<Graph, String> {
            let mut g = bound.clone();
            passes::optimize_with(&mut g, level, cx, true, &mut |_, _| {}).map_err(|e| format!("optimizing at -O{level}: {e}"))?;
            Ok(g)
        };
        match *self {
            Executor::Interp { level } => {
                let g = optimized(level, &PassContext { cpu: Some(&CpuTarget::reference()), quantize: None, bf16: false, prune: None })?;
                interp::run(&g, inputs).map_err(|e| e.to_string())
            }
            Executor::Jit { level, ukernels, threads } => {
                let g = optimized(level, &PassContext { cpu: Some(&CpuTarget::host(ukernels)), quantize: None, bf16: false, prune: None })?;
                let exe = jit::compile(&g, &jit::JitOptions { ukernels, threads, ..Default::default() }).map_err(|e| e.to_string())?;
                exe.run(&mut exe.workspace(), inputs).map_err(|e| e.to_string())
            }
            Executor::Accel { level, os } => run_accel(&optimized(level, &PassContext::default())?, &small_array("f32", os), inputs),
        }
    }
}

impl std::fmt::Display for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Executor::Interp { level } => write!(f, "interp -O{level}"),
            Executor::Jit { level, ukernels, threads } => write!(f, "jit -O{level} ukernels={} threads={threads}", if ukernels { "on" } else { "off" }),
            Executor::Accel { level, os } => write!(f, "accel f32 -O{level} {}", if os { "os" } else { "ws" }),
        }
    }
}

/// How a check failed; the message names the executor and the element, and ends with the
/// model's source.
#[derive(Debug)]
pub struct Failure(pub String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What one check compared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// Executions whose outputs were compared.
    pub executions: usize,
    /// Whether the reference left the range where float values are compared (see the module
    /// documentation); then only counts, shapes and thread determinism were.
    pub out_of_range: bool,
}

/// Largest magnitude a reference value may reach for float comparisons to be meaningful.
const VALUE_RANGE: f32 = 1e15;

/// Relative jitter applied to every op result when measuring a graph's sensitivity.
const JITTER: f32 = 1.0 / (1 << 20) as f32;

/// How many times the jitter-induced difference an executor may differ by.
const JITTER_ALLOWANCE: f32 = 16.0;

/// Run `source` (weights and inputs drawn from `seed`) on every executor of `plan`.
pub fn check(source: &str, seed: u64, plan: &Plan) -> Result<Checked, Failure> {
    let fail = |what: &str, e: &dyn std::fmt::Display| Failure(format!("{what}: {e}\n--- model (seed {seed}) ---\n{source}"));
    let src = Source::from_string("random.nn", source);
    let graph = build_graph(&src, None, &Default::default())
        .map_err(|d| fail("the generated model does not compile", &crate::diagnostics::render(&d, "random.nn", source, false)))?;
    verify(&graph).map_err(|e| fail("the verifier rejects the elaborated graph", &e))?;
    let text = print_graph(&graph);
    let back = parse_graph(&text).map_err(|e| fail("the IR text does not parse back", &format!("{e}\n{text}")))?;
    if print_graph(&back) != text {
        return Err(fail("the IR text does not round-trip", &text));
    }
    let mut bound = graph.clone();
    weights::bind_weights(&mut bound, weights::random_weights(&graph, seed), "random").map_err(|d| fail("binding random weights", &format!("{d:?}")))?;
    if let Some(spec) = &plan.prune {
        passes::prune::prune(&mut bound, &passes::prune::PruneOptions { specs: vec![spec.clone()], skip: Vec::new() }).map_err(|e| fail("pruning", &e))?;
    }
    let inputs = random_inputs(&bound, seed);
    let mut largest = 0f32;
    let reference = interp::run_observed(&bound, &inputs, &mut |_, t| {
        if let Some(v) = t.as_f32() {
            largest = v.iter().fold(largest, |m, x| if x.is_nan() { f32::INFINITY } else { m.max(x.abs()) });
        }
    })
    .map_err(|e| fail("interp -O0", &e))?;
    let out_of_range = largest > VALUE_RANGE;
    let float_tol = if out_of_range {
        Tolerance::ShapesOnly
    } else {
        let slack = rounding_slack(&bound, &inputs, &reference, seed).map_err(|e| fail("interp -O0 with jitter", &e))?;
        Tolerance::Float { rel: 1e-4, slack }
    };
    let mut compared = 0;

    // Two thread counts of one JIT build must agree bit for bit.
    let mut by_build: BTreeMap<(u8, bool), (usize, Vec<Tensor>)> = BTreeMap::new();
    for executor in plan.executors() {
        let got = executor.run(&bound, &inputs).map_err(|e| fail(&executor.to_string(), &e))?;
        compare(&got, &reference, &float_tol).map_err(|e| fail(&format!("{executor} differs from interp -O0"), &e))?;
        if let Executor::Jit { level, ukernels, threads } = executor {
            match by_build.get(&(level, ukernels)) {
                Some((t, first)) => compare(&got, first, &Tolerance::Exact).map_err(|e| fail(&format!("{executor} differs from the same build on {t} thread(s)"), &e))?,
                None => {
                    by_build.insert((level, ukernels), (threads, got));
                }
            }
        }
        compared += 1;
    }

    let calibration = Calibration::new(vec![random_inputs(&bound, seed.wrapping_add(1))]);
    let quantized = |level: u8| -> Result<(Graph, Vec<Tensor>), Failure> {
        let mut q = bound.clone();
        passes::optimize_with(&mut q, level, &PassContext { cpu: None, quantize: Some(&calibration), bf16: false, prune: None }, true, &mut |_, _| {}).map_err(|e| fail(&format!("quantizing at -O{level}"), &e))?;
        let want = interp::run(&q, &inputs).map_err(|e| fail(&format!("interp int8 -O{level}"), &e))?;
        Ok((q, want))
    };
    for &(level, os) in &plan.int8 {
        let what = format!("accel int8 -O{level} {}", if os { "os" } else { "ws" });
        let (q, want) = quantized(level)?;
        let got = run_accel(&q, &small_array("int8", os), &inputs).map_err(|e| fail(&what, &e))?;
        compare(&got, &want, &Tolerance::Exact).map_err(|e| fail(&format!("{what} differs from the interpreter on the quantized graph"), &e))?;
        compared += 1;
    }
    for &(level, ukernels, threads) in &plan.int8_jit {
        let what = format!("jit int8 -O{level} ukernels={} threads={threads}", if ukernels { "on" } else { "off" });
        let (q, want) = quantized(level)?;
        let exe = jit::compile(&q, &jit::JitOptions { ukernels, threads, ..Default::default() }).map_err(|e| fail(&what, &e))?;
        let got = exe.run(&mut exe.workspace(), &inputs).map_err(|e| fail(&what, &e))?;
        // A graph with int8 values gives the interpreter's bits; one that quantization left
        // all float (nothing to quantize) is a float graph, held to the float tolerance.
        let quantized = q.node_ids().any(|id| q.node(id).ty.dtype == nnc_runtime::DType::I8);
        let tol = if quantized { &Tolerance::Exact } else { &float_tol };
        compare(&got, &want, tol).map_err(|e| fail(&format!("{what} differs from the interpreter on the quantized graph"), &e))?;
        compared += 1;
    }
    for &(level, ukernels, threads) in &plan.bf16_jit {
        let what = format!("jit bf16 -O{level} ukernels={} threads={threads}", if ukernels { "on" } else { "off" });
        let mut g = bound.clone();
        let target = CpuTarget::host(ukernels);
        passes::optimize_with(&mut g, level, &PassContext { cpu: Some(&target), quantize: None, bf16: true, prune: None }, true, &mut |_, _| {}).map_err(|e| fail(&format!("bf16 at -O{level}"), &e))?;
        let want = interp::run(&g, &inputs).map_err(|e| fail(&format!("interp bf16 -O{level}"), &e))?;
        let exe = jit::compile(&g, &jit::JitOptions { ukernels, threads, ..Default::default() }).map_err(|e| fail(&what, &e))?;
        let got = exe.run(&mut exe.workspace(), &inputs).map_err(|e| fail(&what, &e))?;
        let tol = if out_of_range {
            Tolerance::ShapesOnly
        } else {
            let slack = slack_with(&g, &inputs, &want, seed, BF16_JITTER).map_err(|e| fail(&format!("interp bf16 -O{level} with jitter"), &e))?;
            Tolerance::Float { rel: BF16_JITTER, slack }
        };
        compare(&got, &want, &tol).map_err(|e| fail(&format!("{what} differs from the interpreter on the bf16 graph"), &e))?;
        compared += 1;
    }
    Ok(Checked { executions: compared, out_of_range })
}

/// The largest relative step of a bf16 rounding flip: one unit (2⁻⁷ of the binade's
/// bottom: bf16 keeps 7 bits after the leading one).
const BF16_JITTER: f32 = 1.0 / 128.0;

/// Per output element, [`JITTER_ALLOWANCE`] times the largest difference from `reference`
/// that jittering every op's result (two seeded runs) makes: how far rounding alone can move
/// each output of this graph.
pub fn rounding_slack(graph: &Graph, inputs: &[Tensor], reference: &[Tensor], seed: u64) -> Result<Vec<Vec<f32>>, interp::InterpError> {
    slack_with(graph, inputs, reference, seed, 0.0)
}

/// [`rounding_slack`], with f16/bf16 results jittered by up to `narrow` relative (and rounded
/// again).
fn slack_with(graph: &Graph, inputs: &[Tensor], reference: &[Tensor], seed: u64, narrow: f32) -> Result<Vec<Vec<f32>>, interp::InterpError> {
    let mut slack: Vec<Vec<f32>> = reference.iter().map(|t| vec![0.0; t.len()]).collect();
    for k in 0..2u64 {
        let noisy = interp::run_perturbed(graph, inputs, &mut jitter(seed.wrapping_mul(31).wrapping_add(k), narrow))?;
        for ((s, n), r) in slack.iter_mut().zip(&noisy).zip(reference) {
            for ((s, a), b) in s.iter_mut().zip(n.to_f32_vec()).zip(r.to_f32_vec()) {
                let d = if a == b { 0.0 } else { JITTER_ALLOWANCE * (a - b).abs() };
                *s = s.max(if d.is_nan() { f32::INFINITY } else { d });
            }
        }
    }
    Ok(slack)
}

/// Multiplies every f32 element of an op's result by 1 + u·[`JITTER`], and every f16/bf16
/// one by 1 + u·`narrow` (rounded again), u uniform in [-1, 1].
fn jitter(seed: u64, narrow: f32) -> impl FnMut(crate::ir::NodeId, Tensor) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    move |_, t| {
        let dtype = t.dtype();
        let amount = match dtype {
            nnc_runtime::DType::F32 => JITTER,
            nnc_runtime::DType::F16 | nnc_runtime::DType::BF16 if narrow > 0.0 => narrow,
            _ => return t,
        };
        let v = t.as_f32().expect("a float tensor").iter().map(|&x| x * (1.0 + rng.random_range(-amount..=amount))).collect();
        Tensor::from_f32(dtype, t.shape().to_vec(), v).expect("same shape")
    }
}

/// Seeded uniform [-1, 1) inputs, one per graph input.
pub fn random_inputs(graph: &Graph, seed: u64) -> Vec<Tensor> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    graph
        .inputs
        .iter()
        .map(|&id| {
            let ty = &graph.node(id).ty;
            Tensor::f32(ty.shape.clone(), (0..ty.numel()).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        })
        .collect()
}

/// A 4×4 array with 1 KiB memories: every product takes many folds and tiles.
fn small_array(dtype: &str, os: bool) -> AccelConfig {
    let mut c = AccelConfig::preset("edge").expect("edge is a preset");
    for (k, v) in [("rows", "4"), ("cols", "4"), ("scratchpad_kib", "1"), ("accumulator_kib", "1"), ("dtype", &format!("\"{dtype}\"")), ("dataflow", if os { "\"os\"" } else { "\"ws\"" })] {
        c.set(k, v).expect("a valid setting");
    }
    c
}

/// Run on the accelerator; also checks that timing alone (what `nnc sweep` does) gives the
/// functional run's cycles and events exactly.
fn run_accel(graph: &Graph, config: &AccelConfig, inputs: &[Tensor]) -> Result<Vec<Tensor>, String> {
    let program = accel::lower(graph, config).map_err(|e| e.to_string())?;
    let outcome = accel::run(&program, inputs).map_err(|e| e.to_string())?;
    let timing_only = accel::lower_for_timing(&std::sync::Arc::new(graph.clone()), config).map_err(|e| e.to_string())?;
    let timed = accel::time(&timing_only).map_err(|e| e.to_string())?;
    if timed != outcome.timing {
        return Err(format!("timing without values differs from the functional run: {} vs {} cycles", timed.total_cycles, outcome.timing.total_cycles));
    }
    Ok(outcome.outputs)
}

/// How close two executions' outputs must be.
#[derive(Clone, Debug)]
pub enum Tolerance {
    /// Bit for bit (NaN matches any NaN).
    Exact,
    /// Within `rel`·(1 + |want|) plus a per-element slack (one vector per output).
    Float { rel: f32, slack: Vec<Vec<f32>> },
    /// Counts, shapes and dtypes only.
    ShapesOnly,
}

impl Tolerance {
    /// A fixed relative tolerance with no slack.
    pub fn relative(rel: f32) -> Tolerance {
        Tolerance::Float { rel, slack: Vec::new() }
    }
}

/// `got` against `want`: the same number of outputs, each with the same shape and dtype, and
/// every element within `tol` (equal values, infinities included, and NaN against NaN
/// agree).
pub fn compare(got: &[Tensor], want: &[Tensor], tol: &Tolerance) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{} outputs where the reference has {}", got.len(), want.len()));
    }
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g.shape() != w.shape() || g.dtype() != w.dtype() {
            return Err(format!("output {i} is {} {:?} where the reference is {} {:?}", g.dtype(), g.shape(), w.dtype(), w.shape()));
        }
        let (gv, wv) = (g.to_f32_vec(), w.to_f32_vec());
        if gv.len() != wv.len() {
            return Err(format!("output {i} has {} elements where the reference has {}", gv.len(), wv.len()));
        }
        for (j, (&a, &b)) in gv.iter().zip(&wv).enumerate() {
            let agree = match tol {
                Tolerance::ShapesOnly => true,
                Tolerance::Exact => a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                Tolerance::Float { rel, slack } => {
                    let extra = slack.get(i).and_then(|s| s.get(j)).copied().unwrap_or(0.0);
                    a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= rel * (1.0 + b.abs()) + extra
                }
            };
            if !agree {
                return Err(format!("output {i} element {j}: {a} where the reference has {b}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(source: &str) -> Graph {
        let graph = build_graph(&Source::from_string("t.nn", source), None, &Default::default()).expect("compiles");
        let mut g = graph.clone();
        weights::bind_weights(&mut g, weights::random_weights(&graph, 3), "random").expect("binds");
        g
    }

    /// On a well-conditioned model the slack stays at rounding level, so it cannot hide a
    /// wrong result; on a `layer_norm` of nearly equal values it grows, as the backends'
    /// honest differences do.
    #[test]
    fn slack_is_tiny_when_the_graph_is_well_conditioned_and_grows_when_it_is_not() {
        let g = bound("model m {\n input x: f32[2, 3, 6, 6]\n c = relu(conv2d(x, filters=4, kernel=3))\n output y = dense(flatten(c), units=5)\n}\n");
        let inputs = random_inputs(&g, 1);
        let reference = interp::run(&g, &inputs).unwrap();
        let slack = rounding_slack(&g, &inputs, &reference, 1).unwrap();
        let worst = slack[0].iter().zip(reference[0].to_f32_vec()).map(|(s, b)| s / (1.0 + b.abs())).fold(0.0, f32::max);
        assert!(worst < 1e-4, "slack {worst:e} on a well-conditioned model");
        // A wrong value still fails.
        let mut wrong = reference[0].to_f32_vec();
        wrong[7] *= 1.01;
        wrong[7] += 0.01;
        let wrong = Tensor::f32(reference[0].shape().to_vec(), wrong);
        assert!(compare(&[wrong], &reference, &Tolerance::Float { rel: 1e-4, slack }).is_err());

        let g = bound("model m {\n input x: f32[1, 8]\n output y = layer_norm(x * 0.0001 + 1, eps=0.01)\n}\n");
        let inputs = random_inputs(&g, 1);
        let reference = interp::run(&g, &inputs).unwrap();
        let slack = rounding_slack(&g, &inputs, &reference, 1).unwrap();
        assert!(slack[0].iter().any(|&s| s > 1e-4), "an ill-conditioned model needs slack: {:?}", slack[0]);
    }

    #[test]
    fn compare_checks_counts_shapes_then_values() {
        let t = |v: Vec<f32>| Tensor::f32(vec![v.len()], v);
        let exact = Tolerance::Exact;
        assert!(compare(&[t(vec![1.0, 2.0])], &[t(vec![1.0, 2.0]), t(vec![3.0])], &exact).unwrap_err().contains("1 outputs"));
        assert!(compare(&[t(vec![1.0])], &[t(vec![1.0, 2.0])], &exact).unwrap_err().contains("output 0 is"));
        assert!(compare(&[t(vec![1.0, f32::NAN])], &[t(vec![1.0, f32::NAN])], &exact).is_ok());
        assert!(compare(&[t(vec![1.0, 2.0])], &[t(vec![1.0, 2.0001])], &exact).is_err());
        assert!(compare(&[t(vec![1.0, 2.0])], &[t(vec![1.0, 2.0001])], &Tolerance::relative(1e-4)).is_ok());
        assert!(compare(&[t(vec![1.0, 2.0])], &[t(vec![1.0, 2.01])], &Tolerance::relative(1e-4)).is_err());
        assert!(compare(&[t(vec![1.0, 2.0])], &[t(vec![1.0, f32::NAN])], &Tolerance::relative(1e-4)).is_err());
        assert!(compare(&[t(vec![5.0])], &[t(vec![1.0])], &Tolerance::ShapesOnly).is_ok());
    }
}
