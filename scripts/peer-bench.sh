#!/usr/bin/env bash
# Side by side: this project's training step and PyTorch's (torch 2.15.0, peft 0.21.2,
# lycoris-lora 4.1.3), run alternately in the same run, with the same thread count, on the same
# shapes. Writes the raw lines to benches/peer/<date>-<host>.jsonl and a section with ratios,
# one per CPU model, into benches/REPORT.md.
#
#   ./scripts/peer-bench.sh                  both models, 2 rounds
#   ROUNDS=3 MODELS="cnn" ./scripts/peer-bench.sh
#   RESNET_SIZE=112 ./scripts/peer-bench.sh  the ResNet-29 at another input size
#
# The venv lives in ~/.cache/lora-peer/venv (PEER_VENV), made once from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-$(nproc)}"
ROUNDS="${ROUNDS:-2}"
MODELS="${MODELS:-cnn resnet29}"
RESNET_SIZE="${RESNET_SIZE:-150}"
STEPS="${STEPS:-10}"
VENV="${PEER_VENV:-$HOME/.cache/lora-peer/venv}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import torch, peft, lycoris" 2>/dev/null; then
  echo "peer-bench: setting up $VENV (torch 2.15.0, peft 0.21.2, lycoris-lora 4.1.3; ~6 GB, once)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch==2.15.0 peft==0.21.2 lycoris-lora==4.1.3
fi
# The same build as the test command (see README), so no second build of burn. Set
# CARGO_TARGET_DIR as for the tests (CI and .ci/run use ~/.cache/lora-target).
cargo build --workspace --features lora-core/wgpu --bins --tests
STEP="${CARGO_TARGET_DIR:-target}/debug/step"
mkdir -p benches/peer
OUT="benches/peer/$(date -u +%F)-$(hostname -s).jsonl"
: > "$OUT"
export RAYON_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS" LYCORIS_KERNEL_BACKEND=torch
"$VENV/bin/python" scripts/cpu_info.py | sed 's/^/{"cpu": /; s/$/}/' >> "$OUT"

# case | our command's flags | peer flags (one side may be empty)
cases() {
  local m="$1" size="" steps="$STEPS"
  if [ "$m" = resnet29 ]; then size="--size $RESNET_SIZE"; steps=$(( STEPS < 5 ? STEPS : 5 )); fi
  local common="--model $m $size --steps $steps --warmup 2"
  echo "$m full|$common --method full|$common --method full"
  echo "$m head|$common --method head|$common --method head"
  for form in weight bypass auto; do
    echo "$m locon-r4 ours-$form|$common --method locon --form $form --rank 4|"
    echo "$m tucker2-r4 ours-$form|$common --method tucker2 --form $form --rank 4|"
    echo "$m cp-r4 ours-$form|$common --method cp --form $form --rank 4|"
  done
  echo "$m locon-r4 peft|$common --method peft-locon --rank 4|x"
  echo "$m tucker2-r4 lycoris|$common --method lycoris-tucker --rank 4|x"
  echo "$m tucker2-r4 lycoris-bypass|$common --method lycoris-tucker --rank 4 --lycoris-bypass|x"
}

for round in $(seq 1 "$ROUNDS"); do
  for m in $MODELS; do
    while IFS='|' read -r name ours peer; do
      if [ "$peer" = x ]; then peer="$ours"; ours=""; fi
      if [ -n "$ours" ]; then
        echo "round $round: $name (burn)" >&2
        line=$("$STEP" $ours) || { echo "peer-bench: step $ours failed" >&2; exit 1; }
        echo "{\"round\": $round, \"case\": \"$name\", \"side\": \"burn\", \"result\": $line}" >> "$OUT"
      fi
      if [ -n "$peer" ]; then
        echo "round $round: $name (torch)" >&2
        line=$("$VENV/bin/python" scripts/peer_bench.py $peer --threads "$THREADS") ||
          { echo "peer-bench: peer_bench.py $peer failed" >&2; exit 1; }
        echo "{\"round\": $round, \"case\": \"$name\", \"side\": \"torch\", \"result\": $line}" >> "$OUT"
      fi
    done < <(cases "$m")
  done
done
"$VENV/bin/python" scripts/cpu_info.py | sed 's/^/{"cpu_after": /; s/$/}/' >> "$OUT"
python3 scripts/peer_report.py "$OUT" benches/REPORT.md
echo "peer-bench: $OUT, section written to benches/REPORT.md"
