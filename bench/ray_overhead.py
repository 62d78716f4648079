"""Ray's overhead on this machine: the same training with 1 and with 2 Ray Train workers, and
without Ray (the worker loop called directly), side by side; plus the demo's wall time.

On a 2-core machine two workers measure overhead (process group, DDP all-reduce, Ray Data's
split), not scaling. Prints one markdown table; record it in docs/benchmarks.md.

    .venv/bin/python bench/ray_overhead.py [--epochs 2] [--skip-demo]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _config(shards: Path, storage: Path, workers: int, epochs: int, name: str):
    from hm2bp.orchestration.config import config_from_dict

    base = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    return config_from_dict(
        base,
        {
            "data.shards": str(shards),
            "train.epochs": epochs,
            "scaling.workers": workers,
            "run.name": name,
            "run.storage_path": str(storage),
            "tracking.uri": f"sqlite:///{storage / 'mlflow.db'}",
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--skip-demo", action="store_true")
    args = parser.parse_args()

    import ray
    from hm2bp.orchestration.trainer import train
    from hm2bp.orchestration.worker import run_local
    from hm2bp.pipelines.convert import convert

    work = Path(tempfile.mkdtemp(prefix="hm2bp-bench-"))
    T = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())["data"]["T"]
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False)
    convert("digits", out=str(work / "shards"), T=T, split="ratio:0.8", rows_per_shard=400)
    rows = []
    local = run_local(
        _config(work / "shards", work / "runs", 1, args.epochs, "local"),
        str(work / "shards"),
        device="cpu",
    )
    rows.append(("no Ray (worker loop called directly)", local))
    for workers in (1, 2):
        started = time.perf_counter()
        result = train(_config(work / "shards", work / "runs", workers, args.epochs, f"w{workers}"))
        rows.append(
            (
                f"Ray Train, {workers} worker(s), fit() {time.perf_counter() - started:.0f} s",
                result.history,
            )
        )
    ray.shutdown()

    print(
        f"\n{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, demo config, "
        f"{args.epochs} epochs\n"
    )
    print("| run | samples/s (last epoch) | epoch seconds (last) | vs no Ray |")
    print("| --- | ---: | ---: | ---: |")
    reference = rows[0][1][-1]["samples_per_s"]
    for label, history in rows:
        last = history[-1]
        print(
            f"| {label} | {last['samples_per_s']:.0f} | {last['epoch_seconds']:.1f} | "
            f"{last['samples_per_s'] / reference:.2f}x |"
        )

    if not args.skip_demo:
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "hm2bp.orchestration.cli", "demo"],
                cwd=folder,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            print(
                f"\n`hm2bp demo` wall time (warm install, fresh folder): "
                f"{time.perf_counter() - started:.0f} s"
            )


if __name__ == "__main__":
    main()
