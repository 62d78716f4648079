"""The worker loop without Ray (`run_local`, what the GPU machine runs), resume, and evaluation of
its checkpoints on another backend choice."""

import pytest
import torch
from hm2bp.orchestration.checkpoint import latest_checkpoint, load_state
from hm2bp.orchestration.config import ConfigError
from hm2bp.orchestration.evaluate import evaluate
from hm2bp.orchestration.worker import run_local
from hm2bp.tests.small_run import convert_small_digits, small_config


@pytest.fixture(scope="module")
def shards(ray_local, tmp_path_factory):
    return convert_small_digits(tmp_path_factory.mktemp("digits"))


def test_run_local_trains_checkpoints_and_resumes_on_rerun(shards, tmp_path):
    config = small_config(shards, tmp_path, "scaling.workers=1")
    first = run_local(config, shards, device="cpu")
    assert len(first) == 2
    assert {"train_accuracy", "val_accuracy", "val_loss", "fc0/mean_spikes",
            "output/silent_fraction", "lateral_guard_triggers", "samples_per_s",
            "epoch_seconds", "peak_memory_mb", "lr"} <= set(first[-1])  # fmt: skip
    assert first[-1]["val_accuracy"] > 0.3  # ten classes: chance is 0.1
    folder = latest_checkpoint(f"{tmp_path}/runs/demo")
    state = load_state(folder)
    assert state["epoch"] == 2 and state["history"] == first
    assert sum(map(sum, state["confusion"])) == 100  # every validation sample, once

    longer = small_config(shards, tmp_path, "scaling.workers=1", "train.epochs=3")
    resumed = run_local(longer, shards, device="cpu")
    assert len(resumed) == 3 and resumed[:2] == first  # epochs 1-2 came from the checkpoint

    # A checkpoint evaluates on its own: its config and weights travel with it.
    result = evaluate(latest_checkpoint(f"{tmp_path}/runs/demo"), shards, device="cpu")
    assert result.samples == 100 and result.accuracy == pytest.approx(resumed[-1]["val_accuracy"])
    assert result.trained_on == {"device": "cpu", "backend": "reference"}


def test_resume_refuses_a_different_network(shards, tmp_path):
    run_local(small_config(shards, tmp_path, "scaling.workers=1", "train.epochs=1"), shards, "cpu")
    other = small_config(shards, tmp_path, "scaling.workers=1", "network.layers.0.size=16")
    with pytest.raises(ValueError, match="trained with a different `network` section"):
        run_local(other, shards, device="cpu")


def test_run_local_refuses_shards_that_do_not_fit(shards, tmp_path):
    config = small_config(shards, tmp_path, "data.T=100", "network.input_shape=[1, 8, 8]")
    with pytest.raises(ConfigError, match="data.T: got 100 \\(the shards have T=40\\)"):
        run_local(config, shards, device="cpu")


def test_evaluate_refuses_shards_of_other_classes(shards, tmp_path, ray_local):
    from hm2bp.pipelines.convert import convert

    config = small_config(shards, tmp_path, "scaling.workers=1", "train.epochs=1")
    run_local(config, shards, device="cpu")
    checkpoint = latest_checkpoint(f"{tmp_path}/runs/demo")
    other = str(tmp_path / "other")
    convert("digits", out=other, T=20, split="range:train=0-9,val=10-19")
    with pytest.raises(ConfigError, match="data.T: got 40 \\(the shards have T=20\\)"):
        evaluate(checkpoint, other)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
def test_a_gpu_checkpoint_evaluates_on_the_cpu(shards, tmp_path):
    config = small_config(shards, tmp_path, "scaling.workers=1", "train.epochs=1")
    history = run_local(config, shards, device="cuda")
    result = evaluate(latest_checkpoint(f"{tmp_path}/runs/demo"), shards, device="cpu")
    assert result.trained_on["device"].startswith("cuda") and result.device == "cpu"
    assert result.accuracy == pytest.approx(history[-1]["val_accuracy"], abs=0.02)
