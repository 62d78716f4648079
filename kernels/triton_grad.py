"""The fc weight gradient G = gk^T D as a Triton gather (reference: `sparse_grad.py`).

gk = g * K `[R, B, N_out]` has a few non-zeros per post-spike (spec sections 3.2 and 6.2), so
row i of G is the sum of D's rows `[N_in]` at post neuron i's non-zeros, weighted by them. The
non-zeros are listed on the host in CSR order (torch: the `nonzero` of gk^T `[N_out, R*B]` comes
sorted by neuron, offsets from a bincount); one program per (post neuron i, block of N_in) walks
i's list, gathers the D row blocks and accumulates in registers of the operands' dtype, then stores
G[i, block] once: no atomics, every G element written by one program.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from hm2bp.kernels import sparse_grad
from hm2bp.kernels.triton_launch import block_size, check_runnable, launch_options


@triton.jit(do_not_specialize=["N_IN"])
def gather_grad_kernel(traces, values, rows, offsets, out, N_IN, BLOCK: tl.constexpr):
    neuron = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < N_IN
    width = N_IN.to(tl.int64)  # row * N_in may exceed 2**31
    start = tl.load(offsets + neuron)
    end = tl.load(offsets + neuron + 1)
    acc = tl.zeros([BLOCK], dtype=out.dtype.element_ty)
    for k in range(start, end):
        value = tl.load(values + k)
        row = tl.load(rows + k)
        acc += value * tl.load(traces + row * width + cols, mask=mask, other=0.0)
    tl.store(out + neuron * width + cols, acc, mask=mask)


def gather_weight_grad(traces: torch.Tensor, gk: torch.Tensor) -> torch.Tensor:
    """G = gk^T D `[N_out, N_in]` from the non-zeros of gk `[R, B, N_out]` and traces
    `[R, B, N_in]` (float32 or float64, on CUDA, or on the CPU under `TRITON_INTERPRET=1`)."""
    sparse_grad.check_operands(traces, gk)
    check_runnable(gather_grad_kernel, traces, "traces")
    flat_d = traces.flatten(0, 1).contiguous()
    by_neuron = gk.flatten(0, 1).T  # [N_out, R*B]: nonzero() lists (i, m) sorted by i
    n_out, n_in = by_neuron.shape[0], flat_d.shape[1]
    out = torch.empty(n_out, n_in, dtype=traces.dtype, device=traces.device)
    if n_out == 0 or n_in == 0:
        return out
    neurons, rows = by_neuron.nonzero(as_tuple=True)
    values = by_neuron[neurons, rows].contiguous()
    offsets = torch.zeros(n_out + 1, dtype=torch.int64, device=traces.device)
    offsets[1:] = torch.bincount(neurons, minlength=n_out).cumsum(0)
    block = block_size(gather_grad_kernel, n_in)
    gather_grad_kernel[(n_out, triton.cdiv(n_in, block))](
        flat_d,
        values,
        rows.contiguous(),
        offsets,
        out,
        n_in,
        BLOCK=block,
        **launch_options(block),
    )
    return out


def weight_grad(traces: torch.Tensor, gk: torch.Tensor) -> torch.Tensor:
    """`sparse_grad.weight_grad` on the Triton backend: this gather when gk is sparse enough
    (`sparse_grad.SPARSE_MAX_DENSITY`), else the dense GEMM."""
    return sparse_grad.weight_grad(traces, gk, gather=gather_weight_grad)
