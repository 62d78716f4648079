"""System metrics of a training: CPU and memory (psutil) and, where nvidia-ml-py (the `gpu` extra)
finds a GPU, its use, sampled by MLflow's own `SystemMetricsMonitor` into the run as
`system/cpu_utilization_percentage`, `system/system_memory_usage_megabytes`,
`system/gpu_0_utilization_percentage` and the like.

Rank 0 samples, in its worker process, because rank 0 alone talks to MLflow: psutil and NVML
measure the whole node, so the numbers cover every worker on rank 0's node; with workers on
several nodes they are that node's (the run's `hm2bp.nodes` tag names the others), since per-node
series would need every rank to talk to MLflow.

MLflow's monitor samples every `MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL` seconds (10 by default)
in a daemon thread and logs each sample at its own step, continued by a restarted or rerun
training (`resume_logging`). It stops by itself once the run is no longer RUNNING (the driver
marked it FAILED or FINISHED) or a call to the store fails (a warning; training goes on, without
system metrics until the next restart or rerun); `stop` ends it at the end of the training loop
and logs what it sampled since its last log, which MLflow's loop drops (a training shorter than
the interval would have none). Its calls run under `capped_http`: a failing store costs seconds,
not MLflow's minutes of retries, when `stop` waits for the thread.
"""

from __future__ import annotations

import logging

from hm2bp.orchestration.tracking import RunRef, capped_http

log = logging.getLogger(__name__)


def _capped_monitor(ref: RunRef):
    """MLflow's monitor of `ref`'s run, its loop and its last flush under `capped_http`."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    class CappedMonitor(SystemMetricsMonitor):
        def monitor(self) -> None:
            with capped_http():
                super().monitor()
                try:  # one last sample, and the samples since the last log
                    self.collect_metrics()
                    if metrics := self.aggregate_metrics():
                        self.publish_metrics(metrics)
                except Exception as err:  # the store failed: the flush in `finish` reports it
                    log.warning("system metrics: the last sample was not logged: %s", err)

        def finish(self) -> None:
            with capped_http():
                super().finish()

    with capped_http():  # reads the run's last system metrics step
        return CappedMonitor(ref.run_id, resume_logging=True, tracking_uri=ref.uri)


class SystemMetrics:
    """Rank 0's sampler of its node for the run `ref`: `start` once, `stop` at the end."""

    def __init__(self, ref: RunRef) -> None:
        self.ref = ref
        self.monitor = None

    def start(self) -> None:
        try:
            self.monitor = _capped_monitor(self.ref)
            self.monitor.start()
        except Exception as err:  # no psutil, or a store that fails: training goes on
            log.warning("system metrics are not logged to run %s: %s", self.ref.run_id, err)
            self.monitor = None

    def stop(self) -> None:
        if self.monitor is not None:
            self.monitor.finish()  # MLflow's: errors are logged, not raised
            self.monitor = None
