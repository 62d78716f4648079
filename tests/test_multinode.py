"""Across nodes for real: a three-node Ray cluster on this machine (`local_cluster.py`), shards and
checkpoints on a real S3 server (moto's server mode), work sent with `ray job submit`.

The head takes no training workers; each of the two worker nodes offers one `trainer` slot, which
the configs ask for (`scaling.resources_per_worker: {trainer: 1}`), as GPU nodes offer one GPU.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hm2bp.orchestration import checkpoint as ckpt
from hm2bp.orchestration.tracking import NODES_TAG
from hm2bp.orchestration.worker import weights_digest
from hm2bp.tests.conftest import PROJECT_ROOT
from hm2bp.tests.local_cluster import BIN, LocalCluster, free_port
from hm2bp.tests.mlflow_server import MlflowServer, needs_mlflow_server
from hm2bp.tests.small_run import SPLIT, T, small_overrides
from mlflow import MlflowClient

pytestmark = [pytest.mark.multinode, pytest.mark.e2e]

BUCKET = "hm2bp"
SHARDS = f"s3://{BUCKET}/shards/digits"
ON_TRAINER_NODES = ["scaling.resources_per_worker={trainer: 1}", "scaling.placement=spread"]


def _s3_server_command() -> str | None:
    """moto's `moto_server`: `HM2BP_S3_SERVER` (the Makefile installs it in `.venv-s3`, since its
    botocore pins another python-dateutil than the project)."""
    configured = os.environ.get("HM2BP_S3_SERVER")
    if configured:
        return configured
    return shutil.which("moto_server")


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[dict[str, str]]:
    """A real S3 endpoint on a free port, stopped by its PID; yields the AWS environment that
    reaches it (the variables every AWS client and pyarrow read)."""
    command = _s3_server_command()
    if command is None:
        reason = "no S3 server: set HM2BP_S3_SERVER, or run `make test` (it installs moto)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    port = free_port()
    log = open(tmp_path_factory.mktemp("s3") / "moto.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [command, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    try:
        import pyarrow.fs as pafs

        deadline = time.monotonic() + 60
        while True:
            try:
                fs = pafs.S3FileSystem(
                    access_key=env["AWS_ACCESS_KEY_ID"],
                    secret_key=env["AWS_SECRET_ACCESS_KEY"],
                    region=env["AWS_DEFAULT_REGION"],
                    endpoint_override=env["AWS_ENDPOINT_URL"],
                    allow_bucket_creation=True,
                )
                fs.create_dir(BUCKET)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield env
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def cluster(s3, tmp_path_factory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path_factory.mktemp("cluster"))
    # After a node is lost, Ray Train first restarts at the old size while the node still counts
    # as alive, until this timeout (60 s by default), then at the size the cluster has.
    timeout = {"RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "30"}
    try:
        yield cluster.start(workers=2, env={**s3, **timeout})
    finally:
        cluster.stop()


@pytest.fixture
def aws(s3, monkeypatch) -> None:
    """This process reaches the S3 server too (to read checkpoints back)."""
    for key, value in s3.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="module")
def job_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("job")
    shutil.copy(PROJECT_ROOT / "configs" / "demo.yaml", folder / "demo.yaml")
    return folder


@pytest.fixture(scope="module")
def s3_shards(cluster, job_dir) -> str:
    """The small digits converted by a job on the cluster, written to S3 by its tasks."""
    done = cluster.submit(
        "python", "-m", "hm2bp.orchestration", "convert", "digits", "--out", SHARDS,
        "--T", str(T), "--split", SPLIT, "--rows-per-shard", "150", "--json",
        working_dir=job_dir,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return SHARDS


def _summary(stdout: str) -> dict:
    """The JSON summary a job printed (the last line that is a JSON object)."""
    return json.loads(next(line for line in reversed(stdout.splitlines()) if line.startswith("{")))


def _train_job(cluster, job_dir, root, *overrides) -> dict:
    sets = small_overrides(SHARDS, root, f"run.storage_path=s3://{BUCKET}/runs", *overrides)
    done = cluster.submit(
        "python", "-m", "hm2bp.orchestration", "train", "demo.yaml", "--json",
        *[f"--set={item}" for item in sets], working_dir=job_dir,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    return _summary(done.stdout)


EPOCHS = "train.epochs=8"


@pytest.fixture(scope="module")
def uninterrupted(cluster, s3_shards, job_dir, tmp_path_factory) -> tuple[dict, Path]:
    """Two workers, one per worker node, eight epochs: `(the --json summary, its root folder)`."""
    root = tmp_path_factory.mktemp("spread")
    sets = ["scaling.workers=2", *ON_TRAINER_NODES, EPOCHS, "run.name=spread"]
    return _train_job(cluster, job_dir, root, *sets), root


def test_two_workers_on_two_nodes_train_as_two_on_one(cluster, uninterrupted, aws):
    summary, tmp_path = uninterrupted
    worker_nodes = {node.node_id for node in cluster.workers}
    assert set(summary["nodes"]) == worker_nodes and summary["workers"] == [2] * 8
    run = MlflowClient(summary["tracking_uri"]).get_run(summary["run_id"])
    assert set(run.data.tags[NODES_TAG].split(",")) == worker_nodes
    assert summary["checkpoint"].startswith(f"s3://{BUCKET}/runs/spread/")
    state = ckpt.TrainingState.load(summary["checkpoint"])
    nodes = state.record.nodes
    assert nodes == [list(nodes[0])] * 8 and len(set(nodes[0])) == 2
    # Both workers held the same weights after each epoch, the checkpoint's.
    digests = state.record.replica_digests
    assert len(digests) == 2 and len(set(digests)) == 1

    # The same run on one node, as on a laptop: `hm2bp train` with a local Ray of its own, two
    # workers packed, the same seed, global batch (2 x 5) and shards. Equal weights: the nodes
    # change nothing.
    sets = small_overrides(SHARDS, tmp_path, "scaling.workers=2", EPOCHS, "run.name=packed")
    done = subprocess.run(
        [str(BIN / "hm2bp"), "train", str(PROJECT_ROOT / "configs" / "demo.yaml"), "--json",
         *[f"--set={item}" for item in sets]],
        env={**cluster.env, "RAY_ADDRESS": "local"}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    single = _summary(done.stdout)
    packed = ckpt.TrainingState.load(single["checkpoint"])
    assert len(single["nodes"]) == 1 and single["workers"] == [2] * 8
    for name, tensor in state.model.items():
        assert torch.equal(tensor, packed.model[name]), name
    assert digests[0] == weights_digest(packed.model)
    assert single["val_accuracy"] == summary["val_accuracy"]


def _wait_for(condition, what: str, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {seconds} s")
        time.sleep(0.5)


def test_a_lost_node_is_survived_and_replaced(cluster, uninterrupted, job_dir, tmp_path, aws):
    """Elastic workers: once the run trains on both worker nodes, one node's raylet is killed;
    the run goes on with the worker left from its last checkpoint, grows back to two when a new
    node joins, and ends with every epoch logged once and the accuracy of the uninterrupted run,
    within noise. An elastic run starts with as many workers as Ray Train finds resources for at
    that moment (one, in two full-suite runs), so the node is killed only after two epochs in a
    row on two workers: the first of them is then one Ray Train has registered (a checkpoint just
    written may not be, and the run would resume from the one before it). An epoch takes about two
    seconds here (checkpoint and MLflow included); the replacement joined and the run grew onto it
    within five, so thirty leave room for a machine several times slower."""
    epochs = 30
    sets = small_overrides(
        SHARDS, tmp_path, f"run.storage_path=s3://{BUCKET}/runs", "scaling.workers=2",
        "scaling.min_workers=1", "scaling.resize_interval_s=2", *ON_TRAINER_NODES,
        f"train.epochs={epochs}", "run.name=elastic",
    )  # fmt: skip
    started = cluster.submit(
        "python", "-m", "hm2bp.orchestration", "train", "demo.yaml", "--json",
        *[f"--set={item}" for item in sets], working_dir=job_dir, job_id="elastic", wait=False,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr[-3000:]
    run = f"s3://{BUCKET}/runs/elastic"

    def last_workers(epochs: int) -> list[float]:
        """Worker counts of the newest checkpoint's last `epochs` epochs ([] while none)."""
        latest = ckpt.latest_checkpoint(run)
        try:
            record = None if latest is None else ckpt.load_record(latest)
        except ckpt.CheckpointError:  # still being uploaded
            return []
        return [] if record is None else [h["workers"] for h in record.history[-epochs:]]

    try:
        _wait_for(lambda: last_workers(2) == [2, 2], "no two epochs on two workers")
        lost = cluster.workers[0]  # both worker nodes train now
        cluster.lose(lost)
        _wait_for(lambda: last_workers(1) == [1], "no epoch on one worker")
        replacement = cluster.add_worker()
        logs = cluster.ray_cli("job", "logs", "--follow", "elastic")
        status = cluster.ray_cli("job", "status", "elastic")
        assert "succeeded" in status.stdout.lower(), logs.stdout[-4000:] + status.stdout
    finally:  # the next tests get a whole cluster and an idle one
        cluster.ray_cli("job", "stop", "elastic")
        while len(cluster.workers) < 2:
            cluster.add_worker()
    summary = _summary(logs.stdout)

    # Two workers (the lost node one of them), then one after the loss, then two again on the
    # replacement node.
    workers = summary["workers"]
    record = ckpt.load_record(summary["checkpoint"])
    assert len(workers) == epochs and workers[-1] == 2, workers
    with_lost = [i for i, nodes in enumerate(record.nodes) if lost.node_id in nodes]
    assert with_lost and workers[with_lost[-1]] == 2, (workers, with_lost)
    alone = [i for i in range(with_lost[-1] + 1, epochs) if workers[i] == 1]
    assert alone, workers
    assert lost.node_id not in record.nodes[-1] and replacement.node_id in record.nodes[-1]
    # The global batch follows the workers: 5 a worker, 400 samples in 40 or 80 steps.
    assert [h["global_batch"] for h in record.history] == [5.0 * w for w in workers]
    client = MlflowClient(summary["tracking_uri"])
    for key in ("epoch", "val_accuracy", "train_loss", "workers"):
        steps = [m.step for m in client.get_metric_history(summary["run_id"], key)]
        assert steps == list(range(epochs)), key  # every epoch once, the restarts included
    assert client.get_run(summary["run_id"]).info.status == "FINISHED"
    # The learning rate follows the epoch, whatever the worker count (spec 4.9's schedule).
    steady = ckpt.load_record(uninterrupted[0]["checkpoint"]).history
    assert [h["lr"] for h in record.history[:8]] == [h["lr"] for h in steady]
    # Accuracy over epochs 6-8, as the uninterrupted run's last three (100 validation samples).
    elastic = sum(h["val_accuracy"] for h in record.history[5:8]) / 3
    baseline = uninterrupted[0]["val_accuracy_last3_mean"]
    assert abs(elastic - baseline) <= 0.1, (elastic, baseline)


WALKTHROUGH = PROJECT_ROOT / "docs" / "cluster.md"


def walkthrough_blocks() -> list[str]:
    """The bash blocks of docs/cluster.md between its walkthrough marker and "4. Stop"."""
    text = WALKTHROUGH.read_text()
    part = text[text.index("<!-- walkthrough:") : text.index("## 4. Stop")]
    return re.findall(r"```bash\n(.*?)```", part, re.S)


@needs_mlflow_server
def test_the_cluster_walkthrough_runs_as_written(cluster, tmp_path):
    """docs/cluster.md's commands on the three-node cluster, with its variables set for it:
    the job API of this cluster, S3, a real MLflow server on 127.0.0.1 as the head's, and the
    `trainer` slot for a GPU."""
    server = MlflowServer(tmp_path / "mlflow")
    server.folder.mkdir()
    server.start()
    checkout = tmp_path / "checkout"  # `--working-dir .`: what the job needs of a checkout
    shutil.copytree(PROJECT_ROOT / "configs", checkout / "configs")
    variables = {
        "JOBS": cluster.dashboard,
        "STORE": f"s3://{BUCKET}/walkthrough",
        "MLFLOW": server.uri,
        "SLOT": "scaling.resources_per_worker={trainer: 1}",
        "WORKERS": "2",
        "MIN_WORKERS": "2",  # both nodes, always (an elastic start takes what is free then)
    }
    blocks = walkthrough_blocks()
    assert len(blocks) == 4  # convert, train, sweep, runs
    outputs = []
    try:
        for block in blocks:
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block],
                env={**cluster.env, **variables}, cwd=checkout, capture_output=True, text=True,
                timeout=900,
            )  # fmt: skip
            assert done.returncode == 0, block + done.stdout[-4000:] + done.stderr[-3000:]
            outputs.append(done.stdout)
        client = MlflowClient(server.uri)
        trained = _summary(outputs[1])
        run = client.get_run(trained["run_id"])
        assert run.info.status == "FINISHED" and run.info.run_name == "demo-cluster"
        worker_nodes = {node.node_id for node in cluster.workers}
        assert set(run.data.tags[NODES_TAG].split(",")) == worker_nodes
        # The sweep: a parent run with the search space and the best value; four trials, each a
        # child run of two epochs with its grid point, on both worker nodes (one slot each).
        swept = _summary(outputs[2])
        parent = client.get_run(swept["parent_run_id"])
        assert parent.info.status == "FINISHED"
        assert parent.data.params["search.optimizer.lr"] == json.dumps({"grid": [1e-3, 3e-3]})
        assert parent.data.metrics["best_val_accuracy"] == pytest.approx(swept["best_value"])
        children = client.search_runs(
            [run.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{swept['parent_run_id']}'",
        )
        assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
        grid = {(float(c.data.params["optimizer.lr"]),
                 float(c.data.params["network.layers.0.threshold"])) for c in children}  # fmt: skip
        assert grid == {(1e-3, 5.0), (1e-3, 10.0), (3e-3, 5.0), (3e-3, 10.0)}
        for child in children:
            assert len(client.get_metric_history(child.info.run_id, "val_accuracy")) == 2
        names = {c.info.run_name.removeprefix("demo-sweep-") for c in children}
        assert {t["trial"] for t in swept["trials"]} == names
        assert {c.data.tags[NODES_TAG] for c in children} == worker_nodes
        assert "demo-cluster" in outputs[3]
    finally:
        server.kill()


def _can_unshare() -> bool:
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True
    )
    return done.returncode == 0


def test_a_local_path_that_a_node_cannot_see_is_refused(cluster, s3_shards, job_dir, tmp_path):
    """A fourth node with its own, empty view of a folder: `train` and `convert` naming a local
    path there stop before any work, naming the setting and the node."""
    if not _can_unshare():
        reason = "no mount namespaces here (unshare --mount needs root)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + "; CI runs as root")
        pytest.skip(reason)
    hidden = tmp_path / "local"
    hidden.mkdir()
    node = cluster.add_worker(cpus=0, slots=0, hidden=hidden)
    try:
        sets = small_overrides(SHARDS, tmp_path, f"run.storage_path={hidden}/runs")
        done = cluster.submit(
            "python", "-m", "hm2bp.orchestration", "train", "demo.yaml",
            *[f"--set={item}" for item in sets], working_dir=job_dir,
        )  # fmt: skip
        assert done.returncode != 0
        expected = (
            f"run.storage_path {hidden}/runs: a local path that 1 of the cluster's 4 nodes "
            f"cannot see (node {node.node_id[:12]} at "
        )
        assert expected in done.stdout, done.stdout[-3000:]
        assert "epoch 1/" not in done.stdout  # refused before any training
        converted = cluster.submit(
            "python", "-m", "hm2bp.orchestration", "convert", "digits", "--out",
            f"{hidden}/shards", "--T", str(T), "--split", SPLIT, working_dir=job_dir,
        )  # fmt: skip
        assert converted.returncode != 0
        assert f"--out {hidden}/shards: a local path that 1 of" in converted.stdout
        assert not (hidden / "shards").exists() or not any((hidden / "shards").glob("*.parquet"))
    finally:
        cluster.remove(node)
