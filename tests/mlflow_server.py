"""A real `mlflow server` for the tests, in its own process group, on a free port.

Full MLflow (Flask, uvicorn) pins other versions than the client, so the Makefile installs it in a
venv of its own, `.venv-mlflow`, and passes its `mlflow` as `HM2BP_MLFLOW_SERVER`, as a server
runs apart from its clients on a real cluster.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from hm2bp.orchestration import tracking
from hm2bp.tests.local_cluster import free_port


class MlflowServer:
    """A real `mlflow server` on a SQLite store in `folder`, killed by its process group and
    restarted on the same port and database."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.database = folder / "mlflow.db"
        self.uri = f"http://127.0.0.1:{free_port()}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        port = self.uri.rsplit(":", 1)[1]
        command = [*MLFLOW_SERVER, "server", "--host", "127.0.0.1", "--port", port,
                   "--workers", "1", "--backend-store-uri", f"sqlite:///{self.database}",
                   "--artifacts-destination", str(self.folder / "mlartifacts")]  # fmt: skip
        with open(self.folder / "server.log", "ab") as log:
            # Its own session, so that killing its group takes its uvicorn worker too.
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2):
                    return
            except OSError:  # not listening yet (URLError is an OSError)
                time.sleep(0.5)
        log_tail = (self.folder / "server.log").read_text()[-2000:]
        self.kill()
        pytest.fail(f"mlflow server at {self.uri} did not answer /health:\n{log_tail}")

    def kill(self) -> None:
        """SIGKILL to its whole process group (the uvicorn worker too), once."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def logged_epochs(self) -> list[int]:
        """Epoch markers in the database, read directly: the server may be down."""
        try:
            with contextlib.closing(
                sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)
            ) as db:
                query = "SELECT step FROM metrics WHERE key = ?"
                return sorted(row[0] for row in db.execute(query, (tracking.EPOCH_METRIC,)))
        except sqlite3.Error:  # not created yet, or locked by a write
            return []


def _server_command() -> list[str] | None:
    """The real `mlflow` of the server: `HM2BP_MLFLOW_SERVER` (the Makefile installs full
    MLflow in a venv of its own, `.venv-mlflow`, as a server runs apart from its clients), else
    this environment's, if it has the server's Flask."""
    configured = os.environ.get("HM2BP_MLFLOW_SERVER")
    if configured:
        return [configured]
    if importlib.util.find_spec("flask") is not None:
        return [sys.executable, "-m", "mlflow"]
    return None


MLFLOW_SERVER = _server_command() or []
# Skipped (failed in CI) before the module's shards are converted: no server, no test.
needs_mlflow_server = pytest.mark.skipif(
    not MLFLOW_SERVER and os.environ.get("CI", "").lower() != "true",
    reason="no `mlflow server`: set HM2BP_MLFLOW_SERVER, or run `make test` (it installs one)",
)
