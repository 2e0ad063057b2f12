"""Compare nnc's accelerator cycle model with SCALE-Sim, layer by layer.

Layers: every distinct convolution of examples/resnet18.nn, its final dense layer (M = 1),
and square GEMMs of 64, 256 and 1024. For each array size and dataflow, nnc sim runs a
one-layer model with --memory ideal and fold_overlap = false; SCALE-Sim's compute-report
"Total Cycles" comes from its stall-free (CALC) mode for the GEMM
[Ho*Wo x C*kh*kw] . [C*kh*kw x F].

SCALE-Sim is slow (minutes per array size at 8x8), so its results are cached in
scripts/scalesim_reference.json, keyed "RxC df MxNxK"; only missing entries are simulated
(that needs `pip install scalesim "numpy<2.3"`, in a venv). Not part of CI.
    python scripts/scalesim_compare.py [--nnc target/release/nnc] [--arrays 8x8,32x32]
    python scripts/scalesim_compare.py --reference-only   # fill the cache, no nnc
    python scripts/scalesim_compare.py --cached-only      # compare with the cache as it is
Prints a Markdown table (the one in docs/scalesim.md).
"""
import argparse, json, os, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(HERE, "scalesim_reference.json")

# (name, C, H, W, F, k, stride, pad): ResNet-18's distinct convolutions at 224x224.
CONVS = [
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


def layers():
    """(name, M, N, K, .nn source, input name) for every compared layer."""
    out = []
    for name, C, H, W, F, k, s, p in CONVS:
        ho = (H + 2 * p - k) // s + 1
        src = (f"model m {{\n  input x: f32[1, {C}, {H}, {W}]\n"
               f"  output y = conv2d(x, filters={F}, kernel={k}, stride={s}, padding={p}, bias=false)\n}}\n")
        out.append((name, ho * ho, F, C * k * k, src))
    out.append(("fc", 1, 1000, 512,
                "model m {\n  input x: f32[1, 512]\n  output y = dense(x, units=1000, bias=false)\n}\n"))
    for n in (64, 256, 1024):
        out.append((f"gemm{n}", n, n, n,
                    f"model m {{\n  input x: f32[{n}, {n}]\n  output y = dense(x, units={n}, bias=false)\n}}\n"))
    return out


def key(arr, df, m, n, k):
    return f"{arr} {df} {m}x{n}x{k}"


def load_cache():
    if os.path.exists(CACHE):
        with open(CACHE) as f:
            return json.load(f)
    return {}


def save_cache(cache):
    with open(CACHE, "w") as f:
        json.dump(dict(sorted(cache.items())), f, indent=1)
        f.write("\n")


def fill_reference(arrays, dataflows):
    sys.path.insert(0, HERE)
    from scalesim_probe import total_cycles
    cache = load_cache()
    for arr in arrays:
        r, c = (int(v) for v in arr.split("x"))
        for df in dataflows:
            missing = [(name, m, n, k) for name, m, n, k, _ in layers() if key(arr, df, m, n, k) not in cache]
            for name, m, n, k in missing:
                t0 = time.time()
                cycles = total_cycles(r, c, df, [(name, m, n, k)])[name]
                cache[key(arr, df, m, n, k)] = cycles
                save_cache(cache)
                print(f"# {arr} {df} {name}: {cycles} cycles, SCALE-Sim took {time.time() - t0:.0f} s",
                      file=sys.stderr, flush=True)
    return cache


def nnc_cycles(nnc, source, rows, cols, df):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "layer.nn")
        with open(path, "w") as f:
            f.write(source)
        report = os.path.join(d, "r.json")
        cmd = [nnc, "sim", path, "--random-weights", "1", "--input", "x=random:1", "--memory", "ideal",
               "--set", "fold_overlap=false", "--array", f"{rows}x{cols}", "--dataflow", df,
               "--set", "scratchpad_kib=65536", "--set", "accumulator_kib=65536", "-O0", "--report", report]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with open(report) as f:
            r = json.load(f)
        return sum(l["cycles"] for l in r["layers"] if l["unit"] == "array")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nnc", default="target/release/nnc")
    ap.add_argument("--arrays", default="8x8,16x16,32x32,128x128,256x256")
    ap.add_argument("--dataflows", default="ws,os")
    ap.add_argument("--reference-only", action="store_true", help="fill the SCALE-Sim cache, run no nnc")
    ap.add_argument("--cached-only", action="store_true", help="compare only what the cache holds, run no SCALE-Sim")
    args = ap.parse_args()
    arrays, dataflows = args.arrays.split(","), args.dataflows.split(",")
    cache = load_cache() if args.cached_only else fill_reference(arrays, dataflows)
    if args.reference_only:
        return
    print("| array | dataflow | layer | M x N x K | SCALE-Sim cycles | nnc cycles | difference |")
    print("|---|---|---|---|---:|---:|---:|")
    worst = 0.0
    for arr in arrays:
        r, c = (int(v) for v in arr.split("x"))
        for df in dataflows:
            for name, m, n, k, src in layers():
                if key(arr, df, m, n, k) not in cache:
                    print(f"| {arr} | {df} | {name} | {m} x {n} x {k} | not run | | |", flush=True)
                    continue
                ss = cache[key(arr, df, m, n, k)]
                ours = nnc_cycles(args.nnc, src, r, c, df)
                diff = (ours - ss) / ss
                worst = max(worst, abs(diff))
                print(f"| {arr} | {df} | {name} | {m} x {n} x {k} | {ss} | {ours} | {100 * diff:+.2f}% |",
                      flush=True)
    print(f"\nLargest difference: {100 * worst:.2f}%")


if __name__ == "__main__":
    main()
