"""The S-PSP kernel K as lists of its non-zeros (CPU backend), built from a spike raster.

K has two entries per post-spike (+c at t_f, -c * exp(-s_f / tau_m) at r_f; spec section 3.2) and
at most two more where the 4*tau_m window cuts (the excluded part X_f, combined per step), so a
hidden layer's `[T, B, N]` K is about 3 % non-zero. The reference scatters the entries into dense
tensors; here they stay lists sorted by (sample, step), which is the order in which the S-PSP
sums of `cpu_spsp.py` visit them. `SparseKernel.dense()` scatters them when a consumer needs the
dense form (conv layers, the lateral factor, tests). Same values as `psp_kernel.psp_kernel` up to
the last bit of `exp` and the order in which entries landing on one element are added.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np
import torch
from hm2bp.kernels.cpu_memory import POOL
from hm2bp.kernels.cpu_threads import cpu_array, match_torch_threads
from hm2bp.kernels.psp_kernel import DenseKernel, PostKernel, look_back
from hm2bp.kernels.spec import NeuronConstants


class KernelEntries(NamedTuple):
    """K's non-zeros sorted by (sample b, step t): entries `rows[b*T + t]` to `rows[b*T + t + 1]`
    belong to (b, t). Each has its post neuron, the coefficients of Xm (k_m) and of Xs (-k_s)
    in e = sum k_m Xm - k_s Xs, and whether it is one of K's own two entries per spike (`main`)
    rather than a window entry."""

    rows: np.ndarray
    neuron: np.ndarray
    coef_m: np.ndarray
    coef_s: np.ndarray
    main: np.ndarray


class SparseKernel:
    """A `psp_kernel.PostKernel` kept as `KernelEntries` of a `[T, B, N]` kernel."""

    def __init__(self, entries: KernelEntries, shape: tuple[int, int, int], windowed: bool):
        self.entries = entries
        self.shape = shape
        self.windowed = windowed
        self._dense: DenseKernel | None = None

    def dense(self) -> DenseKernel:
        """The dense tensors, scattered on first use and kept."""
        if self._dense is None:
            dtype = self.entries.coef_m.dtype
            arrays = [POOL.zeros(self.shape, dtype) for _ in range(3 if self.windowed else 1)]
            k_m, k_s = arrays[1:] if self.windowed else arrays * 2
            match_torch_threads()
            _scatter(*self.entries, arrays[0], k_m, k_s, self.windowed)
            self._dense = DenseKernel(*(torch.from_numpy(a) for a in arrays))
        return self._dense

    def stack(self) -> torch.Tensor:
        return self.dense().stack()


ENTRIES_PER_SPIKE = 4  # K's two, and at most two where the window cuts (combined per step)


def sparse_kernel(
    spikes: np.ndarray,
    counts: np.ndarray,
    neuron: NeuronConstants,
    *,
    window: bool,
    physics_exact: bool,
) -> SparseKernel:
    """K of a raster `[T, B, N]` (0/1 floats) with spike counts `counts` `[B, N]` and the post
    layer's own constants, as lists; `window` and `physics_exact` as in `psp_kernel.psp_kernel`.

    One pass over the raster writes each sample's entries in the order of its spikes (at most
    `ENTRIES_PER_SPIKE` per spike, so the counts bound the room), counting them per step; a
    second pass over the entries only sorts them by step."""
    steps, batch = spikes.shape[:2]
    emulate = window and not physics_exact and steps > look_back(neuron.tau_m) + 2
    kind = spikes.dtype.type
    constants = (
        neuron.refractory,
        kind(neuron.tau_m),
        kind(neuron.tau_s),
        kind(neuron.c),
        look_back(neuron.tau_m),
        emulate,
        physics_exact,
    )
    room = np.zeros(batch + 1, np.int64)
    room[1:] = np.cumsum(counts.sum(axis=1).astype(np.int64) * ENTRIES_PER_SPIKE)
    staged = (np.empty(room[-1], np.int64), *_lists(room[-1], spikes.dtype))
    per_step = np.zeros(batch * steps + 1, np.int64)
    match_torch_threads()
    used, cuts = _stage_entries(spikes, *constants, room, *staged, per_step)
    rows = np.cumsum(per_step)
    entries = KernelEntries(rows, *_lists(rows[-1], spikes.dtype))
    _sort_entries(room, used, *staged, rows, *entries[1:])
    return SparseKernel(entries, spikes.shape, emulate and cuts > 0)


def _lists(size: int, dtype: np.dtype) -> tuple[np.ndarray, ...]:
    """Uninitialised (neuron, coef_m, coef_s, main) of `size` entries."""
    return (
        np.empty(size, np.int32),
        np.empty(size, dtype),
        np.empty(size, dtype),
        np.empty(size, np.bool_),
    )


def entries_of(kernel: PostKernel) -> KernelEntries:
    """`KernelEntries` of any `PostKernel` (a dense one is read once, e.g. the output layer's)."""
    if isinstance(kernel, SparseKernel):
        return kernel.entries
    dense = kernel.dense()
    k_m = dense.k_m if kernel.windowed else dense.k_main
    k_s = dense.k_s if kernel.windowed else dense.k_main
    match_torch_threads()
    return KernelEntries(*_dense_entries(cpu_array("k_m", k_m), cpu_array("k_s", k_s)))


@numba.njit(parallel=True, cache=True, nogil=True)
def _stage_entries(
    spikes, refractory, tau_m, tau_s, c, look, emulate, physics_exact, room, step, neuron,
    coef_m, coef_s, main, per_step,
):  # fmt: skip
    """Write each sample b's entries from `room[b]` on, in the order of the spikes that make them,
    with their row b*T + t in `step`, and count them per row into `per_step[row + 1]`. Returns
    (entries written per sample, how many spikes the window cut)."""
    steps, batch, n = spikes.shape
    first_start = 0 if physics_exact else 1
    one = spikes.dtype.type(1.0)
    used = np.zeros(batch, np.int64)
    cuts = np.zeros(batch, np.int64)
    lists = (step, neuron, coef_m, coef_s, main)
    for b in numba.prange(batch):
        last = np.full(n, -1, np.int64)
        base = b * steps
        at = room[b : b + 1].copy()  # the sample's next free position
        for t in range(steps):
            for i in range(n):
                if spikes[t, b, i] == 0:
                    continue
                start = min(last[i] + refractory if last[i] >= 0 else first_start, t)
                last[i] = t
                since = spikes.dtype.type(t - start)
                if physics_exact:
                    restart = (one - one / tau_m) ** since
                else:
                    restart = math.exp(-since / tau_m)
                _put(at, lists, per_step, base + t, i, c, -c, True)
                _put(at, lists, per_step, base + start, i, -c * restart, c * restart, True)
                if not emulate or t - look <= 1:
                    continue
                cuts[b] += 1
                q = t - look - 1 + refractory
                h = math.exp(-since / tau_m) - math.exp(-since / tau_s)
                if q < start:
                    excluded = c * h * math.exp(-spikes.dtype.type(start - q) / tau_s)
                    _put(at, lists, per_step, base + q, i, spikes.dtype.type(0.0), -excluded, False)
                    continue
                until_q = spikes.dtype.type(t - q)
                until_r = spikes.dtype.type(t - start + 1)
                before = c * h * spikes.dtype.type(math.exp(-1.0 / tau_s))
                _put(
                    at, lists, per_step, base + start - 1, i, c * math.exp(-until_r / tau_m),
                    -(before + c * math.exp(-until_r / tau_s)), False,
                )  # fmt: skip
                _put(
                    at, lists, per_step, base + q, i, -c * math.exp(-until_q / tau_m),
                    c * math.exp(-until_q / tau_s), False,
                )  # fmt: skip
        used[b] = at[0] - room[b]
    return used, cuts.sum()


@numba.njit(inline="always")
def _put(at, lists, per_step, row, i, coef_m, coef_s, main):
    """Write an entry of `row` at the sample's next free position `at[0]` and count it."""
    k = at[0]
    at[0] += 1
    lists[0][k] = row
    lists[1][k] = i
    lists[2][k] = coef_m
    lists[3][k] = coef_s
    lists[4][k] = main
    per_step[row + 1] += 1


@numba.njit(parallel=True, cache=True, nogil=True)
def _sort_entries(
    room, used, step, neuron, coef_m, coef_s, main, rows, out_neuron, out_m, out_s, out_main
):  # fmt: skip
    """Move each sample's staged entries to their rows (`rows` pointers), keeping their order
    within a row."""
    batch = room.shape[0] - 1
    steps = (rows.shape[0] - 1) // max(1, batch)
    for b in numba.prange(batch):
        free = rows[b * steps : (b + 1) * steps].copy()
        for k in range(room[b], room[b] + used[b]):
            row = step[k] - b * steps
            at = free[row]
            free[row] += 1
            out_neuron[at] = neuron[k]
            out_m[at] = coef_m[k]
            out_s[at] = coef_s[k]
            out_main[at] = main[k]


@numba.njit(parallel=True, cache=True, nogil=True)
def _dense_entries(k_m, k_s):
    """`KernelEntries` of dense kernels `[T, B, N]` (all entries counted as main)."""
    steps, batch, n = k_m.shape
    counts = np.zeros(batch * steps + 1, np.int64)
    for b in numba.prange(batch):
        for t in range(steps):
            found = 0
            for i in range(n):
                found += k_m[t, b, i] != 0 or k_s[t, b, i] != 0
            counts[b * steps + t + 1] = found
    rows = np.cumsum(counts)
    neuron = np.empty(rows[-1], np.int32)
    coef_m = np.empty(rows[-1], k_m.dtype)
    coef_s = np.empty(rows[-1], k_m.dtype)
    for b in numba.prange(batch):
        for t in range(steps):
            at = rows[b * steps + t]
            for i in range(n):
                if k_m[t, b, i] != 0 or k_s[t, b, i] != 0:
                    neuron[at] = i
                    coef_m[at] = k_m[t, b, i]
                    coef_s[at] = -k_s[t, b, i]
                    at += 1
    return rows, neuron, coef_m, coef_s, np.ones(rows[-1], np.bool_)


@numba.njit(parallel=True, cache=True, nogil=True)
def _scatter(rows, neuron, coef_m, coef_s, main, k_main, k_m, k_s, windowed):
    """Add the entries into dense `[T, B, N]` k_main (main entries) and, when `windowed`, k_m and
    k_s (all entries)."""
    steps, batch, n = k_main.shape
    for b in numba.prange(batch):
        for t in range(steps):
            for at in range(rows[b * steps + t], rows[b * steps + t + 1]):
                i = neuron[at]
                if main[at]:
                    k_main[t, b, i] += coef_m[at]
                if windowed:
                    k_m[t, b, i] += coef_m[at]
                    k_s[t, b, i] -= coef_s[at]
