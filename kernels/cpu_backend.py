"""The CPU backend that `backend.load_backend("cpu")` loads: compiled numba loops that touch only
the input spikes and K's non-zeros (docs/engine.md, "Backends").

Importing this module needs numba (an ImportError otherwise, which makes `backend.select_backend`
fall back to the reference). Kernels: `cpu_current.py` (event-driven fc current), `cpu_scan.py`
(the LIF scan), `cpu_kernel.py` (K as lists of its non-zeros), `cpu_traces.py` (the trace scan),
`cpu_spsp.py` (the S-PSP sums).
"""

from hm2bp.kernels.cpu_current import fc_current
from hm2bp.kernels.cpu_scan import lif_scan
from hm2bp.kernels.cpu_spsp import fc_sums, side_sums
from hm2bp.kernels.cpu_traces import exp_trace

__all__ = ["exp_trace", "fc_current", "fc_sums", "lif_scan", "side_sums", "warm_up"]


def warm_up() -> None:
    """Compile every kernel for float32 and float64 (and the data's uint8 spikes) now. numba keeps
    the machine code next to the sources (`kernels/__pycache__`), so later processes (tests, Ray
    workers) load it instead of compiling (about a minute on a 2-core machine); `make` calls this
    once after installing."""
    import torch
    from hm2bp.kernels.cpu_current import EVENT_MIN_OUTPUTS
    from hm2bp.kernels.cpu_kernel import entries_of
    from hm2bp.kernels.psp_kernel import PspFactors
    from hm2bp.kernels.spec import NeuronConstants

    neuron = NeuronConstants(threshold=0.5)
    generator = torch.Generator().manual_seed(0)
    data = (torch.rand(300, 2, 40, generator=generator) < 0.05).to(torch.uint8)  # event-driven
    for dtype in (torch.float32, torch.float64):
        wide = torch.rand(EVENT_MIN_OUTPUTS, 40, generator=generator, dtype=dtype)
        weight = wide[:4].contiguous()
        for spikes in (data, data.to(dtype)):
            current = fc_current(spikes.flatten(0, 1), wide)[:, :4].reshape(300, 2, 4)
            scan = lif_scan(current.contiguous(), neuron, 0.0, window=True)
            factors = PspFactors(scan.kernel, neuron, False)
            side_sums(current, factors)
            fc_sums(spikes, factors, current[0], current[1], weight)
        exp_trace(current, 0.5)
        entries_of(scan.kernel.dense())  # dense kernels: the output layer's, after its fake train
