#!/usr/bin/env bash
# The first GPU machine's check, in one command: build with the device's backend, run the
# backend-vs-CPU parity tests (outputs and gradients against flex), time short training runs of
# the CNN and the transfer study's ResNet-29 on the device and on the CPU, and print one table.
#
#   ./scripts/gpu-check.sh                    CUDA (cubecl-cuda's build script downloads LLVM:
#                                             needs network access at build time)
#   DEVICE=wgpu ./scripts/gpu-check.sh        wgpu; on a CPU-only Linux machine it runs on Mesa's
#                                             lavapipe, which is how it is tested here
#   MODELS=cnn STEPS=2 DEVICE=wgpu ./scripts/gpu-check.sh    a short version
#
# What runs on which device is said in the README's Backends section. There are no CUDA-specific
# parity tests yet: with DEVICE=cuda the parity step runs the wgpu parity tests only when a
# Vulkan driver is present, and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE="${DEVICE:-cuda}"
MODELS="${MODELS:-cnn resnet29}"
STEPS="${STEPS:-5}"
case "$DEVICE" in
  cuda|wgpu) FEATURES="lora-core/$DEVICE" ;;
  *) echo "gpu-check: DEVICE=$DEVICE: use cuda or wgpu" >&2; exit 2 ;;
esac
./scripts/fetch-data.sh "${LORA_DATA:-data}" >/dev/null
cargo build --workspace --features "$FEATURES" --bins --tests
STEP="${CARGO_TARGET_DIR:-target}/debug/step"

parity="not run (no Vulkan driver)"
if [ "$DEVICE" = wgpu ] || ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json >/dev/null 2>&1; then
  if cargo test --workspace --features "$FEATURES" --test wgpu_parity >/tmp/gpu-check-parity.log 2>&1; then
    parity="passed ($(grep -c '^test .* ok$' /tmp/gpu-check-parity.log) tests)"
  else
    parity="FAILED (see /tmp/gpu-check-parity.log)"
  fi
fi

rows=()
for model in $MODELS; do
  for method in full tucker2; do
    for dev in "$DEVICE" cpu; do
      line=$("$STEP" --model "$model" --method "$method" --form auto --steps "$STEPS" --warmup 1 --device "$dev") ||
        { echo "gpu-check: step --model $model --method $method --device $dev failed" >&2; exit 1; }
      rows+=("$model $method $dev $(echo "$line" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["step_ms_median"]))')")
    done
  done
done

echo
echo "| check | result |"
echo "|---|---|"
echo "| build with $FEATURES | ok |"
echo "| $DEVICE-vs-CPU parity tests | $parity |"
for ((i = 0; i < ${#rows[@]}; i += 2)); do
  read -r model method dev ms <<<"${rows[i]}"
  read -r _ _ _ cpu <<<"${rows[i + 1]}"
  echo "| $model $method step, median of $STEPS | $dev $ms ms, cpu $cpu ms, cpu/$dev $(python3 -c "print(f'{$cpu/$ms:.2f}')") |"
done
case "$parity" in FAILED*) exit 1 ;; esac
