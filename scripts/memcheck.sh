#!/usr/bin/env bash
# Every example model through the JIT under valgrind memcheck, with microkernels on and off,
# at -O0 and -O2, on one and two threads (see docs/testing.md). valgrind's virtual CPU has
# no AVX-512, so the runtime's AVX2 microkernels are the ones checked; the generated code is
# the same Cranelift code either way. Exits non-zero on the first memcheck error.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
out=$(mktemp -d)
runs=0
for spec in lenet5:image mlp:x lstm:x transformer:x mobilenet_v2:image resnet18:image; do
    model=${spec%%:*}; input=${spec##*:}
    for flags in "-O2" "-O0" "-O2 --ukernels off" "-O2 --threads 2"; do
        # shellcheck disable=SC2086
        valgrind --error-exitcode=99 --leak-check=no --quiet \
            target/release/nnc run "examples/$model.nn" --random-weights 1 --input "$input=random:1" $flags --output-dir "$out/$model" > /dev/null
        runs=$((runs + 1))
        echo "$model $flags: 0 errors"
    done
done
echo "memcheck: $runs runs, 0 errors"
