#!/usr/bin/env python3
"""Time nnc's JIT against ONNX Runtime and OpenVINO on the example models, one and two threads.

Not part of CI. Run it from anywhere after building a release binary:

    cargo build --release
    python3 benches/compare_onnxruntime.py [--nnc PATH] [--models lenet5,mlp,...] [--threads 1,2]
                                           [--seconds 3.0] [--rounds 3] [--seed 0] [--keep DIR]

`--nnc` defaults to target/release/nnc in this repository. The script installs numpy, onnx,
onnxruntime, openvino and safetensors from PyPI (with this interpreter's pip) if they are missing.

For every model (examples/*.nn, and benches/models/gemm1024.nn: one 1024-cube product) it

1. asks nnc for the model's raw IR (`nnc compile X.nn --emit ir-raw`), which lists every
   parameter with its shape and every op with its canonical attributes, and builds the same
   graph in ONNX with `onnx.helper`, one node (or a few) per IR op;
2. draws seeded weights with numpy (He-normal convolutions and dense layers, small biases,
   batch-norm statistics with running_var in [0.5, 1.5], PyTorch-style LSTM init), writes
   them under nnc's parameter names to a safetensors file, and writes a seeded input .npy;
   the ONNX model embeds the very same arrays as initializers;
3. checks that nnc's and OpenVINO's outputs agree with ONNX Runtime's (max|x - ort| / max|ort|);
4. for each thread count, times the three engines in `--rounds` interleaved rounds, rotating
   which goes first, each round's measurement the median of enough runs to fill about
   --seconds / --rounds: ONNX Runtime (intra-op threads N, ORT_ENABLE_ALL), OpenVINO (CPU
   plugin, INFERENCE_PRECISION_HINT=f32 so nothing runs in bf16, PERFORMANCE_HINT=LATENCY,
   one stream, INFERENCE_NUM_THREADS=N) and nnc (`nnc run --bench K --threads N`, the median
   of K runs of the compiled model after one warm-up);
5. prints a markdown table with nnc / best peer per model and thread count, and the geometric
   mean per thread count, with the CPU model and the peers' versions;
6. before and after every multi-thread comparison, measures how long a cache line takes between
   two CPUs and back (examples/vcpu_round_trip.rs, built on first use), and prints it after the
   table: on a shared VM it says whether the host ran the vCPUs in one core complex (on the AMD
   EPYC VM of BENCHMARKS.md under 100 ns) or apart (300+ ns, where two-thread times rise).
"""

import argparse
import importlib
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REQUIRED = {"numpy": "numpy", "onnx": "onnx", "onnxruntime": "onnxruntime", "openvino": "openvino",
            "safetensors": "safetensors"}


def ensure_packages():
    missing = []
    for module, package in REQUIRED.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    if missing:
        print(f"installing {' '.join(missing)} with pip ...", file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", *missing])
        importlib.invalidate_caches()


ensure_packages()

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import openvino as ov  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MODELS = ["mlp", "lenet5", "resnet18", "mobilenet_v2", "transformer", "lstm", "gemm1024"]
OPSET = 20  # Gelu is in the default domain from opset 20; LayerNormalization from 17.
REL_TOLERANCE = 1e-3
OV_CORE = ov.Core()


# --------------------------------------------------------------------------------------------
# Reading nnc's raw IR
# --------------------------------------------------------------------------------------------

class Node:
    """One `%name = op(operands) attrs : type` line of the IR."""

    def __init__(self, name, op, operands, attrs, shape):
        self.name, self.op, self.operands, self.attrs, self.shape = name, op, operands, attrs, shape

    def __repr__(self):
        return f"%{self.name} = {self.op}({', '.join(self.operands)}) {self.attrs} : {self.shape}"


class IR:
    def __init__(self):
        self.inputs = []   # (name, shape) in input order
        self.params = {}   # name -> shape
        self.nodes = []    # op nodes in order
        self.outputs = []  # (output name, value name)


LINE_RE = re.compile(r"^%(\S+) = (\w+)(.*?) : f32\[([^\]]*)\]")
ATTR_RE = re.compile(r"(\w+)=(\[[^\]]*\]|\S+)")


def parse_value(text):
    text = text.strip()
    if text.startswith("["):
        return [parse_value(t) for t in text[1:-1].split(",") if t.strip()]
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if text in ("true", "false"):
        return text == "true"
    return text


def parse_ir(text):
    ir = IR()
    inputs = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("output "):
            m = re.match(r"output (\S+) = %(\S+)", line)
            ir.outputs.append((m.group(1), m.group(2)))
            continue
        m = LINE_RE.match(line)
        if not m:
            continue
        name, op, rest, dims = m.groups()
        shape = [int(d) for d in dims.split(",") if d.strip()]
        if op == "input":
            inputs.append((int(rest.strip()), name, shape))
        elif op == "param":
            ir.params[name] = shape
        else:
            # `rest` is `(%a, %b) attr=value attr=[..]`.
            close = rest.index(")")
            operands = [o.strip().lstrip("%") for o in rest[rest.index("(") + 1:close].split(",") if o.strip()]
            attrs = {k: parse_value(v) for k, v in ATTR_RE.findall(rest[close + 1:])}
            ir.nodes.append(Node(name, op, operands, attrs, shape))
    ir.inputs = [(name, shape) for _, name, shape in sorted(inputs)]
    return ir


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------

def param_roles(ir):
    """Map each parameter to (op, operand index) of its (first) use, to pick an init scheme."""
    roles = {}
    for node in ir.nodes:
        for i, operand in enumerate(node.operands):
            if operand in ir.params and operand not in roles:
                roles[operand] = (node.op, i, node)
    return roles


def make_weights(ir, seed):
    rng = np.random.default_rng(seed)
    roles = param_roles(ir)
    weights = {}
    for name, shape in ir.params.items():
        op, index, node = roles[name]
        if op in ("conv2d", "dense") and index == 1:
            fan_in = int(np.prod(shape[1:]))  # conv: in/groups*kh*kw; dense: in
            w = rng.normal(0.0, math.sqrt(2.0 / fan_in), shape)
        elif op in ("conv2d", "dense") and index == 2:
            w = rng.uniform(-0.1, 0.1, shape)
        elif op == "batch_norm":
            w = {
                1: lambda: rng.uniform(0.8, 1.2, shape),    # weight (gamma)
                2: lambda: rng.uniform(-0.1, 0.1, shape),   # bias (beta)
                3: lambda: rng.normal(0.0, 0.1, shape),     # running_mean
                4: lambda: rng.uniform(0.5, 1.5, shape),    # running_var
            }[index]()
        elif op == "layer_norm":
            w = rng.uniform(0.8, 1.2, shape) if index == 1 else rng.uniform(-0.1, 0.1, shape)
        elif op == "lstm":
            bound = 1.0 / math.sqrt(node.attrs["hidden"])  # PyTorch's nn.LSTM init
            w = rng.uniform(-bound, bound, shape)
        else:
            w = rng.normal(0.0, 0.1, shape)
        weights[name] = np.ascontiguousarray(w, dtype=np.float32)
    return weights


# --------------------------------------------------------------------------------------------
# ONNX graph from the IR
# --------------------------------------------------------------------------------------------

class OnnxBuilder:
    def __init__(self, ir, weights):
        self.ir, self.weights = ir, weights
        self.nodes, self.initializers = [], []
        self.counter = 0
        for name, array in weights.items():
            self.initializers.append(numpy_helper.from_array(array, name))

    def fresh(self, hint):
        self.counter += 1
        return f"_{hint}_{self.counter}"

    def const(self, hint, array):
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def add(self, op_type, inputs, output=None, **attrs):
        output = output or self.fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [output], **attrs))
        return output

    def build(self, name):
        for node in self.ir.nodes:
            handler = getattr(self, f"op_{node.op}", None)
            if handler is None:
                raise NotImplementedError(f"no ONNX translation for IR op `{node.op}` ({node})")
            handler(node, node.operands, node.name)
        inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in self.ir.inputs]
        outputs = []
        for out_name, value in self.ir.outputs:
            if out_name != value:
                self.add("Identity", [value], out_name)
            shape = next(n.shape for n in self.ir.nodes if n.name == value)
            outputs.append(helper.make_tensor_value_info(out_name, TensorProto.FLOAT, shape))
        used = {i for node in self.nodes for i in node.input}  # drop weights kept only transposed
        initializers = [t for t in self.initializers if t.name in used]
        graph = helper.make_graph(self.nodes, name, inputs, outputs, initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 9  # accepted by every onnxruntime that knows opset 20
        onnx.checker.check_model(model)
        return model

    # --- one method per IR op: (node, operand names, output name) ---

    def op_conv2d(self, n, x, out):
        t, l, b, r = n.attrs["padding"]  # nnc: [top, left, bottom, right]
        self.add("Conv", x, out, strides=n.attrs["stride"], pads=[t, l, b, r],
                 dilations=n.attrs["dilation"], group=n.attrs["groups"])

    def op_dense(self, n, x, out):
        data, weight = x[0], x[1]
        bias = x[2] if len(x) > 2 else None
        rank = len(n.shape)
        if rank == 2:
            self.add("Gemm", [data, weight] + ([bias] if bias else []), out, transB=1)
        else:
            # Same weights, stored transposed ([in, units]) as a MatMul operand.
            wt = self.const(f"{weight}.T", np.ascontiguousarray(self.weights[weight].T))
            mm = self.add("MatMul", [data, wt], out if bias is None else None)
            if bias:
                self.add("Add", [mm, bias], out)

    def op_batch_norm(self, n, x, out):
        self.add("BatchNormalization", x, out, epsilon=float(n.attrs.get("eps", 1e-5)))

    def op_layer_norm(self, n, x, out):
        self.add("LayerNormalization", x, out, axis=-1, epsilon=float(n.attrs.get("eps", 1e-5)))

    def _pool(self, op_type, n, x, out, **extra):
        t, l, b, r = n.attrs["padding"]
        self.add(op_type, x, out, kernel_shape=n.attrs["kernel"], strides=n.attrs["stride"],
                 pads=[t, l, b, r], **extra)

    def op_max_pool(self, n, x, out):
        self._pool("MaxPool", n, x, out)

    def op_avg_pool(self, n, x, out):
        self._pool("AveragePool", n, x, out, count_include_pad=0)

    def op_global_avg_pool(self, n, x, out):
        self.add("GlobalAveragePool", x, out)

    def op_flatten(self, n, x, out):
        self.add("Flatten", x, out, axis=1)

    def op_reshape(self, n, x, out):
        self.add("Reshape", [x[0], self.const("shape", np.array(n.attrs["shape"], np.int64))], out)

    def op_transpose(self, n, x, out):
        self.add("Transpose", x, out, perm=n.attrs["perm"])

    def op_slice(self, n, x, out):
        a = n.attrs
        consts = [self.const(k, np.array([a[k]], np.int64)) for k in ("start", "end", "axis", "step")]
        self.add("Slice", [x[0], *consts], out)

    def op_relu(self, n, x, out):
        self.add("Relu", x, out)

    def op_relu6(self, n, x, out):
        zero = self.const("zero", np.array(0.0, np.float32))
        six = self.const("six", np.array(6.0, np.float32))
        self.add("Clip", [x[0], zero, six], out)

    def op_gelu(self, n, x, out):
        self.add("Gelu", x, out)  # default approximate="none": the exact erf form

    def op_sigmoid(self, n, x, out):
        self.add("Sigmoid", x, out)

    def op_tanh(self, n, x, out):
        self.add("Tanh", x, out)

    def op_softmax(self, n, x, out):
        self.add("Softmax", x, out, axis=int(n.attrs.get("axis", -1)))

    def op_add(self, n, x, out):
        self.add("Add", x, out)

    def op_sub(self, n, x, out):
        self.add("Sub", x, out)

    def op_mul(self, n, x, out):
        self.add("Mul", x, out)

    def op_div(self, n, x, out):
        self.add("Div", x, out)

    def op_attention(self, n, x, out):
        if n.attrs.get("causal", False):
            raise NotImplementedError("causal attention")
        q, k, v = x
        d = n.shape[-1]
        kt = self.add("Transpose", [k], perm=list(range(len(n.shape) - 2)) + [len(n.shape) - 1, len(n.shape) - 2])
        scores = self.add("MatMul", [q, kt])
        scaled = self.add("Mul", [scores, self.const("scale", np.array(1.0 / math.sqrt(d), np.float32))])
        probs = self.add("Softmax", [scaled], axis=-1)
        self.add("MatMul", [probs, v], out)

    def op_lstm(self, n, x, out):
        data, w_ih, w_hh, b_ih, b_hh = x
        hidden = n.attrs["hidden"]

        def reorder(a):  # PyTorch gates i, f, g, o -> ONNX i, o, f, c
            i, f, g, o = np.split(a, 4, axis=0)
            return np.concatenate([i, o, f, g], axis=0)

        w = self.const(f"{w_ih}.onnx", reorder(self.weights[w_ih])[None])
        r = self.const(f"{w_hh}.onnx", reorder(self.weights[w_hh])[None])
        b = self.const(f"{b_ih}.onnx", np.concatenate([reorder(self.weights[b_ih]),
                                                         reorder(self.weights[b_hh])])[None])
        y = self.fresh("lstm_y")
        self.nodes.append(helper.make_node("LSTM", [data, w, r, b], [y], hidden_size=hidden))
        # Y is [seq, num_directions=1, batch, hidden].
        self.add("Squeeze", [y, self.const("axes", np.array([1], np.int64))], out)


# --------------------------------------------------------------------------------------------
# Running and timing
# --------------------------------------------------------------------------------------------

UNITS = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9}
BENCH_RE = re.compile(r"bench: (\d+) runs after 1 warm-up: median ([\d.]+) (\S+)")


class Case:
    """One model's files: the .nn, its weights and input, and the equivalent .onnx."""

    def __init__(self, name, model_file, weights, input_name, input_file, x, onnx_file, out_dir):
        self.name, self.model_file, self.weights = name, model_file, weights
        self.input_name, self.input_file, self.x = input_name, input_file, x
        self.onnx_file, self.out_dir = onnx_file, out_dir


def nnc_run(nnc, case, threads=1, bench=None, extra=()):
    """Run nnc on `case` (`extra`: more arguments, e.g. further inputs); returns the seconds
    the process took and, with `bench`, the median run time it printed."""
    cmd = [str(nnc), "run", str(case.model_file), "--weights", str(case.weights),
           "--input", f"{case.input_name}={case.input_file}", *extra, "--output-dir", str(case.out_dir),
           "--threads", str(threads)]
    if bench:
        cmd += ["--bench", str(bench)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}{proc.stdout}")
    median = None
    if bench:
        m = BENCH_RE.search(proc.stdout)
        if not m:
            raise RuntimeError(f"no bench line in nnc output:\n{proc.stdout}")
        median = float(m.group(2)) * UNITS[m.group(3)]
    return elapsed, median


ROUND_TRIP = REPO / "target" / "release" / "examples" / "vcpu_round_trip"


def round_trip_ns():
    """Nanoseconds of a cache line's round trip between two CPUs, or None without the tool."""
    if not ROUND_TRIP.exists():
        built = subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "vcpu_round_trip"],
                               cwd=REPO, capture_output=True, text=True)
        if built.returncode != 0 or not ROUND_TRIP.exists():
            return None
    proc = subprocess.run([str(ROUND_TRIP)], capture_output=True, text=True)
    out = proc.stdout.strip()
    return int(out) if proc.returncode == 0 and out.isdigit() else None


def runs_for(seconds_per_run, budget, minimum=10, maximum=20000):
    return int(min(maximum, max(minimum, math.ceil(budget / max(seconds_per_run, 1e-7)))))


def median_of_calls(call, budget):
    """Warm up, size the run count to about `budget` seconds, return the median call time."""
    for _ in range(3):
        call()
    start = time.perf_counter()
    for _ in range(3):
        call()
    n = runs_for((time.perf_counter() - start) / 3, budget)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ort_session(model, threads=1):
    """An ONNX Runtime session (`model`: bytes or a path) and the seconds it took to create."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only
    start = time.perf_counter()
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    return sess, time.perf_counter() - start


def ort_bench(sess, feeds, budget):
    return median_of_calls(lambda: sess.run(None, feeds), budget)


class OrtEngine:
    name = "ONNX Runtime"

    def __init__(self, case, threads):
        self.sess, self.setup = ort_session(str(case.onnx_file), threads)
        self.feeds = {case.input_name: case.x}

    def output(self):
        return self.sess.run(None, self.feeds)[0]

    def time(self, budget):
        return ort_bench(self.sess, self.feeds, budget)


class OpenVinoEngine:
    name = "OpenVINO"

    def __init__(self, case, threads):
        config = {
            "INFERENCE_PRECISION_HINT": "f32",  # no bf16/f16 downcast on CPUs that have it
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": "1",
            "INFERENCE_NUM_THREADS": str(threads),
        }
        start = time.perf_counter()
        compiled = OV_CORE.compile_model(str(case.onnx_file), "CPU", config)
        self.setup = time.perf_counter() - start
        self.request = compiled.create_infer_request()
        self.request.set_input_tensor(ov.Tensor(np.ascontiguousarray(case.x)))

    def output(self):
        self.request.infer()
        return np.array(self.request.get_output_tensor(0).data, copy=True)

    def time(self, budget):
        return median_of_calls(self.request.infer, budget)


class NncEngine:
    name = "nnc"

    def __init__(self, nnc, case, threads):
        self.nnc, self.case, self.threads = nnc, case, threads
        self.setup, _ = nnc_run(nnc, case, threads)  # one whole process: load, compile, run, write
        _, self.per_run = nnc_run(nnc, case, threads, bench=3)

    def output(self):
        nnc_run(self.nnc, self.case, self.threads)
        return np.load(self.case.out_dir / f"{OUTPUT_NAMES[self.case.name]}.npy")

    def time(self, budget):
        _, median = nnc_run(self.nnc, self.case, self.threads, bench=runs_for(self.per_run, budget))
        return median


def fmt_time(s):
    if s is None:
        return "-"
    if s >= 1.0:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3f} ms"
    return f"{s * 1e6:.1f} µs"


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def cpu_flags():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")
                                if f in flags)
    except OSError:
        pass
    return "unknown"


# --------------------------------------------------------------------------------------------

OUTPUT_NAMES = {}


def model_path(model):
    for folder in (REPO / "examples", REPO / "benches" / "models"):
        if (folder / f"{model}.nn").exists():
            return folder / f"{model}.nn"
    raise FileNotFoundError(f"no {model}.nn in examples/ or benches/models/")


def prepare(model, nnc, work, seed):
    model_file = model_path(model)
    ir_text = subprocess.run([str(nnc), "compile", str(model_file), "--emit", "ir-raw"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
    ir = parse_ir(ir_text)
    if len(ir.inputs) != 1 or len(ir.outputs) != 1:
        raise NotImplementedError("this script handles one input and one output per model")
    (input_name, input_shape), (output_name, _) = ir.inputs[0], ir.outputs[0]
    OUTPUT_NAMES[model] = output_name

    weights = make_weights(ir, seed)
    weights_file = work / f"{model}.safetensors"
    save_file(weights, str(weights_file))
    x = np.random.default_rng(seed + 1).standard_normal(input_shape).astype(np.float32)
    input_file = work / f"{model}.{input_name}.npy"
    np.save(input_file, x)

    onnx_file = work / f"{model}.onnx"
    onnx_file.write_bytes(OnnxBuilder(ir, weights).build(model).SerializeToString())
    return Case(model, model_file, weights_file, input_name, input_file, x, onnx_file, work / f"{model}.out")


def relative_diff(got, ref):
    if got.shape != ref.shape:
        raise RuntimeError(f"output shape {got.shape} != ONNX Runtime's {ref.shape}")
    return float(np.max(np.abs(got.astype(np.float64) - ref)) / max(np.max(np.abs(ref)), 1e-30))


def compare(case, nnc, threads, budget, rounds):
    """Agreement with ONNX Runtime, then `rounds` interleaved rounds of every engine."""
    before = round_trip_ns() if threads > 1 else None
    engines = [OrtEngine(case, threads), OpenVinoEngine(case, threads), NncEngine(nnc, case, threads)]
    ref = engines[0].output()
    diffs = {e.name: relative_diff(e.output(), ref) for e in engines[1:]}
    samples = {e.name: [] for e in engines}
    for r in range(rounds):
        # Rotate who goes first so that drift on a shared machine does not favour one engine.
        for e in engines[r % len(engines):] + engines[:r % len(engines)]:
            samples[e.name].append(e.time(budget / rounds))
    times = {name: statistics.median(ts) for name, ts in samples.items()}
    line = ", ".join(f"{name} {fmt_time(t)}" for name, t in times.items())
    print(f"{case.name}, {threads} thread(s): {line}; rel diff vs ORT: "
          + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()), file=sys.stderr)
    round_trip = (before, round_trip_ns()) if threads > 1 else None
    return dict(model=case.name, threads=threads, times=times, diffs=diffs,
                setup={e.name: e.setup for e in engines}, round_trip=round_trip)


def geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nnc", default=str(REPO / "target" / "release" / "nnc"), help="the nnc binary")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated model names")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing budget per engine and measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds the budget is split into")
    parser.add_argument("--seed", type=int, default=0, help="seed for the weights and inputs")
    parser.add_argument("--keep", help="write the weights, inputs and .onnx files here and keep them")
    args = parser.parse_args()

    nnc = Path(args.nnc).resolve()
    if not nnc.exists():
        sys.exit(f"no nnc binary at {nnc}; build one with `cargo build --release` or pass --nnc")
    thread_counts = [int(t) for t in args.threads.split(",") if t]

    rows = []
    with tempfile.TemporaryDirectory(prefix="nnc-vs-peers-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for model in [m for m in args.models.split(",") if m]:
            case = prepare(model, nnc, work, args.seed)
            for threads in thread_counts:
                rows.append(compare(case, nnc, threads, args.seconds, args.rounds))

    peers = ("ONNX Runtime", "OpenVINO")
    print()
    print(f"Machine: {cpu_model()} ({cpu_flags()}), {os.cpu_count()} logical CPUs; "
          f"onnxruntime {ort.__version__}, openvino {ov.get_version()}, numpy {np.__version__}; "
          f"{time.strftime('%Y-%m-%d')}; nnc {nnc}")
    print()
    print("| model | threads | ONNX Runtime | OpenVINO | nnc | nnc / best peer | max rel diff (nnc, OpenVINO) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    ratios = {t: [] for t in thread_counts}
    bad = False
    for r in rows:
        t = r["times"]
        best = min(t[p] for p in peers)
        ratio = t["nnc"] / best
        ratios[r["threads"]].append(ratio)
        flags = ""
        if any(d > REL_TOLERANCE for d in r["diffs"].values()):
            flags, bad = " **MISMATCH**", True
        print(f"| {r['model']} | {r['threads']} | {fmt_time(t['ONNX Runtime'])} | {fmt_time(t['OpenVINO'])} "
              f"| {fmt_time(t['nnc'])} | {ratio:.2f}x | {r['diffs']['nnc']:.1e}, {r['diffs']['OpenVINO']:.1e}{flags} |")
    print()
    for t, rs in ratios.items():
        if rs:
            print(f"geometric mean of nnc / best peer, {t} thread(s): {geomean(rs):.2f}x over {len(rs)} models")
    print()
    print("Each time is the median of the round medians; every engine ran once per round, in rotating order.")
    print("nnc / best peer below 1 means nnc is faster than both ONNX Runtime and OpenVINO.")
    print("Peers are timed around their Python calls (a few µs each); nnc's `--bench` times the compiled model.")
    trips = [r for r in rows if r["round_trip"]]
    if trips:
        ns = lambda v: "?" if v is None else str(v)
        print("Cache-line round trip between two CPUs before / after each multi-thread row (ns): " + "; ".join(
            f"{r['model']}/{r['threads']}: {ns(r['round_trip'][0])} / {ns(r['round_trip'][1])}" for r in trips)
            + ". On the AMD EPYC VM of BENCHMARKS.md, under 100 ns means the host ran the two vCPUs in one core"
              " complex, 300+ ns apart, where two-thread times rise.")
    print("Setup (s): " + "; ".join(
        f"{r['model']}/{r['threads']}: " + ", ".join(f"{k} {v:.3f}" for k, v in r["setup"].items())
        for r in rows))
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
