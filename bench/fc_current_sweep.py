"""The fc forward current alone against input density: hm2bp's event-driven `fc_current` (CPU
backend, `kernels/cpu_current.py`) against the dense GEMM `x @ W^T`, on binary float32 inputs.

The event-driven current adds one weight column per input spike, so its cost grows with the
density while the GEMM's does not; the density at which the GEMM starts to win is where
`DENSE_MIN_DENSITY` in kernels/cpu_current.py belongs. Part of `engine_cpu.py`'s density section.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from unittest import mock

import torch
from step_cases import failure_note


@dataclass(frozen=True)
class FcSweep:
    rows: int  # T * B
    inputs: int
    outputs: int
    densities: tuple[float, ...]
    iters: int  # timed calls of each implementation per density


@dataclass
class FcTiming:
    density: float
    event_ms: float | None = None
    dense_ms: float | None = None
    note: str = ""

    def summary(self) -> str:
        """One line for the progress log."""
        if self.event_ms is None:
            return f"fc current at {100 * self.density:g} %: {self.note}"
        return (
            f"fc current at {100 * self.density:g} %: event-driven {self.event_ms:.2f} ms, "
            f"dense {self.dense_ms:.2f} ms"
        )


def _seconds(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def time_fc(sweep: FcSweep, density: float, threads: int) -> FcTiming:
    """Median ms of `sweep.iters` calls of each implementation after one warm-up call each, on
    x `[rows, inputs]` with a fraction `density` of ones. The two alternate call by call, so that
    a change in the machine's load hits both alike."""
    torch.set_num_threads(threads)
    timing = FcTiming(density)
    generator = torch.Generator().manual_seed(0)
    x = (torch.rand(sweep.rows, sweep.inputs, generator=generator) < density).float()
    weight = torch.rand(sweep.outputs, sweep.inputs, generator=generator) - 0.5
    event, dense = [], []
    try:
        from hm2bp.kernels import cpu_current

        # fc_current itself hands dense inputs to the GEMM; here the event-driven path is timed
        # at every density, since where that hand-over belongs is what this sweep measures.
        with mock.patch.object(cpu_current, "DENSE_MIN_DENSITY", math.inf):
            for _ in range(sweep.iters + 1):
                event.append(_seconds(cpu_current.fc_current, x, weight))
                dense.append(_seconds(torch.matmul, x, weight.T))
    except Exception as error:  # reported in the table, like a failing engine
        timing.note = failure_note(error)
        return timing
    timing.event_ms = 1e3 * statistics.median(event[1:])
    timing.dense_ms = 1e3 * statistics.median(dense[1:])
    return timing


def dense_wins_from(timings: list[FcTiming]) -> float | None:
    """The lowest density from which on the GEMM was faster at every density measured, or None."""
    found = None
    for timing in sorted(timings, key=lambda t: t.density, reverse=True):
        if timing.event_ms is None or timing.event_ms <= timing.dense_ms:
            break
        found = timing.density
    return found


def fc_table(sweep: FcSweep, timings: list[FcTiming]) -> str:
    """Markdown: both times and their ratio per density, then where the GEMM starts to win."""
    lines = [
        f"The fc forward current alone: x `[{sweep.rows}, {sweep.inputs}]` binary float32, "
        f"W `[{sweep.outputs}, {sweep.inputs}]`, median of {sweep.iters} calls each.",
        "",
        "| density | event-driven fc_current ms | dense x @ W^T ms | event / dense | note |",
        "| ---: | ---: | ---: | ---: | --- |",
    ]
    for t in timings:
        if t.event_ms is None:
            lines.append(f"| {100 * t.density:g} % | - | - | - | {t.note} |")
        else:
            lines.append(
                f"| {100 * t.density:g} % | {t.event_ms:.2f} | {t.dense_ms:.2f} "
                f"| {t.event_ms / t.dense_ms:.2f} | |"
            )
    crossing = dense_wins_from(timings)
    if crossing is None:
        highest = 100 * max(t.density for t in timings)
        verdict = f"The dense GEMM did not win at the highest density measured ({highest:g} %)."
    else:
        verdict = f"The dense GEMM was faster from {100 * crossing:g} % on."
    lines += ["", f"{verdict} (`DENSE_MIN_DENSITY` in kernels/cpu_current.py.)"]
    return "\n".join(lines)
