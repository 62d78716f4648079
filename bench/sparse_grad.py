"""Dense GEMM against the sparse gather for the fc weight gradient G = gk^T D on the CPU.

Prints a markdown table of seconds per call for each non-zero fraction of gk; the crossing point
is `sparse_grad.SPARSE_MAX_DENSITY`. Run: `.venv/bin/python bench/sparse_grad.py`.
"""

from __future__ import annotations

import time

import torch
from hm2bp.kernels.sparse_grad import dense_weight_grad, gather_weight_grad

ROWS, BATCH, N_IN, N_OUT = 400, 16, 784, 800
DENSITIES = (0.0003, 0.001, 0.003, 0.01, 0.1)


def seconds(fn, *args) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    gen = torch.Generator().manual_seed(0)
    print("| dtype | non-zero fraction | dense GEMM s | sparse gather s | gather / GEMM |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for dtype in (torch.float32, torch.float64):
        traces = torch.rand(ROWS, BATCH, N_IN, generator=gen).to(dtype)
        for density in DENSITIES:
            mask = torch.rand(ROWS, BATCH, N_OUT, generator=gen) < density
            gk = torch.randn(ROWS, BATCH, N_OUT, generator=gen).to(dtype) * mask
            dense = seconds(dense_weight_grad, traces, gk)
            sparse = seconds(gather_weight_grad, traces, gk)
            print(f"| {dtype} | {density} | {dense:.4f} | {sparse:.4f} | {sparse / dense:.2f} |")


if __name__ == "__main__":
    main()
