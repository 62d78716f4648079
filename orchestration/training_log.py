"""Rank 0's record of a training in its MLflow run, in the order the worker loop calls it.

`start` logs the epochs that a restarted worker group checkpointed but had not logged, and starts
the system metrics (`system_metrics`). `epoch`, after each epoch's checkpoint, logs the epoch's
metrics (`EpochLogger`: each epoch once), the nodes, the learning curves, the confusion matrix and
one validation sample's output raster, under the same artifact paths each epoch, so that a run
stopped by ASHA or a crash keeps those of its last epoch. On a 2-core machine the figures cost
about 0.5 s an epoch (0.4 s for 10 classes, 0.6 s for 35, the raster 0.1 s of it) and the raster's
forward pass on one sample 0.05 s. `finish` stops the system metrics.

Every failure of the store is kept and logged as a warning, never raised: training goes on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from hm2bp.orchestration.system_metrics import SystemMetrics
from hm2bp.orchestration.tracking import EpochLogger, RunRef


class TrainingLog:
    """What rank 0 logs to the run `ref` of a data set with `classes` sampled every `dt_ms`."""

    def __init__(self, ref: RunRef, classes: Sequence[str], dt_ms: float) -> None:
        self.logger = EpochLogger(ref)
        self.system = SystemMetrics(ref)
        self.classes = list(classes)
        self.dt_ms = dt_ms

    def start(self, history: Sequence[Mapping[str, float]]) -> None:
        self.logger.sync(history)
        self.system.start()

    def epoch(
        self,
        history: Sequence[Mapping[str, float]],
        nodes: Sequence[Sequence[str]],
        confusion: np.ndarray,
        raster: np.ndarray | None = None,
        label: int = 0,
    ) -> None:
        """The run so far: `history` per epoch, `nodes` per epoch (rank order), the last
        validation `confusion` matrix `[true class, predicted class]`, and the output layer's
        spikes `[T, n_classes]` for one validation sample of class `label` (None: no sample)."""
        from hm2bp.orchestration import plots

        self.logger.sync(history)
        self.logger.tag_nodes(nodes)
        self._log_figure(plots.learning_curves(history), "plots/learning_curves.png")
        self._log_figure(
            plots.confusion_matrix(confusion, self.classes), "plots/confusion_matrix.png"
        )
        self.logger.log_dict(
            {"classes": self.classes, "matrix": confusion.tolist()}, "confusion_matrix.json"
        )
        if raster is not None:
            figure = plots.output_raster(raster, self.classes, label, self.dt_ms)
            self._log_figure(figure, "plots/output_raster.png")

    def finish(self) -> None:
        self.system.stop()

    def _log_figure(self, figure, artifact_file: str) -> None:
        import matplotlib.pyplot as plt

        self.logger.log_figure(figure, artifact_file)
        plt.close(figure)
