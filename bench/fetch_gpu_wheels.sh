#!/usr/bin/env bash
# Download, here, the wheels that bench/gpu_check.sh installs on the lent GPU machine, which
# reaches no package registry. Run from the repository root:
#
#     bash bench/fetch_gpu_wheels.sh          # -> .whl/ (ignored by git, carried by the device call)
#
# The GPU machine has Python 3.12 (x86_64) with torch 2.11, Triton 3.6, numpy, matplotlib, h5py,
# scipy, tqdm, requests, tensorboard and torchvision, but neither SpikingJelly nor snnTorch. Of their
# declared needs only loguru is missing there and imported by SpikingJelly's neurons (SciencePlots
# is only imported by its plotting helpers). All three are pure-Python wheels.
set -euo pipefail

DEST="${1:-.whl}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$DEST"
# One version of each: two versions of one package stop `pip install --no-index` on the device.
rm -f "$DEST"/spikingjelly-*.whl "$DEST"/snntorch-*.whl "$DEST"/loguru-*.whl
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any \
    -d "$DEST" 'spikingjelly>=2.0,<2.1' 'snntorch>=1.0,<1.1' 'loguru>=0.7,<1'
ls -l "$DEST"
