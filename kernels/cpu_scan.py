"""The LIF scan as one compiled loop (numba), for the CPU backend.

The reference (`neuron.lif_scan`) drives a T-step Python loop of whole-tensor torch operations;
here each (sample, block of neurons) runs its T steps in compiled code with v, a and the
refractory counter in registers. Same operations in the same order as spec section 1.1 and
`neuron.lif_scan`, in the current's dtype, so the rasters are identical bit for bit
(`tests/test_cpu_kernels.py`). K is then read off the raster as lists of its non-zeros
(`cpu_kernel.sparse_kernel`), never as dense `[T, B, N]` tensors.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from hm2bp.kernels.cpu_kernel import sparse_kernel
from hm2bp.kernels.cpu_memory import POOL
from hm2bp.kernels.cpu_threads import cpu_array, match_torch_threads, neuron_block, task_neurons
from hm2bp.kernels.neuron import ScanResult
from hm2bp.kernels.spec import NeuronConstants
from hm2bp.kernels.tensor_checks import check_float_tensor


def lif_scan(
    current: torch.Tensor,
    neuron: NeuronConstants,
    slack: float,
    lateral: float = 0.0,
    *,
    window: bool = True,
    physics_exact: bool = False,
) -> ScanResult:
    """`neuron.lif_scan`, compiled: same arguments, same `ScanResult`, with K as a
    `cpu_kernel.SparseKernel`."""
    check_float_tensor("current", current, "[T, B, N]")
    source = cpu_array("current", current)
    batch, n = source.shape[1:]
    kind = source.dtype.type
    spikes = POOL.empty(source.shape, source.dtype)  # `_scan` writes every element
    counts = np.zeros((batch, n), source.dtype)
    match_torch_threads()
    # Whole samples per task, unless there are too few samples to feed the threads; the output
    # layer's lateral current couples a sample's neurons: always one task per sample there.
    block = n if lateral != 0.0 else neuron_block(batch, n)
    _scan(
        source,
        spikes,
        counts,
        kind(1.0 - 1.0 / neuron.tau_m),
        kind(1.0 - 1.0 / neuron.tau_s),
        kind(neuron.tau_s),
        kind(neuron.threshold - slack),
        kind(lateral),
        neuron.refractory,
        max(1, block),
    )
    kernel = sparse_kernel(spikes, counts, neuron, window=window, physics_exact=physics_exact)
    return ScanResult(torch.from_numpy(spikes), torch.from_numpy(counts), kernel)


@numba.njit(parallel=True, cache=True, nogil=True)
def _scan(current, spikes, counts, decay_m, decay_s, tau_s, threshold, lateral, refractory, block):
    """Scan every (sample, block of `block` neurons) over T, writing every element of `spikes`
    and adding each neuron's spikes into `counts` `[B, N]`."""
    steps, batch, n = current.shape
    blocks = (n + block - 1) // block
    zero = current.dtype.type(0.0)
    one = current.dtype.type(1.0)  # literals in the current's dtype: float32 stays float32
    for task in numba.prange(batch * blocks):
        b, lo, hi = task_neurons(task, block, n)
        v = np.zeros(hi - lo, current.dtype)
        a = np.zeros(hi - lo, current.dtype)
        ref = np.zeros(hi - lo, np.int32)
        inhibit = np.zeros(hi - lo, current.dtype)
        fired_before = zero  # spikes of the whole sample at t - 1 (lateral layers: one block)
        spikes[0, b, lo:hi] = zero  # no integration at t = 0
        for t in range(1, steps):
            # Integration, branch-free so that it vectorises over the block (spec section 1.1).
            drive = current[t - 1, b, lo:hi]
            if lateral != zero:  # -w0 * (spikes of the other outputs at t - 1), after the drive
                inhibit[:] = lateral * (fired_before - spikes[t - 1, b, lo:hi])
            for k in range(hi - lo):
                vk = v[k] * decay_m
                ak = a[k] * decay_s + drive[k] - inhibit[k]  # x - 0 = x: exact without lateral
                vk = vk + ak / tau_s
                v[k] = zero if ref[k] > 0 else vk  # the refractory clamp acts after integration
                ref[k] = max(ref[k] - 1, 0)
                a[k] = ak
            fired_now = zero
            out = spikes[t, b, lo:hi]
            for k in range(hi - lo):
                fired = v[k] > threshold
                out[k] = one if fired else zero
                if fired:
                    fired_now += one
                    counts[b, lo + k] += one
                    ref[k] = refractory
                    v[k] = zero  # v resets; the synaptic current a does not
            fired_before = fired_now
