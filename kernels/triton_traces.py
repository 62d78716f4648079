"""The trace scan X(t) = decay * X(t-1) + x(t) as one Triton kernel (reference: `traces.exp_trace`).

Used for the pre traces D, Xm, Xs of spikes and for the side-effect sums U of a layer's current,
each with the consumer layer's constants (spec sections 3.2 and 6.2). The reference loops over T in
Python, two torch ops per step; here one program owns a block of columns of `x` `[T, ...]` and keeps
the state in registers, reading and writing each element once. The step is one fused multiply-add,
rounded once like the reference's `torch.add(x(t), X(t-1), alpha=decay)` on the CPU and on CUDA, so
the result equals the reference's bit for bit (the decay rounded to the dtype as torch rounds it).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from hm2bp.kernels.triton_launch import block_size, check_runnable, launch_options


# Sizes are never specialised: Triton would turn a size of 1 into a constexpr.
@triton.jit(do_not_specialize=["T", "M"])
def exp_trace_fwd_kernel(x, out, decay_ptr, T, M, BLOCK: tl.constexpr):
    cols = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < M
    columns = M.to(tl.int64)  # t * M may exceed 2**31
    decay = tl.load(decay_ptr)
    state = tl.zeros([BLOCK], dtype=x.dtype.element_ty)
    upcoming = tl.load(x + cols, mask=mask, other=0.0)  # loaded one step ahead (latency)
    for t in range(T):
        offsets = t * columns + cols
        value = upcoming
        upcoming = tl.load(x + tl.minimum(t + 1, T - 1) * columns + cols, mask=mask, other=0.0)
        state = tl.fma(state, decay, value)  # rounded once, as torch.add(x, X, alpha=decay)
        tl.store(out + offsets, state, mask=mask)


def exp_trace(x: torch.Tensor, decay: float) -> torch.Tensor:
    """`traces.exp_trace` on the Triton backend: X(t) = decay * X(t-1) + x(t) over dim 0 of
    `x` `[T, ...]` (float32 or float64, on CUDA, or on the CPU under `TRITON_INTERPRET=1`)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: found {type(x).__name__}, expected a torch.Tensor")
    if x.dim() < 1:
        raise ValueError("x: found a 0-d tensor, expected [T, ...]")
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"x: found dtype {x.dtype}, expected float32 or float64")
    if not isinstance(decay, (int, float)) or not math.isfinite(decay):
        raise ValueError(f"decay: found {decay!r}, expected a finite number")
    check_runnable(exp_trace_fwd_kernel, x, "x")
    x = x.contiguous()
    out = torch.empty_like(x)
    steps = x.shape[0]
    columns = x.numel() // steps if steps else 0
    if columns == 0:
        return out
    block = block_size(exp_trace_fwd_kernel, columns)
    exp_trace_fwd_kernel[(triton.cdiv(columns, block),)](
        x,
        out,
        torch.tensor([decay], dtype=x.dtype, device=x.device),
        steps,
        columns,
        BLOCK=block,
        **launch_options(block),
    )
    return out
