"""Which implementation runs the hot parts (the LIF scan, the trace scans, the fc weight gradient).

The torch reference (`neuron.lif_scan`, `traces.exp_trace`, `sparse_grad.weight_grad`) runs on any
device and in float64 and is the ground truth; the Triton backend lives in
`kernels/triton_backend.py` (module attributes `lif_scan`, `exp_trace` and `weight_grad` with the
same signatures) and is chosen on CUDA when it imports.
`HM2BP_BACKEND=reference|triton` overrides the automatic choice.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import NamedTuple

import torch
from hm2bp.kernels.neuron import lif_scan
from hm2bp.kernels.sparse_grad import WeightGrad, weight_grad
from hm2bp.kernels.traces import exp_trace

BACKENDS = ("reference", "triton")
ENV_VAR = "HM2BP_BACKEND"
TRITON_MODULE = "hm2bp.kernels.triton_backend"


class Backend(NamedTuple):
    name: str
    lif_scan: Callable[..., object]
    exp_trace: Callable[[torch.Tensor, float], torch.Tensor]
    weight_grad: WeightGrad


def _triton_available() -> bool:
    try:
        importlib.import_module(TRITON_MODULE)
    except ImportError:
        return False
    return True


def select_backend(device: str | torch.device = "cpu") -> str:
    """The backend name for `device`: `$HM2BP_BACKEND` if set, else "triton" on CUDA when the
    Triton backend imports, else "reference"."""
    override = os.environ.get(ENV_VAR)
    if override:
        _check_name(override, f"${ENV_VAR}")
        return override
    if torch.device(device).type == "cuda" and _triton_available():
        return "triton"
    return "reference"


def load_backend(name: str | None = None, device: str | torch.device = "cpu") -> Backend:
    """The functions of backend `name` (None: `select_backend(device)`)."""
    name = select_backend(device) if name is None else name
    _check_name(name, "backend")
    if name == "reference":
        return Backend("reference", lif_scan, exp_trace, weight_grad)
    try:
        module = importlib.import_module(TRITON_MODULE)
    except ImportError as error:
        raise RuntimeError(
            f"backend: 'triton' requested but {TRITON_MODULE} does not import ({error}); "
            f"expected Triton installed and kernels/triton_backend.py present, "
            f"or use backend='reference'"
        ) from error
    return Backend("triton", module.lif_scan, module.exp_trace, module.weight_grad)


def _check_name(name: str, where: str) -> None:
    if name not in BACKENDS:
        raise ValueError(f"{where}: found {name!r}, expected one of {BACKENDS}")
