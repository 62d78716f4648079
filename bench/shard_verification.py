"""What verifying shards costs: every read hashes the bytes it parses and checks them against the
manifest (`pipelines.shards.read_shard`), and the trainer's driver checks every digest once before
Ray starts (`preflight.check_shards`).

    .venv/bin/python bench/shard_verification.py            # the slices under HM2BP_SHARED_DIR/data
    .venv/bin/python bench/shard_verification.py --quick    # 1/10 of each, to try the script

Converts the MNIST slice (8,000 images, T=400) and the N-MNIST slice (1,000 samples, T=540), then,
per data set and side by side in one process, three passes over all its shards, each repeated and
the fastest kept: pyarrow reading the files unverified (what the readers did before), `read_shard`
(read, sha256, parse, check rows, split, ids and value ranges), and the sha256 of the bytes alone
(the driver's check). Ratios are against the unverified read.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import ray
from hm2bp.pipelines.checksums import sha256_file
from hm2bp.pipelines.convert import convert
from hm2bp.pipelines.manifest import Manifest, read_manifest
from hm2bp.pipelines.shards import ShardSource, read_shard
from hm2bp.pipelines.storage import resolve

REPEATS = 5


def best_of(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def passes(folder: str, manifest: Manifest) -> dict[str, float]:
    fs, path = resolve(folder)
    files = [f"{path}/{e.file}" for e in manifest.shards]
    return {
        "pyarrow, unverified": best_of(lambda: [pq.read_table(f) for f in files]),
        "read_shard, verified": best_of(
            lambda: [read_shard(ShardSource.of(folder), e, manifest) for e in manifest.shards]
        ),
        "sha256 alone (driver)": best_of(lambda: [sha256_file(Path(f)) for f in files]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of every data set")
    args = parser.parse_args()
    every = 10 if args.quick else 1
    root = Path(os.environ.get("HM2BP_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
    ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}"
    )
    jobs = [
        ("MNIST, T=400", "mnist", root / "data" / "mnist", 8000),
        ("N-MNIST, T=540", "nmnist", root / "data" / "nmnist-small", 1000),
    ]
    print("\n| shards | samples | MB | pass | seconds | MB/s | vs unverified |")
    print("| --- | ---: | ---: | --- | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for label, name, source, total in jobs:
            out = f"{tmp}/{name}"
            n = total // every
            convert(name, source=source, out=out, split=f"range:train=0-{n - 1}")
            manifest = read_manifest(out)
            megabytes = sum(os.path.getsize(f"{out}/{e.file}") for e in manifest.shards) / 1e6
            timings = passes(out, manifest)
            base = timings["pyarrow, unverified"]
            for pass_name, seconds in timings.items():
                print(
                    f"| {label} | {manifest.samples} | {megabytes:.1f} | {pass_name} | "
                    f"{seconds:.3f} | {megabytes / seconds:.0f} | {seconds / base:.2f}x |"
                )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
