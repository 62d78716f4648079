"""The CPU backend that `backend.load_backend("cpu")` loads: compiled numba loops that touch only
the input spikes and K's non-zeros (docs/engine.md, "Backends").

Importing this module needs numba (an ImportError otherwise, which makes `backend.select_backend`
fall back to the reference). Kernels: `cpu_current.py` (event-driven fc current), `cpu_scan.py`
(the LIF scan with K), `cpu_traces.py` (the trace scan), `cpu_spsp.py` (the S-PSP sums).
"""

from hm2bp.kernels.cpu_current import fc_current
from hm2bp.kernels.cpu_scan import lif_scan
from hm2bp.kernels.cpu_spsp import fc_sums, side_sums
from hm2bp.kernels.cpu_traces import exp_trace

__all__ = ["exp_trace", "fc_current", "fc_sums", "lif_scan", "side_sums"]
