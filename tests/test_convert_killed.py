"""A `convert` driver killed with SIGKILL (no handler runs) takes its Ray tasks with it: no task
process of it outlives it by more than a few seconds, no shard appears after that, and the same
command run again finishes the conversion from the shards that were whole.

The driver here starts its own Ray (`RAY_ADDRESS=local`), as `hm2bp convert` on a workstation does;
Ray's two node agents (dashboard and runtime-env agents) are Ray's own and leave within a minute
of their raylet, which this test does not wait for. Joined to a cluster, Ray ends a dead driver's
job and kills its task workers at once (measured, recorded in docs/reliability.md)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hm2bp.pipelines.manifest import read_manifest

pytestmark = pytest.mark.e2e

HM2BP = [sys.executable, "-m", "hm2bp.orchestration", "convert", "digits"]


def family(root: int) -> dict[int, str]:
    """Every live descendant of `root`, with its command line."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, pending = {}, [root]
    while pending:
        for child in children.get(pending.pop(), []):
            found[child] = command_of(child)
            pending.append(child)
    return {pid: cmd for pid, cmd in found.items() if cmd is not None}


def command_of(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None


def shards(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.parquet")} if folder.exists() else set()


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {seconds} s")
        time.sleep(0.2)


def test_a_killed_driver_stops_its_tasks_and_a_rerun_finishes(tmp_path):
    out = tmp_path / "digits"
    command = [*HM2BP, "--out", str(out), "--T", "50", "--rows-per-shard", "4"]
    env = {**os.environ, "RAY_ADDRESS": "local"}  # its own Ray, whatever else runs here
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: len(shards(out)) >= 5, 180, "no shard was written")
    tasks = family(driver.pid)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    workers = {pid for pid, cmd in tasks.items() if "agent" not in cmd.lower()}
    wait_for(lambda: all(command_of(p) is None for p in workers), 20, "task processes still ran")
    left = shards(out)
    time.sleep(3)
    assert shards(out) == left  # nothing writes any more
    assert not (out / "manifest.json").exists()
    rerun = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True,
                           timeout=600)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"written, {len(left)} already complete)" in rerun.stderr  # the human lines
    summary = json.loads(rerun.stdout)  # stdout: exactly one JSON object
    assert summary["samples"] == 1797 and summary["shards_reused"] == len(left)
    manifest = read_manifest(str(out))
    assert manifest.samples == 1797 and shards(out) == {e.file for e in manifest.shards}
