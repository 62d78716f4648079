"""Pipelines benchmark: conversion throughput, and reading shards back as dense spike batches,
side by side with tonic's own path on the same N-MNIST samples.

    .venv/bin/python bench/pipelines.py            # the slices under HM2BP_SHARED_DIR/data
    .venv/bin/python bench/pipelines.py --quick    # 1/10 of each, to try the script
    .venv/bin/python bench/pipelines.py --only fsdd  # one conversion, no reading part

Conversion: MNIST (the 8,000-image slice, T=400), N-MNIST (1,000 samples, T=540) and FSDD (2,500
recordings) through `convert`, on a local Ray with every core, after a small warm-up conversion
of each (Ray workers import numba/librosa/tonic once; that start-up is printed separately).

Reading: one pass over all 1,000 N-MNIST samples as dense `[T, B, N]` batches (T=540, B=64,
N=2312): ours through Ray Data (`read_shards` + `decode_spikes`) and through pyarrow alone
(`pq.read_table` + `decode_spikes`); tonic's through its N-MNIST reader with
`ToFrame(time_window=600 us, 540 frames)` wrapped in `tonic.DiskCachedDataset`, first pass (reads
the .bin files, fills the cache) and second pass (reads the cache), stacked into the same layout.
Ratios are against tonic's cached pass. A pass over the MNIST shards runs first (and is printed):
it also starts Ray Data's workers, as a trainer's first epoch would.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import ray
import ray.data
from hm2bp.pipelines.convert import convert
from hm2bp.pipelines.dataset import read_shards
from hm2bp.pipelines.decode import decode_spikes
from hm2bp.pipelines.manifest import read_manifest

BATCH = 64
T_NMNIST, DT_US = 540, 600


def shared_data() -> Path:
    root = Path(
        os.environ.get("HM2BP_SHARED_DIR", Path(__file__).resolve().parents[1].parent / "shared")
    )
    return root / "data"


def timed(fn: Callable[[], int]) -> tuple[int, float]:
    started = time.perf_counter()
    n = fn()
    return n, time.perf_counter() - started


def conversion_jobs(data: Path) -> dict[str, tuple[str, str, Path, int]]:
    """Short name -> (label, reader, source, samples) of each conversion benchmarked."""
    return {
        "mnist": ("MNIST, T=400", "mnist", data / "mnist", 8000),
        "nmnist": ("N-MNIST, T=540", "nmnist", data / "nmnist-small", 1000),
        "fsdd": ("FSDD, T=1000", "wav", data / "fsdd" / "recordings", 2500),
    }


def conversions(
    data: Path, out: Path, every: int, only: str | None = None
) -> list[tuple[str, int, float, float]]:
    """(name, samples, seconds, spikes per sample) per data set (or the `only` one), after a
    warm-up conversion."""
    jobs = conversion_jobs(data)
    rows = []
    for key, (label, name, source, total) in jobs.items():
        if only not in (None, key):
            continue
        n = total // every
        warm = convert(
            name,
            source=source,
            out=str(out / f"warm-{name}"),
            split="range:train=0-15",
            rows_per_shard=8,
        )
        print(f"  warm-up {label}: {warm.seconds:.1f} s for 16 samples")
        summary = convert(
            name,
            source=source,
            out=str(out / name),
            split=f"range:train=0-{n - 1}",
            rows_per_shard=250,
            progress=True,
        )
        rows.append((label, summary.samples, summary.seconds, summary.spikes_per_sample))
    return rows


def ours_ray_data(folder: Path) -> int:
    manifest = read_manifest(str(folder))
    n = 0
    for batch in read_shards(str(folder)).iter_batches(batch_size=BATCH, batch_format="pyarrow"):
        spikes, labels = decode_spikes(batch, manifest.T, manifest.n_inputs)
        assert spikes.shape == (manifest.T, len(labels), manifest.n_inputs)
        n += len(labels)
    return n


def ours_pyarrow(folder: Path) -> int:
    manifest = read_manifest(str(folder))
    n = 0
    for entry in manifest.shards:
        table = pq.read_table(folder / entry.file, columns=["label", "times", "neurons"])
        for start in range(0, table.num_rows, BATCH):
            spikes, labels = decode_spikes(table.slice(start, BATCH), manifest.T, manifest.n_inputs)
            n += len(labels)
    return n


def tonic_dataset(nmnist: Path, root: Path):
    """tonic's NMNIST over the slice (a subclass that skips its download check, as stack-notes
    says), each sample framed into 540 frames of 600 us and cached on disk by tonic."""
    import tonic
    import tonic.transforms as transforms

    class LocalNMNIST(tonic.datasets.NMNIST):
        def _check_exists(self):
            self.location_on_system = os.path.join(
                os.path.dirname(self.location_on_system), "NMNIST"
            )
            return os.path.isdir(os.path.join(self.location_on_system, self.folder_name))

    root.mkdir(parents=True)
    (root / "NMNIST").symlink_to(nmnist)
    frames = transforms.ToFrame(
        sensor_size=tonic.datasets.NMNIST.sensor_size,
        time_window=DT_US,
        start_time=0,
        end_time=T_NMNIST * DT_US,
        include_incomplete=True,
    )
    dataset = LocalNMNIST(save_to=str(root), train=True, transform=frames)
    return tonic.DiskCachedDataset(dataset, cache_path=str(root / "cache"))


def tonic_pass(dataset, limit: int) -> int:
    """Stack tonic's frames `[T, 2, 34, 34]` into the same `[T, B, N]` uint8 batches."""
    n = 0
    for start in range(0, limit, BATCH):
        items = [dataset[i] for i in range(start, min(start + BATCH, limit))]
        frames = np.stack([f for f, _ in items], axis=1)  # [T, B, 2, 34, 34]
        spikes = np.minimum(frames, 1).astype(np.uint8).reshape(frames.shape[0], len(items), -1)
        assert spikes.shape == (T_NMNIST, len(items), 2312)
        n += len(items)
    return n


def read_back(data: Path, out: Path, every: int) -> None:
    """The reading benchmark over the shards `conversions` wrote under `out`."""
    # Also warms Ray Data's workers, as a trainer's first epoch would.
    mnist_n, mnist_s = timed(lambda: ours_ray_data(out / "mnist"))
    print(
        f"\nMNIST shards to dense [400, {BATCH}, 784] via Ray Data: {mnist_n} samples, "
        f"{mnist_s:.2f} s, {mnist_n / mnist_s:.0f} samples/s"
    )
    limit = 1000 // every
    cached = tonic_dataset(data / "nmnist-small", out / "tonic")
    readers = [
        ("ours: Ray Data + decode_spikes", lambda: ours_ray_data(out / "nmnist")),
        ("ours: pyarrow + decode_spikes", lambda: ours_pyarrow(out / "nmnist")),
        (
            "tonic: NMNIST + ToFrame, 1st pass (fills DiskCachedDataset)",
            lambda: tonic_pass(cached, limit),
        ),
        ("tonic: DiskCachedDataset, cached pass", lambda: tonic_pass(cached, limit)),
        ("ours: Ray Data + decode_spikes, again", lambda: ours_ray_data(out / "nmnist")),
    ]
    results = [(label, *timed(fn)) for label, fn in readers]
    tonic_rate = results[3][1] / results[3][2]
    shape = f"[T={T_NMNIST}, B={BATCH}, N=2312]"
    print(f"\n| N-MNIST to dense {shape} | samples | seconds | samples/s | vs tonic cached |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, n, seconds in results:
        rate = n / seconds
        print(f"| {label} | {n} | {seconds:.2f} | {rate:.0f} | {rate / tonic_rate:.1f}x |")


def batches(x: Iterator) -> int:
    return sum(1 for _ in x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of every data set")
    parser.add_argument(
        "--only",
        choices=sorted(conversion_jobs(Path())),
        help="convert this data set alone and skip the reading benchmark",
    )
    args = parser.parse_args()
    every = 10 if args.quick else 1
    data = shared_data()
    ray.init(
        address="local",
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        logging_level=logging.WARNING,
    )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        rows = conversions(data, out, every, args.only)
        print("\n| conversion | samples | seconds | samples/s | spikes/sample |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for label, n, seconds, per in rows:
            print(f"| {label} | {n} | {seconds:.1f} | {n / seconds:.0f} | {per:.0f} |")
        if args.only is None:
            read_back(data, out, every)

    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
