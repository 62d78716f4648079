"""Across nodes for real: a three-node Ray cluster on this machine (`local_cluster.py`), shards and
checkpoints on a real S3 server (moto's server mode), work sent with `ray job submit`.

The head takes no training workers; each of the two worker nodes offers one `trainer` slot, which
the configs ask for (`scaling.resources_per_worker: {trainer: 1}`), as GPU nodes offer one GPU.
"""

from __future__ import annotations

import json
import os
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
                    access_key="testing",
                    secret_key="testing",
                    region="us-east-1",
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
    try:
        yield cluster.start(workers=2, env=s3)
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


def _train_job(cluster, job_dir, root, *overrides, job_id="") -> dict:
    sets = small_overrides(SHARDS, root, f"run.storage_path=s3://{BUCKET}/runs", *overrides)
    done = cluster.submit(
        "python", "-m", "hm2bp.orchestration", "train", "demo.yaml", "--json",
        *[f"--set={item}" for item in sets], working_dir=job_dir, job_id=job_id,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    return _summary(done.stdout)


def test_two_workers_on_two_nodes_train_as_two_on_one(cluster, s3_shards, job_dir, tmp_path, aws):
    summary = _train_job(
        cluster, job_dir, tmp_path, "scaling.workers=2", *ON_TRAINER_NODES, "run.name=spread"
    )
    worker_nodes = {node.node_id for node in cluster.workers}
    assert set(summary["nodes"]) == worker_nodes and summary["workers"] == [2, 2]
    run = MlflowClient(summary["tracking_uri"]).get_run(summary["run_id"])
    assert set(run.data.tags[NODES_TAG].split(",")) == worker_nodes
    assert summary["checkpoint"].startswith(f"s3://{BUCKET}/runs/spread/")
    state = ckpt.load_state(summary["checkpoint"])
    assert state["nodes"] == [list(state["nodes"][0])] * 2 and len(set(state["nodes"][0])) == 2
    # Both workers held the same weights after each epoch, the checkpoint's.
    digests = state["replica_digests"]
    assert len(digests) == 2 and len(set(digests)) == 1

    # The same run on one node, as on a laptop: `hm2bp train` with a local Ray of its own, two
    # workers packed, the same seed, global batch (2 x 5) and shards. Equal weights: the nodes
    # change nothing.
    sets = small_overrides(SHARDS, tmp_path, "scaling.workers=2", "run.name=packed")
    done = subprocess.run(
        [str(BIN / "hm2bp"), "train", str(PROJECT_ROOT / "configs" / "demo.yaml"), "--json",
         *[f"--set={item}" for item in sets]],
        env={**cluster.env, "RAY_ADDRESS": "local"}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    single = _summary(done.stdout)
    packed = ckpt.load_state(single["checkpoint"])
    assert len(single["nodes"]) == 1 and single["workers"] == [2, 2]
    for name, tensor in state["model"].items():
        assert torch.equal(tensor, packed["model"][name]), name
    assert digests[0] == weights_digest(packed["model"])
    assert single["val_accuracy"] == summary["val_accuracy"]

