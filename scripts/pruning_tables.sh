#!/usr/bin/env bash
# The pruning tables of BENCHMARKS.md ("Pruning"): accuracy of the trained digits models, and
# JIT latency (one thread, sparse kernels on and off) and accelerator cycles of the example
# models with random weights, at each sparsity. Needs a release build (`cargo build --release`).
set -euo pipefail
cd "$(dirname "$0")/.."
N=./target/release/nnc
SPECS="none magnitude:0.5 magnitude:0.7 magnitude:0.9 magnitude:0.95 global:0.5 global:0.7 global:0.9 global:0.95 channels:0.25 channels:0.5"
flag() { [ "$1" = none ] || echo "--prune $1"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "## accuracy (top-1 of 360 held-out digits)"
python3 -c "import numpy as np; c=np.load('examples/digits_cnn/calib_x.npy'); np.save('$tmp/calib_flat.npy', c.reshape(c.shape[0], -1))"
for ex in digits digits_cnn; do
    d=examples/$ex
    calib=$([ $ex = digits ] && echo "$tmp/calib_flat.npy" || echo "$d/calib_x.npy")
    for q in f32 int8; do
        qflags=$([ $q = int8 ] && echo "--quantize int8 --calibrate x=$calib" || true)
        printf '%s %s:' "$ex" "$q"
        for spec in $SPECS; do
            a=$($N run $d/$ex.nn --weights $d/$ex.safetensors --input x=$d/test_x.npy --labels $d/test_y.npy $(flag $spec) $qflags | grep -oE 'accuracy: [0-9]+' | grep -oE '[0-9]+')
            printf ' %s=%s' "$spec" "$a"
        done
        echo
    done
done

echo "## JIT latency, one thread (median; sparse kernels on / off)"
input() { case $1 in resnet18|mobilenet_v2) echo image=random:1;; *) echo x=random:1;; esac; }
runs() { case $1 in resnet18) echo 10;; mobilenet_v2|transformer) echo 30;; *) echo 1000;; esac; }
for m in mlp transformer resnet18 mobilenet_v2; do
    for spec in none magnitude:0.5 magnitude:0.7 magnitude:0.9 magnitude:0.95 channels:0.25 channels:0.5; do
        on=$($N run examples/$m.nn --random-weights 1 --input $(input $m) $(flag $spec) --bench $(runs $m) | grep -oE 'median [0-9.]+ [µm]s' | cut -d' ' -f2-)
        off=$($N run examples/$m.nn --random-weights 1 --input $(input $m) $(flag $spec) --bench $(runs $m) --sparse-kernels off | grep -oE 'median [0-9.]+ [µm]s' | cut -d' ' -f2-)
        echo "$m $spec: $on / $off"
    done
done

echo "## accelerator cycles (gemmini, int8; blocks are the 16x16 fold)"
for m in mlp transformer resnet18 mobilenet_v2; do
    for spec in none magnitude:0.9 blocks:0.5 blocks:0.9 channels:0.25 channels:0.5; do
        c=$($N sim examples/$m.nn --random-weights 1 --input $(input $m) --config gemmini --quantize int8 $(flag $spec) --report $tmp/r.json > /dev/null && python3 -c "import json; r=json.load(open('$tmp/r.json')); print(r['total_cycles'], round(r['energy_pj']['total']/1e6, 1))")
        echo "$m $spec: cycles, energy (µJ) = $c"
    done
done
