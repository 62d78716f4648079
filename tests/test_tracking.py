"""MLflow tracking: store precedence, an unreachable store refused early, each epoch logged once."""

import getpass
import json
import os
import shlex
import socket
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
from hm2bp.orchestration import tracking
from mlflow.tracking import MlflowClient


def test_uri_precedence_config_then_environment_then_sqlite_in_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.resolve_tracking_uri(None, cwd=tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert tracking.resolve_tracking_uri(None) == "http://mlflow.internal:5000"
    assert tracking.resolve_tracking_uri("http://other:5000") == "http://other:5000"
    monkeypatch.chdir(tmp_path)
    # Relative stores are made absolute: Ray workers run in other directories.
    assert tracking.resolve_tracking_uri("sqlite:///rel.db") == f"sqlite:///{tmp_path}/rel.db"
    assert tracking.resolve_tracking_uri("store.db") == f"sqlite:///{tmp_path}/store.db"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_fails_before_training_naming_the_uri():
    uri = f"http://127.0.0.1:{_closed_port()}"
    started = time.perf_counter()
    with pytest.raises(tracking.TrackingError, match=f"tracking server {uri} cannot be reached"):
        tracking.open_run(uri, "exp", "run", "key", params={})
    assert time.perf_counter() - started < 30  # no minutes of MLflow's retries


def _open(uri: str, **params):
    return tracking.open_run(
        uri, "exp", "run-a", "/runs/run-a", params=params, texts={"config.yaml": "seed: 0\n"}
    )


def test_epochs_are_logged_once_and_a_rerun_continues_the_same_run(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ref = _open(uri, **{"optimizer.lr": 0.001, "seed": 0})
    history = [{"val_accuracy": 0.5}, {"val_accuracy": 0.7}]
    logger = tracking.EpochLogger(ref)
    logger.sync(history[:1])
    logger.sync(history)  # epoch 0 is not logged again
    # The driver's end of training logs what rank 0 did not (epoch 2), then finishes the run.
    tags = tracking.checkpoint_tags(
        "/r/checkpoint_epoch_0003", "/r/checkpoint_epoch_0002", {"device": "cpu", "backend": "cpu"}
    )
    assert tracking.complete_run(ref, [*history, {"val_accuracy": 0.6}], tags) is None
    finished = MlflowClient(uri).get_run(ref.run_id)
    assert finished.info.status == "FINISHED"
    assert finished.data.tags["hm2bp.checkpoint.latest"] == "/r/checkpoint_epoch_0003"
    assert finished.data.tags["hm2bp.checkpoint.best"] == "/r/checkpoint_epoch_0002"
    assert (finished.data.tags["hm2bp.device"], finished.data.tags["hm2bp.backend"]) == ("cpu",) * 2
    # Who ran what, set when the run was created.
    assert finished.data.tags["hm2bp.version"] == version("hm2bp")
    assert finished.data.tags["mlflow.user"] == getpass.getuser()
    assert finished.data.tags["hm2bp.command"] == shlex.join(sys.argv)[:5000]
    assert len(finished.data.tags["mlflow.source.git.commit"]) == 40  # tests run in a checkout

    again = _open(uri, **{"optimizer.lr": 0.001, "seed": 1})  # the same run key: the same run
    assert again.run_id == ref.run_id
    backfill = [*history, {"val_accuracy": 0.6}, {"val_accuracy": 0.8}]  # a restart's history
    tracking.EpochLogger(again).sync(backfill)
    client = MlflowClient(uri)
    steps = [(m.step, m.value) for m in client.get_metric_history(ref.run_id, "val_accuracy")]
    assert steps == [(0, 0.5), (1, 0.7), (2, 0.6), (3, 0.8)]
    run = client.get_run(ref.run_id)
    assert run.data.params == {"optimizer.lr": "0.001", "seed": "0"}
    assert run.data.tags["hm2bp.changed_on_resume"] == "seed"
    assert [a.path for a in client.list_artifacts(ref.run_id)] == ["config.yaml"]
    experiment = client.get_experiment(ref.experiment_id)
    assert experiment.artifact_location == (tmp_path / "mlartifacts" / "exp").as_uri()


def test_a_store_that_drops_mid_run_is_reported_not_raised(tmp_path):
    server = f"http://127.0.0.1:{_closed_port()}"
    logger = tracking.EpochLogger(tracking.RunRef(server, "0123", "1"))
    logger.sync([{"val_accuracy": 0.5}])  # training goes on
    assert logger.failure is not None and logger.logged is None
    problem = tracking.complete_run(tracking.RunRef(server, "0123", "1"), [{}, {}], {})
    assert problem.startswith(f"tracking store {server} failed at the end of training")
    assert "MLflow run 0123 may lack any of epochs [0, 1]" in problem


def _dataset_input(name: str, digest: str):
    from mlflow.entities import Dataset, DatasetInput, InputTag

    dataset = Dataset(name, digest, "local", '{"uri": "/shards"}', profile='{"rows": 3}')
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "train")])


def test_a_new_run_records_its_data_sets_and_a_continued_run_not_again(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    opened = tracking.open_run(uri, "exp", "r", "/r", {}, datasets=[_dataset_input("d/train", "a")])
    again = tracking.open_run(uri, "exp", "r", "/r", {}, datasets=[_dataset_input("d/train", "b")])
    assert again.run_id == opened.run_id
    inputs = MlflowClient(uri).get_run(opened.run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [("d/train", "a")]
    assert [(t.key, t.value) for t in inputs[0].tags] == [("mlflow.data.context", "train")]


def test_rank_zeros_log_has_plots_after_each_epoch_and_system_metrics_at_the_end(tmp_path):
    from hm2bp.orchestration.training_log import TrainingLog

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ref = _open(uri)
    log = TrainingLog(ref, ["zero", "one"], dt_ms=1.0)
    log.start([])
    history = [{"train_accuracy": 0.5, "val_accuracy": 0.6, "train_loss": 2.0, "val_loss": 1.0}]
    log.epoch(history, [["node-a"]], np.array([[3, 1], [0, 4]]), np.eye(2)[[0, 1, 1]], 1)
    client = MlflowClient(uri)
    # After one epoch, before the end: a run stopped here (ASHA, a crash) has its plots.
    assert {a.path for a in client.list_artifacts(ref.run_id, "plots")} == {
        "plots/learning_curves.png",
        "plots/confusion_matrix.png",
        "plots/output_raster.png",
    }
    log.finish()
    confusion = client.download_artifacts(ref.run_id, "confusion_matrix.json", str(tmp_path))
    assert json.loads(Path(confusion).read_text())["matrix"] == [[3, 1], [0, 4]]
    metrics = client.get_run(ref.run_id).data.metrics
    assert metrics["system/cpu_utilization_percentage"] >= 0
    assert metrics["system/system_memory_usage_megabytes"] > 0
    assert client.get_run(ref.run_id).data.tags[tracking.NODES_TAG] == "node-a"


def test_system_metrics_against_a_dead_store_do_not_stop_training():
    from hm2bp.orchestration.system_metrics import SystemMetrics

    monitor = SystemMetrics(tracking.RunRef(f"http://127.0.0.1:{_closed_port()}", "0123", "1"))
    monitor.start()
    monitor.stop()  # warnings, no exception
    assert monitor.monitor is None
    assert not [name for name in tracking._HTTP_CAP if name in os.environ]  # the cap is lifted
