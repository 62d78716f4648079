"""Accuracy and confusion matrix of a checkpoint on any shard set, on any device.

The checkpoint holds the experiment config and the weights by name (`layers.<i>.weight`, saved
on the CPU), so a model trained with the Triton backend on a GPU evaluates with the reference
backend on a CPU, or the other way round (`HM2BP_BACKEND` or the device picks the backend). The
shards (by default those the run trained on) are checked against the checkpoint's config first (T,
input count, classes, encoder), as for training, and read in this process with pyarrow: no Ray is
needed. `resolve_checkpoint` turns `best`, `latest` and MLflow `runs:/<id>` URIs into a folder.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from hm2bp.orchestration import tracking
from hm2bp.orchestration.batches import Decoder, columns
from hm2bp.orchestration.checkpoint import TrainingState, best_and_latest
from hm2bp.orchestration.config import config_from_dict
from hm2bp.orchestration.preflight import classes_problem, manifest_problems
from hm2bp.orchestration.schema import ConfigError
from hm2bp.orchestration.session import LocalSession
from hm2bp.orchestration.worker import network_of, validate
from hm2bp.pipelines.manifest import read_manifest
from hm2bp.pipelines.storage import absolute


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    loss: float
    samples: int
    split: str
    classes: list[str]
    confusion: list[list[int]]  # [true class][predicted class]
    checkpoint: str
    shards: str
    device: str
    backend: str
    trained_on: dict[str, str]

    def summary(self) -> dict[str, Any]:
        return dict(vars(self))

    def format(self) -> str:
        width = max(len(c) for c in self.classes)
        rows = [
            f"{name:>{width}} | " + " ".join(f"{n:4d}" for n in row)
            for name, row in zip(self.classes, self.confusion, strict=True)
        ]
        return "\n".join(
            [
                f"accuracy {self.accuracy:.4f} on {self.samples} samples of split {self.split!r} "
                f"in {self.shards}",
                f"loss {self.loss:.3f}; evaluated on {self.device} ({self.backend} backend), "
                f"trained on {self.trained_on.get('device')} ({self.trained_on.get('backend')})",
                "confusion matrix (true class down, predicted across):",
                *rows,
            ]
        )


def resolve_checkpoint(
    checkpoint: str, run: str | None = None, tracking_uri: str | None = None
) -> str:
    """The checkpoint that `checkpoint` names: `best` or `latest` of `run` (a run folder,
    `run.storage_path/run.name`, or an MLflow `runs:/<id>` URI found in `tracking_uri`'s store),
    an MLflow `runs:/<id>` URI alone (that run's best), or a checkpoint folder or file as given."""
    if checkpoint.startswith(tracking.RUNS_URI):
        if run is not None:
            raise ValueError(
                f"--run {run}: given with --checkpoint {checkpoint}, which names its run (expected "
                "--run only with --checkpoint best or latest)"
            )
        return resolve_checkpoint("best", checkpoint, tracking_uri)
    if checkpoint not in ("best", "latest"):
        if run is not None or tracking_uri is not None:
            raise ValueError(
                f"--checkpoint {checkpoint}: a checkpoint folder needs no --run or --tracking-uri "
                "(expected them only with --checkpoint best, latest or runs:/<id>)"
            )
        return checkpoint
    if run is None:
        raise ValueError(
            f"--checkpoint {checkpoint}: of which run? (expected --run with a run folder, "
            "run.storage_path/run.name, or an MLflow runs:/<id> URI)"
        )
    if run.startswith(tracking.RUNS_URI):
        run = tracking.run_folder(run, tracking_uri)
    best, latest = best_and_latest(absolute(run))
    return best if checkpoint == "best" else latest


def evaluate(
    checkpoint: str,
    shards: str | None = None,
    split: str | None = None,
    device: str = "cpu",
    batch_size: int = 256,
) -> Evaluation:
    """Evaluate the checkpoint (its folder or `checkpoint.pt`) on `split` of `shards` (default:
    the config's validation split of the shards it was trained on)."""
    state = TrainingState.load(absolute(checkpoint))
    record = state.record
    config = config_from_dict(record.config, source=f"{checkpoint} (its config)")
    split = split or config.data.val_split
    shards = absolute(shards or config.data.shards)
    config = replace(
        config, data=replace(config.data, shards=shards, train_split=split, val_split=split)
    )
    manifest = read_manifest(shards)
    problems = manifest_problems(config, manifest) or classes_problem(record, manifest)
    if problems:
        raise ConfigError(
            problems, f"checkpoint {checkpoint} against the shards of {shards}/manifest.json"
        )
    network = network_of(config, device)
    network.load_state_dict(state.model)
    network.eval()
    session = LocalSession(config, manifest, device)
    batches = session.val_batches(batch_size, columns(config, train=False))
    total = math.ceil(sum(manifest.counts.get(split, {}).values()) / batch_size)
    bar = session.progress(total, f"evaluate {split}")  # on a terminal only
    tally = validate(network, _counted(batches, bar), Decoder(config, manifest, session.device))
    metrics = tally.metrics("")
    return Evaluation(
        accuracy=metrics["accuracy"],
        loss=metrics["loss"],
        samples=int(tally.sums["samples"]),
        split=split,
        classes=list(manifest.classes),
        confusion=tally.confusion.tolist(),
        checkpoint=checkpoint,
        shards=shards,
        device=str(session.device),
        backend=network.backend.name,
        trained_on=dict(record.trained_on),
    )


def _counted(batches: Iterator[Any], bar: Any) -> Iterator[Any]:
    """`batches`, each counted on `bar` once evaluated; the bar closed at the end."""
    for batch in batches:
        yield batch
        bar.update(1)
    bar.close()
