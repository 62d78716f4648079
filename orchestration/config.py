"""Experiment configs: one typed schema for `configs/*.yaml`, with the defaults in one place.

An experiment is a YAML file (it opens with its run command) read into `ExperimentConfig`, with
`--set key=value` overrides applied first (`network.layers.0.threshold=15`, `optimizer.lr=5e-4`);
`schema.from_dict` refuses unknown keys, wrong types and bad values together, each by its dotted
path. The `network` section is the engine's `kernels.spec.NetworkSpec` itself, whose limits are
the engine's (a layer's neuron constants sit beside its other keys). The same plain dict
(`to_dict`) travels to Ray Train workers and into checkpoints, and its flattened form
(`schema.flatten`) becomes the MLflow params. What a config must agree with outside itself (the
shards, an earlier run) is checked in `preflight.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from hm2bp.kernels.spec import NetworkSpec
from hm2bp.orchestration.schema import (
    ConfigError,
    bounded,
    from_dict,
    set_dotted,
    to_dict,
    to_plain,
)

__all__ = ["ConfigError", "ExperimentConfig", "load_config", "config_from_dict", "to_dict"]


@dataclass(frozen=True)
class DataConfig:
    """The shards (`hm2bp convert`'s folder, a path or URI) and what the config expects of them."""

    shards: str
    T: int = bounded(low=2)  # time steps per sample; must equal the manifest's
    encoder: Literal["rate", "event_binning", "cochlea_bsa"] = "rate"
    train_split: str = "train"
    val_split: str = "val"
    # The CNN row (spec 2.2): fresh Poisson draws each epoch from the raw `pixels` (shards written
    # with --keep-pixels), optionally after the reference's elastic/scale/rotation warp.
    reencode: bool = False
    augment: bool = False
    shuffle_buffer: int = bounded(2048, low=0)  # rows in each worker's local shuffle; 0: none

    def problems(self) -> list[str]:
        if self.augment and not self.reencode:
            return ["augment: true needs reencode: true (the warp acts on raw pixels)"]
        if self.reencode and self.encoder != "rate":
            return [f"reencode: true needs encoder 'rate' (got {self.encoder!r})"]
        return []


@dataclass(frozen=True)
class OptimizerConfig:
    """Adam as the reference (spec 4.9); `schedule` picks `kernels.schedule.reference_lr`'s
    variant: `mlp` base/sqrt(max(1, e)), `cnn` base/sqrt(e + 1), or `constant`."""

    name: Literal["adam"] = "adam"
    lr: float = bounded(1e-3, low=0, strict=True)
    schedule: Literal["mlp", "cnn", "constant"] = "mlp"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = bounded(low=1)
    batch_size: int = bounded(1, low=1)  # per worker; the reference trained at 1 only
    # Validation frees each layer's input and current once used: 8.2 MiB a sample on the largest
    # shipped network (78-800-800-26, T = 1000; bench/validation_memory.py), so 64 takes about
    # 0.5 GiB per worker, what 32 took when every layer's record was kept.
    eval_batch_size: int = bounded(64, low=1)
    # Boosting sample weights (spec 4.10). null: on only with one worker and batch_size 1, the
    # only setting where the reference's per-sample weights mean what they meant there.
    boosting: bool | None = None
    dtype: Literal["float32", "float64"] = "float32"


@dataclass(frozen=True)
class ScalingConfig:
    """Ray Train's workers: how many, what each takes, where they go, and how many may be lost.

    `min_workers` below `workers` makes the run elastic (Ray Train's `num_workers=(min, max)`): a
    lost node's worker is dropped and the run goes on from its last checkpoint with the workers
    left, then grows back when resources return (looked for every `resize_interval_s`). Each
    worker keeps `train.batch_size`, so the global batch is `batch_size` times the workers of the
    moment; the learning rate follows the epoch only (spec 4.9), not the worker count.
    """

    workers: int = bounded(1, low=1)
    min_workers: int | None = bounded(None, low=1)
    gpus_per_worker: float = bounded(0.0, low=0)
    # null: 1 CPU per worker where the cluster has spare CPUs, else a fraction that leaves one CPU
    # for Ray Data (two workers on a 2-core machine deadlock otherwise).
    cpus_per_worker: float | None = bounded(None, low=0, strict=True)
    # Custom Ray resources each worker takes beside CPUs and GPUs, e.g. {trainer: 1} on a cluster
    # whose training nodes offer `ray start --resources='{"trainer": 1}'`.
    resources_per_worker: dict[str, float] = field(default_factory=dict)
    # Ray's placement group strategy for the workers: `spread` puts them on different nodes
    # where it can, `strict_spread` only so.
    placement: Literal["pack", "spread", "strict_pack", "strict_spread"] = "pack"
    resize_interval_s: float = bounded(60.0, low=0, strict=True)
    max_failures: int = bounded(2, low=-1)  # restarts from the last checkpoint; -1: unlimited

    @property
    def elastic(self) -> bool:
        return self.min_workers is not None and self.min_workers < self.workers

    def problems(self) -> list[str]:
        found = []
        if self.min_workers is not None and self.min_workers > self.workers:
            found.append(
                f"min_workers: got {self.min_workers} (expected at most workers = {self.workers})"
            )
        for name, amount in self.resources_per_worker.items():
            if name in ("CPU", "GPU"):
                found.append(
                    f"resources_per_worker.{name}: set it with "
                    f"{name.lower()}s_per_worker (expected custom resources only)"
                )
            elif amount <= 0:
                found.append(f"resources_per_worker.{name}: got {amount} (expected > 0)")
        return found


@dataclass(frozen=True)
class RunSection:
    """Where the run lives: `storage_path/name` holds its checkpoints (local path or URI); a rerun
    with the same name resumes from the last one."""

    name: str
    storage_path: str = "runs"

    @property
    def folder(self) -> str:
        """The run's checkpoints: `storage_path/name`."""
        return f"{self.storage_path.rstrip('/')}/{self.name}"


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow: `uri` wins, then MLFLOW_TRACKING_URI, then `sqlite:///<cwd>/mlflow.db`."""

    uri: str | None = None
    experiment: str = "hm2bp"


@dataclass(frozen=True)
class ExperimentConfig:
    data: DataConfig
    network: NetworkSpec  # the engine's own spec: one schema, one set of limits
    train: TrainConfig
    run: RunSection
    seed: int = 0
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    @property
    def boosting(self) -> bool:
        """Whether boosting weights are used: the config's choice, else on only at 1 worker, B=1."""
        if self.train.boosting is not None:
            return self.train.boosting
        return self.scaling.workers == 1 and self.train.batch_size == 1

    def problems(self) -> list[str]:
        if self.train.boosting and self.scaling.elastic:
            return [
                "train.boosting: true with elastic workers (scaling.min_workers < workers): a "
                "sample's weight lives with the worker that trained it, and a lost worker "
                "loses its share (expected train.boosting: false or null)"
            ]
        return []


def parse_override(text: str) -> tuple[str, Any]:
    """`"optimizer.lr=5e-4"` -> `("optimizer.lr", 0.0005)`; the value is read as YAML."""
    key, sep, value = text.partition("=")
    if not (key and sep):
        raise ConfigError([f"--set {text!r}: expected KEY=VALUE, e.g. optimizer.lr=5e-4"])
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise ConfigError([f"--set {text!r}: the value is not YAML ({err})"]) from None


def config_from_dict(
    data: Mapping[str, Any],
    overrides: Iterable[str] | Mapping[str, Any] = (),
    source: str = "config",
) -> ExperimentConfig:
    """Validate `data` after applying `overrides` (`KEY=VALUE` strings or a dotted-key mapping)."""
    raw = to_plain(data)  # a copy that overrides may change
    pairs = overrides.items() if isinstance(overrides, Mapping) else map(parse_override, overrides)
    problems = []
    for key, value in pairs:
        try:
            set_dotted(raw, key, value)
        except KeyError as err:
            problems.append(f"--set {err.args[0]}")
    if problems:
        raise ConfigError(problems, source)
    return from_dict(ExperimentConfig, raw, source)


def load_config(
    path: str | Path, overrides: Iterable[str] | Mapping[str, Any] = ()
) -> ExperimentConfig:
    """Read a YAML experiment; errors name the file and every bad field."""
    path = Path(path)
    data = read_yaml(path, "config")
    return config_from_dict(data if data is not None else {}, overrides, source=str(path))


def read_yaml(path: Path, what: str) -> Any:
    """The YAML in `path`; a missing file or bad YAML is an error naming it."""
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such {what} (expected a YAML file)") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError([f"not YAML: {err}"], str(path)) from None
