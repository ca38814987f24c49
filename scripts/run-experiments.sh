#!/usr/bin/env bash
# The main job: fetch the data, build, and run the ELPV transfer study on the CPU.
#   ./scripts/run-experiments.sh                   ELPV, default (reduced) protocol: about 90 min
#                                                  on 2 CPU cores; report in results/elpv/
#   ./scripts/run-experiments.sh --profile full    ELPV, full protocol (hours; shard it)
#   ./scripts/run-experiments.sh --device wgpu     any elpv flag passes through
#   ./scripts/run-experiments.sh --quick [ARGS]    smoke runs of all three studies (a few
#                                                  minutes): compare and inflate3d, within
#                                                  Colin27 and Colin27 -> ICBM152 (ARGS go to
#                                                  all three, e.g. --seeds 1), then ELPV on 48
#                                                  images
# Reports: results/<study>/report.md, with runs.jsonl, results.json and SVG plots.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/fetch-data.sh data
# The same feature set as the test command, so the two share one build of burn.
# `--tests` makes cargo resolve features exactly as `cargo test` does (dev-dependencies
# unified), so this reuses the test build instead of compiling burn a second time.
cargo build --workspace --features lora-core/wgpu --bins --tests
BIN="${CARGO_TARGET_DIR:-target}/debug"
OUT="${LORA_RESULTS:-results}"
if [ "${1:-}" = "--quick" ]; then
  shift
  "$BIN/compare" --quick --data data --out "$OUT/compare" "$@"
  "$BIN/inflate3d" --quick --data data --cache "$OUT/compare" --out "$OUT/inflate3d" "$@"
  "$BIN/inflate3d" --quick --test-brain icbm152 --data data --cache "$OUT/compare" \
    --out "$OUT/inflate3d-icbm152" "$@"
  "$BIN/elpv" --profile quick --data data --out "$OUT/elpv"
  echo "reports: $OUT/compare/report.md, $OUT/inflate3d/report.md," \
    "$OUT/inflate3d-icbm152/report.md and $OUT/elpv/report.md"
else
  "$BIN/elpv" --data data --out "$OUT/elpv" "$@"
  echo "report: $OUT/elpv/report.md"
fi
