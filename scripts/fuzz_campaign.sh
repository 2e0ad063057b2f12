#!/usr/bin/env bash
# A coverage-guided fuzzing campaign over every target in fuzz/ (see docs/testing.md).
# Usage: scripts/fuzz_campaign.sh [SCALE] [TARGET...]
#   SCALE multiplies each target's time (default 1: the recorded campaign, about 1 h 50 min);
#   TARGETs restrict it to some targets.
# The targets are built once (cargo fuzz, nightly, AddressSanitizer) and the binaries copied
# aside, so editing the tree during a campaign cannot change what runs. Each target runs on
# one core, seeded from the committed fuzz/corpus/<target> and growing the uncommitted
# fuzz/corpus-full/<target>; crashes land in fuzz/artifacts/<target>/; the statistics (lines
# starting `stat::`) go to fuzz/campaign-logs/<target>.log. docs/testing.md says how the
# committed seeds are refreshed from corpus-full.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
scale=${1:-1}
shift || true
cargo +nightly fuzz build
bins=$(mktemp -d)
cp target/x86_64-unknown-linux-gnu/release/{npy,safetensors,isa_decode,accel_config,ir_text,source_pipeline,differential} "$bins/"
mkdir -p campaign-logs
# target:seconds: the fast readers get less time; the whole pipeline and the differential
# check (each run compiles a model several times) get more.
for spec in npy:300 safetensors:300 isa_decode:300 accel_config:900 ir_text:900 source_pipeline:1800 differential:1800; do
    target=${spec%%:*}
    if [ $# -gt 0 ] && [[ " $* " != *" $target "* ]]; then continue; fi
    seconds=$(( ${spec##*:} * scale ))
    mkdir -p "corpus/$target" "corpus-full/$target" "artifacts/$target"
    echo "== $target for ${seconds}s"
    "$bins/$target" -artifact_prefix="artifacts/$target/" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 \
        -print_final_stats=1 "corpus-full/$target" "corpus/$target" > "campaign-logs/$target.log" 2>&1 \
        || echo "   $target stopped with a finding: see campaign-logs/$target.log"
    grep -E '^stat::(number_of_executed_units|new_units_added)|^Done' "campaign-logs/$target.log" || true
done
