"""What both Triton kernels need at launch: where they may run, and how they are compiled.

The kernels run on CUDA tensors, or on CPU tensors through Triton's interpreter, which Triton turns
on at decoration time: `TRITON_INTERPRET=1` must be in the environment before a `triton_*` module
is imported (the tests set it; see docs/gpu.md). Compiled kernels are built without FMA
contraction, so that a*b + c rounds twice as torch's separate ops do and the spikes stay bitwise
equal to the reference's (spec section 8.11).
"""

from __future__ import annotations

import torch
from triton.runtime.interpreter import InterpretedFunction


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


def launch_options(block: int) -> dict[str, object]:
    """Compile options: 4 warps up to 256 lanes, 8 beyond; no FMA contraction."""
    return {"num_warps": 4 if block <= 256 else 8, "enable_fp_fusion": False}
