"""The training loop every worker runs: Ray Train's `train_loop_per_worker`, or one local process.

One loop serves 1..N workers, CPU or GPU: read this worker's share of the shards, decode each batch
to dense spikes `[T, B, *input_shape]`, run the engine (`hm2bp.kernels.network.Network`), let DDP
average the HM2-BP gradients (gloo on CPU, NCCL on GPU: the process group is Ray Train's), step
Adam with the reference's schedule (spec 4.9), validate on every worker's part of the val set, add
the counts up across workers, and report the epoch: metrics from every rank, the checkpoint from
rank 0, then MLflow metrics from rank 0 (after the checkpoint, so an epoch is logged exactly once
even when a worker dies in between; `tracking.EpochLogger`).

The loop resumes from the session's checkpoint (Ray Train's latest, or the newest local one), so a
restarted worker group, or a rerun with the same run name, continues where the last checkpoint left
it. Boosting weights (spec 4.10) are used only where the config says so, by default only with one
worker at batch size 1 (`ExperimentConfig.boosting`): with several workers each would keep weights
for a different part of the data.

Nothing here imports ray or mlflow at module level: the GPU machine runs this loop without them.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from hm2bp.orchestration.batches import batch_spikes, columns, sample_ids, to_device
from hm2bp.orchestration.boosting import SampleBoosting, training_ids
from hm2bp.orchestration.config import ExperimentConfig, config_from_dict, network_spec, to_dict
from hm2bp.orchestration.metrics import Tally, distributed, peak_memory_mb, reduce_max
from hm2bp.orchestration.session import LocalSession, RaySession, Session
from hm2bp.orchestration.tracking import RunRef
from hm2bp.orchestration.training_log import TrainingLog
from hm2bp.pipelines.manifest import Manifest, manifest_from_json


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train's worker function. `config`: `experiment` (the config as plain data), `manifest`
    (the shards' manifest.json text), `tracking` (a `RunRef` as a dict, or None) and
    `progress_bars` (whether the driver's terminal shows them)."""
    experiment = config_from_dict(config["experiment"])
    manifest = manifest_from_json(config["manifest"], experiment.data.shards)
    tracking = RunRef(**config["tracking"]) if config.get("tracking") else None
    session = RaySession(experiment, progress_bars=config["progress_bars"])
    run_training(experiment, manifest, session, tracking)


def run_local(
    config: ExperimentConfig, shards: str, device: str = "cuda"
) -> list[dict[str, float]]:
    """The same loop in this process without Ray or MLflow (for a GPU machine with neither);
    checkpoints go to `storage_path/name` as under Ray. Returns the per-epoch metrics."""
    from dataclasses import replace

    from hm2bp.orchestration.config import manifest_problems
    from hm2bp.orchestration.schema import ConfigError
    from hm2bp.pipelines.manifest import read_manifest

    config = replace(config, data=replace(config.data, shards=shards))
    manifest = read_manifest(shards)
    problems = manifest_problems(config, manifest)
    if problems:
        raise ConfigError(problems, f"config against {shards}")
    return run_training(config, manifest, LocalSession(config, manifest, device), None)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The engine's `Network` inside a DDP wrapper, or the model itself with one worker."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def learning_rate(config: ExperimentConfig, epoch: int) -> float:
    from hm2bp.kernels.schedule import reference_lr

    if config.optimizer.schedule == "constant":
        return config.optimizer.lr
    return reference_lr(config.optimizer.lr, epoch, config.optimizer.schedule)


def train_step(model, optimizer, spikes, labels, weights):
    """One Adam step on one batch; DDP all-reduces the gradients during `backward`."""
    optimizer.zero_grad(set_to_none=True)
    out = model(spikes, labels, weights)
    out.loss.backward()
    optimizer.step()
    return out


@dataclass
class Progress:
    """What a run has done so far: its finished epochs' metrics, the nodes each epoch's workers
    ran on (rank order), and the last validation confusion matrix."""

    history: list[dict[str, float]] = field(default_factory=list)
    nodes: list[list[str]] = field(default_factory=list)
    confusion: np.ndarray | None = None

    @property
    def epochs(self) -> int:
        return len(self.history)


def _restore(session: Session, config: ExperimentConfig, model, optimizer, boosting) -> Progress:
    """The progress in the session's checkpoint (weights, optimiser and boosting restored)."""
    state = session.restore()
    if state is None:
        return Progress()
    if state["config"]["network"] != to_dict(config)["network"]:
        raise ValueError(
            f"run {config.run.name!r} in {config.run.storage_path}: its checkpoint was trained "
            "with a different `network` section (expected the same network to resume; pick "
            "another run.name for a new run)"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    if boosting is not None and state.get("boosting") is not None:
        boosting.load_state_dict(state["boosting"])
    history = list(state["history"])
    # Checkpoints written before the nodes were recorded name none.
    nodes = list(state.get("nodes", [[] for _ in history]))
    return Progress(history, nodes, np.asarray(state["confusion"]))


def _state(config, manifest, model, optimizer, boosting, progress: Progress, device):
    return {
        "epoch": progress.epochs,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "rng": {"torch": torch.get_rng_state()},
        "config": to_dict(config),
        "history": progress.history,
        "nodes": progress.nodes,
        "confusion": progress.confusion.tolist(),
        "classes": list(manifest.classes),
        "boosting": None if boosting is None else boosting.state_dict(),
        "trained_on": {"device": str(device), "backend": model.backend.name},
    }


def validate(model, batches, config, manifest, device) -> Tally:
    """This worker's tally over `batches` of stored spikes, without gradients."""
    tally = Tally(config.network.n_classes)
    with torch.no_grad():
        for batch in batches:
            spikes, labels = to_device(*batch_spikes(batch, config, manifest), config, device)
            tally.add(model(spikes, labels), labels)
    return tally


def train_epoch(model, optimizer, session, config, manifest, boosting, epoch) -> Tally:
    """One pass over this worker's share; a progress bar on rank 0."""
    tally = Tally(config.network.n_classes)
    rows = sum(manifest.counts.get(config.data.train_split, {}).values()) // session.world_size
    total = math.ceil(rows / config.train.batch_size)
    bar = session.progress(total, f"epoch {epoch + 1}/{config.train.epochs}")
    for step, batch in enumerate(
        session.train_batches(config.train.batch_size, epoch, columns(config, train=True))
    ):
        rng = (
            np.random.default_rng([config.seed, epoch, session.rank, step])
            if config.data.reencode
            else None
        )
        spikes, labels = to_device(
            *batch_spikes(batch, config, manifest, rng), config, session.device
        )
        ids = sample_ids(batch)
        weights = None if boosting is None else boosting.weights(ids).to(session.device)
        out = train_step(model, optimizer, spikes, labels, weights)
        if boosting is not None:
            boosting.record(ids, labels.cpu(), out.predictions.cpu())
        tally.add(out, labels, layer_stats=True)
        bar.update(1)
    bar.close()
    if boosting is not None:
        boosting.end_epoch()
    return tally


def _build(config: ExperimentConfig, manifest: Manifest, device: torch.device):
    from hm2bp.kernels.network import Network
    from hm2bp.kernels.schedule import build_optimizer

    dtype = getattr(torch, config.train.dtype)
    model = Network(network_spec(config.network), seed=config.seed, dtype=dtype, device=device)
    optimizer = build_optimizer(model, lr=config.optimizer.lr)
    boosting = None
    if config.boosting:
        ids = training_ids(config.data.shards, manifest, config.data.train_split)
        boosting = SampleBoosting(ids, config.network.n_classes)
    return model, optimizer, boosting


def run_epoch(model, network, optimizer, session, config, manifest, boosting, epoch):
    """One epoch on every worker: train on this worker's share, validate on its part of the val
    set, add both up across workers. Returns `(metrics, validation confusion matrix)`."""
    from hm2bp.kernels.schedule import set_lr

    set_lr(optimizer, learning_rate(config, epoch))
    started = time.perf_counter()
    model.train()
    train = train_epoch(model, optimizer, session, config, manifest, boosting, epoch)
    train_seconds = time.perf_counter() - started
    batches = session.val_batches(config.train.eval_batch_size, columns(config, train=False))
    val = validate(network, batches, config, manifest, session.device)
    train, val = train.reduced(session.device), val.reduced(session.device)
    timing = reduce_max(
        {
            "epoch_seconds": time.perf_counter() - started,
            "train_seconds": train_seconds,
            "peak_memory_mb": peak_memory_mb(session.device),
        },
        session.device,
    )
    metrics = {
        **train.metrics("train_"),
        **val.metrics("val_"),
        "lr": optimizer.param_groups[0]["lr"],
        "workers": float(session.world_size),
        # Samples per optimiser step over all workers: batch_size x workers (the last step of
        # an epoch may be short), counted, not assumed.
        "global_batch": train.sums["samples"] / max(train.sums["batches"] / session.world_size, 1),
        "samples_per_s": train.sums["samples"] / max(timing.pop("train_seconds"), 1e-9),
        **timing,
    }
    return metrics, val.confusion


def run_training(
    config: ExperimentConfig, manifest: Manifest, session: Session, tracking: RunRef | None
) -> list[dict[str, float]]:
    """Train for `config.train.epochs` (resuming after the checkpoint's epoch); every rank returns
    the per-epoch metrics of the whole run."""
    torch.manual_seed(config.seed)
    device = session.device
    network, optimizer, boosting = _build(config, manifest, device)
    progress = _restore(session, config, network, optimizer, boosting)
    model = network
    if distributed():  # Ray Train made the process group: gloo on CPU, NCCL on GPU
        ids = [device.index] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(network, device_ids=ids)
    logger = None
    if tracking is not None and session.rank == 0:
        logger = TrainingLog(tracking, manifest.classes, manifest.dt_ms)
        logger.start(progress.history)  # epochs checkpointed before a restart, not yet logged
    for epoch in range(progress.epochs, config.train.epochs):
        metrics, progress.confusion = run_epoch(
            model, network, optimizer, session, config, manifest, boosting, epoch
        )
        progress.history.append(metrics)
        progress.nodes.append(session.nodes)
        replicas = _replica_digests(network, session)
        state = None
        if session.rank == 0:
            state = _state(config, manifest, network, optimizer, boosting, progress, device)
            state["replica_digests"] = replicas
        session.report(metrics, state, epoch + 1)  # a barrier: every rank reports
        if logger is not None:  # after the checkpoint: each epoch is logged once
            sample = _output_sample(network, session, config, manifest)
            logger.epoch(progress.history, progress.nodes, progress.confusion, *sample)
        if session.rank == 0:
            print(_epoch_line(epoch, config.train.epochs, metrics), flush=True)
    if logger is not None:
        logger.finish()
    return progress.history


def weights_digest(weights: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict's tensors (a model's parameters and buffers), in its order."""
    digest = hashlib.sha256()
    for tensor in weights.values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _replica_digests(network: torch.nn.Module, session: Session) -> list[str]:
    """Every rank's weights digest; DDP keeps the replicas equal, and a run whose replicas
    differ (a broken all-reduce, a rank that skipped a step) stops here rather than
    checkpointing one rank's weights as the run's."""
    digests = session.gather(weights_digest(network.state_dict()))
    if len(set(digests)) > 1:
        raise RuntimeError(
            f"the workers' weights differ after the epoch (sha256 by rank: {digests}); "
            "data-parallel replicas must stay equal"
        )
    return digests


def _epoch_line(epoch: int, epochs: int, m: dict[str, float]) -> str:
    return (
        f"epoch {epoch + 1}/{epochs}: train acc {m['train_accuracy']:.4f} loss "
        f"{m['train_loss']:.2f} | val acc {m['val_accuracy']:.4f} loss {m['val_loss']:.2f} | "
        f"{m['samples_per_s']:.0f} samples/s, {m['epoch_seconds']:.1f} s, "
        f"{m['peak_memory_mb']:.0f} MiB"
    )


def _output_sample(network, session: Session, config: ExperimentConfig, manifest) -> tuple:
    """The output layer's spikes `[T, n_classes]` for the first validation sample, and its
    label (for `TrainingLog.epoch`); empty if the validation set is."""
    batch = next(iter(session.val_batches(1, columns(config, train=False))), None)
    if batch is None:
        return ()
    spikes, labels = to_device(*batch_spikes(batch, config, manifest), config, session.device)
    with torch.no_grad():
        out = network(spikes)
    raster = out.spikes[-1][:, 0].reshape(len(out.spikes[-1]), -1).cpu().numpy()
    return raster, int(labels[0])
