"""`ray job submit` against a real head that this test starts (`ray start --head --block`), as a
user submits to a cluster: the job trains through the module entry point, SUCCEEDS, and its MLflow
run is in the store the job was told to use (its working dir is temporary, so it must be told)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hm2bp.tests.conftest import PROJECT_ROOT
from hm2bp.tests.local_cluster import free_port, wait_for_http
from mlflow import MlflowClient

pytestmark = pytest.mark.e2e


@pytest.fixture
def ray_head(tmp_path):
    """A Ray head in the background (its own ports), stopped by its PID; yields the job address."""
    bin_dir = Path(sys.executable).parent
    dashboard = free_port()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",  # the job's `python` is ours
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    ports = {
        "--port": free_port(),
        "--dashboard-port": dashboard,
        "--ray-client-server-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--metrics-export-port": free_port(),
        "--runtime-env-agent-port": free_port(),
    }
    command = [str(bin_dir / "ray"), "start", "--head", "--block", "--num-cpus=2"]
    command += ["--dashboard-host=127.0.0.1", "--disable-usage-stats"]
    command += [f"{flag}={port}" for flag, port in ports.items()]
    log = open(tmp_path / "head.log", "w")  # noqa: SIM115 - closed after the head stops
    head = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        wait_for_http(f"{address}/api/version", 90)
        yield address, env
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            head.kill()
        log.close()
        # `ray start` leaves this behind when stopped by PID; a later plain ray.init() would
        # then try to join the dead cluster.
        Path("/tmp/ray/ray_current_cluster").unlink(missing_ok=True)


def test_a_submitted_training_job_succeeds_and_is_tracked(ray_head, tmp_path, monkeypatch):
    from hm2bp.pipelines.convert import convert
    from ray.job_submission import JobStatus, JobSubmissionClient

    address, env = ray_head
    convert("digits", out=str(tmp_path / "shards"), T=60, split="ratio:0.8", rows_per_shard=400)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    shutil.copy(PROJECT_ROOT / "configs" / "demo.yaml", job_dir / "demo.yaml")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = {
        "data.shards": tmp_path / "shards",
        "data.T": 60,
        "train.epochs": 1,
        "scaling.workers": 1,
        "run.name": "submitted",
        "run.storage_path": tmp_path / "runs",
        "tracking.uri": store,
        "tracking.experiment": "jobs",
    }
    submit = [str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", address]
    submit += ["--submission-id", "hm2bp-train"]
    submit += ["--working-dir", str(job_dir), "--", "python", "-m", "hm2bp.orchestration"]
    submit += ["train", "demo.yaml", "--json", *[f"--set={k}={v}" for k, v in overrides.items()]]
    env = {**env, "RAY_AUTH_MODE": "token"}  # Ray 2.60's head expects the job CLI's token
    done = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    status = JobSubmissionClient(address).get_job_status("hm2bp-train")
    assert status == JobStatus.SUCCEEDED

    summary = json.loads(
        next(line for line in reversed(done.stdout.splitlines()) if line.startswith("{"))
    )
    client = MlflowClient(store)
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == client.get_experiment_by_name("jobs").experiment_id
    assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == 1
