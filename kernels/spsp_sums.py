"""The S-PSP sums of the backward as dense products over the P*T*B rows: the reference.

A layer's backward needs two sums over its S-PSP e_bij = sum_p Kst_bi(p) Xst_bj(p) (spec sections
3.2 and 6.2, `psp_kernel.PspFactors`): the side effect's sum over the layer's own feed-forward
current, and, for fully connected layers, the weight gradient and the effect ratio's numerator.
Here they are the readable GEMMs over stacked kernels and traces; the CPU backend computes the same
sums from K's non-zeros (`cpu_spsp.py`), and the tests hold the two against each other.
"""

from __future__ import annotations

import torch
from hm2bp.kernels.psp_kernel import PspFactors
from hm2bp.kernels.sparse_grad import WeightGrad, weight_grad
from hm2bp.kernels.traces import TraceScan, exp_trace, trace_stack


def stacked_traces(x: torch.Tensor, factors: PspFactors, scan: TraceScan) -> torch.Tensor:
    """`[P*T, ...]` pre traces of `x` `[T, ...]` that pair with `factors.stack()`."""
    return trace_stack(
        x,
        factors.neuron,
        window=factors.windowed,
        physics_exact=factors.physics_exact,
        scan=scan,
    )


def side_sums(
    current: torch.Tensor, factors: PspFactors, scan: TraceScan = exp_trace
) -> torch.Tensor:
    """`[B, N]` sum_p Kst_i(p) U_i(p), U the traces of the layer's feed-forward current `[T, B, N]`
    (= sum_j w_ij Xst_j without another GEMM, spec section 6.2)."""
    return (factors.stack() * stacked_traces(current, factors, scan)).sum(dim=0)


def fc_sums(
    inputs: torch.Tensor,
    factors: PspFactors,
    g: torch.Tensor,
    delta: torch.Tensor | None,
    weight: torch.Tensor,
    scan: TraceScan = exp_trace,
    grad: WeightGrad = weight_grad,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(G `[N_out, N_in]` = sum_b g_bi e_bij, R `[B, N_in]` = sum_i delta_bi w_ij e_bij, or None
    without `delta`) of a fully connected layer with input spikes `inputs` `[T, B, N_in]` (uint8
    or floats):
    G = (g Kst)^T Xst (`grad`, a sparse gather or the GEMM), R = sum_p ((delta Kst) W) Xst."""
    kernel = factors.stack()
    traces = stacked_traces(inputs.to(g.dtype), factors, scan)
    total = grad(traces, g * kernel)
    if delta is None:
        return total, None
    return total, ((delta * kernel) @ weight * traces).sum(dim=0)
