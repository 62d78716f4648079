"""Boosting sample weights (spec section 4.10): misclassified samples of hard classes weigh more.

After each epoch, every class c gets err_c = (weight of its misclassified samples) / (weight of all
its samples seen this epoch), and each misclassified sample's weight is multiplied by
exp(err_c / 20). Weights are never renormalised; they multiply the output error of their sample
(`Network.forward(..., sample_weights=...)`). The effect is tiny (<= e^0.05 per epoch).
"""

from __future__ import annotations

import math

import torch

RATE = 1.0 / 20.0


class Boosting:
    """Per-sample weights for a training set of `n_samples` samples and `n_classes` classes.

    Samples are identified by their index in the training set, so the weights move with their
    samples however the data are shuffled. With several data-parallel workers, record the votes of
    all workers (or gather the state) before `end_epoch`, so that every worker holds the same
    weights.
    """

    def __init__(self, n_samples: int, n_classes: int) -> None:
        if not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"n_samples: found {n_samples!r}, expected an int >= 1")
        if not isinstance(n_classes, int) or n_classes < 1:
            raise ValueError(f"n_classes: found {n_classes!r}, expected an int >= 1")
        self.n_classes = n_classes
        self._weights = torch.ones(n_samples, dtype=torch.float64)
        self._labels = torch.full((n_samples,), -1, dtype=torch.long)
        self._wrong = torch.zeros(n_samples, dtype=torch.bool)

    def weights(self, indices: torch.Tensor) -> torch.Tensor:
        """Current weights `[B]` (float64) of the samples with training-set `indices` `[B]`."""
        return self._weights[self._check_indices(indices)].clone()

    def record(
        self, indices: torch.Tensor, labels: torch.Tensor, predictions: torch.Tensor
    ) -> None:
        """Record this epoch's training-time votes of a batch (all `[B]`)."""
        indices = self._check_indices(indices)
        labels = torch.as_tensor(labels).cpu().long()
        predictions = torch.as_tensor(predictions).cpu().long()
        if labels.shape != indices.shape or predictions.shape != indices.shape:
            raise ValueError(
                f"labels / predictions: found shapes {tuple(labels.shape)} / "
                f"{tuple(predictions.shape)}, expected {tuple(indices.shape)} like indices"
            )
        if bool(((labels < 0) | (labels >= self.n_classes)).any()):
            raise ValueError(f"labels: expected classes in [0, {self.n_classes})")
        self._labels[indices] = labels
        self._wrong[indices] = predictions != labels

    def end_epoch(self) -> None:
        """Update the weights from this epoch's votes and forget the votes."""
        seen = self._labels >= 0
        for c in range(self.n_classes):
            members = seen & (self._labels == c)
            total = self._weights[members].sum()
            if total <= 0:
                continue
            wrong = members & self._wrong
            error = float(self._weights[wrong].sum() / total)
            self._weights[wrong] *= math.exp(error * RATE)
        self._labels.fill_(-1)
        self._wrong.fill_(False)

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

    def _check_indices(self, indices: torch.Tensor) -> torch.Tensor:
        indices = torch.as_tensor(indices).cpu().long()
        if indices.dim() != 1 or bool(((indices < 0) | (indices >= self._weights.shape[0])).any()):
            raise ValueError(
                f"indices: expected a 1-D tensor of sample indices in [0, {self._weights.shape[0]})"
            )
        return indices
