"""A small real training setup for orchestration tests: a slice of scikit-learn's digits
converted with Ray tasks, and the demo config shrunk to it (T = 50, 64-32-10): seconds an epoch."""

from __future__ import annotations

import os
from pathlib import Path

from hm2bp.orchestration.config import ExperimentConfig, load_config
from hm2bp.tests.conftest import PROJECT_ROOT
from hm2bp.tests.local_cluster import processes_below

T = 50
SPLIT = "range:train=0-399,val=400-499"


def convert_small_digits(folder: Path) -> str:
    """400 training and 100 validation digits as shards under `folder` (needs Ray running)."""
    from hm2bp.pipelines.convert import convert

    convert("digits", out=str(folder), T=T, split=SPLIT, seed=0, rows_per_shard=150)
    return str(folder)


DEMO = PROJECT_ROOT / "configs" / "demo.yaml"


def small_config(shards: str, root: Path, *overrides: str) -> ExperimentConfig:
    """The demo config on the small digits: runs under `root/runs`, MLflow in `root/mlflow.db`."""
    return load_config(DEMO, small_overrides(shards, root, *overrides))


def small_overrides(shards: str, root: Path, *overrides: str) -> list[str]:
    """The `--set` values of `small_config`."""
    return [
        f"data.shards={shards}",
        f"data.T={T}",
        "network.layers.0.size=32",
        "network.layers.0.threshold=2",
        "network.layers.1.threshold=2",
        "network.targets.desired=8",
        "network.targets.undesired=1",
        "network.targets.margin=1",
        "train.epochs=2",
        "train.batch_size=5",
        "optimizer.lr=1e-2",
        f"run.storage_path={root / 'runs'}",
        f"tracking.uri=sqlite:///{root / 'mlflow.db'}",
        *overrides,
    ]


def descendant_pids(title: str) -> list[int]:
    """Processes of this test session (children of children of this process) whose command line
    starts with `title`, e.g. `ray::RayTrainWorker`: never another user's Ray."""
    return processes_below(os.getpid(), lambda command: command.startswith(title))
