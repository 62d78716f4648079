"""The Ray Train driver: its configuration (GPU branch included, without starting it), and end to
end on a real local Ray and MLflow store: two workers, the run read back with `MlflowClient`,
resume on rerun, and a worker killed mid-training."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from hm2bp.orchestration import cli
from hm2bp.orchestration.config import ConfigError
from hm2bp.orchestration.trainer import (
    build_trainer,
    cpus_per_worker,
    preflight,
    resolved,
    train,
)
from hm2bp.pipelines.manifest import read_manifest
from hm2bp.tests.small_run import (
    DEMO,
    convert_small_digits,
    descendant_pids,
    small_config,
    small_overrides,
)
from mlflow.tracking import MlflowClient


@pytest.fixture(scope="module")
def shards(ray_local, tmp_path_factory):
    return convert_small_digits(tmp_path_factory.mktemp("digits"))


def test_cpus_per_worker_leave_one_cpu_for_ray_data(tmp_path):
    config = small_config("x", tmp_path)  # 2 workers
    assert cpus_per_worker(config, cluster_cpus=2) == 0.5  # the 2-core deadlock, avoided
    assert cpus_per_worker(config, cluster_cpus=16) == 1.0
    assert cpus_per_worker(small_config("x", tmp_path, "scaling.workers=4"), 2) == 0.25
    assert cpus_per_worker(small_config("x", tmp_path, "scaling.cpus_per_worker=3"), 2) == 3.0


def test_gpu_workers_get_nccl_and_a_gpu_each(shards, tmp_path, recwarn):
    config = resolved(small_config(shards, tmp_path, "scaling.gpus_per_worker=1"))
    trainer = build_trainer(config, preflight(config), None, cluster_cpus=32)
    assert trainer.scaling_config.use_gpu and trainer.scaling_config.num_workers == 2
    assert trainer.scaling_config.resources_per_worker == {"CPU": 1.0, "GPU": 1.0}
    assert trainer.backend_config.backend == "nccl"
    cpu = build_trainer(resolved(small_config(shards, tmp_path)), preflight(config),
                        None, cluster_cpus=2)  # fmt: skip
    assert not cpu.scaling_config.use_gpu and cpu.backend_config.backend == "gloo"
    assert cpu.scaling_config.resources_per_worker == {"CPU": 0.5}
    assert cpu.run_config.failure_config.max_failures == 2
    assert cpu.run_config.storage_path == str(tmp_path / "runs")
    # Ray's default ingest options pass on its own deprecated field: not shown to our users.
    assert not [w for w in recwarn if "exclude_resources" in str(w.message)]


def test_train_refuses_shards_that_do_not_fit_before_tracking(shards, tmp_path):
    config = small_config(shards, tmp_path, "data.T=400", "network.layers.1.size=26")
    with pytest.raises(ConfigError) as caught:
        train(config)
    assert caught.value.problems == [
        "data.T: got 400 (the shards have T=50)",
        "network.layers.1.size: got 26 outputs (the shards have 10 classes)",
    ]
    assert not (tmp_path / "mlflow.db").exists()


def _json_stdout(out: str) -> dict:
    """The whole stdout of a `--json` command: exactly one JSON object (the human lines, ours and
    the workers' Ray forwards, go to stderr)."""
    return json.loads(out)


def _train_cli(shards, root, capsys, *overrides) -> dict:
    pairs = [arg for o in small_overrides(shards, root, *overrides) for arg in ("--set", o)]
    assert cli.main(["train", str(DEMO), "--json", *pairs]) == 0
    return _json_stdout(capsys.readouterr().out)


@pytest.mark.e2e
def test_two_workers_train_track_and_resume_on_rerun(shards, tmp_path, capsys):
    summary = _train_cli(shards, tmp_path, capsys)
    assert summary["epochs"] == 2 and summary["tracking_problem"] is None
    assert summary["checkpoint"] == f"{tmp_path}/runs/demo/checkpoint_epoch_0002"
    client = MlflowClient(summary["tracking_uri"])
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "demo"
    assert run.data.params["scaling.workers"] == "2"
    assert run.data.params["network.layers.0.size"] == "32"
    assert run.data.params["data.shards"] == shards
    history = client.get_metric_history(summary["run_id"], "val_accuracy")
    assert [m.step for m in history] == [0, 1]
    assert history[-1].value == summary["val_accuracy"] > 0.2
    for key in ("train_loss", "fc0/silent_fraction", "output/mean_spikes", "samples_per_s",
                "epoch_seconds", "peak_memory_mb", "lateral_guard_triggers"):  # fmt: skip
        assert len(client.get_metric_history(summary["run_id"], key)) == 2, key
    artifacts = {a.path for a in client.list_artifacts(summary["run_id"])}
    assert {"config.yaml", "config_source.yaml", "manifest.json", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(summary["run_id"], "plots")}
    assert plots == {"plots/learning_curves.png", "plots/confusion_matrix.png",
                     "plots/output_raster.png"}  # fmt: skip
    assert "confusion_matrix.json" in artifacts
    # Rank 0's node, sampled by MLflow's system metrics monitor.
    for key in ("system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"):
        assert key in run.data.metrics, sorted(run.data.metrics)
    # The shards as the run's input data sets, one per split, with the manifest's digest.
    manifest = read_manifest(shards)
    inputs = _dataset_inputs(run)
    assert inputs == {
        f"{manifest.dataset}/{split}": (manifest.sha256()[:32], {"uri": shards}, split)
        for split in ("train", "val")
    }

    # The same run name again, with one more epoch: it resumes, in Ray Train and in MLflow. Its
    # learning rate, raised a thousandfold, wrecks the third epoch: the best checkpoint is kept.
    again = _train_cli(shards, tmp_path, capsys, "train.epochs=3", "optimizer.lr=10")
    assert again["run_id"] == summary["run_id"] and again["epochs"] == 3
    steps = [m.step for m in client.get_metric_history(summary["run_id"], "epoch")]
    assert steps == [0, 1, 2]
    accuracies = [m.value for m in client.get_metric_history(summary["run_id"], "val_accuracy")]
    assert accuracies[:2] == [m.value for m in history]
    assert accuracies[2] < max(accuracies[:2]), accuracies
    best_epoch = max(i for i, a in enumerate(accuracies) if a == max(accuracies)) + 1  # the later
    best = f"{tmp_path}/runs/demo/checkpoint_epoch_000{best_epoch}"
    latest = f"{tmp_path}/runs/demo/checkpoint_epoch_0003"
    assert (again["checkpoint"], again["best_checkpoint"]) == (latest, best)
    kept = sorted(str(p) for p in (tmp_path / "runs" / "demo").glob("checkpoint_epoch_*"))
    assert kept == sorted({best, latest})
    tags = client.get_run(summary["run_id"]).data.tags
    assert (tags["hm2bp.checkpoint.latest"], tags["hm2bp.checkpoint.best"]) == (latest, best)
    assert (tags["hm2bp.device"], tags["hm2bp.backend"]) == ("cpu", "cpu")
    provenance = {"hm2bp.version", "hm2bp.command", "mlflow.user", "mlflow.source.git.commit"}
    assert provenance <= set(tags)
    assert _dataset_inputs(client.get_run(summary["run_id"])) == inputs  # not logged again

    # `hm2bp evaluate` finds the best by name, by run folder or by MLflow run, on the run's shards.
    evaluated = []
    for named in (
        ["--checkpoint", "best", "--run", f"{tmp_path}/runs/demo"],
        ["--checkpoint", f"runs:/{summary['run_id']}", "--tracking-uri", summary["tracking_uri"]],
        ["--checkpoint", "latest", "--run", f"runs:/{summary['run_id']}",
         "--tracking-uri", summary["tracking_uri"]],
    ):  # fmt: skip
        assert cli.main(["evaluate", *named, "--json"]) == 0
        evaluated.append(_json_stdout(capsys.readouterr().out))
    assert [e["checkpoint"] for e in evaluated] == [best, best, latest]
    expected = [max(accuracies)] * 2 + [accuracies[2]]  # batches of another size: to rounding
    assert [e["accuracy"] for e in evaluated] == pytest.approx(expected, abs=0.011)
    assert {e["shards"] for e in evaluated} == {shards}

    # A rerun with another network is refused on the driver before Ray and MLflow: with a Ray
    # address where nothing answers, `ray.init` would fail, and the finished run stays as it was.
    before = client.get_run(summary["run_id"]).info
    changed = ("train.epochs=4", "network.layers.0.size=16", "network.layers.1.tau_m=32")
    pairs = [arg for o in small_overrides(shards, tmp_path, *changed) for arg in ("--set", o)]
    done = subprocess.run(
        [sys.executable, "-m", "hm2bp.orchestration", "train", str(DEMO), *pairs],
        env={**os.environ, "RAY_ADDRESS": "127.0.0.1:9"}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]
    assert f"config against its earlier run in {tmp_path}/runs/demo: 2 problems" in done.stderr
    assert "network.layers.0.size: got 16 (run 'demo' was trained with 32;" in done.stderr
    assert "network.layers.1.tau_m: got 32.0 (run 'demo' was trained with 64.0;" in done.stderr
    after = client.get_run(summary["run_id"]).info
    assert (after.status, after.end_time) == ("FINISHED", before.end_time)
    assert [m.step for m in client.get_metric_history(summary["run_id"], "epoch")] == [0, 1, 2]


def _dataset_inputs(run) -> dict[str, tuple]:
    """{name: (digest, source, context)} of a run's input data sets."""
    return {
        i.dataset.name: (
            i.dataset.digest,
            json.loads(i.dataset.source),
            {t.key: t.value for t in i.tags}["mlflow.data.context"],
        )
        for i in run.inputs.dataset_inputs
    }


@pytest.mark.e2e
def test_a_worker_killed_mid_training_resumes_from_the_last_checkpoint(shards, tmp_path):
    config = small_config(shards, tmp_path, "train.epochs=4", "run.name=fault")
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(result=train(config)))
    thread.start()
    first = tmp_path / "runs" / "fault" / "checkpoint_epoch_0001"
    deadline = time.monotonic() + 300
    while not first.exists() and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    victims = descendant_pids("ray::RayTrainWorker")
    assert first.exists() and len(victims) == 2 and thread.is_alive()
    os.kill(victims[0], signal.SIGKILL)  # fault injection: one worker dies
    thread.join(timeout=600)
    result = outcome["result"]
    assert len(result.history) == 4 and result.tracking_problem is None
    client = MlflowClient(result.tracking_uri)
    assert client.get_run(result.run_id).info.status == "FINISHED"
    for key in ("epoch", "val_accuracy", "train_loss"):
        steps = [m.step for m in client.get_metric_history(result.run_id, key)]
        assert steps == [0, 1, 2, 3], key  # every epoch logged once, the restart included


@pytest.mark.e2e
def test_demo_converts_trains_two_workers_and_prints_json_quietly(ray_local, tmp_path, capsys):
    """`hm2bp demo --json` as a user runs it, shortened to one epoch of a smaller network: one
    JSON object on stdout, and on stderr our lines without Ray's internals (`verbosity.NOISE`)."""
    overrides = ["train.epochs=1", "network.layers.0.size=32", f"tracking.uri={tmp_path}/m.db"]
    args = ["demo", "--json", "--workdir", str(tmp_path)]
    assert cli.main([*args, *[a for o in overrides for a in ("--set", o)]]) == 0
    out, err = _read_until(capsys, "epoch 1/1: train acc")  # forwarded from rank 0's worker
    assert "epoch 1/1: train acc" in err
    summary = _json_stdout(out)
    assert {"val_accuracy", "checkpoint", "run_id", "tracking_uri"} <= set(summary)
    assert summary["checkpoint"] == f"{tmp_path}/runs/demo/checkpoint_epoch_0001"
    assert summary["tracking_uri"] == f"sqlite:///{tmp_path}/m.db"
    assert "samples  1797 (train 1438, val 359)" in err  # the held-out 20 %
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path}/m.db" in err
    # Ray 2.60's PlacementGroupCleaner finds its cluster by looking for running ones, and where
    # several run on one machine (this session's and any other's) its thread dies with a
    # traceback that has nothing to do with the command: not counted.
    lines = [line for line in err.splitlines() if "(PlacementGroupCleaner pid=" not in line]
    assert len(lines) <= 40, err  # one screen
    for marker in ("TrainingReport", "core_worker.cc", "DeprecationWarning", "Progress bars"):
        assert not [line for line in lines if marker in line], marker
    run = MlflowClient(summary["tracking_uri"]).get_run(summary["run_id"])
    assert run.data.params["data.shards"] == f"{tmp_path}/shards/digits"
    assert run.data.metrics["val_accuracy"] == summary["val_accuracy"]


def _read_until(capsys, text: str, seconds: float = 60) -> tuple[str, str]:
    """stdout and stderr captured until `text` is on stderr (Ray forwards a worker's lines to the
    driver a moment after the worker prints them), or `seconds` passed."""
    out = err = ""
    deadline = time.monotonic() + seconds
    while text not in err and time.monotonic() < deadline:
        captured = capsys.readouterr()
        out, err = out + captured.out, err + captured.err
        time.sleep(0.2)
    return out, err
