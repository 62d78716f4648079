"""Rank 0's record of a training in its MLflow run, in the order the worker loop calls it.

`start` logs the epochs that a restarted worker group checkpointed but had not logged, and starts
the system metrics (`system_metrics`). `epoch`, after each epoch's checkpoint, logs the epoch's
metrics (`EpochLogger`: each epoch once), the nodes, and the learning curves and confusion matrix
under the same artifact paths each epoch, so that a run stopped by ASHA or a crash keeps those of
its last epoch (about 0.4 s an epoch for 10 classes on a 2-core machine, 0.6 s for 35). `finish`
logs one validation sample's output raster, which takes a pass over the validation data of its
own and pictures the network rather than its progress, and stops the system metrics.

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
    ) -> None:
        """The run so far: `history` per epoch, `nodes` per epoch (rank order), the last
        validation `confusion` matrix `[true class, predicted class]`."""
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

    def finish(self, raster: np.ndarray | None = None, label: int = 0) -> None:
        """`raster`: the output layer's spikes `[T, n_classes]` for one validation sample of
        class `label` (None: no epoch ran, nothing to picture)."""
        from hm2bp.orchestration import plots

        if raster is not None:
            figure = plots.output_raster(raster, self.classes, label, self.dt_ms)
            self._log_figure(figure, "plots/output_raster.png")
        self.system.stop()

    def _log_figure(self, figure, artifact_file: str) -> None:
        import matplotlib.pyplot as plt

        self.logger.log_figure(figure, artifact_file)
        plt.close(figure)
