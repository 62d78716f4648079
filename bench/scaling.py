"""Data-parallel scaling: measured on real Ray clusters started on this machine, modelled for 8, 64
and 256 GPUs.

Measured, side by side in one run (each case on a fresh cluster from `hm2bp.tests.local_cluster`,
the same shards, config and seed):
- samples/s of `hm2bp train` with 1 worker, 2 workers on one node and 2 workers on two nodes
  (784-800-10 on the MNIST slice, per-worker batch `--batch`, T = `--T`);
- seconds of one all-reduce of the network's gradient (float32, its exact size) between 2
  workers on one node and on two nodes (gloo over TCP, as DDP does on CPUs), and its bytes.

Modelled: a step = compute + all-reduce, not overlapped (DDP can hide part of the all-reduce
behind the backward; without overlap the efficiency is a lower bound). Compute per sample from
the H200 floor of docs (../shared/docs/gpu-floor.md: 2.28 ms for B = 128 at T = 400, fp32
forward and TF32 backward), scaled linearly in B, since no GPU was lent to this issue. All-reduce
as NCCL: ring bandwidth term 2(n-1)/n * bytes / bandwidth plus a tree latency term
2 log2(n) * latency. Printed: efficiency at the per-worker batch of the reference's MNIST runs
(`--model-batch`) and the smallest per-worker batch with efficiency >= 90 %.

On a 2-core machine the measured cases share two cores: they show the cost of crossing a node
(object transfer, TCP between raylets), not speed-up.

    .venv/bin/python bench/scaling.py [--T 100] [--batch 16] [--samples 1200]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("HM2BP_SHARED_DIR", ROOT.parent / "shared"))
GRADIENT_FLOATS = 784 * 800 + 800 * 10  # 784-800-10, no biases (spec 1.1)
FLOOR_MS_PER_SAMPLE = 2.28 / 128  # H200, T = 400 (gpu-floor.md)

# Interconnects for the model: name, bandwidth GB/s, latency us (per message, typical NCCL).
LINKS = [
    ("NVLink in a node (8 GPUs)", 300.0, 3.0),
    ("InfiniBand/EFA 400 Gb/s", 40.0, 6.0),
    ("Ethernet 100 Gb/s", 10.0, 20.0),
    ("Ethernet 25 Gb/s", 2.5, 30.0),
]


def _probe(size: int, reps: int, out: str) -> None:
    """Run inside a Ray Train worker: time `reps` all-reduces of `size` float32s; rank 0 writes
    the mean seconds to `out` (the workers are on this machine)."""
    import ray.train
    import torch
    import torch.distributed as dist

    tensor = torch.ones(size, dtype=torch.float32)
    for _ in range(5):
        dist.all_reduce(tensor)
    started = time.perf_counter()
    for _ in range(reps):
        dist.all_reduce(tensor)
    seconds = (time.perf_counter() - started) / reps
    if ray.train.get_context().get_world_rank() == 0:
        Path(out).write_text(json.dumps({"allreduce_s": seconds}))


def probe_main(reps: int) -> None:
    """`python bench/scaling.py --probe`: 2 workers on the cluster of RAY_ADDRESS, one slot each."""
    import ray
    from ray.train import ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    ray.init()
    out = tempfile.mktemp(suffix=".json")
    trainer = TorchTrainer(
        lambda _: _probe(GRADIENT_FLOATS, reps, out),
        torch_config=TorchConfig(backend="gloo"),
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1, "trainer": 1}),
    )
    trainer.fit()
    print(Path(out).read_text())


def _run(command: list[str], env: dict[str, str]) -> dict:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    lines = reversed(done.stdout.splitlines())
    return json.loads(next(line for line in lines if line.startswith("{")))


def measure(case: str, workers: int, shards: Path, folder: Path, args) -> dict:
    """One case on a fresh cluster: training samples/s, and the all-reduce probe for 2 workers."""
    from hm2bp.orchestration import checkpoint as ckpt
    from hm2bp.tests.local_cluster import LocalCluster

    cluster = LocalCluster(folder / case)
    try:
        cluster.start(workers=0)
        if case == "2 workers, 2 nodes":
            cluster.add_worker(cpus=1, slots=1)
            cluster.add_worker(cpus=1, slots=1)
        else:
            cluster.add_worker(cpus=2, slots=2)
        env = {**cluster.env, "RAY_ADDRESS": cluster.gcs_address}
        sets = {
            "data.shards": shards,
            "data.T": args.T,
            "train.epochs": 1,
            "train.batch_size": args.batch,
            "scaling.workers": workers,
            "scaling.cpus_per_worker": 1,
            "scaling.resources_per_worker": "{trainer: 1}",
            "run.storage_path": folder / "runs",
            "run.name": case.replace(" ", "-").replace(",", ""),
            "tracking.uri": f"sqlite:///{folder / 'mlflow.db'}",
        }
        summary = _run(
            [str(Path(sys.executable).parent / "hm2bp"), "train",
             str(ROOT / "configs" / "mnist_slice.yaml"), "--json",
             *[f"--set={k}={v}" for k, v in sets.items()]],
            env,
        )  # fmt: skip
        metrics = ckpt.load_record(summary["checkpoint"]).history[-1]
        row = {"case": case, "samples_per_s": metrics["samples_per_s"], "nodes": summary["nodes"]}
        if workers == 2:
            probe = _run([sys.executable, __file__, "--probe", "--reps", str(args.reps)], env)
            row["allreduce_s"] = probe["allreduce_s"]
        return row
    finally:
        cluster.stop()


def convert_slice(folder: Path, args) -> Path:
    out = folder / "shards"
    env = {**os.environ, "RAY_ADDRESS": "local"}
    command = [str(Path(sys.executable).parent / "hm2bp"), "convert", "mnist"]
    command += ["--source", str(SHARED / "data" / "mnist"), "--out", str(out), "--T", str(args.T)]
    command += ["--split", f"range:train=0-{args.samples - 1},val=7800-7999"]
    command += ["--rows-per-shard", "300", "--json"]
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=900)
    return out


def allreduce_seconds(n: int, size_bytes: float, gb_per_s: float, latency_us: float) -> float:
    """NCCL-like all-reduce of `size_bytes` among `n` GPUs: ring bandwidth, tree latency."""
    bandwidth = 2 * (n - 1) / n * size_bytes / (gb_per_s * 1e9)
    return bandwidth + 2 * math.log2(n) * latency_us * 1e-6


def model_rows(batch: int) -> list[str]:
    size = 4 * GRADIENT_FLOATS
    rows = []
    for gpus in (8, 64, 256):
        for name, gb_per_s, latency in LINKS:
            if gpus > 8 and name.startswith("NVLink"):
                continue
            reduce_s = allreduce_seconds(gpus, size, gb_per_s, latency)
            compute_s = batch * FLOOR_MS_PER_SAMPLE * 1e-3
            efficiency = compute_s / (compute_s + reduce_s)
            needed = math.ceil(9 * reduce_s / (FLOOR_MS_PER_SAMPLE * 1e-3))
            rows.append(
                f"| {gpus} | {name} | {reduce_s * 1e3:.3f} | {compute_s * 1e3:.3f} | "
                f"{efficiency:.0%} | {needed} |"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--T", type=int, default=100)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--samples", type=int, default=1200)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--model-batch", type=int, default=32)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe_main(args.reps)
        return
    folder = Path(tempfile.mkdtemp(prefix="hm2bp-scaling-"))
    shards = convert_slice(folder, args)
    cases = [("1 worker", 1), ("2 workers, 1 node", 2), ("2 workers, 2 nodes", 2)]
    rows = [measure(case, workers, shards, folder, args) for case, workers in cases]
    size = 4 * GRADIENT_FLOATS
    base = rows[0]["samples_per_s"]
    print(f"784-800-10, T = {args.T}, {args.batch} per worker, {args.samples} training samples, "
          "1 epoch; all-reduce of the gradient: "
          f"{size / 1e6:.2f} MB ({GRADIENT_FLOATS:,} float32) per step\n")  # fmt: skip
    print("| case | nodes used | samples/s | vs 1 worker | all-reduce s/step | all-reduce MB/s |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        reduce_s = row.get("allreduce_s")
        reduce = "" if reduce_s is None else f"{reduce_s * 1e3:.2f} ms"
        rate = "" if reduce_s is None else f"{size / reduce_s / 1e6:.0f}"
        print(f"| {row['case']} | {len(row['nodes'])} | {row['samples_per_s']:.1f} | "
              f"{row['samples_per_s'] / base:.2f}x | {reduce} | {rate} |")  # fmt: skip
    print(f"\nModel: per-worker batch {args.model_batch}, H200 floor compute "
          f"{FLOOR_MS_PER_SAMPLE * 1e3:.1f} us/sample (T = 400), no overlap\n")  # fmt: skip
    print("| GPUs | link | all-reduce ms | compute ms | efficiency | batch/worker for 90 % |")
    print("|---|---|---|---|---|---|")
    print("\n".join(model_rows(args.model_batch)))


if __name__ == "__main__":
    main()
