"""Boosting sample weights (spec section 4.10): misclassified samples of hard classes weigh more.

After each epoch, every class c gets err_c = (weight of its misclassified samples) / (weight of all
its samples seen this epoch), and each misclassified sample's weight is multiplied by
exp(err_c / 20). Weights are never renormalised; they multiply the output error of their sample
(`Network.forward(..., sample_weights=...)`). The effect is tiny (<= e^0.05 per epoch).

Samples are known by their ids (a shard row's `sample_id`), so a weight stays with its sample
however the data are shuffled or dealt to data-parallel workers, and after a restart. With several
workers each records the votes of its own batches, and `end_epoch` takes a `gather` that brings
every worker's votes, so that every worker updates the same weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence

import torch

RATE = 1.0 / 20.0
Votes = tuple[list[int], list[int], list[int]]  # training-set indices, labels, predictions


class Boosting:
    """Per-sample weights of a training set given by its `sample_ids`, for `n_classes` classes."""

    def __init__(self, sample_ids: Sequence[Hashable], n_classes: int) -> None:
        if not sample_ids:
            raise ValueError("sample_ids: found none, expected the training set's ids")
        if not isinstance(n_classes, int) or n_classes < 1:
            raise ValueError(f"n_classes: found {n_classes!r}, expected an int >= 1")
        self.index = {sample: i for i, sample in enumerate(sample_ids)}
        if len(self.index) != len(sample_ids):
            raise ValueError("sample_ids: found an id twice, expected each sample once")
        self.n_classes = n_classes
        self._weights = torch.ones(len(sample_ids), dtype=torch.float64)
        # This epoch's votes as plain ints: thousands of tiny tensors kept for an epoch pin the
        # heap between each step's large temporaries (RSS grew ~1.9 MB per step at batch 1).
        self.votes: Votes = ([], [], [])

    def weights(self, ids: Sequence[Hashable]) -> torch.Tensor:
        """Current weights `[B]` (float64) of the samples `ids`."""
        return self._weights[self._indices(ids)].clone()

    def record(
        self, ids: Sequence[Hashable], labels: torch.Tensor, predictions: torch.Tensor
    ) -> None:
        """Keep this epoch's training-time votes of a batch (`labels`, `predictions`: `[B]`)."""
        labels = torch.as_tensor(labels).cpu().long()
        predictions = torch.as_tensor(predictions).cpu().long()
        if labels.shape != (len(ids),) or predictions.shape != (len(ids),):
            raise ValueError(
                f"labels / predictions: found shapes {tuple(labels.shape)} / "
                f"{tuple(predictions.shape)}, expected ({len(ids)},) like ids"
            )
        if bool(((labels < 0) | (labels >= self.n_classes)).any()):
            raise ValueError(f"labels: expected classes in [0, {self.n_classes})")
        for kept, values in zip(
            self.votes, (self._indices(ids), labels.tolist(), predictions.tolist()), strict=True
        ):
            kept.extend(values)

    def end_epoch(self, gather: Callable[[Votes], list[Votes]] | None = None) -> None:
        """Update the weights from this epoch's votes, those of every worker that `gather`
        (this worker's votes -> all workers' votes, a collective) brings, then forget them."""
        everyone = gather(self.votes) if gather is not None else [self.votes]
        vote = {}  # a sample's last vote of the epoch
        for indices, labels, predictions in everyone:
            vote.update(zip(indices, zip(labels, predictions, strict=True), strict=True))
        if not vote:
            return
        indices = torch.tensor(list(vote), dtype=torch.long)
        labels, predictions = torch.tensor(list(vote.values()), dtype=torch.long).T
        for c in range(self.n_classes):
            members = labels == c
            total = self._weights[indices[members]].sum()
            if total <= 0:
                continue
            missed = indices[members & (predictions != labels)]
            error = float(self._weights[missed].sum() / total)
            self._weights[missed] *= math.exp(error * RATE)
        self.votes = ([], [], [])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"weights": self._weights.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        weights = state["weights"]
        if weights.shape != self._weights.shape:
            raise ValueError(
                f"state['weights']: found shape {tuple(weights.shape)}, "
                f"expected {tuple(self._weights.shape)}"
            )
        self._weights = weights.to(torch.float64).clone()

    def _indices(self, ids: Sequence[Hashable]) -> list[int]:
        try:
            return [self.index[sample] for sample in ids]
        except KeyError as err:
            raise ValueError(
                f"sample id {err.args[0]!r}: not in the training set (expected one of the "
                f"{len(self.index)} ids given to Boosting)"
            ) from None
