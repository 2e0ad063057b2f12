#!/usr/bin/env python3
"""Time nnc's int8 JIT against ONNX Runtime's int8 on the example models, one thread each.

Not part of CI. Run it after building a release binary:

    cargo build --release
    python3 benches/compare_onnxruntime_int8.py [--nnc PATH] [--models resnet18,...]
                                                [--seconds 2.0] [--rounds 3] [--seed 0]
                                                [--calibration 8] [--keep DIR]

Both engines quantize the same float model, with the same weights, calibrated on the same
inputs:

- ONNX Runtime: the ONNX graph `compare_onnxruntime.py` builds from nnc's IR, quantized by
  `onnxruntime.quantization.quantize_static` as its documentation recommends for CNNs on
  x86 (QDQ format, int8 weights per channel, uint8 activations, MinMax calibration);
- nnc: `nnc run --quantize int8 --calibrate NAME=FILE.npy` (int8 weights per channel, int8
  activations per tensor, max-abs calibration).

For each model the script checks both int8 outputs against ORT's float output (max|int8 -
f32| / max|f32|, the quantization error each engine makes), then measures ORT f32, ORT int8,
nnc f32 and nnc int8 in turn, `--rounds` times (the machine is shared; interleaving keeps
drift out of the ratios), and reports each one's median over the rounds.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_onnxruntime as base  # noqa: E402  (installs numpy, onnx, onnxruntime, safetensors)

np = base.np
ort = base.ort
from onnxruntime.quantization import (  # noqa: E402
    CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static)

MODELS = ["mlp", "lenet5", "resnet18", "mobilenet_v2", "transformer"]


class Reader(CalibrationDataReader):
    def __init__(self, name, batches):
        self.items = iter([{name: b} for b in batches])

    def get_next(self):
        return next(self.items, None)


def nnc_cmd(nnc, model_file, weights, input_name, input_file, out_dir, calib=None, bench=None):
    cmd = [str(nnc), "run", str(model_file), "--weights", str(weights),
           "--input", f"{input_name}={input_file}", "--output-dir", str(out_dir), "--threads", "1"]
    if calib is not None:
        cmd += ["--quantize", "int8", "--calibrate", f"{input_name}={calib}"]
    if bench:
        cmd += ["--bench", str(bench)]
    proc = subprocess.run(cmd, cwd=base.REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}{proc.stdout}")
    if not bench:
        return None
    m = base.BENCH_RE.search(proc.stdout)
    if not m:
        raise RuntimeError(f"no bench line in nnc output:\n{proc.stdout}")
    return float(m.group(2)) * base.UNITS[m.group(3)]


def nnc_bench(run, budget):
    probe = run(3)
    return run(base.runs_for(probe, budget))


def compare(model, nnc, work, budget, rounds, seed, n_calib):
    model_file = base.REPO / "examples" / f"{model}.nn"
    ir_text = subprocess.run([str(nnc), "compile", str(model_file), "--emit", "ir-raw"], cwd=base.REPO,
                             capture_output=True, text=True, check=True).stdout
    ir = base.parse_ir(ir_text)
    (input_name, input_shape), (output_name, _) = ir.inputs[0], ir.outputs[0]

    weights = base.make_weights(ir, seed)
    weights_file = work / f"{model}.safetensors"
    base.save_file(weights, str(weights_file))
    rng = np.random.default_rng(seed + 1)
    x = rng.standard_normal(input_shape).astype(np.float32)
    input_file = work / f"{model}.{input_name}.npy"
    np.save(input_file, x)
    batches = [rng.standard_normal(input_shape).astype(np.float32) for _ in range(n_calib)]
    calib_file = work / f"{model}.calibration.npy"
    np.save(calib_file, np.concatenate(batches, axis=0))

    f32_path = work / f"{model}.onnx"
    f32_path.write_bytes(base.OnnxBuilder(ir, weights).build(model).SerializeToString())
    int8_path = work / f"{model}.int8.onnx"
    quantize_static(str(f32_path), str(int8_path), Reader(input_name, batches),
                    quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8, calibrate_method=CalibrationMethod.MinMax)

    feeds = {input_name: x}
    ort_f32, _ = base.ort_session(f32_path.read_bytes())
    ort_int8, _ = base.ort_session(int8_path.read_bytes())
    ref = ort_f32.run(None, feeds)[0].astype(np.float64)
    scale = max(float(np.max(np.abs(ref))), 1e-30)
    ort_err = float(np.max(np.abs(ort_int8.run(None, feeds)[0] - ref))) / scale
    out_dir = work / f"{model}.out"
    nnc_cmd(nnc, model_file, weights_file, input_name, input_file, out_dir, calib=calib_file)
    nnc_err = float(np.max(np.abs(np.load(out_dir / f"{output_name}.npy") - ref))) / scale
    print(f"{model}: int8 error against f32: ORT {ort_err:.2e}, nnc {nnc_err:.2e}", file=sys.stderr)

    times = {k: [] for k in ("ort_f32", "ort_int8", "nnc_f32", "nnc_int8")}
    for r in range(rounds):
        times["ort_f32"].append(base.ort_bench(ort_f32, feeds, budget))
        times["ort_int8"].append(base.ort_bench(ort_int8, feeds, budget))
        times["nnc_f32"].append(nnc_bench(lambda n: nnc_cmd(nnc, model_file, weights_file, input_name,
                                                              input_file, out_dir, bench=n), budget))
        times["nnc_int8"].append(nnc_bench(lambda n: nnc_cmd(nnc, model_file, weights_file, input_name,
                                                               input_file, out_dir, calib=calib_file, bench=n),
                                           budget))
        print(f"{model} round {r + 1}: " + ", ".join(f"{k} {base.fmt_time(v[-1])}" for k, v in times.items()),
              file=sys.stderr)
    med = {k: statistics.median(v) for k, v in times.items()}
    return dict(model=model, ort_err=ort_err, nnc_err=nnc_err, **med)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nnc", default=str(base.REPO / "target" / "release" / "nnc"), help="the nnc binary")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated example names")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing budget per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the four measurements")
    parser.add_argument("--seed", type=int, default=0, help="seed for the weights and inputs")
    parser.add_argument("--calibration", type=int, default=8, help="calibration inputs")
    parser.add_argument("--keep", help="write the weights, inputs and .onnx files here and keep them")
    args = parser.parse_args()

    nnc = Path(args.nnc).resolve()
    if not nnc.exists():
        sys.exit(f"no nnc binary at {nnc}; build one with `cargo build --release` or pass --nnc")
    with tempfile.TemporaryDirectory(prefix="nnc-vs-ort-int8-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = [compare(m, nnc, work, args.seconds, args.rounds, args.seed, args.calibration)
                for m in args.models.split(",") if m]

    print()
    print(f"Machine: {base.cpu_model()}; onnxruntime {ort.__version__}; one thread; medians of "
          f"{args.rounds} interleaved rounds; nnc {nnc}")
    print()
    print("| model | ORT f32 | ORT int8 | ORT speedup | nnc f32 | nnc int8 | nnc speedup "
          "| nnc int8 / ORT int8 | int8 error ORT | int8 error nnc |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    f = base.fmt_time
    for r in rows:
        print(f"| {r['model']} | {f(r['ort_f32'])} | {f(r['ort_int8'])} | {r['ort_f32'] / r['ort_int8']:.2f}x "
              f"| {f(r['nnc_f32'])} | {f(r['nnc_int8'])} | {r['nnc_f32'] / r['nnc_int8']:.2f}x "
              f"| {r['nnc_int8'] / r['ort_int8']:.2f}x | {r['ort_err']:.1e} | {r['nnc_err']:.1e} |")
    print()
    print("int8 error = max|int8 output - ORT f32 output| / max|ORT f32 output|, on one input.")
    print("nnc int8 / ORT int8 below 1 means nnc is faster.")


if __name__ == "__main__":
    main()
