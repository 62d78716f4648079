"""The event-driven forward current of a fully connected layer (compiled, CPU backend).

I = S W^T over the T*B rows needs only the weight columns of the inputs that spiked: an MNIST
raster has about 2 % ones per step, so adding the rows of W^T of the active inputs does about 2 % of
the dense GEMM's multiply-adds (spec section 6.2's "sparse forward"). Above `DENSE_MIN_DENSITY` the
dense GEMM wins and is used. The sums are the same weights added in input order, so the current
equals the GEMM's to rounding (`tests/test_cpu_kernels.py`).
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from hm2bp.kernels.cpu_threads import cpu_array, match_torch_threads

# At and above this fraction of non-zero inputs the dense GEMM is used. Measured on the 2-core
# development machine, 784 -> 800 and 2312 -> 800, float32 (`bench/engine_cpu.py --density`,
# docs/benchmarks.md): the event-driven sum wins below about 15 % non-zeros.
DENSE_MIN_DENSITY = 0.15
ROW_BLOCK = 64  # rows per parallel task


def fc_current(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x W^T `[M, N_out]` of spikes `x` `[M, N_in]` (0/1, the weight's dtype) and `weight`
    `[N_out, N_in]`: event-driven below `DENSE_MIN_DENSITY` non-zeros, else the dense GEMM."""
    if x.numel() == 0 or float(torch.count_nonzero(x)) >= DENSE_MIN_DENSITY * x.numel():
        return x @ weight.T
    columns = cpu_array("weight", weight.T)  # [N_in, N_out]: one contiguous row per input
    out = np.zeros((x.shape[0], weight.shape[0]), columns.dtype)
    match_torch_threads()
    _accumulate(cpu_array("x", x), columns, out)
    return torch.from_numpy(out)


@numba.njit(parallel=True, cache=True, nogil=True)
def _accumulate(x, columns, out):
    """out[m] = sum_j x[m, j] columns[j] over the non-zero x[m, j], j in increasing order."""
    rows, n_in = x.shape
    n_out = columns.shape[1]
    for task in numba.prange((rows + ROW_BLOCK - 1) // ROW_BLOCK):
        for m in range(task * ROW_BLOCK, min(rows, (task + 1) * ROW_BLOCK)):
            for j in range(n_in):
                value = x[m, j]
                if value != 0:
                    for i in range(n_out):
                        out[m, i] += value * columns[j, i]
