"""Which implementation runs the hot parts: the fc forward current, the LIF scan, the trace scan
and the S-PSP sums of the backward.

- "reference": torch on any device and in float64 (`layers.dense_current`, `neuron.lif_scan`,
  `traces.exp_trace`, `spsp_sums.py`): the readable ground truth.
- "cpu": compiled numba loops that work on the spikes and K's non-zeros only (`cpu_current.py`,
  `cpu_scan.py`, `cpu_traces.py`, `cpu_spsp.py`); chosen on the CPU.
- "triton": the Triton kernels of `kernels/triton_backend.py` (LIF scan, trace scan, fc weight
  gradient as a sparse gather) with the reference's sums around them; chosen on CUDA when it
  imports.

`HM2BP_BACKEND=reference|cpu|triton` overrides the automatic choice.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from typing import NamedTuple

import torch
from hm2bp.kernels import spsp_sums
from hm2bp.kernels.layers import dense_current
from hm2bp.kernels.neuron import lif_scan
from hm2bp.kernels.psp_kernel import PspFactors
from hm2bp.kernels.traces import exp_trace

BACKENDS = ("reference", "cpu", "triton")
ENV_VAR = "HM2BP_BACKEND"
CPU_MODULE = "hm2bp.kernels.cpu_backend"
TRITON_MODULE = "hm2bp.kernels.triton_backend"

FcCurrent = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SideSums = Callable[[torch.Tensor, PspFactors], torch.Tensor]
FcSums = Callable[..., tuple[torch.Tensor, torch.Tensor | None]]


class Backend(NamedTuple):
    """`fc_current(x [M, N_in], weight) -> [M, N_out]`; `lif_scan` as `neuron.lif_scan`;
    `exp_trace` as `traces.exp_trace`; `side_sums` and `fc_sums` as in `spsp_sums.py`."""

    name: str
    fc_current: FcCurrent
    lif_scan: Callable[..., object]
    exp_trace: Callable[[torch.Tensor, float], torch.Tensor]
    side_sums: SideSums
    fc_sums: FcSums


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def select_backend(device: str | torch.device = "cpu") -> str:
    """The backend name for `device`: `$HM2BP_BACKEND` if set, else "triton" on CUDA when the
    Triton backend imports, "cpu" on the CPU when numba imports, else "reference"."""
    override = os.environ.get(ENV_VAR)
    if override:
        _check_name(override, f"${ENV_VAR}")
        return override
    kind = torch.device(device).type
    if kind == "cuda" and _importable(TRITON_MODULE):
        return "triton"
    if kind == "cpu" and _importable(CPU_MODULE):
        return "cpu"
    return "reference"


def load_backend(name: str | None = None, device: str | torch.device = "cpu") -> Backend:
    """The functions of backend `name` (None: `select_backend(device)`)."""
    name = select_backend(device) if name is None else name
    _check_name(name, "backend")
    if name == "reference":
        return _with_reference_sums("reference", dense_current, lif_scan, exp_trace)
    module_name = CPU_MODULE if name == "cpu" else TRITON_MODULE
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise RuntimeError(
            f"backend: {name!r} requested but {module_name} does not import ({error}); "
            f"expected {'numba' if name == 'cpu' else 'Triton'} installed, "
            f"or use backend='reference'"
        ) from error
    if name == "cpu":
        return Backend(
            "cpu",
            module.fc_current,
            module.lif_scan,
            module.exp_trace,
            module.side_sums,
            module.fc_sums,
        )
    backend = _with_reference_sums("triton", dense_current, module.lif_scan, module.exp_trace)
    fc_sums = functools.partial(backend.fc_sums, grad=module.weight_grad)
    return backend._replace(fc_sums=fc_sums)


def _with_reference_sums(name, fc_current, scan, trace) -> Backend:
    """A backend whose S-PSP sums are the dense ones of `spsp_sums.py` over its trace scan."""
    return Backend(
        name,
        fc_current,
        scan,
        trace,
        functools.partial(spsp_sums.side_sums, scan=trace),
        functools.partial(spsp_sums.fc_sums, scan=trace),
    )


def _check_name(name: str, where: str) -> None:
    if name not in BACKENDS:
        raise ValueError(f"{where}: found {name!r}, expected one of {BACKENDS}")
