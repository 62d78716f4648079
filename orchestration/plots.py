"""The figures a tracked run carries: learning curves, an output spike raster, the confusion matrix.

Each function returns a matplotlib `Figure` (Agg backend, no display needed) for
`MlflowClient.log_figure`; the caller closes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def learning_curves(history: Sequence[Mapping[str, float]]) -> Figure:
    """Accuracy and loss per epoch, train beside validation."""
    epochs = np.arange(len(history))
    figure, (acc, loss) = plt.subplots(1, 2, figsize=(10, 4))
    for split in ("train", "val"):
        acc.plot(epochs, [h.get(f"{split}_accuracy", np.nan) for h in history], "o-", label=split)
        loss.plot(epochs, [h.get(f"{split}_loss", np.nan) for h in history], "o-", label=split)
    acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    loss.set(xlabel="epoch", ylabel="loss (spike counts squared)", title="loss")
    for axis in (acc, loss):
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def output_raster(spikes: np.ndarray, classes: Sequence[str], label: int, dt_ms: float) -> Figure:
    """The output layer's spikes `[T, n_classes]` for one validation sample of class `label`."""
    steps, neurons = np.nonzero(spikes)
    figure, axis = plt.subplots(figsize=(8, 3))
    axis.scatter(steps * dt_ms, neurons, marker="|", s=60, color="black")
    axis.set_yticks(range(len(classes)), labels=list(classes))
    axis.set(
        xlabel="time (ms)",
        ylabel="output neuron",
        xlim=(0, len(spikes) * dt_ms),
        title=f"output spikes, one validation sample of class {classes[label]}",
    )
    figure.tight_layout()
    return figure


def confusion_matrix(matrix: np.ndarray, classes: Sequence[str]) -> Figure:
    """Validation counts, true class down, predicted class across."""
    size = max(4.0, 0.3 * len(classes))
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(matrix, cmap="Blues")
    ticks = range(len(classes))
    axis.set_xticks(ticks, labels=list(classes), rotation=90 if len(classes) > 12 else 0)
    axis.set_yticks(ticks, labels=list(classes))
    axis.set(xlabel="predicted", ylabel="true", title="validation confusion matrix")
    if len(classes) <= 12:
        for (row, col), count in np.ndenumerate(matrix):
            axis.text(col, row, str(count), ha="center", va="center", fontsize=7)
    figure.colorbar(image, ax=axis)
    figure.tight_layout()
    return figure
