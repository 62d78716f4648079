"""The worker loop without Ray (`run_local`, what the GPU machine runs): checkpoints, resume,
refusals, and evaluation of its checkpoints."""

from pathlib import Path

import pytest
import torch
from hm2bp.orchestration.checkpoint import (
    TrainingState,
    best_epochs,
    latest_checkpoint,
    load_record,
)
from hm2bp.orchestration.config import ConfigError
from hm2bp.orchestration.evaluate import evaluate
from hm2bp.orchestration.worker import run_local
from hm2bp.pipelines.manifest import read_manifest
from hm2bp.pipelines.source import index_each
from hm2bp.tests.conftest import on_a_terminal
from hm2bp.tests.small_run import convert_small_digits, small_config


@pytest.fixture(scope="module")
def shards(ray_local, tmp_path_factory):
    return convert_small_digits(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="module")
def trained(shards, tmp_path_factory):
    """Two epochs of one local worker: `(root folder, per-epoch metrics)`."""
    root = tmp_path_factory.mktemp("local")
    return root, run_local(small_config(shards, root, "scaling.workers=1"), shards, device="cpu")


def test_run_local_reports_every_metric_and_checkpoints_each_epoch(trained):
    root, history = trained
    assert len(history) == 2
    assert {"train_accuracy", "train_loss", "val_accuracy", "val_loss", "fc0/mean_spikes",
            "fc0/silent_fraction", "output/mean_spikes", "output/silent_fraction",
            "lateral_guard_triggers", "lr", "workers", "global_batch", "samples_per_s",
            "epoch_seconds",
            "peak_memory_mb"} == set(history[-1])  # fmt: skip
    assert history[-1]["workers"] == 1
    assert history[-1]["global_batch"] == 5  # 400 samples in 80 steps of 5
    assert history[-1]["val_accuracy"] > 0.3  # ten classes: chance is 0.1
    state = TrainingState.load(latest_checkpoint(f"{root}/runs/demo"))
    assert state.record.epochs == 2 and state.record.history == history
    assert state.record.nodes == [["local"], ["local"]]  # each epoch's node of each rank
    assert sum(map(sum, state.record.confusion)) == 100  # every validation sample, once
    assert state.record.trained_on == {"device": "cpu", "backend": "cpu"}
    assert set(state.model) == {"layers.0.weight", "layers.1.weight"} and state.boosting is None
    kept = {"checkpoint_epoch_0002", f"checkpoint_epoch_000{best_epochs(history)}"}  # latest, best
    assert {p.name for p in Path(root, "runs", "demo").iterdir()} == kept


def test_a_checkpoint_evaluates_on_its_own(trained, shards):
    root, history = trained
    result = evaluate(latest_checkpoint(f"{root}/runs/demo"), shards, device="cpu")
    assert result.samples == 100 and result.accuracy == pytest.approx(history[-1]["val_accuracy"])
    assert result.trained_on == {"device": "cpu", "backend": "cpu"}
    train = evaluate(latest_checkpoint(f"{root}/runs/demo"), shards, split="train")
    assert train.samples == 400 and train.split == "train"


def test_refusals_name_the_mismatch(trained, shards, ray_local):
    from hm2bp.pipelines.convert import convert

    root, _ = trained
    other = small_config(shards, root, "scaling.workers=1", "network.layers.0.size=16")
    with pytest.raises(ConfigError, match=r"network.layers.0.size: got 16 \(run 'demo' was "):
        run_local(other, shards, device="cpu")
    unfit = small_config(shards, root, "data.T=100")
    with pytest.raises(ConfigError, match=r"data.T: got 100 \(the shards have T=50\)"):
        run_local(unfit, shards, device="cpu")
    coarse = str(root / "coarse")
    convert("digits", out=coarse, T=20, split="range:train=0-9,val=10-19")
    with pytest.raises(ConfigError, match=r"data.T: got 50 \(the shards have T=20\)"):
        evaluate(latest_checkpoint(f"{root}/runs/demo"), coarse)


def test_progress_shows_on_a_terminal_only(trained, shards):
    """Shard verification before training, evaluation and indexing a source show a bar on a
    terminal; without one (capsys's stderr is not a terminal) nothing."""
    from hm2bp.orchestration.preflight import check_shards

    root, _ = trained
    with on_a_terminal() as screen:
        check_shards(small_config(shards, root), read_manifest(shards))
        evaluate(latest_checkpoint(f"{root}/runs/demo"), shards)
        index_each(["a", "b"], lambda unit: (), skip_bad=False)
    shown = screen.getvalue()
    assert "verify shards" in shown and "evaluate val" in shown and "index" in shown


def test_no_progress_without_a_terminal(trained, shards, capsys):
    root, _ = trained
    evaluate(latest_checkpoint(f"{root}/runs/demo"), shards)
    index_each(["a", "b"], lambda unit: (), skip_bad=False)
    assert capsys.readouterr().err == ""


def test_a_rerun_with_more_epochs_resumes_from_the_checkpoint(trained, shards):
    root, history = trained
    longer = small_config(shards, root, "scaling.workers=1", "train.epochs=3")
    resumed = run_local(longer, shards, device="cpu")
    assert len(resumed) == 3 and resumed[:2] == history  # epochs 1-2 came from the checkpoint
    assert load_record(latest_checkpoint(f"{root}/runs/demo")).epochs == 3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_gpu_checkpoint_evaluates_on_the_cpu(shards, tmp_path):
    history = run_local(small_config(shards, tmp_path, "train.epochs=1"), shards, device="cuda")
    result = evaluate(latest_checkpoint(f"{tmp_path}/runs/demo"), shards, device="cpu")
    assert result.trained_on["device"].startswith("cuda") and result.device == "cpu"
    assert result.accuracy == pytest.approx(history[-1]["val_accuracy"], abs=0.03)


def test_the_cnn_row_reencodes_warped_pixels_each_epoch(ray_local, tmp_path):
    """A small CNN on digits kept with raw pixels: training batches are re-encoded (fresh draws
    after the reference's warp, spec 2.2); validation uses the stored spikes."""
    import numpy as np
    import pyarrow.parquet as pq
    import torch
    from hm2bp.orchestration.batches import Decoder
    from hm2bp.pipelines.convert import convert
    from hm2bp.pipelines.manifest import read_manifest

    shards = str(tmp_path / "pixels")
    convert("digits", out=shards, T=50, split="range:train=0-99,val=100-139", keep_pixels=True)
    config = small_config(
        shards,
        tmp_path,
        "scaling.workers=1",
        "train.epochs=1",
        "data.reencode=true",
        "data.augment=true",
        "network.input_shape=[1, 8, 8]",
        "network.layers=[{kind: conv, size: 4, kernel: 3, threshold: 2, init_range: 0.5}, "
        "{kind: pool, threshold: 1}, {kind: output, size: 10, threshold: 2}]",
    )
    manifest = read_manifest(shards)
    rows = pq.read_table(f"{shards}/{manifest.shards[0].file}").slice(0, 6)
    decode = Decoder(config, manifest, torch.device("cpu"))
    one, two, stored = (
        decode(rows, rng)[0].reshape(50, 6, 64).numpy()
        for rng in (np.random.default_rng(1), np.random.default_rng(2), None)
    )
    assert set(np.unique(one)) <= {0, 1} and not one[0].any()  # no spike at t = 0 (spec 2.1)
    assert not np.array_equal(one, two)  # fresh draws and warps
    assert 0.5 < one.sum() / stored.sum() < 2  # the same rates, give or take the warp
    history = run_local(config, shards, device="cpu")
    assert len(history) == 1 and 0 <= history[0]["val_accuracy"] <= 1
    assert {"conv0/mean_spikes", "pool0/silent_fraction"} <= set(history[0])


def test_the_loop_imports_without_ray_or_mlflow():
    """The GPU machine has torch, Triton, pyarrow, pyyaml, tqdm and matplotlib, but no ray, mlflow,
    tonic or librosa: `run_local` and `evaluate` must import without them."""
    import subprocess
    import sys

    code = (
        "import sys, hm2bp.orchestration.worker, hm2bp.orchestration.evaluate; "
        "print([m for m in ('ray', 'mlflow', 'tonic', 'librosa') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_replicas_whose_weights_differ_stop_the_run():
    from types import SimpleNamespace

    from hm2bp.orchestration.worker import _replica_digests, weights_digest

    model = torch.nn.Linear(3, 2)
    own = weights_digest(model.state_dict())
    agreeing = SimpleNamespace(gather=lambda value: [value, value])
    assert _replica_digests(model, agreeing) == [own, own]
    differing = SimpleNamespace(gather=lambda value: [value, "0" * 64])
    with pytest.raises(RuntimeError, match="weights differ after the epoch"):
        _replica_digests(model, differing)
