#!/usr/bin/env bash
# Every example model through the JIT under valgrind memcheck, with microkernels on and off,
# at -O0 and -O2, on one and two threads, quantized to int8 (also without microkernels) and
# in bf16 mixed precision (see docs/testing.md).
# valgrind's virtual CPU has no AVX-512, so the runtime's AVX2 microkernels (f32 and int8)
# are the ones checked; the generated code is the same Cranelift code either way. Exits
# non-zero on the first memcheck error.
# Usage: scripts/memcheck.sh [PATTERN]   (only the runs whose "model flags" contain PATTERN)
set -euo pipefail
cd "$(dirname "$0")/.."
pattern=${1:-}
cargo build --release --quiet
out=$(mktemp -d)
runs=0
for spec in lenet5:image mlp:x lstm:x transformer:x mobilenet_v2:image resnet18:image; do
    model=${spec%%:*}; input=${spec##*:}
    for flags in "-O2" "-O0" "-O2 --ukernels off" "-O2 --threads 2" "-O2 --quantize int8" "-O2 --quantize int8 --threads 2" "-O2 --quantize int8 --ukernels off" "-O2 --quantize bf16"; do
        if [[ "$model $flags" != *"$pattern"* ]]; then continue; fi
        # shellcheck disable=SC2086
        valgrind --error-exitcode=99 --leak-check=no --quiet \
            target/release/nnc run "examples/$model.nn" --random-weights 1 --input "$input=random:1" $flags --output-dir "$out/$model" > /dev/null 2> "$out/stderr" \
            || { cat "$out/stderr"; exit 1; }
        runs=$((runs + 1))
        echo "$model $flags: 0 errors"
    done
done
echo "memcheck: $runs runs, 0 errors"
