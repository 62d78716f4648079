"""The fc weight gradient G = gk^T D as a sparse gather over post-spikes (spec sections 3.2, 6.2).

The S-PSP part of a fully connected layer's gradient is G[i, j] = sum_{r, b} gk[r, b, i] D[r, b, j]
over the P*T*B rows of the traces D `[R, B, N_in]` and of gk = g * K `[R, B, N_out]`. K has only
2 entries per post-spike (+c at t_f, -c e^{-s_f/tau_m} at r_f), 6 more with the emulated window,
so gk is mostly zeros and the dense GEMM (T N_in N_out MACs) does far more work than the gather
of the D rows at those entries (2 N_in sum_i o_i MACs). `weight_grad` picks one of the two by the
non-zero fraction of gk; conv layers keep cuDNN's `conv2d_weight` (`layers.Conv.weight_grad`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from hm2bp.kernels.tensor_checks import check_float_tensor

WeightGrad = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Above this non-zero fraction of gk the dense GEMM is used. Measured on the CPU (2 shared cores,
# R*B = 6,400 rows, 784 -> 800, `bench/sparse_grad.py`, docs/benchmarks.md): torch's `index_add_`
# adds one row per index, so the gather breaks even between 0.03 % and 0.1 % non-zeros (0.8x the
# GEMM's time at 0.03 % in float32, 1.8x at 0.1 %, 5x at 1 %, 100x at 10 %), while the MNIST
# hidden layer sits near 3 % (2 o_i / T, about 6 spikes per neuron at T = 400): the dense GEMM
# stays the CPU's path for the paper's networks. Not measured on a GPU, where the Triton gather
# uses the same threshold.
SPARSE_MAX_DENSITY = 0.0005
# Rows gathered at once by the torch gather: bounds its temporary `[chunk, N_in]` to ~64 MB in fp64.
GATHER_ELEMENTS = 1 << 23


def check_operands(traces: torch.Tensor, gk: torch.Tensor) -> None:
    """Refuse operands that are not `[R, B, N_in]` and `[R, B, N_out]` of one float dtype and
    device, naming the argument."""
    check_float_tensor("traces", traces, "[R, B, N]")
    check_float_tensor("gk", gk, "[R, B, N]")
    if traces.shape[:2] != gk.shape[:2]:
        raise ValueError(
            f"gk: found rows {tuple(gk.shape[:2])}, "
            f"expected traces' [R, B] {tuple(traces.shape[:2])}"
        )
    if gk.dtype != traces.dtype or gk.device != traces.device:
        raise ValueError(
            f"gk: found {gk.dtype} on {gk.device}, expected traces' {traces.dtype} on "
            f"{traces.device}"
        )


def dense_weight_grad(traces: torch.Tensor, gk: torch.Tensor) -> torch.Tensor:
    """G = gk^T D `[N_out, N_in]` as one GEMM over the R*B rows."""
    return gk.flatten(0, 1).T @ traces.flatten(0, 1)


def gather_weight_grad(traces: torch.Tensor, gk: torch.Tensor) -> torch.Tensor:
    """G = gk^T D `[N_out, N_in]` from the non-zeros of gk only: each entry gk[m, i] adds
    gk[m, i] D[m, :] to row i of G (`index_add_`, chunked to bound the gathered rows)."""
    flat_d = traces.flatten(0, 1)
    flat_gk = gk.flatten(0, 1)
    rows, neurons = flat_gk.nonzero(as_tuple=True)
    values = flat_gk[rows, neurons]
    grad = torch.zeros(gk.shape[2], traces.shape[2], dtype=traces.dtype, device=traces.device)
    chunk = max(1, GATHER_ELEMENTS // max(1, traces.shape[2]))
    for start in range(0, rows.numel(), chunk):
        part = slice(start, start + chunk)
        grad.index_add_(0, neurons[part], values[part, None] * flat_d[rows[part]])
    return grad


def weight_grad(
    traces: torch.Tensor,
    gk: torch.Tensor,
    gather: WeightGrad = gather_weight_grad,
    max_density: float | None = None,
) -> torch.Tensor:
    """sum_{r, b} gk[r, b, i] traces[r, b, j] `[N_out, N_in]` of traces `[R, B, N_in]` (the pre
    traces D, R = P*T) and gk `[R, B, N_out]` (g * K): `gather` (the sparse gather; the Triton
    backend passes its kernel) when at most `max_density` (None: `SPARSE_MAX_DENSITY`) of gk is
    non-zero, else the dense GEMM.
    Both equal the exact sum up to the order of summation."""
    check_operands(traces, gk)
    if gk.numel() == 0 or traces.shape[2] == 0:
        return dense_weight_grad(traces, gk)
    limit = SPARSE_MAX_DENSITY if max_density is None else max_density
    if float(torch.count_nonzero(gk)) / gk.numel() > limit:
        return dense_weight_grad(traces, gk)
    return gather(traces, gk)
