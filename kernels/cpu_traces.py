"""The trace scan X(t) = decay * X(t-1) + x(t) as one compiled loop (CPU backend).

The reference `traces.exp_trace` is T whole-tensor torch additions driven from Python; here each
block of the trailing elements runs its T steps in compiled code, with the same operation per step.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from hm2bp.kernels.cpu_threads import cpu_array, match_torch_threads

ELEMENT_BLOCK = 256  # trailing elements per parallel task


def exp_trace(x: torch.Tensor, decay: float) -> torch.Tensor:
    """`traces.exp_trace`, compiled: X(t) = decay * X(t-1) + x(t) over the time dimension of
    `x` `[T, ...]` (float32 or float64)."""
    if not x.is_floating_point() or x.dim() == 0:
        raise TypeError(f"x: found {x.dtype} of shape {tuple(x.shape)}, expected [T, ...] floats")
    source = cpu_array("x", x)
    flat = source.reshape(source.shape[0], math.prod(source.shape[1:]))
    out = np.empty_like(flat)
    match_torch_threads()
    _scan(flat, out, flat.dtype.type(decay))
    return torch.from_numpy(out.reshape(source.shape))


@numba.njit(parallel=True, cache=True, nogil=True)
def _scan(x, out, decay):
    steps, n = x.shape
    for task in numba.prange((n + ELEMENT_BLOCK - 1) // ELEMENT_BLOCK):
        lo = task * ELEMENT_BLOCK
        hi = min(n, lo + ELEMENT_BLOCK)
        if steps > 0:
            for k in range(lo, hi):
                out[0, k] = x[0, k]
        for t in range(1, steps):
            for k in range(lo, hi):
                out[t, k] = x[t, k] + decay * out[t - 1, k]
