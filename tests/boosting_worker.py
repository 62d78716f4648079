"""One worker for `test_sample_boosting.py`, in its own module so that spawned processes can import
it by name: records its half of an epoch's votes, ends the epoch over gloo, saves the weights."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
from hm2bp.kernels.boosting import Boosting, Votes

IDS = [f"s{i}" for i in range(8)]
LABELS = [0, 0, 0, 1, 1, 1, 2, 2]
PREDICTIONS = [0, 1, 0, 1, 2, 1, 2, 0]  # s1, s4, s7 wrong


def epoch(boosting: Boosting, rows: range, gather=None) -> None:
    """Record the rows one sample at a time (batch 1, like the reference), then end the epoch."""
    for i in rows:
        boosting.record([IDS[i]], torch.tensor([LABELS[i]]), torch.tensor([PREDICTIONS[i]]))
    boosting.end_epoch(gather)


def gather(votes: Votes) -> list[Votes]:
    everyone: list = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, votes)
    return everyone


def worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        boosting = Boosting(sorted(IDS), n_classes=3)
        epoch(boosting, range(rank, len(IDS), world), gather)  # each worker sees every other row
        torch.save(boosting.weights(IDS), Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
