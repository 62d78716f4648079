"""MLflow tracking: which store, the run of a training, and rank 0's per-epoch logging.

Store: an explicit URI wins (the config's `tracking.uri`, then `MLFLOW_TRACKING_URI`); otherwise a
SQLite file `mlflow.db` in the directory the command was started from. A job submitted to a cluster
must name the cluster's tracking server or an absolute store path, since its working dir is
temporary.

The driver opens the run (`open_run`) before any worker starts, so an unreachable store fails the
command at once with the URI in the message; it logs the flattened config as params, the config
file and shard manifest as artifacts and, for a new run, the shards as its input data sets
(`run_inputs`). Rank 0 alone logs metrics (`EpochLogger`): each epoch's metrics go in one
`log_batch`, *after* the epoch's checkpoint is saved, and the logger skips epochs the run already
holds. So a worker lost after a checkpoint and before logging has its epoch logged
from the checkpoint's history on restart, and no epoch is ever logged twice. If the store drops
mid-run, training goes on: pending epochs are retried at the next epoch, and at the end the driver
(`complete_run`) logs what the run still lacks from the final checkpoint's history before marking
it FINISHED; what the store cannot take then is reported with the epochs it lacks, not raised.

Every MLflow call, the driver's and rank 0's, runs under one cap on MLflow's HTTP retries
(`capped_http`): by default MLflow retries a failing call for about 4 minutes, so a store that
answers `/health` but fails every call (503) would hold `hm2bp train` that long per call.

A rerun with the same `run.name` and `storage_path` finds its MLflow run by the tag `hm2bp.run_key`
and continues it, as training continues from the checkpoint.

`mlflow` is imported inside the functions: the GPU machine runs the worker loop without it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RUN_KEY_TAG = "hm2bp.run_key"
SOURCE = Path(__file__).resolve().parent.parent  # the checkout, when installed from one
NODES_TAG = "hm2bp.nodes"  # the Ray node ids the run's workers ran on, comma-separated
CHECKPOINT_TAG = "hm2bp.checkpoint.{}"  # .latest and .best: the run's checkpoint folders
_TAG_LIMIT = 5000  # MLflow refuses tag values above 8,000 characters
# A marker metric logged with every epoch: its history says which epochs the run holds.
EPOCH_METRIC = "epoch"
# MLflow's defaults are 7 retries with exponential backoff (about 4 minutes), 120 s to wait for an
# answer, and a server's Retry-After obeyed however long: one retry at once and 10 s instead.
_HTTP_CAP = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER": "false",
}


class TrackingError(RuntimeError):
    """The tracking store cannot be used: by `open_run` before training starts, by `finish_run`."""


class _Cap:
    """The threads inside `capped_http` and the variables it added, under one lock."""

    lock = threading.Lock()
    inside = 0
    added: dict[str, str] = {}


@contextlib.contextmanager
def capped_http() -> Iterator[None]:
    """MLflow calls inside (or in a function so decorated) fail within seconds on a failing store.

    MLflow reads these variables at each request (`mlflow.utils.rest_utils.http_request`, the
    artifact proxy's `http_artifact_repo`; its session cache is keyed by their values), so they cap
    exactly the calls made inside. They are set only while inside and only where the user has not
    set them (an explicit value wins), so neither the user's environment nor a Ray cluster that
    this process starts afterwards inherits them. Threads share the environment: the first one in
    sets them and the last one out removes them (rank 0's system metrics thread is inside for the
    whole training, its epoch logging at each epoch).
    """
    with _Cap.lock:
        if _Cap.inside == 0:
            _Cap.added = {k: v for k, v in _HTTP_CAP.items() if k not in os.environ}
            os.environ.update(_Cap.added)
        _Cap.inside += 1
    try:
        yield
    finally:
        with _Cap.lock:
            _Cap.inside -= 1
            if _Cap.inside == 0:
                for k in _Cap.added:
                    os.environ.pop(k, None)


def resolve_tracking_uri(configured: str | None = None, cwd: str | Path | None = None) -> str:
    """The config's URI, else `MLFLOW_TRACKING_URI`, else `sqlite:///<cwd>/mlflow.db`; a bare
    local path becomes a `sqlite:///` URI of an absolute path (workers do not share our cwd)."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if not uri:
        return f"sqlite:///{Path(cwd or os.getcwd()).absolute() / 'mlflow.db'}"
    if "://" not in uri:
        return f"sqlite:///{Path(uri).absolute()}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri[len('sqlite:///') :]).absolute()}"
    return uri


@dataclass(frozen=True)
class RunRef:
    """Where a tracked run lives; travels to the workers in the train loop's config."""

    uri: str
    run_id: str
    experiment_id: str


def _check_reachable(uri: str) -> None:
    """An HTTP store must answer `/health` within 10 s; MLflow's client would retry for minutes."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=10) as reply:
            reply.read()
    except (urllib.error.URLError, OSError) as err:
        raise TrackingError(
            f"tracking server {uri} cannot be reached ({err}); start it, or set tracking.uri / "
            "MLFLOW_TRACKING_URI to a reachable server or a sqlite:///<absolute path> store"
        ) from None


def _artifact_location(uri: str, experiment: str) -> str | None:
    """For a SQLite store, artifacts beside the database (MLflow's default is relative to the
    creating process's cwd, which for a Ray worker is a temporary folder)."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri[len("sqlite:///") :])
    return (database.parent / "mlartifacts" / experiment).as_uri()


@capped_http()
def open_run(
    uri: str,
    experiment: str,
    run_name: str,
    run_key: str,
    params: Mapping[str, Any],
    texts: Mapping[str, str] = {},  # noqa: B006 - read only
    parent_run_id: str | None = None,
    datasets: Sequence[Any] = (),
) -> RunRef:
    """Create (or, for a known `run_key`, continue) the run; log params and text artifacts
    (`{artifact file: text}`), and a new run's input `datasets` (`run_inputs.dataset_inputs`;
    a continued run has them). Raises `TrackingError` naming the URI if the store is unusable."""
    _check_reachable(uri)
    from mlflow.entities import Param, RunStatus
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = (
            found.experiment_id
            if found
            else client.create_experiment(
                experiment, artifact_location=_artifact_location(uri, experiment)
            )
        )
        runs = client.search_runs(
            [experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{run_key}'", max_results=1
        )
        if runs:
            run_id = runs[0].info.run_id
            client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            logged = runs[0].data.params
        else:
            tags = {RUN_KEY_TAG: run_key, **provenance()}
            if parent_run_id:
                tags["mlflow.parentRunId"] = parent_run_id
            run_id = client.create_run(experiment_id, tags=tags, run_name=run_name).info.run_id
            logged = {}
            if datasets:
                client.log_inputs(run_id, datasets=list(datasets))
        new = [Param(k, str(v)) for k, v in params.items() if k not in logged]
        changed = sorted(k for k, v in params.items() if k in logged and logged[k] != str(v))
        for start in range(0, len(new), 100):  # MLflow takes at most 100 params per batch
            client.log_batch(run_id, params=new[start : start + 100])
        if changed:
            client.set_tag(run_id, "hm2bp.changed_on_resume", ",".join(changed))
        for artifact_file, text in texts.items():
            client.log_text(run_id, text, artifact_file)
    except TrackingError:
        raise
    except Exception as err:  # MLflow raises many kinds; all mean the store is unusable
        raise TrackingError(
            f"tracking store {uri}: {type(err).__name__}: {err} (expected a reachable MLflow "
            "server or a writable sqlite:///<absolute path>)"
        ) from err
    return RunRef(uri, run_id, experiment_id)


def provenance() -> dict[str, str]:
    """Who ran what, for a new run's tags: the hm2bp version, the user, the command line and,
    installed from a git checkout, its commit (MLflow's own tag names where it has them)."""
    import getpass
    import shlex
    import subprocess
    import sys
    from importlib.metadata import version

    tags = {
        "hm2bp.version": version("hm2bp"),
        "mlflow.user": getpass.getuser(),
        "hm2bp.command": shlex.join(sys.argv)[:_TAG_LIMIT],
    }
    if (SOURCE / ".git").exists():
        with contextlib.suppress(OSError):  # no git on this machine: no commit tag
            done = subprocess.run(
                ["git", "-C", str(SOURCE), "rev-parse", "HEAD"], capture_output=True, text=True
            )
            if done.returncode == 0:
                tags["mlflow.source.git.commit"] = done.stdout.strip()
    return tags


def checkpoint_tags(latest: str, best: str, trained_on: Mapping[str, str]) -> dict[str, str]:
    """A trained run's closing tags: its latest and best checkpoint folders, and the device and
    backend that trained it (the checkpoint's record, not a guess made before the workers ran)."""
    return {
        CHECKPOINT_TAG.format("latest"): latest,
        CHECKPOINT_TAG.format("best"): best,
        "hm2bp.device": str(trained_on.get("device")),
        "hm2bp.backend": str(trained_on.get("backend")),
    }


def nodes_used(nodes: Sequence[Sequence[str]]) -> list[str]:
    """The distinct nodes of per-epoch, per-rank node lists, in order of first use."""
    return list(dict.fromkeys(node for epoch in nodes for node in epoch))


RUNS_URI = "runs:/"


@capped_http()
def run_folder(runs_uri: str, tracking_uri: str | None = None) -> str:
    """The run folder (`run.storage_path/run.name`) of the MLflow run `runs:/<id>`, from its
    params; raises `TrackingError` naming the store and the run."""
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(tracking_uri)
    run_id = runs_uri.removeprefix(RUNS_URI).strip("/").split("/")[0]  # runs:/<id>[/<path>]
    try:
        params = MlflowClient(uri).get_run(run_id).data.params
    except Exception as err:
        raise TrackingError(
            f"tracking store {uri}: {runs_uri}: {type(err).__name__}: {err} (expected the id of "
            "a run that `hm2bp train` logged there; --tracking-uri names another store)"
        ) from err
    if "run.storage_path" not in params or "run.name" not in params:
        raise TrackingError(
            f"tracking store {uri}: {runs_uri} has no run.storage_path and run.name params "
            "(expected a run that `hm2bp train` logged, not a sweep's parent)"
        )
    return f"{params['run.storage_path'].rstrip('/')}/{params['run.name']}"


@capped_http()
def finish_run(ref: RunRef, failed: bool = False) -> None:
    """Mark the run FAILED or FINISHED; raises `TrackingError` naming the URI if the store fails."""
    from mlflow.tracking import MlflowClient

    status = "FAILED" if failed else "FINISHED"
    try:
        MlflowClient(ref.uri).set_terminated(ref.run_id, status)
    except Exception as err:
        raise TrackingError(
            f"tracking store {ref.uri}: run {ref.run_id} could not be marked {status}: "
            f"{type(err).__name__}: {err}"
        ) from err


def complete_run(
    ref: RunRef, history: Sequence[Mapping[str, float]], tags: Mapping[str, str]
) -> str | None:
    """The driver's end of a trained run: log the epochs of `history` (the final checkpoint's)
    that the run lacks, since rank 0 retries a failed log only at its next epoch, set `tags`
    (`checkpoint_tags`: where its checkpoints are, what trained it), then mark the run FINISHED.
    Returns None, or the problem naming the store and what the run lacks; the run is then left
    RUNNING, and a rerun of the same command logs it and finishes the run."""
    logger = EpochLogger(ref)
    logger.sync(history)
    if logger.failure is None:  # a store that failed is not asked again, only to finish
        logger.tag(tags)
    epochs = list(range(len(history)))
    if logger.logged is None:
        lacking = f"may lack any of epochs {epochs} (it could not be read)"
    else:
        missing = [epoch for epoch in epochs if epoch not in logger.logged]
        lacking = f"lacks epochs {missing}" if missing else f"lacks its tags {sorted(tags)}"
        if logger.failure is None:
            try:
                finish_run(ref)
                return None
            except TrackingError as err:
                return f"{err} (it holds every epoch)"
    return (
        f"tracking store {ref.uri} failed at the end of training ({logger.failure}): MLflow run "
        f"{ref.run_id} {lacking}; the checkpoint's history holds every epoch: rerun the same "
        "command once the store is back to log them"
    )


class EpochLogger:
    """Rank 0's metrics logging: each epoch once, in one batch, failures kept, not raised."""

    def __init__(self, ref: RunRef) -> None:
        from mlflow.tracking import MlflowClient

        self.ref = ref
        self.client = MlflowClient(ref.uri)
        self.failure: str | None = None
        self.logged: set[int] | None = None  # epochs the run holds; read on first use

    def _try(self, what: str, call, *args, **kwargs) -> bool:
        try:
            with capped_http():  # a server that drops mid-run must not stall training
                call(*args, **kwargs)
            return True
        except Exception as err:  # the store dropped: training goes on, the failure is kept
            self.failure = f"{what}: {type(err).__name__}: {err}"
            log.warning("MLflow %s failed, training goes on: %s", what, err)
            return False

    def _read_logged(self) -> None:
        history = self.client.get_metric_history(self.ref.run_id, EPOCH_METRIC)
        self.logged = {int(m.step) for m in history}

    def sync(self, history: Sequence[Mapping[str, float]]) -> None:
        """Log every epoch of `history` (one metrics dict per epoch, in order, epoch 0 first)
        that the run does not hold yet."""
        if self.logged is None and not self._try("reading the run", self._read_logged):
            return
        from mlflow.entities import Metric

        for epoch, metrics in enumerate(history):
            if epoch in self.logged:
                continue
            now = int(time.time() * 1000)
            batch = [Metric(k, float(v), now, epoch) for k, v in metrics.items()]
            batch.append(Metric(EPOCH_METRIC, float(epoch), now, epoch))
            if not self._try(
                f"logging epoch {epoch}", self.client.log_batch, self.ref.run_id, batch
            ):
                return
            self.logged.add(epoch)

    def tag(self, tags: Mapping[str, str]) -> None:
        """Set `tags` in one call (values cut to MLflow's limit)."""
        from mlflow.entities import RunTag

        batch = [RunTag(key, value[:_TAG_LIMIT]) for key, value in tags.items()]
        self._try(f"tagging {', '.join(tags)}", self.client.log_batch, self.ref.run_id, tags=batch)

    def tag_nodes(self, nodes: Sequence[Sequence[str]]) -> None:
        """Tag the run with the nodes its workers ran on, over every epoch so far."""
        used = nodes_used(nodes)
        value = ",".join(used)
        if len(value) > _TAG_LIMIT:  # a very large cluster: the ids' first 12 characters
            value = f"{len(used)} nodes: " + ",".join(node[:12] for node in used)
        self.tag({NODES_TAG: value})

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self._try(
            f"logging {artifact_file}",
            self.client.log_figure,
            self.ref.run_id,
            figure,
            artifact_file,
        )

    def log_dict(self, data: Mapping[str, Any], artifact_file: str) -> None:
        self._try(
            f"logging {artifact_file}",
            self.client.log_dict,
            self.ref.run_id,
            dict(data),
            artifact_file,
        )
