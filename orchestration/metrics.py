"""Counting what happened in an epoch, and adding it up across workers.

A `Tally` sums, over the batches one worker saw, the samples, correct predictions, loss (times the
batch size, so the mean is over samples), the engine's per-layer statistics (mean spikes and silent
fraction, weighted by batch size; lateral guard triggers as a count) and the confusion matrix. The
workers' tallies are added with one all-reduce (`reduced`), so every rank ends the epoch with the
same figures for the whole train share and the whole validation set.
"""

from __future__ import annotations

import resource
from collections import defaultdict
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

COUNTS = ("lateral_guard_triggers",)  # engine stats that are counts per step, not means


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class Tally:
    def __init__(self, n_classes: int) -> None:
        # Keys every rank has, even one that saw no batch: the all-reduce sends them by position.
        self.sums: dict[str, float] = defaultdict(
            float, samples=0.0, correct=0.0, loss=0.0, batches=0.0
        )
        self.confusion = np.zeros((n_classes, n_classes), dtype=np.int64)  # [true, predicted]

    def add(self, out: Any, labels: torch.Tensor, layer_stats: bool = False) -> None:
        """One batch's `StepOutput` and its labels `[B]`; `layer_stats` only where every rank
        sees batches (training: Ray Data splits the train set equally)."""
        size = len(labels)
        predictions = out.predictions.cpu().numpy()
        truth = labels.cpu().numpy()
        self.sums["samples"] += size
        self.sums["batches"] += 1
        self.sums["correct"] += float((predictions == truth).sum())
        if out.loss is not None:
            self.sums["loss"] += float(out.loss.detach()) * size
        for key, value in out.stats.items() if layer_stats else ():
            self.sums[key] += float(value) * (1 if key in COUNTS else size)
        np.add.at(self.confusion, (truth, predictions), 1)

    def reduced(self, device: torch.device) -> Tally:
        """The sum over all workers (itself when there is one); every rank gets the result."""
        if not distributed():
            return self
        keys = sorted(self.sums)
        flat = torch.tensor(
            [self.sums[k] for k in keys] + self.confusion.ravel().tolist(),
            dtype=torch.float64,
            device=device,
        )
        dist.all_reduce(flat)
        total = Tally(len(self.confusion))
        values = flat.cpu().numpy()
        total.sums.update(zip(keys, values[: len(keys)].tolist(), strict=True))
        total.confusion = values[len(keys) :].reshape(self.confusion.shape).round().astype(np.int64)
        return total

    def metrics(self, prefix: str) -> dict[str, float]:
        """`{prefix}accuracy`, `{prefix}loss` and the engine's statistics where recorded
        (`fc0/mean_spikes`, `fc0/silent_fraction`, ..., `lateral_guard_triggers`)."""
        samples = max(self.sums["samples"], 1.0)
        out = {
            f"{prefix}accuracy": self.sums["correct"] / samples,
            f"{prefix}loss": self.sums["loss"] / samples,
        }
        for key, value in self.sums.items():
            if "/" in key:
                out[key] = value / samples
            elif key in COUNTS:
                out[key] = value
        return out


def reduce_max(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """The maximum of each value over the workers (peak memory, the slowest worker's time)."""
    if not distributed():
        return values
    keys = sorted(values)
    flat = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(flat, op=dist.ReduceOp.MAX)
    return dict(zip(keys, flat.cpu().tolist(), strict=True))


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this worker: CUDA's allocator peak on a GPU, else the process's max RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
