"""The LIF scan and its S-PSP kernel K as one compiled loop (numba), for the CPU backend.

The reference (`neuron.lif_scan` + `psp_kernel.psp_kernel`) drives a T-step Python loop of whole-
tensor torch operations and then finds the spikes again with `nonzero`; here each (sample, block of
neurons) runs its T steps in compiled code and writes K's entries the moment a neuron fires (its
window start r_f is known from the previous spike). Same operations in the same order as spec
section 1.1 and `neuron.lif_scan`, in the current's dtype, so the rasters are identical bit for bit
(`tests/test_cpu_kernels.py`); K's values equal the reference's up to the last bit of `exp`.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from hm2bp.kernels.cpu_memory import POOL
from hm2bp.kernels.cpu_threads import cpu_array, match_torch_threads
from hm2bp.kernels.neuron import ScanResult
from hm2bp.kernels.psp_kernel import look_back
from hm2bp.kernels.spec import NeuronConstants
from hm2bp.kernels.tensor_checks import check_float_tensor

TASKS_PER_THREAD = 2  # samples are split into neuron blocks only when B is below 2 per thread


def lif_scan(
    current: torch.Tensor,
    neuron: NeuronConstants,
    slack: float,
    lateral: float = 0.0,
    *,
    window: bool = True,
    physics_exact: bool = False,
) -> ScanResult:
    """`neuron.lif_scan`, compiled: same arguments, same `ScanResult` (k_m and k_s are None when the
    window is off or cuts nothing)."""
    check_float_tensor("current", current, "[T, B, N]")
    source = cpu_array("current", current)
    steps, batch, n = source.shape
    dtype = source.dtype.type
    spikes = POOL.empty(source.shape, source.dtype)  # `_scan` writes every element
    k_main = POOL.empty(source.shape, source.dtype)
    emulate = window and not physics_exact and steps > look_back(neuron.tau_m) + 2
    k_m = POOL.empty(source.shape, source.dtype) if emulate else k_main
    k_s = POOL.empty(source.shape, source.dtype) if emulate else k_main
    match_torch_threads()
    # Whole samples per task, unless there are too few samples to feed the threads; the output
    # layer's lateral current couples a sample's neurons: always one task per sample there.
    split = -(-TASKS_PER_THREAD * numba.get_num_threads() // batch)
    block = n if lateral != 0.0 else -(-n // split)
    cuts = _scan(
        source,
        spikes,
        k_main,
        k_m,
        k_s,
        dtype(1.0 - 1.0 / neuron.tau_m),
        dtype(1.0 - 1.0 / neuron.tau_s),
        dtype(neuron.tau_m),
        dtype(neuron.tau_s),
        dtype(neuron.threshold - slack),
        dtype(lateral),
        neuron.refractory,
        dtype(neuron.c),
        look_back(neuron.tau_m),
        emulate,
        physics_exact,
        max(1, block),
    )
    as_tensor = torch.from_numpy
    windowed = emulate and cuts > 0
    return ScanResult(
        as_tensor(spikes),
        as_tensor(spikes).sum(dim=0),
        as_tensor(k_main),
        as_tensor(k_m) if windowed else None,
        as_tensor(k_s) if windowed else None,
    )


@numba.njit(parallel=True, cache=True, nogil=True)
def _scan(
    current, spikes, k_main, k_m, k_s, decay_m, decay_s, tau_m, tau_s, threshold, lateral,
    refractory, c, look, emulate, physics_exact, block,
):  # fmt: skip
    """Scan every (sample, block of `block` neurons) over T; returns how many spikes had window
    entries. Writes all of `spikes`, `k_main` and, when `emulate`, `k_m` / `k_s` (K plus the
    window's entries, spec section 3.2): they may come uninitialised, since each step t first
    zeroes its row of K and every entry of a spike at t lands at t or earlier."""
    steps, batch, n = current.shape
    blocks = (n + block - 1) // block
    cuts = np.zeros(batch * blocks, np.int64)
    first_start = 0 if physics_exact else 1
    zero = current.dtype.type(0.0)
    one = current.dtype.type(1.0)  # literals in the current's dtype: float32 stays float32
    for task in numba.prange(batch * blocks):
        b = task // blocks
        lo = (task % blocks) * block
        hi = min(n, lo + block)
        v = np.zeros(hi - lo, current.dtype)
        a = np.zeros(hi - lo, current.dtype)
        ref = np.zeros(hi - lo, np.int32)
        last = np.full(hi - lo, -1, np.int64)
        fired_before = zero  # spikes of the whole sample at t - 1 (lateral layers: one block)
        inhibit = np.zeros(hi - lo, current.dtype)
        _clear_row(spikes, k_main, k_m, k_s, 0, b, lo, hi, emulate)
        for t in range(1, steps):
            _clear_row(spikes, k_main, k_m, k_s, t, b, lo, hi, emulate)
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
            for k in range(hi - lo):
                if v[k] > threshold:
                    i = lo + k
                    spikes[t, b, i] = one
                    fired_now += one
                    ref[k] = refractory
                    v[k] = zero  # v resets; the synaptic current a does not
                    start = last[k] + refractory if last[k] >= 0 else first_start
                    start = min(start, t)
                    last[k] = t
                    cuts[task] += _kernel_entries(
                        k_main, k_m, k_s, t, start, b, i, tau_m, tau_s, c, look, refractory,
                        emulate, physics_exact,
                    )  # fmt: skip
            fired_before = fired_now
    return cuts.sum()


@numba.njit(inline="always")
def _clear_row(spikes, k_main, k_m, k_s, t, b, lo, hi, emulate):
    spikes[t, b, lo:hi] = 0
    k_main[t, b, lo:hi] = 0
    if emulate:
        k_m[t, b, lo:hi] = 0
        k_s[t, b, lo:hi] = 0


@numba.njit(inline="always")
def _kernel_entries(
    k_main, k_m, k_s, t, start, b, i, tau_m, tau_s, c, look, refractory, emulate, physics_exact
):  # fmt: skip
    """K's entries of a spike at t with window start r_f = `start` (`psp_kernel.psp_kernel`):
    +c at t, -c * restart at r_f; with `emulate`, also the excluded part of spec section 3.2's
    window emulation (`psp_kernel._window_entries`). Returns 1 if the window cut this spike."""
    one = k_main.dtype.type(1.0)
    since = k_main.dtype.type(t - start)
    restart = (one - one / tau_m) ** since if physics_exact else math.exp(-since / tau_m)
    k_main[t, b, i] += c
    k_main[start, b, i] += -c * restart
    if not emulate:
        return 0
    k_m[t, b, i] += c
    k_m[start, b, i] += -c * restart
    k_s[t, b, i] += c
    k_s[start, b, i] += -c * restart
    if t - look <= 1:
        return 0
    q = t - look - 1 + refractory
    h = math.exp(-since / tau_m) - math.exp(-since / tau_s)
    if q < start:
        k_s[q, b, i] += c * h * math.exp(-k_main.dtype.type(start - q) / tau_s)
        return 1
    until_q = k_main.dtype.type(t - q)
    until_r = k_main.dtype.type(t - start + 1)
    k_s[start - 1, b, i] += c * h * k_main.dtype.type(math.exp(-1.0 / tau_s))
    k_m[q, b, i] += -c * math.exp(-until_q / tau_m)
    k_m[start - 1, b, i] += c * math.exp(-until_r / tau_m)
    k_s[q, b, i] += -c * math.exp(-until_q / tau_s)
    k_s[start - 1, b, i] += c * math.exp(-until_r / tau_s)
    return 1
