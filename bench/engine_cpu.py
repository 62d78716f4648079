"""Training-step throughput and peak memory on the CPU: hm2bp's compiled CPU backend and its torch
reference backend against SpikingJelly 2.0 and snnTorch 1.0.

    .venv/bin/python bench/engine_cpu.py --out engine_cpu.md   # every section
    .venv/bin/python bench/engine_cpu.py --quick               # 784-800-10, B = 1 and 32 only
    .venv/bin/python bench/engine_cpu.py --smoke               # tiny networks: the script works

One step = forward + backward + Adam (`snn_baselines.py`: hm2bp's HM2-BP gradient, BPTT for the
others), float32, on the same input spikes and labels for every engine of a case. Each measurement
runs in a fresh spawned process with the same torch thread count (`--threads`), so that no engine
inherits another's warm caches, freed memory or thread pools: a warm-up step, then timed steps
until 2 s have passed (`--quick`: 1 s), at most `MAX_TIMED_STEPS`. A budget of time rather than a
fixed count, because the engines of one case differ up to 20x in speed (a count that gives the
fastest 2 s gives the slowest minutes) and the CPU backend's speed keeps changing. Peak RSS is
the rise of the process's peak resident set (VmHWM) over its resident set once the engine is
loaded and inputs, network and optimiser exist, so it counts what the steps allocate. Loading
counts imports and, for hm2bp-cpu, numba's runtime with the compiled kernels (about 65 MB, once
per process, `cpu_backend.warm_up` on tiny arrays), as SpikingJelly's import counts torch's.

Denormal floats are flushed to zero in every process (`torch.set_flush_denormal`, `--denormals`
keeps them): SpikingJelly's sigmoid surrogate makes denormal gradients for neurons far below
threshold, and x86 computes with denormals about 100x slower, which cost its 784-800-10 step at
B = 32 a factor of 5 here; the comparison is against the competitors at their best. hm2bp's
speed is the same either way.

Sections: the engines on the paper's networks; cost against T; cost against input density, with
the fc forward current alone (`hm2bp.kernels.cpu_current.fc_current`, event-driven, against the
dense `x @ W^T`), whose crossing is `DENSE_MIN_DENSITY` in kernels/cpu_current.py. An engine that
is not installed or fails gets a line saying so; the others still run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fc_current_sweep import FcSweep, FcTiming, fc_table, time_fc  # noqa: E402
from snn_baselines import (  # noqa: E402
    MNIST_CNN,
    MNIST_MLP,
    NMNIST_MLP,
    SMOKE_CNN,
    SMOKE_MLP,
    engine_step,
    missing,
)
from step_cases import Case, Row, failure_note, spike_batch, table, versions  # noqa: E402

ENGINES = ("hm2bp-cpu", "spikingjelly", "hm2bp-reference", "snntorch")
FAST_ENGINES = ENGINES[:2]  # the sweeps compare these two only
# Timed steps per measurement: until SECONDS (--quick: QUICK_SECONDS) have passed, at least one.
SECONDS, QUICK_SECONDS = 2.0, 1.0
MAX_TIMED_STEPS = 100
NMNIST_DENSITY = 0.0035  # about what the real N-MNIST slice has in 2312 inputs x 540 steps
DENSITIES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4)
DIED = "failed: the measuring process died"


@dataclass(frozen=True)
class Section:
    """A table: every engine on every case; then, if given, the fc current alone."""

    title: str
    cases: tuple[Case, ...]
    engines: tuple[str, ...]
    fc_sweep: FcSweep | None = None


def _case(arch, steps: int, batch: int, density: float | None = None) -> Case:
    """One warm-up step, then at most `MAX_TIMED_STEPS` timed ones (see `measure`)."""
    return Case(arch, steps, batch, 1, MAX_TIMED_STEPS, density)


SECTIONS = (
    Section(
        "Engines on the paper's networks",
        (
            *(_case(MNIST_MLP, 400, batch) for batch in (1, 8, 32, 128)),
            _case(NMNIST_MLP, 540, 32, NMNIST_DENSITY),
            _case(MNIST_CNN, 400, 8),
        ),
        ENGINES,
    ),
    Section(
        "Cost against T (784-800-10, B = 32)",
        tuple(_case(MNIST_MLP, T, 32) for T in (100, 200, 400, 800)),
        FAST_ENGINES,
    ),
    Section(
        "Cost against input density (784-800-10, T = 400, B = 32)",
        tuple(_case(MNIST_MLP, 400, 32, density) for density in DENSITIES),
        FAST_ENGINES,
        FcSweep(rows=400 * 32, inputs=784, outputs=800, densities=DENSITIES, iters=9),
    ),
)
SMOKE_SECTIONS = (
    Section(
        "Engines",
        (_case(SMOKE_MLP, 24, 1), _case(SMOKE_MLP, 24, 3), _case(SMOKE_CNN, 24, 2)),
        ENGINES,
    ),
    Section("Cost against T", (_case(SMOKE_MLP, 12, 3),), FAST_ENGINES),
    Section(
        "Cost against input density",
        (_case(SMOKE_MLP, 24, 3, 0.4),),
        FAST_ENGINES,
        FcSweep(rows=24 * 3, inputs=64, outputs=16, densities=(0.05, 0.4), iters=1),
    ),
)


def quick(section: Section) -> Section:
    """The MLP at B = 1 and 32 of `section`, without its fc sweep."""
    cases = tuple(c for c in section.cases if c.arch == MNIST_MLP and c.batch in (1, 32))
    return replace(section, cases=cases, fc_sweep=None)


def memory_kib() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in KiB."""
    status = Path("/proc/self/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def load_engine(engine: str) -> None:
    """What an engine loads once per process before its first step (see the module docstring)."""
    if engine == "hm2bp-cpu":
        from hm2bp.kernels.cpu_backend import warm_up

        warm_up()


def measure(engine: str, case: Case, threads: int, seconds: float, denormals: bool) -> Row:
    """Time `engine` on `case` in this process (run in a fresh one by `Processes`): `case.warmup`
    steps, then steps until `seconds` have passed, at least one and at most `case.iters`."""
    torch.set_num_threads(threads)
    torch.set_flush_denormal(not denormals)
    row = Row(case, engine)
    try:
        load_engine(engine)
        step = engine_step(engine, case.arch, *spike_batch(case))
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := the current resident set
        before = memory_kib()[0]
        for _ in range(case.warmup):
            step()
        start, iters, elapsed = time.perf_counter(), 0, 0.0
        while iters < case.iters and (iters == 0 or elapsed < seconds):
            step()
            iters += 1
            elapsed = time.perf_counter() - start
    except Exception as error:  # one failing engine must not cost the rest of the run
        row.note = failure_note(error)
        return row
    row.ms_per_step = 1e3 * elapsed / iters
    row.samples_per_s = iters * case.batch / elapsed
    row.peak_mib = (memory_kib()[1] - before) / 1024
    return row


class Processes:
    """Runs calls in spawned processes: a fresh one per call, or with `fresh=False` one shared by
    every call (the smoke run, where start-up would cost more than the steps). A process that dies
    (out of memory, a crash in compiled code) fails its own call only: `died` is returned."""

    def __init__(self, fresh: bool) -> None:
        self.fresh = fresh
        self._pool: ProcessPoolExecutor | None = None

    def call(self, died, function, *args):
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                max_tasks_per_child=1 if self.fresh else None,
            )
        try:
            return self._pool.submit(function, *args).result()
        except BrokenProcessPool:
            self.close()
            return died

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def measure_row(processes: Processes, engine: str, case: Case, options: Options) -> Row:
    """`measure` in its own process, or the line saying why there are no figures."""
    note = missing(engine)
    if note:
        return Row(case, engine, note=note)
    died = Row(case, engine, note=DIED)
    return processes.call(
        died, measure, engine, case, options.threads, options.seconds, options.denormals
    )


@dataclass(frozen=True)
class Options:
    """How every measurement of a run is taken."""

    threads: int
    seconds: float
    denormals: bool


@dataclass
class Result:
    section: Section
    rows: list[Row] = field(default_factory=list)
    fc: list[FcTiming] = field(default_factory=list)

    def markdown(self) -> str:
        parts = [f"## {self.section.title}", table(self.rows, show_input=True)]
        if self.fc:
            parts.append(fc_table(self.section.fc_sweep, self.fc))
        return "\n\n".join(parts)


@dataclass
class Report:
    options: Options
    load_start: float
    load_end: float | None = None
    results: list[Result] = field(default_factory=list)

    def header(self) -> str:
        packages = versions(("torch", "numba", "spikingjelly", "snntorch"))
        end = "(running)" if self.load_end is None else f"{self.load_end:.1f}"
        denormals = "kept" if self.options.denormals else "flushed to zero"
        return (
            f"Machine: {platform.machine()} {cpu_model()}, {os.cpu_count()} cores; Python "
            f"{platform.python_version()}, {packages}; torch threads per process: "
            f"{self.options.threads}; denormals {denormals}; "
            f"load average {self.load_start:.1f} at the start, {end} at the end."
        )

    def markdown(self) -> str:
        return "\n\n".join([self.header(), *(r.markdown() for r in self.results)]) + "\n"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def run(
    sections: tuple[Section, ...], options: Options, processes: Processes, out: Path | None
) -> Report:
    """Measure every (case, engine) of every section, then its fc sweep; the file at `out` is
    rewritten after each measurement, so that a run stopped early keeps its figures."""
    report = Report(options, os.getloadavg()[0])

    def record(line: str) -> None:
        print(line, flush=True)
        if out is not None:
            out.write_text(report.markdown())

    for section in sections:
        result = Result(section)
        report.results.append(result)
        for case in section.cases:
            for engine in section.engines:
                row = measure_row(processes, engine, case, options)
                result.rows.append(row)
                record(row.summary())
        sweep = section.fc_sweep
        for density in sweep.densities if sweep else ():
            died = FcTiming(density, note=DIED)
            result.fc.append(processes.call(died, time_fc, sweep, density, options.threads))
            record(result.fc[-1].summary())
    report.load_end = os.getloadavg()[0]
    return report


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="784-800-10 at B = 1 and 32 only")
    size.add_argument("--smoke", action="store_true", help="tiny networks, one step each")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per process")
    parser.add_argument("--out", type=Path, help="write the markdown here as well")
    parser.add_argument(
        "--denormals", action="store_true", help="keep denormal floats (default: flush to zero)"
    )
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads: found {args.threads}, expected at least 1")
    if args.smoke:
        sections, seconds = SMOKE_SECTIONS, 0.0  # one timed step each
    elif args.quick:
        sections, seconds = (quick(SECTIONS[0]),), QUICK_SECONDS
    else:
        sections, seconds = SECTIONS, SECONDS
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
    processes = Processes(fresh=not args.smoke)
    try:
        options = Options(args.threads, seconds, args.denormals)
        report = run(sections, options, processes, args.out)
    finally:
        processes.close()
    text = report.markdown()
    print(f"\n{text}", end="")
    if args.out:
        args.out.write_text(text)
    return report


if __name__ == "__main__":
    main()
