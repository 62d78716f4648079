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
from hm2bp.kernels.cpu_memory import POOL
from hm2bp.kernels.cpu_threads import SPIKES, cpu_array, match_torch_threads
from hm2bp.kernels.layers import dense_current

# At and above this fraction of non-zero inputs the dense GEMM is used. Measured on the 2-core
# development machine, 784 -> 800, float32 (`bench/engine_cpu.py`, "cost against input density",
# docs/benchmarks.md).
DENSE_MIN_DENSITY = 0.15
# Below this many outputs the GEMM wins at any density: reading the inputs into lists costs about
# what a GEMM with 64-128 outputs does (12,800 x 800 inputs at 1.5 %: GEMM 2.3 ms for 10 outputs,
# 5.2 ms for 64, 9.3 ms for 128; event-driven 6.9-7.9 ms for all three).
EVENT_MIN_OUTPUTS = 128
ROW_BLOCK = 256  # rows per parallel task


def fc_current(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x W^T `[M, N_out]` of `x` `[M, N_in]` (uint8 or the weight's dtype) and `weight`
    `[N_out, N_in]`:
    event-driven when `x` is binary with fewer than `DENSE_MIN_DENSITY` ones and there are at
    least `EVENT_MIN_OUTPUTS` outputs, else the GEMM."""
    if weight.shape[0] < EVENT_MIN_OUTPUTS:
        return dense_current(x, weight)
    spikes = cpu_array("x", x, SPIKES)
    match_torch_threads()
    rows, inputs, binary = _active_lists(spikes)
    if not binary or rows[-1] >= DENSE_MIN_DENSITY * spikes.size or spikes.size == 0:
        return dense_current(x, weight)
    columns = cpu_array("weight", weight.T)  # [N_in, N_out]: one contiguous row per input
    out = POOL.empty((spikes.shape[0], weight.shape[0]), columns.dtype)
    _accumulate(rows, inputs, columns, out)
    return torch.from_numpy(out)


@numba.njit(parallel=True, cache=True, nogil=True)
def _active_lists(x):
    """The non-zero columns of every row of `x` `[M, N]`: row pointers `[M + 1]`, column indices
    (increasing per row), and whether every non-zero is 1."""
    n_rows, n = x.shape
    blocks = (n_rows + ROW_BLOCK - 1) // ROW_BLOCK
    counts = np.zeros(n_rows + 1, np.int64)
    others = np.zeros(blocks, np.int64)
    for block in numba.prange(blocks):
        for m in range(block * ROW_BLOCK, min(n_rows, (block + 1) * ROW_BLOCK)):
            found = 0
            row = x[m]
            for j in range(n):
                found += row[j] != 0
            counts[m + 1] = found
    rows = np.cumsum(counts)
    inputs = np.empty(rows[-1], np.int32)
    for block in numba.prange(blocks):
        for m in range(block * ROW_BLOCK, min(n_rows, (block + 1) * ROW_BLOCK)):
            at = rows[m]
            row = x[m]
            for j in range(n):
                if row[j] != 0:
                    inputs[at] = j
                    others[block] += row[j] != 1
                    at += 1
    return rows, inputs, others.sum() == 0


@numba.njit(parallel=True, cache=True, nogil=True)
def _accumulate(rows, inputs, columns, out):
    """out[m] = sum of columns[j] over the active inputs j of row m, in increasing j (one add per
    active input and output: spikes are 1, so x_j w_ij = w_ij exactly)."""
    n_rows = out.shape[0]
    for block in numba.prange((n_rows + ROW_BLOCK - 1) // ROW_BLOCK):
        acc = np.empty(out.shape[1], out.dtype)
        for m in range(block * ROW_BLOCK, min(n_rows, (block + 1) * ROW_BLOCK)):
            acc[:] = 0
            for at in range(rows[m], rows[m + 1]):
                column = columns[inputs[at]]
                for i in range(acc.shape[0]):
                    acc[i] += column[i]
            out[m] = acc
