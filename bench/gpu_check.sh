#!/usr/bin/env bash
# The whole GPU check in one call: the CUDA tests, the benchmark against SpikingJelly and snnTorch,
# and a short training run, on a lent GPU machine that reaches no registry (docs/gpu.md).
#
#   bash bench/gpu_check.sh prepare   # here, with the project venv, Ray and ../shared: stages
#                                     # .whl/ (wheels) and .gpu/ (golden set, MNIST slice, shards)
#   bash bench/gpu_check.sh run       # there: carry [".whl", ".gpu"]; results under $OUT
#
# `run` installs nothing from the network and does not pip-install the project: the wheels go to a
# user folder, and hm2bp is imported through a folder of symlinks (hm2bp/kernels -> kernels, ...).
# It fails, rather than skips, when the staged data are missing (CI=true for the tests).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
STAGE=.gpu
WHEELS=.whl

prepare() {
    set -e
    local shared="${HM2BP_SHARED_DIR:-../shared}" python="${PYTHON:-.venv/bin/python}"
    for need in golden/cnn_mnist data/mnist; do
        [ -d "$shared/$need" ] || { echo "prepare: $shared/$need not found (set HM2BP_SHARED_DIR)" >&2; exit 1; }
    done
    rm -rf "$STAGE" && mkdir -p "$STAGE/shared/data"
    cp -r "$shared/golden" "$STAGE/shared/golden"
    cp -r "$shared/data/mnist" "$STAGE/shared/data/mnist"
    bash bench/fetch_gpu_wheels.sh "$WHEELS"
    # 2,500 MNIST samples rate-coded at T = 400 (about 22 MB of shards): Ray is not on the GPU.
    "${HM2BP:-.venv/bin/hm2bp}" convert mnist --source "$shared/data/mnist" \
        --out "$STAGE/shards/mnist" --split range:train=0-1999,val=2000-2499
    du -sh "$STAGE" "$WHEELS"
    echo 'prepared: now run on the device: carry [".whl", ".gpu"], command "bash bench/gpu_check.sh run"'
}

run() {
    local out="${OUT:-$STAGE/out}" python="${PYTHON:-python3}" failed=0
    mkdir -p "$out"
    for need in "$STAGE/shared/golden/cnn_mnist" "$STAGE/shared/data/mnist" \
        "$STAGE/shards/mnist/manifest.json"; do
        [ -e "$need" ] || { echo "run: $need missing: run 'bash bench/gpu_check.sh prepare' here and carry .gpu" >&2; exit 1; }
    done
    ls "$WHEELS"/spikingjelly-*.whl "$WHEELS"/snntorch-*.whl >/dev/null ||
        { echo "run: wheels missing in $WHEELS: run prepare and carry .whl" >&2; exit 1; }
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/hm2bp_site "$WHEELS"/*.whl || exit 1
    mkdir -p /tmp/hm2bp_path/hm2bp
    for room in kernels pipelines orchestration configs tests; do
        ln -sfn "$ROOT/$room" "/tmp/hm2bp_path/hm2bp/$room"
    done
    export PYTHONPATH="/tmp/hm2bp_path:/tmp/hm2bp_site${PYTHONPATH:+:$PYTHONPATH}"
    export HM2BP_SHARED_DIR="$ROOT/$STAGE/shared" CI=true PYTHONUNBUFFERED=1
    {
        nvidia-smi -L
        "$python" -c 'import sys, torch, triton; print(sys.version.split()[0], torch.__version__, triton.__version__, torch.cuda.get_device_name())'
    } 2>&1 | tee "$out/env.txt"

    timeout 90 "$python" -m pytest -m gpu -q -p no:cacheprovider tests/test_triton_*.py \
        tests/test_sparse_grad.py \
        2>&1 | tee "$out/gpu_tests.log" || failed=1
    timeout 120 "$python" bench/gpu_bench.py --out "$out/gpu_bench.md" \
        2>&1 | tee "$out/gpu_bench.log" || failed=1
    timeout 30 "$python" bench/gpu_profile.py --out "$out/gpu_profile.txt" || failed=1
    timeout 60 "$python" bench/gpu_train.py --shards "$STAGE/shards/mnist" --epochs 3 \
        --out "$out/gpu_train.md" 2>&1 | tee "$out/gpu_train.log" || failed=1
    exit "$failed"
}

case "${1:-}" in
prepare) prepare ;;
run) run ;;
*) echo "usage: bash bench/gpu_check.sh prepare|run" >&2; exit 2 ;;
esac
