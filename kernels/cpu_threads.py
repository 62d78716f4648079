"""What every compiled CPU kernel does first: take its arrays from torch without a copy and use as
many threads as torch does (a Ray Train worker with one CPU gets one torch thread, and so one numba
thread, instead of numba's default of every core)."""

from __future__ import annotations

import numba
import numpy as np
import torch
from hm2bp.kernels.tensor_checks import FLOATS

SPIKES = (*FLOATS, torch.uint8)  # spike rasters: the data's bytes or a layer's floats
TASKS_PER_THREAD = 2  # samples are split into neuron blocks only below 2 samples per thread


def match_torch_threads() -> None:
    """Run the next compiled kernels of this thread on `torch.get_num_threads()` threads.

    numba's OpenMP layer shares the OpenMP runtime with torch, and starting it (on the first call
    here) sets torch's thread count to every core: torch's count is put back, or two Ray workers
    of 0.5 CPU each ran 2 + 2 spinning threads on 2 cores (180 ms a B = 8 step instead of 50)."""
    wanted = torch.get_num_threads()
    numba.set_num_threads(max(1, min(wanted, numba.config.NUMBA_NUM_THREADS)))
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


def neuron_block(batch: int, n: int) -> int:
    """Neurons per task of a kernel that runs one task per (sample, block of neurons): whole
    samples when there are enough to feed the threads, else blocks of about n / (2 per thread)."""
    split = -(-TASKS_PER_THREAD * numba.get_num_threads() // max(1, batch))
    return max(1, -(-n // split))


@numba.njit(inline="always")
def task_neurons(task: int, block: int, n: int) -> tuple[int, int, int]:
    """(sample, first neuron, end neuron) of task number `task` over blocks of `block` neurons."""
    blocks = (n + block - 1) // block
    lo = (task % blocks) * block
    return task // blocks, lo, min(n, lo + block)


def cpu_array(name: str, x: torch.Tensor, dtypes: tuple[torch.dtype, ...] = FLOATS) -> np.ndarray:
    """A C-contiguous numpy view of `x` (a copy only if it is not contiguous), which must be a
    tensor on the CPU of one of `dtypes`, those the kernels are compiled for."""
    if x.device.type != "cpu":
        raise ValueError(f"{name}: found device {x.device}, expected the CPU (CPU backend)")
    if x.dtype not in dtypes:
        expected = " or ".join(str(d) for d in dtypes)
        raise TypeError(f"{name}: found dtype {x.dtype}, expected {expected}")
    return x.detach().contiguous().numpy()
