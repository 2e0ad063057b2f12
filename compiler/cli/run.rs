//! `nnc run`: the JIT (the default), the interpreter or the accelerator, with `--bench` and
//! `--profile`.

use super::args::{self, Backend, Target};
use super::inputs::emit_outputs;
use super::labels;
use super::pipeline::{accel_config, accel_program, jit_options, optimize, prepare};
use super::{fmt_time, CmdResult, Failure, Session};
use crate::accel;
use crate::diagnostics::Diagnostic;
use crate::{interp, jit, summary};
use nnc_runtime::Tensor;
use std::time::Instant;

/// Runs `--profile` times each kernel over, reporting the median.
const PROFILE_RUNS: usize = 21;

pub(super) fn run(session: &mut Session, a: &args::RunArgs) -> CmdResult {
    if a.opt.target == Target::Accel && a.backend != Backend::Accel {
        return Err(Diagnostic::error("--target accel compiles for the accelerator; run it with `--backend accel` (or `nnc sim` for its report)").into());
    }
    if a.backend == Backend::Accel {
        if a.bench.is_some() || a.profile {
            return Err(Diagnostic::error("--bench and --profile time the CPU backends; `nnc sim` reports the accelerator's time").into());
        }
        let config = accel_config(&a.accel)?;
        let (mut graph, inputs) = prepare(session, &a.common, &a.io, &a.weights, false)?;
        optimize(session, &mut graph, &super::pipeline::blocks_for_array(&a.opt, &config), None)?;
        let program = accel_program(&graph, &config)?;
        let outcome = accel::run(&program, &inputs).map_err(|e| Diagnostic::error(e.to_string()))?;
        emit_outputs(&graph, &outcome.outputs, a.io.output_dir.as_deref())?;
        return labels::report(&graph, &inputs, &outcome.outputs, a.labels.as_deref());
    }
    if a.opt.threads.is_some_and(|t| t > 1) && a.backend != Backend::Jit {
        session.emit(&[Diagnostic::warning("--threads splits the JIT's kernels; the interpreter runs on one thread")]);
    }
    let (mut graph, inputs) = prepare(session, &a.common, &a.io, &a.weights, false)?;
    let target = (a.backend == Backend::Jit).then(|| super::pipeline::cpu_target(&a.opt));
    optimize(session, &mut graph, &a.opt, target.as_ref())?;
    let backend = if a.backend == Backend::Jit { "jit" } else { "interp" };
    let compile_start = Instant::now();
    let exe = match a.backend {
        Backend::Jit => Some(jit::compile(&graph, &jit_options(&a.opt)).map_err(|e| Diagnostic::error(e.to_string()))?),
        Backend::Interp | Backend::Accel => None,
    };
    let compile_time = compile_start.elapsed().as_secs_f64();
    let mut ws = exe.as_ref().map(|e| e.workspace());
    // The JIT computes into the outputs of the run before (`Executable::run_into`), as an
    // application running a model in a loop would: a fresh result buffer is fresh pages, and
    // faulting in a 2048² output cost 8 ms of a 112 ms product.
    let mut run_into = |outputs: &mut Vec<Tensor>| match (&exe, &mut ws) {
        (Some(exe), Some(ws)) => exe.run_into(ws, &inputs, outputs).map_err(|e| Failure::from(Diagnostic::error(e.to_string()))),
        _ => interp::run(&graph, &inputs).map(|o| *outputs = o).map_err(|e| Failure::from(Diagnostic::error(e.to_string()))),
    };
    let mut outputs = Vec::new();
    run_into(&mut outputs)?;

    // The timed runs' own outputs: `outputs` is what the command prints and writes.
    let mut reused = if a.bench.is_some() || a.profile { outputs.clone() } else { Vec::new() };
    if let Some(n) = a.bench {
        let mut times = Vec::new();
        for _ in 0..n {
            let start = Instant::now();
            run_into(&mut reused)?;
            times.push(start.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        outln!(
            "bench: {n} runs after 1 warm-up: median {} (min {}, max {}), backend {backend}",
            fmt_time(median),
            fmt_time(times[0]),
            fmt_time(times[times.len() - 1])
        );
        if let Some(exe) = &exe {
            outln!("jit: compiled in {}, arena {} (liveness lower bound {}), constants {}", fmt_time(compile_time), summary::human_bytes(exe.arena_bytes() as u64), summary::human_bytes(exe.arena_lower_bound_bytes() as u64), summary::human_bytes(exe.constant_bytes() as u64));
        }
    }
    if a.profile {
        let (Some(exe), Some(ws)) = (&exe, &mut ws) else {
            return Err(Diagnostic::error("--profile times the JIT's kernels; it needs --backend jit").into());
        };
        // Each kernel's median over several runs: one run's times moved by tens of percent on
        // a shared machine (a 75 µs product read 121 µs in one run).
        let mut runs = Vec::with_capacity(PROFILE_RUNS);
        for _ in 0..PROFILE_RUNS {
            runs.push(exe.run_profiled(ws, &inputs, &mut reused).map_err(|e| Diagnostic::error(e.to_string()))?);
        }
        let mut profile = runs[0].clone();
        for (i, kernel) in profile.iter_mut().enumerate() {
            let mut times: Vec<f64> = runs.iter().map(|run| run[i].2).collect();
            times.sort_by(f64::total_cmp);
            kernel.2 = times[times.len() / 2];
        }
        let total: f64 = profile.iter().map(|p| p.2).sum();
        profile.sort_by(|a, b| b.2.total_cmp(&a.2));
        let width = profile.iter().map(|p| p.0.len()).max().unwrap_or(4).max(4);
        let op_width = profile.iter().map(|p| p.1.chars().count()).max().unwrap_or(2).max(16);
        outln!("profile: each kernel's median time over {PROFILE_RUNS} runs");
        outln!("{:<width$}  {:<op_width$}  {:>10}  {:>6}", "node", "op", "time", "share");
        for (name, op, t) in &profile {
            outln!("{name:<width$}  {op:<op_width$}  {:>10}  {:>5.1}%", fmt_time(*t), 100.0 * t / total);
        }
        outln!("{:<width$}  {:<op_width$}  {:>10}", "total", "", fmt_time(total));
    }
    emit_outputs(&graph, &outputs, a.io.output_dir.as_deref())?;
    labels::report(&graph, &inputs, &outputs, a.labels.as_deref())
}
