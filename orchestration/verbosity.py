"""What a command prints: our own lines and the warnings that matter, or with `-v` Ray's internals.

Our lines are the conversion summary, one line per epoch and the final summary. Around them Ray,
Ray Train, Ray Data and MLflow print INFO chatter at every step, and one message of Ray's C++ core
that reads like an error but is not. `quiet()`, called by the CLI before it imports Ray or MLflow
(`hm2bp -v` skips it), keeps these off the terminal; they all stay in the Ray session's log files
(`/tmp/ray/session_latest/logs` on each node):

- INFO of the driver's `ray` and `mlflow` loggers ("Started a local Ray instance", "Creating initial
  MLflow database tables"): `RAY_LOGGER_LEVEL` and `MLFLOW_LOGGING_LEVEL` set to WARNING, unless
  the user set them (a local Ray's processes inherit them too);
- `NOISE`, in the driver's Ray Data log and among the lines Ray forwards from its processes (Train
  workers, Train controller, Ray Data's split coordinator) to the driver's terminal. Ray Train's
  `LoggingConfig` cannot reach its per-report line: Ray 2.60 logs it on a logger named by the file
  path of `ray/train/v2/_internal/execution/context.py`, not under `ray.train`; and the C++ line
  comes from the controller's core worker, where only `RAY_BACKEND_LOG_LEVEL` would hide it, with
  every real error of that process.

Warnings and errors of Ray's loggers still show, and so do tracebacks of failed tasks and workers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

# Substrings of the lines shown only with -v, each with where it comes from.
NOISE = (
    # Ray Train worker, every report of every rank: the whole TrainingReport, metrics and all.
    "Reporting training result",
    # Ray Data, in every process that runs a dataset, because `trainer.train` turns the bars off.
    "Progress bars disabled",
    # Ray Data, at the end of every dataset run (the val set, each epoch's train split).
    "execution finished in",
    # Ray's core worker (an `E` line of core_worker.cc) when Ray Train starts its own
    # PreemptionWatcher actor: a restart of that actor could lose its arguments (ray#53727).
    "'PreemptionWatcher'",
)

QUIET_ENV = {"RAY_LOGGER_LEVEL": "warning", "MLFLOW_LOGGING_LEVEL": "WARNING"}


def is_noise(line: str) -> bool:
    return any(marker in line for marker in NOISE)


class _NoiseFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not is_noise(record.getMessage())


def quiet() -> None:
    """Keep Ray's and MLflow's internals off this process's terminal; see the module docstring.
    Call it before Ray and MLflow are imported (their log levels are read on import); with Ray
    already running (a notebook, a test) its filters apply at once."""
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    try:
        import ray
        import ray._private.worker as ray_worker  # holds the hooks ray.init runs when it is done
    except ImportError:  # a machine without Ray (the GPU machine evaluates without it)
        return

    if _after_ray_init not in ray_worker._post_init_hooks:
        ray_worker._post_init_hooks.append(_after_ray_init)
    if ray.is_initialized():
        _after_ray_init()


def _after_ray_init() -> None:
    """Filter `NOISE` from Ray Data's log in this driver and from the lines Ray forwards to it
    (Ray Data configures its loggers when imported, so this runs after that)."""
    import ray.data  # noqa: F401  (configures the `ray.data` logger and its handlers)
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    for handler in logging.getLogger("ray.data").handlers:
        if not any(isinstance(f, _NoiseFilter) for f in handler.filters):
            handler.addFilter(_NoiseFilter())
    # `ray.init(log_to_driver=True)` registers the printer of forwarded lines under this name.
    for name, printer in list(dispatcher.handlers):
        if name == "ray_print_logs" and not getattr(printer, "drops_noise", False):
            dispatcher.remove_handler(name)
            dispatcher.add_handler(name, _without_noise(printer))


def _without_noise(printer: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """`printer` of Ray's batches of forwarded lines (`{"lines": [...], "pid": ..., ...}`), given
    only the lines that are not `NOISE` (and no batch left empty)."""

    def print_batch(batch: dict[str, Any]) -> None:
        lines = [line for line in batch.get("lines", []) if not is_noise(line)]
        if lines:
            printer({**batch, "lines": lines})

    print_batch.drops_noise = True  # type: ignore[attr-defined]
    return print_batch
