"""A tracking store that fails: nothing corrupt gets in, nothing is lost silently.

A degraded server (its `/health` answers, every call 503) fails `hm2bp train` within seconds
naming its URI, not after MLflow's minutes of retries. A real `mlflow server` killed mid-run costs
no training: back before the run ends, every epoch is in the run once and the run is FINISHED;
gone for good, `train` ends with the problem stated and the checkpoint whole.
"""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from hm2bp.orchestration import checkpoint as ckpt
from hm2bp.orchestration import cli, tracking, trainer
from hm2bp.orchestration.trainer import train
from hm2bp.tests.mlflow_server import MLFLOW_SERVER, MlflowServer, needs_mlflow_server
from hm2bp.tests.small_run import DEMO, convert_small_digits, small_config, small_overrides
from mlflow.tracking import MlflowClient

_CAP = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")


@pytest.fixture(scope="module")
def shards(ray_local, tmp_path_factory):
    return convert_small_digits(tmp_path_factory.mktemp("digits"))


class _Degraded(http.server.BaseHTTPRequestHandler):
    """`/health` answers 200 OK, every other request 503: a server up but unable to serve."""

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        healthy = self.path == "/health"
        body = b"OK" if healthy else b"Service Unavailable"
        self.send_response(200 if healthy else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

    def log_message(self, *args) -> None:  # quiet: pytest shows stderr of failing tests
        pass


@pytest.fixture
def degraded_uri() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Degraded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_drivers_calls_to_a_degraded_server_fail_within_seconds(degraded_uri, monkeypatch):
    for name in _CAP:
        monkeypatch.delenv(name, raising=False)
    ref = tracking.RunRef(degraded_uri, "0123", "1")
    started = time.perf_counter()
    with pytest.raises(tracking.TrackingError, match=f"tracking store {degraded_uri}: "):
        tracking.open_run(degraded_uri, "exp", "run", "key", params={})
    with pytest.raises(tracking.TrackingError, match="could not be marked FAILED"):
        tracking.finish_run(ref, failed=True)
    problem = tracking.complete_run(ref, [{"val_accuracy": 0.5}], {tracking.NODES_TAG: "n"})
    assert problem.startswith(f"tracking store {degraded_uri} failed at the end of training")
    assert time.perf_counter() - started < 60  # does not hang for MLflow's minutes of retries
    assert not [name for name in _CAP if name in os.environ]  # the cap is lifted after each call


def test_train_against_a_degraded_server_fails_within_seconds_naming_it(
    shards, degraded_uri, tmp_path, capsys
):
    overrides = small_overrides(shards, tmp_path, f"tracking.uri={degraded_uri}")
    started = time.perf_counter()
    assert cli.main(["train", str(DEMO), *[a for o in overrides for a in ("--set", o)]]) == 1
    assert time.perf_counter() - started < 60  # does not hang for MLflow's minutes of retries
    assert f"hm2bp train: tracking store {degraded_uri}: " in capsys.readouterr().err


class _FitFails:
    """A `TorchTrainer` stand-in whose fit fails: the worker group died."""

    def fit(self):
        raise RuntimeError("the worker group died")


class _FitLeavesNoCheckpoint:
    """A `TorchTrainer` stand-in whose fit returns a checkpoint that is not there."""

    def fit(self):
        return SimpleNamespace(checkpoint=SimpleNamespace(path="/nowhere/checkpoint_epoch_0002"))


@pytest.mark.parametrize(
    ("fake", "error"),
    [(_FitFails, RuntimeError), (_FitLeavesNoCheckpoint, FileNotFoundError)],
)
def test_a_failed_training_marks_its_run_failed_never_finished(
    shards, tmp_path, monkeypatch, fake, error
):
    monkeypatch.setattr(trainer, "build_trainer", lambda *args, **kwargs: fake())
    config = small_config(shards, tmp_path)
    with pytest.raises(error):
        train(config)
    client = MlflowClient(config.tracking.uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name(config.tracking.experiment).experiment_id]
    )
    assert run.info.status == "FAILED"


@pytest.fixture
def mlflow_server(tmp_path) -> Iterator[MlflowServer]:
    if not MLFLOW_SERVER:
        pytest.fail("CI requires a real `mlflow server` (HM2BP_MLFLOW_SERVER, set by `make test`)")
    server = MlflowServer(tmp_path)
    server.start()
    yield server
    server.kill()


def _kill_after_epoch_0(server: MlflowServer) -> dict[str, float]:
    """Kills the server as soon as rank 0 has logged epoch 0, from a thread; the returned dict
    gets the time of the kill as `at_ms` (ms since 1970, as MLflow's timestamps)."""
    killed: dict[str, float] = {}

    def watch() -> None:
        deadline = time.monotonic() + 600
        while not server.logged_epochs() and time.monotonic() < deadline:
            time.sleep(0.05)
        server.kill()
        killed["at_ms"] = time.time() * 1000

    threading.Thread(target=watch, daemon=True).start()
    return killed


@pytest.mark.e2e
@needs_mlflow_server
def test_a_server_back_before_the_run_ends_gets_every_epoch_once(
    shards, mlflow_server, tmp_path, monkeypatch
):
    config = small_config(shards, tmp_path, f"tracking.uri={mlflow_server.uri}")
    killed = _kill_after_epoch_0(mlflow_server)
    restarted: dict[str, float] = {}
    complete_run = tracking.complete_run

    def back_first(ref, history, checkpoints):  # the server returns as the driver ends the run
        mlflow_server.start()
        restarted["at_ms"] = time.time() * 1000
        return complete_run(ref, history, checkpoints)

    monkeypatch.setattr(tracking, "complete_run", back_first)
    result = train(config)
    assert result.tracking_problem is None
    client = MlflowClient(mlflow_server.uri)
    assert client.get_run(result.run_id).info.status == "FINISHED"
    for key in ("val_accuracy", "train_loss"):
        steps = [m.step for m in client.get_metric_history(result.run_id, key)]
        assert steps == [0, 1], key
    # Rank 0 logged epoch 0 before the kill; epoch 1 came from the checkpoint, by the driver.
    marks = client.get_metric_history(result.run_id, tracking.EPOCH_METRIC)
    assert [m.step for m in marks] == [0, 1]
    assert marks[0].timestamp <= killed["at_ms"] <= restarted["at_ms"] <= marks[1].timestamp


@pytest.mark.e2e
@needs_mlflow_server
def test_a_server_gone_for_good_ends_the_run_stating_it_with_the_checkpoint_whole(
    shards, mlflow_server, tmp_path, capsys
):
    overrides = small_overrides(shards, tmp_path, f"tracking.uri={mlflow_server.uri}")
    killed = _kill_after_epoch_0(mlflow_server)
    args = ["train", str(DEMO), "--json", *[a for o in overrides for a in ("--set", o)]]
    assert cli.main(args) == 0
    ended_ms = time.time() * 1000
    assert ended_ms - killed["at_ms"] < 120_000  # does not hang for minutes once the store is gone
    out, err = capsys.readouterr()
    # The driver's last line (worker lines carry `pid=`; the session's Ray stays up in tests).
    summary = json.loads([line for line in out.splitlines() if line and "pid=" not in line][-1])
    problem = summary["tracking_problem"]
    assert problem.startswith(f"tracking store {mlflow_server.uri} failed at the end of training")
    assert f"MLflow run {summary['run_id']} may lack any of epochs [0, 1]" in problem
    assert f"tracking problem: {problem}" in err
    history = ckpt.load_record(summary["checkpoint"]).history
    assert [h["val_accuracy"] for h in history][-1] == summary["val_accuracy"]
    assert len(history) == summary["epochs"] == 2
