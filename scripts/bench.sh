#!/usr/bin/env bash
# Run every benchmark and write benches/REPORT.md (+ benches/train.svg).
#   ./scripts/bench.sh                 all benches on the CPU (burn flex)
#   ./scripts/bench.sh train layers    only these bench targets (the report uses what exists)
# The benches build in the dev profile (dependencies at opt-level 3, the benches crate too)
# with the test command's feature set, so they reuse its build of burn rather than compiling
# a release build. Close other work first: the numbers are wall-clock.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-target}"
# Absolute: cargo runs each bench from its package's folder, so a relative BENCH_OUT would land
# under benches/ instead of where the report reads it.
mkdir -p "$TARGET"
TARGET="$(cd "$TARGET" && pwd)"
export BENCH_OUT="$TARGET/bench-extra"
mkdir -p "$BENCH_OUT"
BENCHES=("$@")
[ ${#BENCHES[@]} -eq 0 ] && BENCHES=(recompose train infer layers calibrate memory)
# Build first, so that the load readings and the timings do not include compilation.
for b in "${BENCHES[@]}"; do
  cargo bench --workspace --features lora-core/wgpu --profile dev --bench "$b" --no-run
done
cut -d' ' -f1-3 /proc/loadavg > "$BENCH_OUT/load.txt" 2>/dev/null || true
for b in "${BENCHES[@]}"; do
  cargo bench --workspace --features lora-core/wgpu --profile dev --bench "$b"
done
cut -d' ' -f1-3 /proc/loadavg >> "$BENCH_OUT/load.txt" 2>/dev/null || true
python3 scripts/bench_report.py "$TARGET/criterion" "$BENCH_OUT" benches
