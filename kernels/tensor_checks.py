"""The argument check every kernel entry point starts with, so that each names the bad argument
the same way: what was found (type, shape or dtype) and what was expected."""

from __future__ import annotations

import torch

FLOATS = (torch.float32, torch.float64)  # what the Triton kernels and the sparse gather compile for


def check_float_tensor(
    name: str, x: object, layout: str, dtypes: tuple[torch.dtype, ...] | None = FLOATS
) -> None:
    """Refuse `x` unless it is a 3-d torch.Tensor (`layout`, e.g. "[T, B, N]", names the dims in
    the message) of one of `dtypes` (None: any floating dtype)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: found {type(x).__name__}, expected a torch.Tensor")
    if x.dim() != 3:
        raise ValueError(f"{name}: found shape {tuple(x.shape)}, expected {layout} (3-d)")
    if dtypes is None and not x.is_floating_point():
        raise TypeError(f"{name}: found dtype {x.dtype}, expected a floating dtype")
    if dtypes is not None and x.dtype not in dtypes:
        expected = " or ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise TypeError(f"{name}: found dtype {x.dtype}, expected {expected}")
