#!/usr/bin/env bash
# Regenerate the charts committed under docs/charts/ (README and docs/findings.md show them).
# Usage: scripts/charts.sh [path/to/nnc]   (default: a release build, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
nnc=${1:-target/release/nnc}
[ -x "$nnc" ] || cargo build --release
out=docs/charts
mkdir -p "$out"
"$nnc" compare examples/resnet18.nn --random-weights 1 --input image=random:1 --plot "$out/compare_resnet18.svg"
"$nnc" sweep examples/resnet18.nn --random-weights 1 --quantize int8 \
  --vary array=16x16,32x32,64x64,128x128,256x256 --vary dataflow=ws,os \
  --vary scratchpad_kib=256,1024,4096 --plot "$out/pareto_resnet18.svg" --output /tmp/nnc_sweep_resnet18.csv
"$nnc" sim examples/resnet18.nn --random-weights 1 --input image=random:1 --plot "$out/sim_resnet18_edge.svg" > /dev/null
"$nnc" sim examples/resnet18.nn --random-weights 1 --input image=random:1 --quantize int8 --config tpu-v1 \
  --roofline "$out/roofline_resnet18_tpu_v1.svg" > /dev/null
