"""What every compiled CPU kernel does first: take its arrays from torch without a copy and use as
many threads as torch does (a Ray Train worker with one CPU gets one torch thread, and so one numba
thread, instead of numba's default of every core)."""

from __future__ import annotations

import numba
import numpy as np
import torch
from hm2bp.kernels.tensor_checks import FLOATS


def match_torch_threads() -> None:
    """Run the next compiled kernels of this thread on `torch.get_num_threads()` threads."""
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def cpu_array(name: str, x: torch.Tensor) -> np.ndarray:
    """A C-contiguous numpy view of `x` (a copy only if it is not contiguous), which must be a
    float32 or float64 tensor on the CPU: the kernels are compiled for those two."""
    if x.device.type != "cpu":
        raise ValueError(f"{name}: found device {x.device}, expected the CPU (CPU backend)")
    if x.dtype not in FLOATS:
        raise TypeError(f"{name}: found dtype {x.dtype}, expected torch.float32 or torch.float64")
    return x.detach().contiguous().numpy()
