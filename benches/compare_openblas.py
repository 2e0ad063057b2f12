#!/usr/bin/env python3
"""nnc's f32 matrix product against OpenBLAS (numpy's), one thread, square sizes.

Not part of CI. Run it after building a release binary:

    cargo build --release
    python3 benches/compare_openblas.py [--nnc PATH] [--sizes 256,512,1024,2048]
                                        [--seconds 2.0] [--rounds 5]

For each size n it times, in `--rounds` interleaved rounds (rotating which goes first, since
the machine is shared and absolute times drift):

- OpenBLAS: `np.matmul(a, b, out=c)` with `OPENBLAS_NUM_THREADS=1`, the median call;
- nnc `matmul`: `nnc run` of a model `c = a @ b` with both operands inputs, so B is packed
  on every run as OpenBLAS packs it (`--bench`: the compiled model, computing its output
  into the previous run's result, as numpy's `out=` does);
- nnc `dense`: `y = dense(x, units=n, bias=false)`, the weights packed once at compile time,
  as nnc runs every dense layer and matmul with a constant operand.

and prints GFLOP/s (2·n³ / median of the round medians) and nnc / OpenBLAS throughput.
"""

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

# Before numpy loads OpenBLAS: one thread, the comparison is per core.
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_onnxruntime as base  # noqa: E402  (installs numpy and safetensors)

np = base.np


def nnc_case(out, name, n, rng):
    """The .nn file, weights and input of one nnc model, as a `base.Case`."""
    model = out / f"{name}{n}.nn"
    x = rng.standard_normal((n, n), dtype=np.float32)
    x_file = out / f"{name}{n}.x.npy"
    np.save(x_file, x)
    weights = out / f"{name}{n}.safetensors"
    if name == "matmul":
        model.write_text(f"model {name}{n} {{\n    input x: f32[{n}, {n}]\n    input w: f32[{n}, {n}]\n"
                         f"    output y = x @ w\n}}\n")
        np.save(out / f"{name}{n}.w.npy", rng.standard_normal((n, n), dtype=np.float32))
        base.save_file({}, str(weights))
    else:
        model.write_text(f"model {name}{n} {{\n    input x: f32[{n}, {n}]\n"
                         f"    output y = dense(x, units={n}, bias=false)\n}}\n")
        base.save_file({"y.weight": rng.standard_normal((n, n), dtype=np.float32)}, str(weights))
    case = base.Case(f"{name}{n}", model, weights, "x", x_file, x, None, out)
    return case


def nnc_time(nnc, case, budget):
    """Median seconds of one compiled run, with enough runs to fill about `budget`."""
    extra = []
    if case.name.startswith("matmul"):
        extra = ["--input", f"w={case.out_dir / (case.name + '.w.npy')}"]
    _, once = base.nnc_run(nnc, case, bench=3, extra=extra)
    _, median = base.nnc_run(nnc, case, bench=base.runs_for(once, budget, minimum=5, maximum=2000), extra=extra)
    return median


def blas_name():
    try:
        blas = np.__config__.CONFIG["Build Dependencies"]["blas"]
        return f"{blas['name']} {blas['version']}"
    except (AttributeError, KeyError, TypeError):
        return "numpy's BLAS"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nnc", default=str(base.REPO / "target" / "release" / "nnc"))
    ap.add_argument("--sizes", default="256,512,1024,2048")
    ap.add_argument("--seconds", type=float, default=2.0, help="per engine and size, over all rounds")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(0)
    budget = args.seconds / args.rounds
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for n in sizes:
            a = rng.standard_normal((n, n), dtype=np.float32)
            b = rng.standard_normal((n, n), dtype=np.float32)
            c = np.empty((n, n), np.float32)
            cases = {name: nnc_case(out, name, n, rng) for name in ("matmul", "dense")}
            engines = {
                "OpenBLAS": lambda: base.median_of_calls(lambda: np.matmul(a, b, out=c), budget),
                "nnc matmul": lambda: nnc_time(args.nnc, cases["matmul"], budget),
                "nnc dense": lambda: nnc_time(args.nnc, cases["dense"], budget),
            }
            times = {name: [] for name in engines}
            names = list(engines)
            for r in range(args.rounds):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    times[name].append(engines[name]())
            gflops = {name: 2 * n ** 3 / statistics.median(t) / 1e9 for name, t in times.items()}
            rows.append((n, gflops))
            print(f"{n}³: " + ", ".join(f"{name} {g:.1f} GFLOP/s" for name, g in gflops.items()), flush=True)
    print()
    print(f"Machine: {base.cpu_model()} ({base.cpu_flags()}); numpy {np.__version__}, "
          f"{blas_name()}, one thread")
    print()
    print("| n³ | OpenBLAS | nnc matmul | nnc dense (weights packed) | matmul / OpenBLAS | dense / OpenBLAS |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n, g in rows:
        print(f"| {n} | {g['OpenBLAS']:.1f} GFLOP/s | {g['nnc matmul']:.1f} | {g['nnc dense']:.1f} | "
              f"{g['nnc matmul'] / g['OpenBLAS']:.0%} | {g['nnc dense'] / g['OpenBLAS']:.0%} |")
    print()
    print("GFLOP/s = 2·n³ / median time. nnc's `--bench` times the compiled model: it reads the "
          "inputs in place and computes the output into the previous run's result "
          "(`Executable::run_into`), as numpy writes into a preallocated output.")


if __name__ == "__main__":
    main()
