#!/usr/bin/env bash
# The main job: fetch the data, build, and run both experiments on the CPU.
#   ./scripts/run-experiments.sh            default configuration (see README for timings)
#   ./scripts/run-experiments.sh --quick    smoke configuration (a few minutes)
# Extra arguments go to both binaries (e.g. --device wgpu, --seeds 5).
# Reports: results/compare/report.md and results/inflate3d/report.md (with results.json and SVG plots).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/fetch-data.sh data
# The same feature set as the test command, so the two share one build of burn.
# `--tests` makes cargo resolve features exactly as `cargo test` does (dev-dependencies
# unified), so this reuses the test build instead of compiling burn a second time.
cargo build --workspace --features lora-core/wgpu --bins --tests
BIN="${CARGO_TARGET_DIR:-target}/debug"
OUT="${LORA_RESULTS:-results}"
"$BIN/compare" --data data --out "$OUT/compare" "$@"
"$BIN/inflate3d" --data data --cache "$OUT/compare" --out "$OUT/inflate3d" "$@"
echo "reports: $OUT/compare/report.md and $OUT/inflate3d/report.md"
