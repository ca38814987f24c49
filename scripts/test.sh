#!/usr/bin/env bash
# Run every test of the workspace, including the wgpu-vs-CPU parity tests, after fetching the data
# the tests read (./scripts/fetch-data.sh).
#
# wgpu needs a Vulkan driver. On a machine without a GPU this installs Mesa's lavapipe (a CPU
# Vulkan implementation) when apt-get is available and no Vulkan driver is present.
set -euo pipefail
cd "$(dirname "$0")/.."

have_vulkan_icd() {
  ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json >/dev/null 2>&1
}
if ! have_vulkan_icd; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "no Vulkan driver found: installing mesa-vulkan-drivers (lavapipe) for the wgpu tests"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers >/dev/null
  else
    echo "warning: no Vulkan driver and no apt-get; the wgpu parity tests will fail" >&2
  fi
fi

# The backbone's exactness test reads the fetched face-api weights (and fails, not skips, without
# them); fetching is idempotent and takes seconds once the data is there.
./scripts/fetch-data.sh "${LORA_DATA:-data}"
# Without XDG_RUNTIME_DIR, libwayland prints a warning each time Mesa probes for a display while
# the wgpu tests enumerate adapters; an empty private dir silences it (the binaries do the same,
# experiments::cli::quiet_headless_wgpu).
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/lora-xdg-runtime"
  mkdir -p -m 700 "$XDG_RUNTIME_DIR"
fi
cargo test --workspace --features lora-core/wgpu "$@"
