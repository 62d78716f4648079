"""`bench/gpu_train.py` on the CPU, the way bench/gpu_check.sh runs it on the GPU machine: the
worker loop without Ray on MNIST shards (64 samples of the slice here, 1 epoch, a small hidden
layer), printing and writing the epoch table."""

from __future__ import annotations

import pytest
from hm2bp.pipelines.convert import convert
from hm2bp.tests.conftest import shared_path
from hm2bp.tests.test_gpu_bench import load_script

pytestmark = pytest.mark.shared


def test_gpu_train_script_trains_the_mnist_slice(ray_local, tmp_path):
    shards = tmp_path / "mnist"
    source = shared_path("data", "mnist")
    convert("mnist", out=str(shards), source=source, split="range:train=0-47,val=48-63")
    script = load_script("gpu_train")
    out = tmp_path / "gpu_train.md"
    history = script.main(
        ["--shards", str(shards), "--epochs", "1", "--batch-size", "16", "--device", "cpu",
         "--set", "network.layers.0.size=8", "--out", str(out)]
    )  # fmt: skip
    assert len(history) == 1
    assert 0.0 <= history[0]["val_accuracy"] <= 1.0 and history[0]["samples_per_s"] > 0
    text = out.read_text()
    assert text.startswith("mnist_slice.yaml on ") and "backend cpu" in text  # automatic on CPU
    assert "| epoch | train_accuracy | val_accuracy |" in text
    assert text.strip().splitlines()[-1].startswith("| 1 | ")
