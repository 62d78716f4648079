"""The Triton backend that `backend.load_backend("triton")` loads: the seam's three functions.

Importing this module needs Triton (an ImportError otherwise, which makes `backend.select_backend`
fall back to the reference). Kernels: `triton_scan.py` (the LIF scan with K) and `triton_traces.py`
(the trace scan) and `triton_grad.py` (the fc weight gradient as a sparse gather).
"""

from hm2bp.kernels.triton_grad import weight_grad
from hm2bp.kernels.triton_scan import lif_scan
from hm2bp.kernels.triton_traces import exp_trace

__all__ = ["exp_trace", "lif_scan", "weight_grad"]
