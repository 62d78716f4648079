"""What both Triton kernels need at launch: where they may run, and how they are compiled.

The kernels run on CUDA tensors, or on CPU tensors through Triton's interpreter, which Triton turns
on at decoration time: `TRITON_INTERPRET=1` must be in the environment before a `triton_*` module
is imported (the tests set it; see docs/gpu.md). Compiled kernels are built without FMA
contraction, so that a*b + c rounds twice as torch's separate ops do and the spikes stay bitwise
equal to the reference's (spec section 8.11).
"""

from __future__ import annotations

import torch
import triton
from triton.runtime.interpreter import InterpretedFunction

MAX_BLOCK = 256


def interpreted(kernel: object) -> bool:
    """Whether `kernel` was decorated under `TRITON_INTERPRET=1` (runs on CPU tensors)."""
    return isinstance(kernel, InterpretedFunction)


def check_runnable(kernel: object, tensor: torch.Tensor, name: str) -> None:
    """Refuse a tensor the kernel cannot run on, naming the argument and what would work."""
    if tensor.device.type == "cuda" or (tensor.device.type == "cpu" and interpreted(kernel)):
        return
    raise ValueError(
        f"{name}: found a tensor on {tensor.device}, expected a CUDA tensor (the triton backend "
        f"runs on the CPU only through Triton's interpreter: set TRITON_INTERPRET=1 before "
        f"importing hm2bp.kernels.triton_backend), or use backend='reference'"
    )


def block_size(kernel: object, n: int, whole_row: bool = False) -> int:
    """Lanes per program: up to 256 compiled; the whole row where one program must hold it
    (lateral inhibition), and always under the interpreter, which runs the programs one after
    another with every op vectorised over its lanes (one program per row is then fastest)."""
    row = max(16, triton.next_power_of_2(n))
    return row if whole_row or interpreted(kernel) else min(MAX_BLOCK, row)


def launch_options(block: int) -> dict[str, object]:
    """Compile options: one warp up to 32 lanes, 4 up to 256, 8 beyond; no FMA contraction."""
    warps = 1 if block <= 32 else 4 if block <= MAX_BLOCK else 8
    return {"num_warps": warps, "enable_fp_fusion": False}
