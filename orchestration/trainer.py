"""The driver of one training run: check, track, build Ray Train's `TorchTrainer`, fit.

`train(config)` is what `hm2bp train`, `hm2bp demo` and a Tune trial (a driver function per trial,
since Train V2 refuses a Trainer inside a Tuner) all call. In order:

1. the config is checked against the shards (their manifest and digests) and against the run it
   would resume (`preflight.py`), and refused with every mismatch named, before Ray or MLflow;
2. the MLflow run is opened (or continued, for a rerun of the same run name), so an unreachable
   store fails before any worker starts; params, the config and the manifest are logged;
3. `build_trainer` makes the `TorchTrainer`: `ScalingConfig` from `scaling` (GPUs per worker, and
   fractional CPUs where the cluster has no CPU to spare for Ray Data: two whole-CPU workers on a
   2-core machine deadlock), NCCL with GPUs and gloo without, `FailureConfig(max_failures)`,
   `RunConfig(name, storage_path)` (a rerun with the same pair resumes from its last checkpoint),
   the `train` split divided equally among workers and the `val` split, read once into the object
   store, whole to each (each worker validates every world_size-th batch);
4. `fit()`, then the run's history is read from the final checkpoint; the driver logs the epochs
   MLflow lacks from it (rank 0 retries a failed log only at its next epoch) and marks the run
   FINISHED. A store that dropped mid-run and is still gone is reported in `tracking_problem`, not
   raised: the training and its checkpoint are kept. A fit that fails marks the run FAILED.

Product code calls plain `ray.init()`: it joins the cluster of `RAY_ADDRESS` or `ray job submit`,
else starts a local one.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any

import yaml
from hm2bp.orchestration import checkpoint as ckpt
from hm2bp.orchestration import tracking
from hm2bp.orchestration.config import ExperimentConfig, to_dict
from hm2bp.orchestration.preflight import preflight
from hm2bp.orchestration.run_inputs import dataset_inputs
from hm2bp.orchestration.schema import flatten
from hm2bp.orchestration.worker import train_loop_per_worker
from hm2bp.pipelines.manifest import Manifest
from hm2bp.pipelines.storage import absolute, check_shared


@dataclass(frozen=True)
class TrainResult:
    val_accuracy: float
    history: list[dict[str, float]]
    checkpoint: str  # the latest
    best_checkpoint: str  # of the highest val_accuracy (the latest among equals)
    run_folder: str
    run_id: str
    tracking_uri: str
    nodes: list[str] = field(default_factory=list)  # Ray node ids the workers ran on
    tracking_problem: str | None = None  # the store failed at the end: epochs may be missing

    def summary(self) -> dict[str, Any]:
        """The JSON line of `hm2bp train --json` / `hm2bp demo --json`."""
        accuracies = [h["val_accuracy"] for h in self.history]
        return {
            "val_accuracy": self.val_accuracy,
            "val_accuracy_last3_mean": sum(accuracies[-3:]) / len(accuracies[-3:]),
            "val_accuracy_best": max(accuracies),
            "epochs": len(self.history),
            "checkpoint": self.checkpoint,
            "best_checkpoint": self.best_checkpoint,
            "run_folder": self.run_folder,
            "run_id": self.run_id,
            "tracking_uri": self.tracking_uri,
            "nodes": self.nodes,
            "workers": [int(h["workers"]) for h in self.history if "workers" in h],
            "tracking_problem": self.tracking_problem,
        }


def resolved(config: ExperimentConfig) -> ExperimentConfig:
    """Local paths made absolute: workers run in other directories (and other machines, where
    only shared storage or URIs make sense)."""
    return replace(
        config,
        data=replace(config.data, shards=absolute(config.data.shards)),
        run=replace(config.run, storage_path=absolute(config.run.storage_path)),
    )


def cpus_per_worker(config: ExperimentConfig, cluster_cpus: float) -> float:
    """The config's value, else 1 where the cluster keeps a CPU free for Ray Data beside the
    workers, else an equal share of all CPUs but one (0.5 each for 2 workers on 2 cores)."""
    if config.scaling.cpus_per_worker is not None:
        return config.scaling.cpus_per_worker
    workers = config.scaling.workers
    if cluster_cpus >= workers + 1:
        return 1.0
    return max(0.1, (cluster_cpus - 1) / workers) if cluster_cpus > 1 else cluster_cpus / workers


def build_trainer(
    config: ExperimentConfig,
    manifest: Manifest,
    run: tracking.RunRef | None,
    cluster_cpus: float,
    callbacks: Sequence[Any] = (),
):
    """The `TorchTrainer` of a resolved config (not started; the validation set is read into the
    object store); `callbacks` go to its `RunConfig` (a Tune driver passes
    `TuneReportCallback()`)."""
    from hm2bp.orchestration.batches import columns
    from hm2bp.pipelines.dataset import read_shards
    from ray.train import (
        CheckpointConfig,
        DataConfig,
        FailureConfig,
        LoggingConfig,
        RunConfig,
        ScalingConfig,
    )
    from ray.train.torch import TorchConfig, TorchTrainer

    scaling = config.scaling
    gpus = scaling.gpus_per_worker
    resources = {"CPU": cpus_per_worker(config, cluster_cpus), **scaling.resources_per_worker}
    if gpus:
        resources["GPU"] = gpus
    data = config.data
    with warnings.catch_warnings():  # Ray 2.60 passes on its own deprecated exclude_resources
        warnings.filterwarnings("ignore", ".*exclude_resources", DeprecationWarning)
        ingest = DataConfig.default_ingest_options()
    ingest.preserve_order = True
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "experiment": to_dict(config),
            "manifest": manifest.to_json(),
            "tracking": None if run is None else vars(run),
            "progress_bars": sys.stderr.isatty(),
        },
        torch_config=TorchConfig(backend="nccl" if gpus else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=(scaling.min_workers, scaling.workers)
            if scaling.elastic
            else scaling.workers,
            use_gpu=bool(gpus),
            resources_per_worker=resources,
            placement_strategy=scaling.placement.upper(),
            elastic_resize_monitor_interval_s=scaling.resize_interval_s,
        ),
        run_config=RunConfig(
            name=config.run.name,
            storage_path=config.run.storage_path,
            failure_config=FailureConfig(max_failures=scaling.max_failures),
            # The best checkpoint by validation accuracy and, always, the latest (Ray Train's
            # rule; `checkpoint.best_epochs` finds the same best, the later among equals).
            checkpoint_config=CheckpointConfig(
                num_to_keep=1,
                checkpoint_score_attribute=ckpt.SCORE,
                checkpoint_score_order="max",
            ),
            callbacks=list(callbacks) or None,
            # Ray Train logs every report and checkpoint at INFO; our epoch line says it once.
            logging_config=LoggingConfig(log_level="WARNING"),
            # Without Ray Train's print patch a worker's line reaches the driver once, not twice.
            worker_runtime_env={"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}},
        ),
        datasets={
            "train": read_shards(data.shards, data.train_split, columns(config, train=True)),
            "val": _validation_set(config, columns(config, train=False)),
        },
        # In order: each worker's share is then the same wherever the workers run, so a seed
        # gives the same weights on one node or several.
        dataset_config=DataConfig(datasets_to_split=["train"], execution_options=ingest),
    )


def _validation_set(config: ExperimentConfig, columns: Sequence[str]):
    """The val split read (and verified) once, in manifest order, and kept in the object store:
    every worker iterates all of it every epoch, and a fresh read each time made the demo's epochs
    several times longer (docs/benchmarks.md)."""
    import ray.data
    from hm2bp.pipelines.dataset import read_shards

    options = ray.data.DataContext.get_current().execution_options
    ordered, options.preserve_order = options.preserve_order, True
    try:
        return read_shards(config.data.shards, config.data.val_split, columns).materialize()
    finally:
        options.preserve_order = ordered


def open_tracking(
    config: ExperimentConfig,
    manifest: Manifest,
    config_text: str | None = None,
    parent_run_id: str | None = None,
) -> tracking.RunRef:
    """Open (or continue) the MLflow run of a resolved config; raises `TrackingError` early."""
    uri = tracking.resolve_tracking_uri(config.tracking.uri)
    texts = {
        "config.yaml": yaml.safe_dump(to_dict(config), sort_keys=False),
        "manifest.json": manifest.to_json(),
    }
    if config_text is not None:
        texts["config_source.yaml"] = config_text
    splits = {"train": config.data.train_split, "val": config.data.val_split}
    return tracking.open_run(
        uri,
        config.tracking.experiment,
        run_name=config.run.name,
        run_key=f"{config.run.storage_path}/{config.run.name}",
        params=flatten(to_dict(config)),
        texts=texts,
        parent_run_id=parent_run_id,
        datasets=dataset_inputs(manifest, config.data.shards, splits),
    )


def train(
    config: ExperimentConfig,
    *,
    config_text: str | None = None,
    callbacks: Sequence[Any] = (),
    parent_run_id: str | None = None,
) -> TrainResult:
    """Train `config` on Ray (joining the cluster `ray.init()` finds); see the module docstring."""
    import ray
    import ray.data

    config = resolved(config)
    manifest = preflight(config)
    if not ray.is_initialized():
        ray.init()
    check_shared(
        inputs={"data.shards": config.data.shards},
        outputs={"run.storage_path": config.run.storage_path},
    )
    run = open_tracking(config, manifest, config_text, parent_run_id)
    # Ray Data's per-operator bars and log lines would bury the epoch lines; ours show progress.
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    run_folder = config.run.folder
    try:
        trainer = build_trainer(  # reads the validation set: a bad shard fails the run here
            config, manifest, run, ray.cluster_resources().get("CPU", 1.0), callbacks
        )
        result = trainer.fit()
        # Ray gives the path inside the storage filesystem; rebuild it from the run folder (a URI
        # keeps its scheme).
        checkpoint = f"{run_folder}/{PurePosixPath(result.checkpoint.path).name}"
        record = ckpt.load_record(checkpoint)
        history = record.history
        # The one Ray Train kept as best: the highest score, the later among equals.
        kept, _ = max(result.best_checkpoints, key=lambda c: (c[1][ckpt.SCORE], c[0].path))
        best = f"{run_folder}/{PurePosixPath(kept.path).name}"
    except BaseException:
        with contextlib.suppress(Exception):  # a failing store must not hide the training error
            tracking.finish_run(run, failed=True)
        raise
    tags = tracking.checkpoint_tags(checkpoint, best, record.trained_on)
    problem = tracking.complete_run(run, history, tags)
    return TrainResult(
        val_accuracy=history[-1]["val_accuracy"],
        history=history,
        checkpoint=checkpoint,
        best_checkpoint=best,
        run_folder=run_folder,
        run_id=run.run_id,
        tracking_uri=run.uri,
        nodes=tracking.nodes_used(record.nodes),
        tracking_problem=problem,
    )
