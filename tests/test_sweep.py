"""`hm2bp sweep`: sweep files validated before any trial, trial concurrency from the cluster's
resources, and a one-trial sweep on a local Ray read back from MLflow as a parent run and its
child (a whole grid runs on the three-node cluster of `test_multinode.py`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from hm2bp.orchestration.config import config_from_dict
from hm2bp.orchestration.schema import ConfigError
from hm2bp.orchestration.search_space import param_space
from hm2bp.orchestration.sweep import concurrency, load_sweep
from hm2bp.tests.conftest import PROJECT_ROOT
from mlflow import MlflowClient


def _write_sweep(folder: Path, search: dict, **settings) -> Path:
    shutil.copy(PROJECT_ROOT / "configs" / "demo.yaml", folder / "demo.yaml")
    path = folder / "sweep.yaml"
    path.write_text(
        yaml.safe_dump({"experiment": "demo.yaml", "name": "lr", "search": search, **settings})
    )
    return path


@pytest.mark.parametrize(
    "path", sorted((PROJECT_ROOT / "configs").glob("*_sweep.yaml")), ids=lambda p: p.name
)
def test_shipped_sweeps_load_and_open_with_their_command(path):
    sweep = load_sweep(path)
    assert path.read_text().startswith(f"# hm2bp sweep configs/{path.name}")
    assert set(param_space(sweep.search)) == set(sweep.search)


def test_a_misspelt_path_and_a_bad_value_fail_before_any_trial(tmp_path):
    path = _write_sweep(
        tmp_path,
        {"optimizer.lrr": {"grid": [0.1]}, "train.batch_size": {"choice": [8, 0]}},
    )
    with pytest.raises(ConfigError) as err:
        load_sweep(path)
    text = str(err.value)
    assert "search.optimizer.lrr=0.1" in text
    assert "search.train.batch_size=0" in text and "train.batch_size" in text


def test_malformed_samplers_are_named_with_the_known_ones(tmp_path):
    path = _write_sweep(
        tmp_path,
        {"optimizer.lr": {"loguniform": [0.1, 0.01]}, "seed": {"normal": [0, 1]}},
    )
    with pytest.raises(ConfigError) as err:
        load_sweep(path)
    text = str(err.value)
    assert (
        "search.optimizer.lr: loguniform takes [low, high] of finite numbers with low < high"
        in text
    )
    assert "search.seed: unknown sampler 'normal'" in text and "grid" in text


def test_settings_are_checked_like_experiments(tmp_path):
    path = _write_sweep(tmp_path, {"seed": {"grid": [0, 1]}}, mode="maximum", num_samples=0)
    with pytest.raises(ConfigError, match=r"mode.*max, min") as err:
        load_sweep(path)
    assert "num_samples" in str(err.value)


def test_set_overrides_reach_the_base_experiment(tmp_path):
    path = _write_sweep(tmp_path, {"seed": {"grid": [0, 1]}})
    sweep = load_sweep(path, ["train.epochs=3"])
    assert sweep.config.train.epochs == 3


@pytest.mark.parametrize(
    ("scaling", "resources", "expected"),
    [
        ({"workers": 2}, {"CPU": 2}, 1),  # 0.5 CPU per worker + driver; one CPU kept for Ray Data
        ({"workers": 1, "cpus_per_worker": 1}, {"CPU": 16}, 13),
        ({"workers": 2, "gpus_per_worker": 1}, {"CPU": 64, "GPU": 8}, 4),
        ({"workers": 4, "gpus_per_worker": 1}, {"CPU": 8, "GPU": 2}, 1),
        # one trial per training node, whatever the CPUs would allow
        ({"workers": 1, "resources_per_worker": {"trainer": 1}}, {"CPU": 16, "trainer": 2}, 2),
    ],
)
def test_concurrency_follows_the_cluster(scaling, resources, expected):
    base = yaml.safe_load((PROJECT_ROOT / "configs" / "demo.yaml").read_text())
    base["scaling"] = scaling
    assert concurrency(config_from_dict(base), resources) == expected


@pytest.mark.parametrize(("workers", "expected"), [(1, 0.9), (2, 0.45)])
def test_trial_workers_leave_a_cpu_for_ray_data_beside_the_driver(workers, expected):
    from hm2bp.orchestration.sweep import _with_trial_cpus

    base = yaml.safe_load((PROJECT_ROOT / "configs" / "demo.yaml").read_text())
    base["scaling"] = {"workers": workers}
    config = _with_trial_cpus(config_from_dict(base), trial_cpus=2.0)
    assert config.scaling.cpus_per_worker == pytest.approx(expected)
    pinned = config_from_dict({**base, "scaling": {"workers": workers, "cpus_per_worker": 1.0}})
    assert _with_trial_cpus(pinned, trial_cpus=2.0).scaling.cpus_per_worker == 1.0


@pytest.mark.e2e
def test_a_local_sweep_logs_to_the_default_store_of_its_directory(
    ray_local, tmp_path, monkeypatch, capsys
):
    """One trial on a local Ray, as on a laptop: the sweep's parent and child runs land in
    `./mlflow.db` of the directory the command started from (Tune runs trials elsewhere). The
    cluster walk-through of `test_multinode.py` runs a whole grid."""
    from hm2bp.orchestration.cli import main
    from hm2bp.pipelines.convert import convert

    monkeypatch.chdir(tmp_path)
    convert("digits", out=str(tmp_path / "shards"), T=60, split="ratio:0.8", rows_per_shard=400)
    path = _write_sweep(tmp_path, {"optimizer.lr": {"grid": [3e-3]}}, scheduler={"name": "fifo"})
    overrides = [
        f"data.shards={tmp_path / 'shards'}",
        "data.T=60",
        "train.epochs=1",
        "scaling.workers=1",
        f"run.storage_path={tmp_path / 'runs'}",
        "tracking.experiment=sweep-test",
    ]
    assert main(["sweep", str(path), "--json", *[a for o in overrides for a in ("--set", o)]]) == 0
    summary = json.loads(capsys.readouterr().out)  # stdout: exactly one JSON object
    assert summary["tracking_uri"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(summary["tracking_uri"])
    parent = client.get_run(summary["parent_run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.params["search.optimizer.lr"] == json.dumps({"grid": [3e-3]})
    (child,) = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    assert child.info.status == "FINISHED" and float(child.data.params["optimizer.lr"]) == 3e-3
    assert len(client.get_metric_history(child.info.run_id, "val_accuracy")) == 1
    assert summary["trials"][0]["best_checkpoint"].startswith(f"{tmp_path / 'runs'}/lr-")
