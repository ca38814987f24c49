#!/usr/bin/env bash
# Op by op: the bench CNN's conv forward, input and weight gradients, batch norm, max pool and
# ReLU, this project's (benches' `ops` binary) and PyTorch's (scripts/peer_ops.py), run
# alternately in one run with the same thread count. Writes the raw lines to
# benches/peer/<date>-<host>-ops.jsonl and prints a table with ratios (scripts/op_report.py).
#
#   ./scripts/op-profile.sh              2 rounds, all cores
#   ROUNDS=3 THREADS=2 ./scripts/op-profile.sh
#
# Uses the venv of scripts/peer-bench.sh (~/.cache/lora-peer/venv, PEER_VENV), made there.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-$(nproc)}"
ROUNDS="${ROUNDS:-2}"
VENV="${PEER_VENV:-$HOME/.cache/lora-peer/venv}"
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "op-profile: no torch in $VENV; run ./scripts/peer-bench.sh once to make the venv" >&2
  exit 1
fi
cargo build --workspace --features lora-core/wgpu --bins --tests
OPS="${CARGO_TARGET_DIR:-target}/debug/ops"
mkdir -p benches/peer
OUT="benches/peer/$(date -u +%F)-$(hostname -s)-ops.jsonl"
: > "$OUT"
export RAYON_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS"
"$VENV/bin/python" scripts/cpu_info.py | sed 's/^/{"cpu": /; s/$/}/' >> "$OUT"
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round: ours" >&2
  "$OPS" | sed "s/^/{\"round\": $round, \"line\": /; s/\$/}/" >> "$OUT"
  echo "round $round: torch" >&2
  "$VENV/bin/python" scripts/peer_ops.py --threads "$THREADS" |
    sed "s/^/{\"round\": $round, \"line\": /; s/\$/}/" >> "$OUT"
done
"$VENV/bin/python" scripts/cpu_info.py | sed 's/^/{"cpu_after": /; s/$/}/' >> "$OUT"
python3 scripts/op_report.py "$OUT"
