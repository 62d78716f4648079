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
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from hm2bp.kernels.boosting import Boosting
from hm2bp.kernels.network import Network
from hm2bp.orchestration.batches import Decoder, columns, sample_ids
from hm2bp.orchestration.checkpoint import RunRecord, TrainingState
from hm2bp.orchestration.config import ExperimentConfig, config_from_dict, to_dict
from hm2bp.orchestration.metrics import Tally, distributed, peak_memory_mb, reduce_max
from hm2bp.orchestration.session import LocalSession, RaySession, Session
from hm2bp.orchestration.tracking import RunRef
from hm2bp.orchestration.training_log import TrainingLog
from hm2bp.pipelines.manifest import Manifest, manifest_from_json
from hm2bp.pipelines.shards import read_split


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
    from hm2bp.orchestration.preflight import preflight

    config = replace(config, data=replace(config.data, shards=shards))
    manifest = preflight(config)
    return run_training(config, manifest, LocalSession(config, manifest, device), None)


def network_of(config: ExperimentConfig, device: str | torch.device) -> Network:
    """The engine's network of a config, initialised from its seed, in its dtype."""
    dtype = getattr(torch, config.train.dtype)
    return Network(config.network, seed=config.seed, dtype=dtype, device=device)


def learning_rate(config: ExperimentConfig, epoch: int) -> float:
    from hm2bp.kernels.schedule import reference_lr

    if config.optimizer.schedule == "constant":
        return config.optimizer.lr
    return reference_lr(config.optimizer.lr, epoch, config.optimizer.schedule)


@dataclass
class Run:
    """One worker's run: the parts every step of the loop uses, and what the run has done so far
    (`record`: its finished epochs' metrics, each epoch's nodes, the last confusion matrix)."""

    config: ExperimentConfig
    manifest: Manifest
    session: Session
    network: Network  # the engine's, unwrapped
    model: torch.nn.Module  # `network`, in a DDP wrapper with several workers
    optimizer: torch.optim.Optimizer
    boosting: Boosting | None
    decode: Decoder
    record: RunRecord

    @classmethod
    def start(cls, config: ExperimentConfig, manifest: Manifest, session: Session) -> Run:
        """The run built afresh, then restored from the session's checkpoint if there is one
        (the driver's preflight found it whole and of the same network)."""
        from hm2bp.kernels.schedule import build_optimizer

        torch.manual_seed(config.seed)
        network = network_of(config, session.device)
        optimizer = build_optimizer(network, lr=config.optimizer.lr)
        boosting = None
        if config.boosting:
            split = read_split(config.data.shards, manifest, config.data.train_split, ["sample_id"])
            boosting = Boosting(sorted(split.column(0).to_pylist()), config.network.n_classes)
        record = RunRecord(config=to_dict(config), classes=list(manifest.classes))
        run = cls(config, manifest, session, network, network, optimizer, boosting,
                  Decoder(config, manifest, session.device), record)  # fmt: skip
        state = session.restore()
        if state is not None:
            run.restore(state)
        if distributed():  # Ray Train made the process group: gloo on CPU, NCCL on GPU
            ids = [session.device.index] if session.device.type == "cuda" else None
            run.model = torch.nn.parallel.DistributedDataParallel(network, device_ids=ids)
        return run

    def restore(self, state: TrainingState) -> None:
        self.network.load_state_dict(state.model)
        self.optimizer.load_state_dict(state.optimizer)
        torch.set_rng_state(state.rng)
        if self.boosting is not None and state.boosting is not None:
            self.boosting.load_state_dict(state.boosting)
        self.record = replace(state.record, config=to_dict(self.config))

    def state(self) -> TrainingState:
        """This run as a checkpoint (rank 0's: the replicas are equal)."""
        return TrainingState(
            record=self.record,
            model={k: v.detach().cpu() for k, v in self.network.state_dict().items()},
            optimizer=self.optimizer.state_dict(),
            rng=torch.get_rng_state(),
            boosting=None if self.boosting is None else self.boosting.state_dict(),
        )


def validate(network: Network, batches, decode: Decoder) -> Tally:
    """A tally over `batches` of stored spikes, without gradients."""
    tally = Tally(decode.config.network.n_classes)
    with torch.no_grad():
        for batch in batches:
            spikes, labels = decode(batch)
            tally.add(network(spikes, labels), labels)
    return tally


def train_step(run: Run, spikes: torch.Tensor, labels: torch.Tensor, ids: list[str]):
    """One Adam step on one batch; DDP all-reduces the gradients during `backward`."""
    weights = None if run.boosting is None else run.boosting.weights(ids).to(spikes.device)
    run.optimizer.zero_grad(set_to_none=True)
    out = run.model(spikes, labels, weights)
    out.loss.backward()
    run.optimizer.step()
    if run.boosting is not None:
        run.boosting.record(ids, labels.cpu(), out.predictions.cpu())
    return out


def train_epoch(run: Run, epoch: int) -> Tally:
    """One pass over this worker's share; a progress bar on rank 0."""
    config, session = run.config, run.session
    tally = Tally(config.network.n_classes)
    rows = sum(run.manifest.counts.get(config.data.train_split, {}).values()) // session.world_size
    bar = session.progress(
        math.ceil(rows / config.train.batch_size), f"epoch {epoch + 1}/{config.train.epochs}"
    )
    batches = session.train_batches(config.train.batch_size, epoch, columns(config, train=True))
    for step, batch in enumerate(batches):
        rng = (
            np.random.default_rng([config.seed, epoch, session.rank, step])
            if config.data.reencode
            else None
        )
        spikes, labels = run.decode(batch, rng)
        out = train_step(run, spikes, labels, sample_ids(batch))
        tally.add(out, labels, layer_stats=True)
        bar.update(1)
    bar.close()
    if run.boosting is not None:
        run.boosting.end_epoch(session.gather)
    return tally


def run_epoch(run: Run, epoch: int) -> tuple[dict[str, float], np.ndarray]:
    """One epoch on every worker: train on this worker's share, validate on its part of the val
    set, add both up across workers. Returns `(metrics, validation confusion matrix)`."""
    from hm2bp.kernels.schedule import set_lr

    session, device = run.session, run.session.device
    set_lr(run.optimizer, learning_rate(run.config, epoch))
    started = time.perf_counter()
    run.model.train()
    train = train_epoch(run, epoch)
    train_seconds = time.perf_counter() - started
    batches = session.val_batches(
        run.config.train.eval_batch_size, columns(run.config, train=False)
    )
    val = validate(run.network, batches, run.decode)
    train, val = train.reduced(device), val.reduced(device)
    timing = reduce_max(
        {
            "epoch_seconds": time.perf_counter() - started,
            "train_seconds": train_seconds,
            "peak_memory_mb": peak_memory_mb(device),
        },
        device,
    )
    metrics = {
        **train.metrics("train_"),
        **val.metrics("val_"),
        "lr": run.optimizer.param_groups[0]["lr"],
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
    run = Run.start(config, manifest, session)
    record = run.record
    log = None
    if tracking is not None and session.rank == 0:
        log = TrainingLog(tracking, manifest.classes, manifest.dt_ms)
        log.start(record.history)  # epochs checkpointed before a restart, not yet logged
    for epoch in range(record.epochs, config.train.epochs):
        metrics, confusion = run_epoch(run, epoch)
        record.history.append(metrics)
        record.nodes.append(session.nodes)
        record.confusion = confusion.tolist()
        record.replica_digests = _replica_digests(run.network, session)
        record.trained_on = {"device": str(session.device), "backend": run.network.backend.name}
        session.report(metrics, run.state() if session.rank == 0 else None, epoch + 1)
        if log is not None:  # after the checkpoint (a barrier): each epoch is logged once
            log.epoch(record.history, record.nodes, confusion, *_output_sample(run))
        if session.rank == 0:
            # Progress, not the result: on stderr, which Ray forwards to the driver's stderr.
            print(_epoch_line(epoch, config.train.epochs, metrics), file=sys.stderr, flush=True)
    if log is not None:
        log.finish()
    return record.history


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


def _output_sample(run: Run) -> tuple[np.ndarray, int] | tuple[()]:
    """The output layer's spikes `[T, n_classes]` for the first validation sample, and its
    label (for `TrainingLog.epoch`); empty if the validation set is."""
    batch = next(iter(run.session.val_batches(1, columns(run.config, train=False))), None)
    if batch is None:
        return ()
    spikes, labels = run.decode(batch)
    with torch.no_grad():
        out = run.network(spikes)
    raster = out.spikes[-1][:, 0].reshape(len(out.spikes[-1]), -1).cpu().numpy()
    return raster, int(labels[0])
