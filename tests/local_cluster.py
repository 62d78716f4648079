"""A real multi-node Ray cluster on one machine, for the `multinode` tests and `bench/scaling.py`.

Each node is its own `ray start --block` process with its own raylet and object store: a head that
takes no training workers (it has CPUs for Ray Data's reads, the Train controller and Tune's
drivers, as the head of `ray_cluster.yaml` does, but none of the `trainer` resource that stands in
for a GPU node's GPU here) and worker nodes of 1 CPU and 1 `trainer` each. Nodes are stopped by the
PID of their `ray start` (never `ray stop`, which stops every Ray on the machine); a node is lost
by killing its raylet. Token authentication is settled with a token of the cluster's own, passed to
every node and client in `RAY_AUTH_MODE=token` and `RAY_AUTH_TOKEN`, so `~/.ray` is never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ports(*flags: str) -> list[str]:
    return [f"{flag}={free_port()}" for flag in flags]


_NODE_PORTS = (
    "--node-manager-port",
    "--object-manager-port",
    "--metrics-export-port",
    "--runtime-env-agent-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
)


@dataclass
class RayNode:
    """One node: its `ray start --block` process and what it was given."""

    name: str
    process: subprocess.Popen
    log: Path
    temp: Path
    node_id: str = ""

    def descendants(self, command_start: str) -> list[int]:
        """PIDs below this node's `ray start` whose program path contains `command_start`."""
        return processes_below(
            self.process.pid, lambda command: command_start in command.split("\0", 1)[0]
        )

    def raylet_pid(self) -> int:
        pids = self.descendants("/raylet")
        if len(pids) != 1:
            raise RuntimeError(f"node {self.name}: expected one raylet, found {pids}")
        return pids[0]

    def diagnosis(self, lines: int = 15) -> str:
        """The tails of this node's `ray start` output and raylet logs: why it did not join."""
        parts = [f"--- {self.name} ({self.node_id or 'no node id'}): {self.log}"]
        files = [self.log, *sorted(self.temp.glob("session_2*/logs/raylet.*"))]
        for path in files:
            try:
                tail = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError as error:
                tail = [f"unreadable: {error}"]
            parts += [f"-- {path.name}", *tail]
        return "\n".join(parts)


def processes_below(ancestor: int, wanted: Callable[[str], bool]) -> list[int]:
    """PIDs of the processes below `ancestor` whose command line (NUL-separated, from /proc)
    is `wanted`: a test's own processes, never another user's."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if wanted(command) and descends_from(int(entry.name), ancestor):
            found.append(int(entry.name))
    return found


def descends_from(pid: int, ancestor: int) -> bool:
    """Whether `ancestor` is a parent, grandparent, ... of `pid` (from /proc)."""
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4, after the command in parentheses
        if pid == ancestor:
            return True
    return False


@dataclass
class LocalCluster:
    """A head and worker nodes under `folder` (logs); `env` is what a client needs to reach it."""

    folder: Path
    env: dict[str, str] = field(default_factory=dict)
    gcs_address: str = ""
    dashboard: str = ""
    nodes: list[RayNode] = field(default_factory=list)
    temp_dirs: list[str] = field(default_factory=list)

    def start(
        self, workers: int = 2, head_cpus: int = 2, env: dict[str, str] | None = None
    ) -> LocalCluster:
        """Start the head and `workers` worker nodes (1 CPU, one `trainer` slot each); `env` is
        added to every node's (and client's) environment, e.g. the S3 endpoint and credentials.
        Configs ask for a slot with `scaling.resources_per_worker: {trainer: 1}` (on a GPU
        cluster the GPU plays this part)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            **(env or {}),
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",  # the job's `python` is ours
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
        }
        gcs_port, dashboard_port = free_port(), free_port()
        self.gcs_address = f"127.0.0.1:{gcs_port}"
        # Every process of the cluster names it: Ray Train's placement-group cleaner otherwise
        # looks for GCS processes on the machine and gives up when another Ray runs beside it.
        self.env["RAY_ADDRESS"] = self.gcs_address
        self.dashboard = f"http://127.0.0.1:{dashboard_port}"
        head = ["--head", f"--port={gcs_port}", f"--num-cpus={head_cpus}", "--num-gpus=0"]
        head += ["--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}"]
        head += _ports("--ray-client-server-port")
        self._start("head", head)
        wait_for_http(f"{self.dashboard}/api/version", 120)
        for _ in range(workers):
            self.add_worker()
        return self

    def _start(self, name: str, arguments: list[str], prefix: Sequence[str] = ()) -> RayNode:
        log = self.folder / f"{name}.log"
        # Each node its own temporary folder, as on separate machines: nodes sharing one would
        # share runtime-env packages, and one node deleting a job's working dir when its own last
        # use ends pulls it from under the job's driver on another. Short, for Ray's socket paths.
        temp = tempfile.mkdtemp(prefix=f"ray-{name}-", dir="/tmp")
        self.temp_dirs.append(temp)
        command = [*prefix, str(BIN / "ray"), "start", "--block", "--disable-usage-stats"]
        command += arguments
        command.append(f"--temp-dir={temp}")
        command += ["--node-ip-address=127.0.0.1", f"--object-store-memory={300 * 1024**2}"]
        command += _ports(*_NODE_PORTS)
        with open(log, "w") as out:
            process = subprocess.Popen(
                command, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        node = RayNode(name, process, log, Path(temp))
        self.nodes.append(node)
        node.node_id = self._node_id(node)
        return node

    @staticmethod
    def _node_id(node: RayNode, seconds: float = 120) -> str:
        """The node's ID, from its raylet's command line, once the raylet runs."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ids = [line.split("=", 1)[1] for line in _raylet_arguments(node) if "node_id=" in line]
            if ids:
                return ids[0]
            if node.process.poll() is not None:
                break
            time.sleep(0.5)
        raise TimeoutError(f"{node.name} started no raylet\n{node.diagnosis()}")

    def add_worker(self, cpus: int = 1, slots: int = 1, hidden: Path | None = None) -> RayNode:
        """A worker node of `cpus` CPUs and `slots` training workers' slots, joined to the head.
        With `hidden`, the node runs in a mount namespace of its own with an empty file system
        over that folder: a node that does not see what the others see there (needs root)."""
        resources = json.dumps({"trainer": slots})
        arguments = [f"--address={self.gcs_address}", f"--num-cpus={cpus}", "--num-gpus=0"]
        arguments.append(f"--resources={resources}")
        prefix = []
        if hidden is not None:
            prefix = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c"]
            prefix += ['mount -t tmpfs tmpfs "$0" && exec "$@"', str(hidden)]
        # One more try with a fresh node (new ports, new temp dir) if the first does not join:
        # what is tested is the run's behaviour once nodes join, not Ray's joining on a loaded
        # two-core machine; the first node's logs go to stderr, shown with a failing test.
        try:
            return self._join(arguments, prefix)
        except TimeoutError as error:
            print(f"a worker node did not join; starting another:\n{error}", file=sys.stderr)
            return self._join(arguments, prefix)

    def _join(self, arguments: list[str], prefix: list[str]) -> RayNode:
        """Start a worker node and wait until it is alive; one that is not is stopped."""
        name = f"worker{len(self.temp_dirs)}"  # never a lost node's name: its log is kept
        try:
            node = self._start(name, arguments, prefix)
            self.wait_for_nodes(self.nodes, seconds=90)
        except TimeoutError:
            _stop(self.nodes.pop())  # `_start` lists a node before it looks for its raylet
            raise
        return node

    @property
    def workers(self) -> list[RayNode]:
        return [node for node in self.nodes if node.name != "head"]

    def alive_nodes(self) -> set[str]:
        """IDs of the cluster's alive nodes, from the dashboard's state API (with the token)."""
        url = f"{self.dashboard}/api/v0/nodes?limit=100&detail=true"
        request = urllib.request.Request(
            url, headers={"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            nodes = json.load(response)["data"]["result"]["result"]
        return {node["node_id"] for node in nodes if node["state"] == "ALIVE"}

    def wait_for_nodes(self, nodes: Sequence[RayNode], seconds: float = 120) -> None:
        """Wait until exactly `nodes` are alive (the joined ones registered, the lost and removed
        ones counted dead); else fail with what each missing node's logs say."""
        wanted = {node.node_id for node in nodes}
        deadline = time.monotonic() + seconds
        alive: set[str] = set()
        asked = "never answered"
        while True:
            try:  # a dashboard slow to answer is asked again, not taken for a missing node
                alive, asked = self.alive_nodes(), "answered"
            except OSError as error:
                asked = f"last failed: {error}"
            if alive == wanted and asked == "answered":
                return
            if time.monotonic() > deadline:
                names = {node.node_id: node.name for node in nodes}
                missing = [node for node in nodes if node.node_id not in alive]
                raise TimeoutError(
                    f"after {seconds} s the cluster's alive nodes are "
                    f"{sorted(names.get(i, i) for i in alive)}, not {sorted(names.values())} "
                    f"(the state API {asked})\n" + "\n".join(n.diagnosis() for n in missing)
                )
            time.sleep(1)

    def remove(self, node: RayNode) -> None:
        """Stop the node (SIGTERM to its `ray start`) and wait until the cluster counts it gone."""
        _stop(node)
        self.nodes.remove(node)
        self.wait_for_nodes(self.nodes)

    def lose(self, node: RayNode) -> None:
        """The node fails: its raylet is killed (SIGKILL), then what it leaves is stopped; returns
        once the cluster counts it dead."""
        os.kill(node.raylet_pid(), signal.SIGKILL)
        node.process.wait(timeout=60)  # `ray start --block` exits when its raylet dies
        _stop(node)
        self.nodes.remove(node)
        self.wait_for_nodes(self.nodes)

    def stop(self) -> None:
        """The whole cluster at once, by SIGKILL: nothing of it is kept (a graceful stop waits
        up to 30 s on a node that winds down slowly). Job drivers run in sessions of their own
        below their node's processes: they are killed by PID first."""
        for node in self.nodes:
            for pid in processes_below(node.process.pid, lambda command: True):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(node.process.pid, signal.SIGKILL)
            node.process.wait(timeout=60)
        self.nodes.clear()
        for temp in self.temp_dirs:  # Ray Train's controller logs kept: they say why it resized
            for logs in Path(temp).glob("session_2*/logs/train"):  # not the session_latest link
                target = self.folder / f"train-logs-{Path(temp).name}-{logs.parent.parent.name}"
                shutil.copytree(logs, target, dirs_exist_ok=True)
            shutil.rmtree(temp, ignore_errors=True)  # the head's `ray_current_cluster` with it

    def submit(
        self, *command: str, working_dir: Path, timeout: float = 600, job_id: str = "",
        wait: bool = True,
    ) -> subprocess.CompletedProcess:  # fmt: skip
        """`ray job submit` of `command`, as a user types it; the finished CLI process (which
        returns at once with `wait=False`: then `logs(job_id)` waits for the job)."""
        submit = [str(BIN / "ray"), "job", "submit", "--address", self.dashboard]
        if job_id:
            submit += ["--submission-id", job_id]
        if not wait:
            submit.append("--no-wait")
        submit += ["--working-dir", str(working_dir), "--", *command]
        return subprocess.run(submit, env=self.env, capture_output=True, text=True, timeout=timeout)

    def ray_cli(self, *arguments: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """`ray <arguments> --address <dashboard>` (job status, job logs, ...)."""
        command = [str(BIN / "ray"), *arguments, "--address", self.dashboard]
        return subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=timeout
        )


def _raylet_arguments(node: RayNode) -> list[str]:
    pids = node.descendants("/raylet")
    if not pids:
        return []
    try:
        return Path(f"/proc/{pids[0]}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def _stop(node: RayNode) -> None:
    """SIGTERM to the node's `ray start`, then SIGKILL to its whole session if it lingers."""
    if node.process.poll() is None:
        node.process.send_signal(signal.SIGTERM)
        try:
            node.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.process.kill()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(node.process.pid, signal.SIGKILL)  # leftovers of a lost node (its workers)


def wait_for_http(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer (401 without a token) means the server is up
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {seconds} s")
