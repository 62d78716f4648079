"""`hm2bp sweep CONFIG`: Ray Tune over full (possibly multi-worker) Ray Train runs.

A sweep file names a base experiment and a search space over its dotted fields:

    # hm2bp sweep configs/demo_sweep.yaml
    experiment: demo.yaml               # relative to this file
    name: demo-lr                       # Tune run name, MLflow parent run, trial run prefix
    search:
      optimizer.lr: {grid: [1.0e-3, 3.0e-3]}
    scheduler: {name: asha, grace_period: 1}

Train V2 refuses a Trainer inside a Tuner, so each trial is a driver function that calls
`trainer.train` with the trial's overrides (run name `<sweep>-<trial id>`) and Ray Train's
`TuneReportCallback`, which hands every epoch's metrics to Tune (ASHA stops trials on them). MLflow
gets one parent run per sweep and a child run per trial (the child is the trial's ordinary training
run, tagged with the parent). Every search path and value is validated against the base
experiment before the first trial starts. A rerun of the same sweep restores the Tune experiment
from `run.storage_path/<name>`: finished trials are kept, unfinished ones resume from their last
checkpoint.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from hm2bp.orchestration import tracking
from hm2bp.orchestration.config import ExperimentConfig, config_from_dict, read_yaml, to_dict
from hm2bp.orchestration.schema import ConfigError, bounded, flatten, from_dict
from hm2bp.orchestration.search_space import param_space


@dataclass(frozen=True)
class SchedulerConfig:
    """`fifo` runs every trial to the end; `asha` stops the worse ones at rungs of epochs."""

    name: Literal["fifo", "asha"] = "fifo"
    grace_period: int = bounded(1, low=1)  # epochs before a trial can be stopped
    reduction_factor: float = bounded(2.0, low=1, strict=True)


@dataclass(frozen=True)
class SweepSettings:
    experiment: str
    name: str
    num_samples: int = bounded(1, low=1)  # repeats of the grid; draws of the random samplers
    metric: str = "val_accuracy"
    mode: Literal["max", "min"] = "max"
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    max_concurrent_trials: int | None = bounded(None, low=1)  # null: from the cluster's resources
    max_failures: int = bounded(1, low=-1)  # per trial, on top of each run's own restarts


@dataclass(frozen=True)
class Sweep:
    settings: SweepSettings
    search: dict[str, Any]  # the YAML search section, as written
    config: ExperimentConfig  # the base experiment with --set overrides applied
    source: str  # the sweep file's text (an MLflow artifact of the parent run)


def load_sweep(path: str | Path, overrides: Iterable[str] = ()) -> Sweep:
    """Read a sweep file; `overrides` (`KEY=VALUE`) apply to the base experiment."""
    path = Path(path)
    data = read_yaml(path, "sweep file") or {}
    if not isinstance(data, dict):
        raise ConfigError([f"found {type(data).__name__}, expected a mapping"], str(path))
    search = data.pop("search", None)
    if not isinstance(search, dict) or not search:
        raise ConfigError(
            ["search: expected a mapping of dotted config paths to samplers"], str(path)
        )
    settings = from_dict(SweepSettings, data, source=str(path))
    experiment_path = path.parent / settings.experiment
    base_data = read_yaml(experiment_path, f"experiment of {path}")
    config = config_from_dict(base_data or {}, list(overrides), source=str(experiment_path))
    _check_search(search, to_dict(config), str(path))
    return Sweep(settings, search, config, path.read_text())


def _check_search(search: Mapping[str, Any], base: dict[str, Any], source: str) -> None:
    """Every sampler well formed, and every value it can take a valid experiment (the ends of a
    range stand for the range), so that a misspelt path fails now, not in trial 37."""
    param_space(search)  # raises on malformed samplers
    problems = []
    for path, spec in search.items():
        ((_, values),) = spec.items()
        for value in values:
            try:
                config_from_dict(base, {path: value})
            except ConfigError as err:
                problems += [f"search.{path}={value!r}: {p}" for p in err.problems]
    if problems:
        raise ConfigError(problems, source)


_DRIVER_CPU = 0.1  # the trial's driver function only waits on its TorchTrainer


def concurrency(config: ExperimentConfig, resources: Mapping[str, float]) -> int:
    """Trials that fit at once: GPUs / GPUs per trial; on CPUs, all CPUs but one (kept for Ray
    Data) / CPUs per trial (its workers plus the 0.1-CPU driver); no more than each custom
    resource of `scaling.resources_per_worker` allows; at least one."""
    from hm2bp.orchestration.trainer import cpus_per_worker

    workers = config.scaling.workers
    if config.scaling.gpus_per_worker:
        fit = int(resources.get("GPU", 0) // (workers * config.scaling.gpus_per_worker))
    else:
        cpus = resources.get("CPU", 1.0)
        per_trial = workers * cpus_per_worker(config, cpus) + _DRIVER_CPU
        fit = math.floor((cpus - 1) / per_trial)
    for name, amount in config.scaling.resources_per_worker.items():
        fit = min(fit, int(resources.get(name, 0) // (workers * amount)))
    return max(1, fit)


def _with_trial_cpus(config: ExperimentConfig, trial_cpus: float) -> ExperimentConfig:
    """Fix the workers' CPUs from the trial's share of the cluster less its driver: left to the
    trainer, they would be sized from the whole cluster, and on a small one the driver's 0.1 CPU
    would leave Ray Data no whole CPU to read with (the trial then waits forever)."""
    from hm2bp.orchestration.trainer import cpus_per_worker

    if config.scaling.cpus_per_worker is not None:
        return config
    cpus = cpus_per_worker(config, trial_cpus - _DRIVER_CPU)
    return replace(config, scaling=replace(config.scaling, cpus_per_worker=cpus))


def _trial(params: dict[str, Any], base: dict[str, Any], sweep_name: str, parent_run_id: str):
    """One trial: the base experiment with the sampled overrides, trained by Ray Train."""
    from hm2bp.orchestration.trainer import train
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_id = tune.get_context().get_trial_id()
    overrides = {**params, "run.name": f"{sweep_name}-{trial_id}"}
    result = train(
        config_from_dict(base, overrides),
        callbacks=[TuneReportCallback()],
        parent_run_id=parent_run_id,
    )
    return {
        **result.history[-1],
        "checkpoint": result.checkpoint,
        "best_checkpoint": result.best_checkpoint,
        "run_id": result.run_id,
    }


@dataclass(frozen=True)
class SweepResult:
    parent_run_id: str
    tracking_uri: str
    best_trial: str | None  # None when no trial reported the metric (all failed)
    best_value: float | None
    trials: list[dict[str, Any]]
    tracking_problem: str | None = None  # the store failed while the sweep was closed

    def summary(self) -> dict[str, Any]:
        return {
            "parent_run_id": self.parent_run_id,
            "tracking_uri": self.tracking_uri,
            "best_trial": self.best_trial,
            "best_value": self.best_value,
            "trials": self.trials,
            "tracking_problem": self.tracking_problem,
        }


def run_sweep(sweep: Sweep) -> SweepResult:
    """Run (or resume) the sweep on the cluster `ray.init()` joins; see the module docstring."""
    import ray
    from hm2bp.orchestration.trainer import resolved
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    settings = sweep.settings
    # Trials run in Tune's own working directories: the default store (./mlflow.db) must be
    # resolved here, in the directory the command was started from.
    config = resolved(sweep.config)
    uri = tracking.resolve_tracking_uri(config.tracking.uri)
    config = replace(config, tracking=replace(config.tracking, uri=uri))
    parent = _open_parent(sweep, config)
    if not ray.is_initialized():
        ray.init()
    resources = ray.cluster_resources()
    trials_at_once = settings.max_concurrent_trials or concurrency(config, resources)
    base = to_dict(_with_trial_cpus(config, resources.get("CPU", 1.0) / trials_at_once))
    trainable = tune.with_resources(
        tune.with_parameters(
            _trial, base=base, sweep_name=settings.name, parent_run_id=parent.run_id
        ),
        {"cpu": _DRIVER_CPU},
    )
    location = f"{config.run.storage_path.rstrip('/')}/{settings.name}"
    if tune.Tuner.can_restore(location):
        tuner = tune.Tuner.restore(location, trainable, resume_errored=True)
    else:
        scheduler = (
            ASHAScheduler(
                grace_period=settings.scheduler.grace_period,
                reduction_factor=settings.scheduler.reduction_factor,
                max_t=config.train.epochs,
            )
            if settings.scheduler.name == "asha"
            else FIFOScheduler()
        )
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(sweep.search),
            tune_config=tune.TuneConfig(
                metric=settings.metric,
                mode=settings.mode,
                num_samples=settings.num_samples,
                scheduler=scheduler,
                max_concurrent_trials=trials_at_once,
            ),
            run_config=tune.RunConfig(
                name=settings.name,
                storage_path=config.run.storage_path,
                failure_config=tune.FailureConfig(max_failures=settings.max_failures),
                verbose=1,
            ),
        )
    results = tuner.fit()
    return _finish(sweep, parent, results)


def _open_parent(sweep: Sweep, config: ExperimentConfig) -> tracking.RunRef:
    params = {f"search.{k}": json.dumps(v) for k, v in sweep.search.items()}
    params.update({f"sweep.{k}": v for k, v in flatten(to_dict(sweep.settings)).items()})
    return tracking.open_run(
        config.tracking.uri,
        config.tracking.experiment,
        run_name=sweep.settings.name,
        run_key=f"sweep:{config.run.storage_path}/{sweep.settings.name}",
        params=params,
        texts={"sweep.yaml": sweep.source},
    )


def _finish(sweep: Sweep, parent: tracking.RunRef, results) -> SweepResult:
    """Log the best trial on the parent run, close the children Tune stopped (KILLED when ASHA
    cut them short), close the parent."""
    from mlflow.tracking import MlflowClient

    settings = sweep.settings
    trials = []
    for result in results:
        metrics = result.metrics or {}
        trials.append(
            {
                "trial": metrics.get("trial_id"),
                "config": result.config,
                settings.metric: metrics.get(settings.metric),
                "epochs": metrics.get("training_iteration"),
                "best_checkpoint": metrics.get("best_checkpoint"),
                "error": None if result.error is None else str(result.error),
            }
        )
    scored = [t for t in trials if t[settings.metric] is not None]
    best = (max if settings.mode == "max" else min)(
        scored, key=lambda t: t[settings.metric], default=None
    )
    problem = None
    try:  # the trials are done: a store that fails now costs the record, not the results
        with tracking.capped_http():
            _close_children(parent, sweep, trials)
            if best is not None:
                client = MlflowClient(parent.uri)
                client.log_metric(parent.run_id, f"best_{settings.metric}", best[settings.metric])
                client.set_tag(parent.run_id, "hm2bp.best_trial", best["trial"])
        tracking.finish_run(parent, failed=best is None or any(t["error"] for t in trials))
    except Exception as err:
        problem = (
            f"tracking store {parent.uri} failed closing the sweep: {type(err).__name__}: {err}"
        )
    return SweepResult(
        parent_run_id=parent.run_id,
        tracking_uri=parent.uri,
        best_trial=None if best is None else best["trial"],
        best_value=None if best is None else best[settings.metric],
        trials=trials,
        tracking_problem=problem,
    )


def _close_children(parent: tracking.RunRef, sweep: Sweep, trials: list[dict[str, Any]]) -> None:
    """Close the trial runs that Tune ended from outside; failed trials closed themselves."""
    from mlflow.tracking import MlflowClient

    settings = sweep.settings
    client = MlflowClient(parent.uri)
    children = client.search_runs(
        [parent.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.run_id}'"
    )
    failed = {f"{settings.name}-{t['trial']}" for t in trials if t["error"]}
    epochs = sweep.config.train.epochs
    for child in children:
        if child.info.status == "FINISHED" or child.info.run_name in failed:
            continue
        # Tune ended this trial's driver from outside (ASHA, or a trial reaching max_t at its
        # last report), so the run could not close itself: FINISHED if every epoch is logged.
        logged = client.get_metric_history(child.info.run_id, tracking.EPOCH_METRIC)
        client.set_terminated(child.info.run_id, "FINISHED" if len(logged) >= epochs else "KILLED")
