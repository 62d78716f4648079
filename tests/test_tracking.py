"""MLflow tracking: store precedence, an unreachable store refused early, each epoch logged once."""

import getpass
import shlex
import socket
import sys
import time
from importlib.metadata import version

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
