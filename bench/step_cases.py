"""What the training-step benchmarks (`gpu_bench.py` on a GPU, `engine_cpu.py` on the CPU) measure
and how they report it: a case (network, T, B, input spikes, step counts), its input batch, one
result row per (case, engine) and the markdown table with speed and memory relative to
SpikingJelly. Shared so that both scripts draw the same kind of spikes and print the same table.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import torch
from snn_baselines import Architecture

# An MNIST digit lights about 150 of its 784 pixels; `mnist_like` keeps that fraction for any input
# size, so that the tiny smoke networks get the same kind of raster.
LIT_FRACTION = 150 / 784
MAX_RATE = 1 / 5.5  # spikes per step of a white pixel (spec section 2.1)


@dataclass(frozen=True)
class Case:
    """One line per engine in a table: `iters` timed steps after `warmup` steps of `arch` at
    T = `steps` and batch `batch`, on uniform Bernoulli spikes with a fraction `density` of ones,
    or, where `density` is None, on MNIST-like rate-coded digits (`mnist_like`, about 3 % ones)."""

    arch: Architecture
    steps: int  # T
    batch: int
    warmup: int
    iters: int
    density: float | None = None


@dataclass
class Row:
    """The result of one engine on one case; `note` says why the figures are missing."""

    case: Case
    engine: str
    samples_per_s: float | None = None
    ms_per_step: float | None = None
    peak_mib: float | None = None
    note: str = ""

    def summary(self) -> str:
        """One line for the progress log."""
        case = self.case
        return (
            f"{case.arch.name} T={case.steps} B={case.batch} {input_label(case)} {self.engine}: "
            f"{_fmt(self.samples_per_s, '.1f')} samples/s {self.note}"
        )


def mnist_like(steps: int, batch: int, n_inputs: int, seed: int = 0) -> torch.Tensor:
    """Rate-coded stand-ins of MNIST digits, `[T, B, n_inputs]` uint8: a digit's share of lit
    pixels at MNIST's grey levels, p = pixel / (5.5 * 255) per step and no spike at t = 0, as the
    reference codes MNIST (spec section 2.1). Real digits are not needed to time a step; their
    spike statistics are."""
    rng = np.random.default_rng(seed)
    lit = round(LIT_FRACTION * n_inputs)
    pixels = np.zeros((batch, n_inputs))
    for b in range(batch):
        chosen = rng.choice(n_inputs, size=lit, replace=False)
        pixels[b, chosen] = rng.choice([128.0, 200.0, 255.0], size=lit, p=[0.2, 0.2, 0.6])
    draws = rng.random((steps, batch, n_inputs)) < pixels * MAX_RATE / 255
    draws[0] = False
    return torch.from_numpy(draws.astype(np.uint8))


def spike_batch(case: Case, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The input spikes `[T, B, *input_shape]` (uint8) and labels `[B]` of `case`: the same for
    every engine of a case, since they depend on the case and the seed only."""
    generator = torch.Generator().manual_seed(seed)
    shape = (case.steps, case.batch, *case.arch.input_shape)
    if case.density is None:
        spikes = mnist_like(case.steps, case.batch, int(np.prod(shape[2:])), seed).reshape(shape)
    else:
        spikes = (torch.rand(shape, generator=generator) < case.density).to(torch.uint8)
    labels = torch.randint(0, case.arch.layers[-1].size, (case.batch,), generator=generator)
    return spikes, labels


def input_label(case: Case) -> str:
    return "MNIST-like" if case.density is None else f"Bernoulli {100 * case.density:g} %"


def failure_note(error: BaseException) -> str:
    """The table's note for an engine that raised: the type and the first line of the message."""
    first_line = (str(error).splitlines() or [""])[0]
    return f"failed: {type(error).__name__}: {first_line[:120]}"


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _ratio(ours: float | None, theirs: float | None) -> str:
    return "-" if ours is None or theirs is None or theirs == 0 else f"{ours / theirs:.2f}x"


def table(rows: list[Row], show_input: bool = False) -> str:
    """Markdown: one line per (case, engine), with speed and memory relative to SpikingJelly on
    the same case (the same network, T, B and input); `show_input` adds the input's column."""
    input_head, input_rule = ("input | ", "--- | ") if show_input else ("", "")
    lines = [
        f"| network | T | B | engine | {input_head}samples/s | ms/step | peak MiB | speed vs SJ "
        "| memory vs SJ | note |",
        f"| --- | ---: | ---: | --- | {input_rule}---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        same_case = (r for r in rows if r.case == row.case and r.engine == "spikingjelly")
        sj = next(same_case, Row(row.case, ""))
        case = row.case
        input_cell = f"{input_label(case)} | " if show_input else ""
        lines.append(
            f"| {case.arch.name} | {case.steps} | {case.batch} | {row.engine} | {input_cell}"
            f"{_fmt(row.samples_per_s, '.1f')} | {_fmt(row.ms_per_step, '.2f')} "
            f"| {_fmt(row.peak_mib, '.0f')} | {_ratio(row.samples_per_s, sj.samples_per_s)} "
            f"| {_ratio(row.peak_mib, sj.peak_mib)} | {row.note} |"
        )
    return "\n".join(lines)


def versions(packages: tuple[str, ...]) -> str:
    """The installed versions ("torch 2.13.0, numba absent, ..."), for a table's header."""
    parts = []
    for name in packages:
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} absent")
    return ", ".join(parts)
