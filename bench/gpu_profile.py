"""Where one hm2bp training step spends its time: torch.profiler's table of the top kernels.

    python bench/gpu_profile.py --out gpu_profile.txt           # 784-800-10, T=400, B=128, CUDA
    python bench/gpu_profile.py --smoke --backend reference     # tiny shapes on the CPU

Run by bench/gpu_check.sh beside the benchmark, so that a single lent-GPU call also says which parts
of the step (GEMMs, scans, trace scans, K, the backward's elementwise work) to speed up next. One
warm-up step, then `--steps` profiled steps of the same batch as `gpu_bench.py`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_bench import INPUT_DENSITY, MNIST_MLP, SMOKE_MLP  # noqa: E402
from snn_baselines import hm2bp_step  # noqa: E402


def profile_step(arch, steps: int, batch: int, backend: str, device: torch.device, rows: int):
    """The profiler's table (sorted by device time on CUDA, CPU time otherwise) as text."""
    generator = torch.Generator().manual_seed(0)
    shape = (steps, batch, *arch.input_shape)
    spikes = (torch.rand(shape, generator=generator) < INPUT_DENSITY).to(torch.uint8).to(device)
    labels = torch.randint(0, arch.layers[-1].size, (batch,), generator=generator).to(device)
    step = hm2bp_step(arch, spikes, labels, backend)
    step()  # warm-up: Triton compiles here
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
        torch.cuda.synchronize(device)
    with profile(activities=activities) as prof:
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    key = "device_time_total" if device.type == "cuda" else "cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes (64-16-4, T=24, B=2)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backend", default="triton", choices=("reference", "triton"))
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--out", type=Path, help="write the table here")
    args = parser.parse_args(argv)
    arch, steps, batch = (SMOKE_MLP, 24, 2) if args.smoke else (MNIST_MLP, 400, 128)
    device = torch.device(args.device)
    title = f"hm2bp {arch.name}, T={steps}, B={batch}, backend {args.backend}, {device}"
    text = f"{title}\n{profile_step(arch, steps, batch, args.backend, device, args.rows)}"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return text


if __name__ == "__main__":
    main()
