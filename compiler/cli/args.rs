//! The `nnc` command line (SPEC §2), declared with clap. Anything clap rejects exits with 2.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "nnc", version, about = "A compiler for neural-network graphs", propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Parse and type-check a model; print diagnostics only.
    Check(CommonArgs),
    /// Per-layer table of output shapes, parameters and MACs, with totals.
    Summary(SummaryArgs),
    /// Compile a model and emit one of its intermediate forms.
    Compile(CompileArgs),
    /// Run a model and print or write its outputs.
    Run(RunArgs),
    /// Run a model on the modeled systolic-array accelerator and report time and energy.
    Sim(SimArgs),
    /// The model on this CPU (measured) and on accelerator configurations (modeled), side by side.
    Compare(CompareArgs),
    /// Time the model on a grid of accelerator configurations; table, CSV and Pareto chart.
    Sweep(SweepArgs),
    /// Write the pruned model and its weights (`DIR/<model>.nn`, `DIR/<model>.safetensors`).
    Prune(PruneCmdArgs),
    /// Translate an ONNX model into `DIR/<model>.nn` and `DIR/<model>.safetensors`.
    Import(ImportArgs),
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The ONNX model (`.onnx`).
    pub file: PathBuf,
    /// Where to write the model and its weights (created if missing).
    #[arg(long, value_name = "DIR", required = true)]
    pub output_dir: PathBuf,
    /// Bind a symbolic input size of the ONNX graph, e.g. `--dim batch=1`.
    #[arg(long = "dim", value_name = "NAME=SIZE", value_parser = parse_dim)]
    pub dims: Vec<(String, usize)>,
}

#[derive(Args, Debug)]
pub struct PruneCmdArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub weights: WeightArgs,
    #[command(flatten)]
    pub prune: PruneArgs,
    /// Where to write the model and its weights (created if missing).
    #[arg(long, value_name = "DIR", required = true)]
    pub output_dir: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// The `.nn` source file.
    pub file: PathBuf,
    /// Which model of the file to use (needed when it defines several).
    #[arg(long)]
    pub model: Option<String>,
    /// Bind a symbolic dimension, e.g. `--dim N=32`.
    #[arg(long = "dim", value_name = "NAME=SIZE", value_parser = parse_dim)]
    pub dims: Vec<(String, usize)>,
}

#[derive(Args, Debug, Clone)]
pub struct OptimizeArgs {
    /// Optimization level: -O0 (none) to -O3.
    #[arg(short = 'O', value_name = "LEVEL", default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=3))]
    pub opt_level: u8,
    /// Print the IR after a pass (or after every pass) to stderr.
    #[arg(long, value_name = "PASS|all", value_parser = pass_or_all())]
    pub dump_after: Option<String>,
    /// Print the IR before a pass (or before every pass) to stderr.
    #[arg(long, value_name = "PASS|all", value_parser = pass_or_all())]
    pub dump_before: Option<String>,
    /// Print how long each pass took, to stderr.
    #[arg(long)]
    pub time_passes: bool,
    /// Code generation target.
    #[arg(long, value_enum, default_value_t = Target::Cpu)]
    pub target: Target,
    /// Threads for the JIT's matrix products (results are identical for every count).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: Option<u32>,
    /// Let the JIT's matrix products call the runtime's AVX-512/AVX2 GEMM microkernels
    /// (`on`), or use only Cranelift-generated code (`off`).
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub ukernels: OnOff,
    /// Let products whose weights are mostly zeros (pruned) run on sparse kernels that skip
    /// the zeros, where the cost model says that is faster (`on`), or always on dense ones.
    #[arg(long = "sparse-kernels", value_enum, default_value_t = OnOff::On)]
    pub sparse_kernels: OnOff,
    /// Let the kernel of a depthwise convolution also compute the convolution that feeds it,
    /// a window of its rows at a time, where the plan fuses the pair (`on`), or run each
    /// node's own kernel (`off`): for comparisons.
    #[arg(long = "fuse-producers", value_enum, default_value_t = OnOff::On)]
    pub fuse_producers: OnOff,
    /// Use these kernels (names as `--emit ir` prints them, e.g. `direct,dot`) wherever they
    /// can compute a node, instead of the cost model's choice: for comparisons. Repeatable.
    #[arg(long = "kernels", value_name = "NAME,...", value_parser = crate::kernel_plan::KernelSet::parse)]
    pub kernels: Vec<crate::kernel_plan::KernelSet>,
    #[command(flatten)]
    pub quant: QuantizeArgs,
    #[command(flatten)]
    pub prune: PruneArgs,
}

/// Pruning (SPEC §5).
#[derive(Args, Debug, Clone, Default)]
pub struct PruneArgs {
    /// Prune weights: `magnitude:F`, `global:F`, `blocks:F[:RxC]` zero them, `channels:F`
    /// removes channels (0 ≤ F < 1); repeatable, applied in order.
    #[arg(long = "prune", value_name = "SPEC", value_parser = parse_prune)]
    pub specs: Vec<crate::passes::prune::PruneSpec>,
    /// Leave a layer out of pruning: its name or a parameter prefix (`layer1.0.conv2`).
    #[arg(long = "prune-skip", value_name = "NAME")]
    pub skip: Vec<String>,
}

impl PruneArgs {
    pub fn options(&self) -> crate::passes::prune::PruneOptions {
        crate::passes::prune::PruneOptions { specs: self.specs.clone(), skip: self.skip.clone() }
    }
}

fn parse_prune(s: &str) -> Result<crate::passes::prune::PruneSpec, String> {
    crate::passes::prune::PruneSpec::parse(s)
}

/// Post-training quantization and its calibration.
#[derive(Args, Debug, Clone)]
pub struct QuantizeArgs {
    /// Quantize weights and activations.
    #[arg(long, value_enum)]
    pub quantize: Option<Quantize>,
    /// Calibration data for --quantize: a batch of inputs stacked on axis 0.
    #[arg(long, value_name = "NAME=FILE.npy", value_parser = parse_key_value)]
    pub calibrate: Vec<(String, String)>,
    /// How calibration turns each activation's magnitudes into its range: the largest |x|
    /// (minmax, the default), the 99.999th percentile of |x|, or the threshold of least KL
    /// divergence (entropy, as TensorRT).
    #[arg(long, value_enum, value_name = "METHOD")]
    pub calibrate_method: Option<CalibrateMethod>,
}

/// `nnc summary`'s options: with `--quantize int8`, the model is also quantized (weights
/// needed) and each product's quantization error reported.
#[derive(Args, Debug, Clone)]
pub struct SummaryArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub weights: WeightArgs,
    #[command(flatten)]
    pub quant: QuantizeArgs,
    #[command(flatten)]
    pub prune: PruneArgs,
}

#[derive(Args, Debug, Clone)]
pub struct WeightArgs {
    /// Weights as safetensors, keyed by parameter name.
    #[arg(long, value_name = "FILE", conflicts_with = "random_weights")]
    pub weights: Option<PathBuf>,
    /// Deterministic synthetic weights drawn from this seed.
    #[arg(long, value_name = "SEED")]
    pub random_weights: Option<u64>,
}

#[derive(Args, Debug)]
pub struct CompileArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub opt: OptimizeArgs,
    #[command(flatten)]
    pub weights: WeightArgs,
    #[command(flatten)]
    pub accel: AccelArgs,
    /// What to emit.
    #[arg(long, value_enum)]
    pub emit: Emit,
    /// Write to this file instead of stdout.
    #[arg(short = 'o', value_name = "OUT")]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    /// An input: `NAME=FILE.npy` or `NAME=random:SEED`; repeat per input.
    #[arg(long = "input", value_name = "NAME=FILE.npy|NAME=random:SEED", value_parser = parse_input)]
    pub inputs: Vec<InputSpec>,
    /// Write `DIR/<output>.npy` for every output (created if missing).
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub opt: OptimizeArgs,
    #[command(flatten)]
    pub weights: WeightArgs,
    #[command(flatten)]
    pub io: InputArgs,
    /// Which executor runs the model.
    #[arg(long, value_enum, default_value_t = Backend::Jit)]
    pub backend: Backend,
    /// Run N times after a warm-up and print the median time and spread.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub bench: Option<u32>,
    /// Print how long each kernel took (JIT backend), slowest first.
    #[arg(long)]
    pub profile: bool,
    /// Class labels, one integer per row of the first input: print the first output's top-1
    /// accuracy (argmax over its last axis).
    #[arg(long, value_name = "FILE.npy")]
    pub labels: Option<PathBuf>,
    #[command(flatten)]
    pub accel: AccelArgs,
}

/// The accelerator's configuration (for `sim`, `run --backend accel` and `compile --emit isa`).
#[derive(Args, Debug, Clone, Default)]
pub struct AccelArgs {
    /// Accelerator configuration: a preset (tpu-v1, gemmini, edge) or a TOML file.
    #[arg(long, value_name = "PRESET|FILE.toml")]
    pub config: Option<String>,
    /// Override one configuration key; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub set: Vec<(String, String)>,
    /// Array size, e.g. 16x16.
    #[arg(long, value_name = "RxC", value_parser = parse_array)]
    pub array: Option<(u32, u32)>,
    /// Weight- or output-stationary dataflow.
    #[arg(long, value_enum)]
    pub dataflow: Option<Dataflow>,
    /// `ideal`: unbounded DRAM bandwidth, no latency; `modeled`: the configuration's DRAM.
    #[arg(long, value_enum)]
    pub memory: Option<Memory>,
}

#[derive(Args, Debug)]
pub struct SimArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub opt: OptimizeArgs,
    #[command(flatten)]
    pub weights: WeightArgs,
    #[command(flatten)]
    pub io: InputArgs,
    #[command(flatten)]
    pub accel: AccelArgs,
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Write a Chrome/Perfetto trace of the instruction timeline here.
    #[arg(long, value_name = "FILE.json")]
    pub trace: Option<PathBuf>,
    /// Draw the per-layer breakdown (cycles: compute and stall; energy by component) as SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Place every layer on the configured machine's roofline, as SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub roofline: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub opt: OptimizeArgs,
    #[command(flatten)]
    pub weights: WeightArgs,
    #[command(flatten)]
    pub io: InputArgs,
    /// An accelerator configuration to compare (preset or TOML file); repeatable. Default:
    /// edge, gemmini, tpu-v1.
    #[arg(long = "config", value_name = "PRESET|FILE.toml")]
    pub configs: Vec<String>,
    /// Override one key of every configuration; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub set: Vec<(String, String)>,
    /// The CPU's power in watts for its energy estimate (default: 3.75 W per thread, see
    /// docs/accelerator.md).
    #[arg(long, value_name = "W", value_parser = parse_watts)]
    pub cpu_watts: Option<f64>,
    /// Timed CPU runs after a warm-up (default: as many as fit in about half a second, 5 to 1000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub bench: Option<u32>,
    /// Also print each layer's latency on every target, side by side.
    #[arg(long)]
    pub per_layer: bool,
    /// Write the comparison as JSON here.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Draw the comparison as an SVG bar chart here.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub opt: OptimizeArgs,
    #[command(flatten)]
    pub weights: WeightArgs,
    #[command(flatten)]
    pub io: InputArgs,
    /// The base configuration and its overrides.
    #[command(flatten)]
    pub accel: AccelArgs,
    /// A configuration key and its values, `KEY=V1,V2,...` (`array=16x16,32x32`); repeatable.
    /// The grid is every combination.
    #[arg(long = "vary", value_name = "KEY=V1,V2,...", required = true, value_parser = parse_vary)]
    pub vary: Vec<crate::explore::Axis>,
    /// Write the rows as CSV (`.csv`) or JSON lines (`.jsonl`).
    #[arg(long, value_name = "FILE.csv|FILE.jsonl")]
    pub output: Option<PathBuf>,
    /// Draw the latency–energy plane with the Pareto front as SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Configurations timed in parallel (default: the CPUs available).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: Option<u32>,
    /// Time only the K-th of N equal parts of the grid (1 ≤ K ≤ N).
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    pub shard: Option<(usize, usize)>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    Ast,
    Ir,
    IrRaw,
    Dot,
    Clif,
    Asm,
    Isa,
    Obj,
    Lib,
    Header,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnOff {
    On,
    Off,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Jit,
    Interp,
    Accel,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Cpu,
    Accel,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantize {
    /// int8 codes, int32 accumulation, calibrated activation scales.
    Int8,
    /// bfloat16 operands of matrix products, f32 accumulation (mixed precision).
    Bf16,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalibrateMethod {
    Minmax,
    Percentile,
    Entropy,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dataflow {
    Ws,
    Os,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Memory {
    Ideal,
    Modeled,
}

/// Where one `--input` comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct InputSpec {
    pub name: String,
    pub source: InputSource,
}

#[derive(Clone, Debug, PartialEq)]
pub enum InputSource {
    File(PathBuf),
    Random(u64),
}

fn parse_input(s: &str) -> Result<InputSpec, String> {
    let (name, value) = s.split_once('=').ok_or_else(|| format!("`{s}` is not NAME=FILE.npy or NAME=random:SEED"))?;
    if name.is_empty() {
        return Err(format!("`{s}` names no input"));
    }
    let source = match value.strip_prefix("random:") {
        Some(seed) => InputSource::Random(seed.parse().map_err(|_| format!("`{seed}` is not a seed (a non-negative integer)"))?),
        None if value.is_empty() => return Err(format!("`{s}` gives no file")),
        None => InputSource::File(PathBuf::from(value)),
    };
    Ok(InputSpec { name: name.to_string(), source })
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got `{s}`")),
    }
}

fn parse_watts(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(w) if w.is_finite() && w > 0.0 && w <= 1e6 => Ok(w),
        _ => Err(format!("`{s}` is not a power in watts (a positive number)")),
    }
}

fn parse_vary(s: &str) -> Result<crate::explore::Axis, String> {
    let (key, values) = s.split_once('=').ok_or_else(|| format!("expected KEY=V1,V2,..., got `{s}`"))?;
    if key.is_empty() {
        return Err(format!("`{s}` names no configuration key"));
    }
    let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
    if values.iter().any(|v| v.is_empty()) {
        return Err(format!("`{s}` has an empty value; give a comma-separated list such as {key}=1,2"));
    }
    if key == "array" {
        for v in &values {
            crate::explore::grid::parse_array(v)?;
        }
    }
    Ok(crate::explore::Axis { key: key.to_string(), values })
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("expected K/N with 1 ≤ K ≤ N, such as 2/4, got `{s}`");
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (k, n): (usize, usize) = (k.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
    if k == 0 || k > n || n > 1_000_000 {
        return Err(bad());
    }
    Ok((k, n))
}

fn parse_array(s: &str) -> Result<(u32, u32), String> {
    crate::explore::grid::parse_array(s)
}

fn parse_dim(s: &str) -> Result<(String, usize), String> {
    let (name, size) = s.split_once('=').ok_or_else(|| format!("expected NAME=SIZE, got `{s}`"))?;
    let valid_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err(format!("`{name}` is not a dimension name"));
    }
    let size: usize = size.parse().map_err(|_| format!("`{size}` is not a positive integer"))?;
    if size == 0 {
        return Err("a dimension must be at least 1".into());
    }
    Ok((name.to_string(), size))
}

fn pass_or_all() -> clap::builder::PossibleValuesParser {
    let mut names = crate::passes::pass_names();
    names.push("all");
    clap::builder::PossibleValuesParser::new(names)
}
