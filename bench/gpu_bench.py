"""Training-step throughput and peak memory on one GPU: hm2bp against SpikingJelly 2.0 and snnTorch.

    python bench/gpu_bench.py --out gpu_bench.md        # on a CUDA machine (bench/gpu_check.sh)
    python bench/gpu_bench.py --smoke --device cpu      # tiny shapes, checks the script itself

One step = forward + backward + Adam on a Poisson spike batch of MNIST-like density (1.75 % of the
input slots), random labels, the same batch for every engine. Fixed iteration counts per case (no
timed assertions anywhere; the machines are noisy, so read the ratios within one run). Everything in
float32 with TF32 off for the forward (spikes are discontinuous in the current, spec section 6.3);
hm2bp may still use faster modes where only gradients are touched, as its engine decides.

Engines: hm2bp with the reference backend and with the Triton backend, SpikingJelly's multi-step
`LIFNode(tau=64, decay_input=False)` and snnTorch's `Synaptic` (see `snn_baselines.py`). An engine
that is not installed or fails is reported in the table as such; the other rows still run.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from snn_baselines import (  # noqa: E402
    Architecture,
    Layer,
    hm2bp_step,
    snntorch_step,
    spikingjelly_step,
)

INPUT_DENSITY = 0.0175

MNIST_MLP = Architecture(
    "784-800-10", (784,), (Layer("fc", 20.0, 800), Layer("output", 8.0, 10)), 10.0, 0.04
)
NMNIST_MLP = Architecture(
    "2312-800-10", (2312,), (Layer("fc", 15.0, 800), Layer("output", 15.0, 10)), 10.0, 0.01
)
MNIST_CNN = Architecture(
    "15C5-P2-40C5-P2-300-10",
    (1, 28, 28),
    (
        Layer("conv", 5.0, 15, 5),
        Layer("pool", 2.0),
        Layer("conv", 12.0, 40, 5),
        Layer("pool", 4.0),
        Layer("fc", 10.0, 300),
        Layer("output", 10.0, 10),
    ),
)
SMOKE_MLP = Architecture("64-16-4", (64,), (Layer("fc", 2.0, 16), Layer("output", 2.0, 4)))
SMOKE_CNN = Architecture(
    "3C3-P2-4C2-P2-8-4",
    (1, 12, 12),
    (
        Layer("conv", 2.0, 3, 3),
        Layer("pool", 1.0),
        Layer("conv", 2.0, 4, 2),
        Layer("pool", 1.0),
        Layer("fc", 2.0, 8),
        Layer("output", 2.0, 4),
    ),
)


@dataclass(frozen=True)
class Case:
    arch: Architecture
    steps: int  # T
    batch: int
    warmup: int
    iters: int


# Iteration counts sized so that the whole table takes about two minutes on an H200; the cases of
# issue 5's targets first, so that a run cut short by its time limit still has them.
CASES = (
    Case(MNIST_MLP, 400, 128, 2, 5),
    Case(MNIST_MLP, 400, 1, 3, 20),
    Case(NMNIST_MLP, 540, 128, 2, 5),
    Case(MNIST_CNN, 400, 32, 2, 3),
    Case(MNIST_MLP, 400, 32, 2, 10),
)
SMOKE_CASES = (
    Case(SMOKE_MLP, 24, 1, 1, 1),
    Case(SMOKE_MLP, 24, 3, 1, 1),
    Case(SMOKE_CNN, 24, 2, 1, 1),
)

ENGINES = ("hm2bp-triton", "spikingjelly", "hm2bp-reference", "snntorch")  # slowest last


@dataclass
class Row:
    case: Case
    engine: str
    samples_per_s: float | None = None
    ms_per_step: float | None = None
    peak_mib: float | None = None
    note: str = ""


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _build(engine: str, case: Case, spikes: torch.Tensor, labels: torch.Tensor):
    if engine.startswith("hm2bp-"):
        return hm2bp_step(case.arch, spikes, labels, backend=engine.removeprefix("hm2bp-"))
    if engine == "spikingjelly":
        return spikingjelly_step(case.arch, spikes, labels)
    return snntorch_step(case.arch, spikes, labels)


def _missing(engine: str, device: torch.device) -> str:
    module = {"spikingjelly": "spikingjelly", "snntorch": "snntorch", "hm2bp-triton": "triton"}
    name = module.get(engine)
    if name and importlib.util.find_spec(name) is None:
        return f"{name} not installed"
    return ""


def measure(engine: str, case: Case, device: torch.device, seed: int = 0) -> Row:
    """Time `case.iters` steps of `engine` after `case.warmup` steps; peak memory of those steps."""
    row = Row(case, engine, note=_missing(engine, device))
    if row.note:
        return row
    generator = torch.Generator().manual_seed(seed)
    shape = (case.steps, case.batch, *case.arch.input_shape)
    spikes = (torch.rand(shape, generator=generator) < INPUT_DENSITY).to(torch.uint8).to(device)
    labels = torch.randint(0, case.arch.layers[-1].size, (case.batch,), generator=generator)
    labels = labels.to(device)
    try:
        step = _build(engine, case, spikes, labels)
        for _ in range(case.warmup):
            step()
        _synchronize(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for _ in range(case.iters):
            step()
        _synchronize(device)
        elapsed = time.perf_counter() - start
    except Exception as error:  # one failing engine must not cost the rest of a one-shot GPU run
        row.note = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
        return row
    finally:
        step = None
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    row.ms_per_step = 1e3 * elapsed / case.iters
    row.samples_per_s = case.iters * case.batch / elapsed
    if device.type == "cuda":
        row.peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _ratio(ours: float | None, theirs: float | None) -> str:
    return "-" if ours is None or theirs is None or theirs == 0 else f"{ours / theirs:.2f}x"


def table(rows: list[Row]) -> str:
    """Markdown: one line per (case, engine), with speed and memory relative to SpikingJelly."""
    lines = [
        "| network | T | B | engine | samples/s | ms/step | peak MiB | speed vs SJ | memory vs SJ "
        "| note |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in rows:
        same_case = (r for r in rows if r.case is row.case and r.engine == "spikingjelly")
        sj = next(same_case, Row(row.case, ""))
        case = row.case
        lines.append(
            f"| {case.arch.name} | {case.steps} | {case.batch} | {row.engine} "
            f"| {_fmt(row.samples_per_s, '.1f')} | {_fmt(row.ms_per_step, '.2f')} "
            f"| {_fmt(row.peak_mib, '.0f')} | {_ratio(row.samples_per_s, sj.samples_per_s)} "
            f"| {_ratio(row.peak_mib, sj.peak_mib)} | {row.note} |"
        )
    return "\n".join(lines)


def environment(device: torch.device) -> str:
    parts = [f"Python {platform.python_version()}", f"torch {torch.__version__}"]
    for name in ("triton", "spikingjelly", "snntorch"):
        try:
            from importlib.metadata import version

            parts.append(f"{name} {version(name)}")
        except Exception:
            parts.append(f"{name} absent")
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return f"Device: {gpu or device.type}. " + ", ".join(parts) + "."


def run(
    cases: tuple[Case, ...], engines: tuple[str, ...], device: torch.device, out: Path | None
) -> list[Row]:
    """Measure every (case, engine); the table at `out` is rewritten after each row, so that a run
    stopped by a time limit keeps what it measured."""
    # Forward currents in full float32 for every engine (the issue's and spec 6.3's setting).
    torch.backends.cuda.matmul.fp32_precision = "ieee"
    torch.backends.cudnn.conv.fp32_precision = "ieee"
    rows = []
    for case in cases:
        for engine in engines:
            row = measure(engine, case, device)
            print(
                f"{case.arch.name} T={case.steps} B={case.batch} {engine}: "
                f"{_fmt(row.samples_per_s, '.1f')} samples/s {row.note}",
                flush=True,
            )
            rows.append(row)
            if out is not None:
                out.write_text(f"{environment(device)}\n\n{table(rows)}\n")
    return rows


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, one timed step each")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset")
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    args = parser.parse_args(argv)
    engines = tuple(args.engines.split(","))
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        parser.error(f"--engines: unknown {unknown}, expected a subset of {list(ENGINES)}")
    device = torch.device(args.device)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = run(SMOKE_CASES if args.smoke else CASES, engines, device, args.out)
    print(f"{environment(device)}\n\n{table(rows)}\n")
    return rows


if __name__ == "__main__":
    main()
