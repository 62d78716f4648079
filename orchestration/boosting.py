"""Boosting sample weights (spec 4.10) for shard rows: sample ids to indices, votes across workers.

The engine's `kernels.boosting.Boosting` keeps one weight per training-set index. Here the index of
a row is the position of its `sample_id` among all the training split's ids, sorted, so that it is
the same on every worker and after a restart, however Ray Data deals the rows. With several
workers, each one records its own batches; at the end of the epoch the votes are gathered so that
every worker updates the same weights (`end_epoch`).

Boosting is off by default with more than one worker or batches above 1
(`ExperimentConfig.boosting`): the reference used it at batch 1 on one GPU, where it reweights each
sample's own error; its effect there is tiny (at most e^0.05 per epoch).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from hm2bp.kernels.boosting import Boosting
from hm2bp.orchestration.metrics import distributed
from hm2bp.pipelines.manifest import Manifest
from hm2bp.pipelines.shards import read_split


def training_ids(shards: str, manifest: Manifest, split: str) -> list[str]:
    """All sample ids of `split`, sorted (each shard verified as it is read)."""
    return sorted(read_split(shards, manifest, split, ["sample_id"]).column(0).to_pylist())


class SampleBoosting:
    def __init__(self, ids: list[str], n_classes: int) -> None:
        self.index = {sample: i for i, sample in enumerate(ids)}
        self.boosting = Boosting(len(ids), n_classes)
        # This epoch's votes as plain ints: thousands of tiny tensors kept for an epoch pin the
        # heap between each step's large temporaries (RSS grew ~1.9 MB per step at batch 1).
        self.votes: tuple[list[int], list[int], list[int]] = ([], [], [])

    def _indices(self, ids: list[str]) -> torch.Tensor:
        return torch.tensor([self.index[sample] for sample in ids], dtype=torch.long)

    def weights(self, ids: list[str]) -> torch.Tensor:
        """Weights `[B]` of the rows `ids`."""
        return self.boosting.weights(self._indices(ids))

    def record(self, ids: list[str], labels: torch.Tensor, predictions: torch.Tensor) -> None:
        vote = (self._indices(ids), labels.cpu().long(), predictions.cpu().long())
        self.boosting.record(*vote)
        for kept, values in zip(self.votes, vote, strict=True):
            kept.extend(values.tolist())

    def end_epoch(self) -> None:
        """Take in the other workers' votes of this epoch, then update the weights."""
        if distributed():
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, self.votes)
            for rank, votes in enumerate(gathered):
                if rank != dist.get_rank() and votes[0]:
                    self.boosting.record(*(torch.tensor(v, dtype=torch.long) for v in votes))
        self.boosting.end_epoch()
        self.votes = ([], [], [])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.boosting.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.boosting.load_state_dict(state)
