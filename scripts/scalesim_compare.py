"""Compare nnc's accelerator cycle model with SCALE-Sim on ResNet-18's convolutions.

For every distinct convolution of examples/resnet18.nn (and its final dense layer), at each
array size and dataflow: nnc sim on a one-layer model with --memory ideal and
fold_overlap = false, against SCALE-Sim's compute-report "Total Cycles" for the GEMM
[Ho*Wo x C*kh*kw] . [C*kh*kw x F] in its stall-free (CALC) mode.

Not part of CI (SCALE-Sim takes tens of seconds per layer). Needs `pip install scalesim
"numpy<2.3"` (in a venv) and a release build of nnc:
    python scripts/scalesim_compare.py [--nnc target/release/nnc] [--arrays 32x32,128x128]
Prints a Markdown table (the one in docs/scalesim.md).
"""
import argparse, json, os, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(__file__))
from scalesim_probe import total_cycles  # noqa: E402

# (name, C, H, W, F, k, stride, pad): ResNet-18's distinct convolutions at 224x224.
LAYERS = [
    ("conv1", 3, 224, 224, 64, 7, 2, 3),
    ("layer1.conv", 64, 56, 56, 64, 3, 1, 1),
    ("layer2.0.conv1", 64, 56, 56, 128, 3, 2, 1),
    ("layer2.0.proj", 64, 56, 56, 128, 1, 2, 0),
    ("layer2.conv", 128, 28, 28, 128, 3, 1, 1),
    ("layer3.0.conv1", 128, 28, 28, 256, 3, 2, 1),
    ("layer3.0.proj", 128, 28, 28, 256, 1, 2, 0),
    ("layer3.conv", 256, 14, 14, 256, 3, 1, 1),
    ("layer4.0.conv1", 256, 14, 14, 512, 3, 2, 1),
    ("layer4.0.proj", 256, 14, 14, 512, 1, 2, 0),
    ("layer4.conv", 512, 7, 7, 512, 3, 1, 1),
]
DENSE = ("fc", 512, 1000)  # features, units (M = 1)


def nnc_cycles(nnc, source, inp, shape, rows, cols, df):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "layer.nn")
        with open(path, "w") as f:
            f.write(source)
        report = os.path.join(d, "r.json")
        cmd = [nnc, "sim", path, "--random-weights", "1", "--input", f"{inp}=random:1", "--memory", "ideal",
               "--set", "fold_overlap=false", "--array", f"{rows}x{cols}", "--dataflow", df,
               "--set", "scratchpad_kib=65536", "--set", "accumulator_kib=65536", "-O0", "--report", report]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with open(report) as f:
            r = json.load(f)
        return sum(l["cycles"] for l in r["layers"] if l["unit"] == "array")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nnc", default="target/release/nnc")
    ap.add_argument("--arrays", default="32x32,128x128")
    ap.add_argument("--dataflows", default="ws,os")
    args = ap.parse_args()
    rows_out = []
    for arr in args.arrays.split(","):
        r, c = (int(v) for v in arr.split("x"))
        for df in args.dataflows.split(","):
            gemms = []
            for name, C, H, W, F, k, s, p in LAYERS:
                ho = (H + 2 * p - k) // s + 1
                gemms.append((name, ho * ho, F, C * k * k))
            gemms.append((DENSE[0], 1, DENSE[2], DENSE[1]))
            t0 = time.time()
            ss = total_cycles(r, c, df, gemms)
            ss_time = time.time() - t0
            for (name, C, H, W, F, k, s, p) in LAYERS:
                src = f"model m {{\n  input x: f32[1, {C}, {H}, {W}]\n  output y = conv2d(x, filters={F}, kernel={k}, stride={s}, padding={p}, bias=false)\n}}\n"
                ours = nnc_cycles(args.nnc, src, "x", None, r, c, df)
                rows_out.append((arr, df, name, dict((g[0], g[1:]) for g in gemms)[name], ss[name], ours))
            src = f"model m {{\n  input x: f32[1, {DENSE[1]}]\n  output y = dense(x, units={DENSE[2]}, bias=false)\n}}\n"
            ours = nnc_cycles(args.nnc, src, "x", None, r, c, df)
            rows_out.append((arr, df, DENSE[0], (1, DENSE[2], DENSE[1]), ss[DENSE[0]], ours))
            print(f"# {arr} {df}: SCALE-Sim took {ss_time:.0f} s", file=sys.stderr)
    print("| array | dataflow | layer | M x N x K | SCALE-Sim cycles | nnc cycles | difference |")
    print("|---|---|---|---|---:|---:|---:|")
    worst = 0.0
    for arr, df, name, (m, n, k), ss, ours in rows_out:
        diff = (ours - ss) / ss
        worst = max(worst, abs(diff))
        print(f"| {arr} | {df} | {name} | {m} x {n} x {k} | {ss} | {ours} | {100 * diff:+.2f}% |")
    print(f"\nLargest difference: {100 * worst:.2f}%")


if __name__ == "__main__":
    main()
