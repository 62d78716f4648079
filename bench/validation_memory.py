"""Peak memory of one validation forward (no gradients, labels given for the loss, as
`orchestration/worker.validate` runs it) against the batch size, on the TI46 network of
`configs/ti46_alpha.yaml` (78-800-800-26, T = 1000) with random input spikes.

Each case runs in a fresh process: the peak is the process's maximum resident set during the
forward minus its resident set just before (the network and the input already built). Prints a
markdown table; record it in docs/benchmarks.md, and set `train.eval_batch_size` from it.

    .venv/bin/python bench/validation_memory.py [--batches 32 64 128 256] [--T 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _resident_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(batch: int, steps: int, density: float) -> dict[str, float]:
    """One validation forward in this process: its peak over the resident set before it."""
    import time

    import torch
    import yaml
    from hm2bp.kernels.network import Network
    from hm2bp.orchestration.config import config_from_dict

    config = config_from_dict(yaml.safe_load((ROOT / "configs" / "ti46_alpha.yaml").read_text()))
    torch.manual_seed(0)
    network = Network(config.network, seed=0)
    shape = (steps, batch, *config.network.input_shape)
    spikes = (torch.rand(shape) < density).to(torch.uint8)
    labels = torch.randint(0, config.network.n_classes, (batch,))
    with torch.no_grad():  # compiled kernels loaded first, at a negligible size
        network(spikes[:10, :1], labels[:1])
    before = _resident_mib()  # now, not the peak so far (the float input drawn above is gone)
    started = time.perf_counter()
    with torch.no_grad():
        out = network(spikes, labels)
    seconds = time.perf_counter() - started
    return {"peak_mib": _peak_mib() - before, "seconds": seconds, "loss": float(out.loss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--T", type=int, default=1000)
    parser.add_argument("--density", type=float, default=0.05, help="input spikes per step")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a case, in its own process
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.T, args.density)))
        return
    print(f"78-800-800-26, T = {args.T}, input density {args.density:g}, no gradients\n")
    print("| eval batch | peak over the forward's start (MiB) | MiB per sample | seconds |")
    print("| ---: | ---: | ---: | ---: |")
    for batch in args.batches:
        command = [sys.executable, __file__, "--one", str(batch), "--T", str(args.T)]
        command += ["--density", str(args.density)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        case = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"| {batch} | {case['peak_mib']:.0f} | {case['peak_mib'] / batch:.1f} "
            f"| {case['seconds']:.1f} |"
        )


if __name__ == "__main__":
    main()
