"""The S-PSP sums of the backward from K's non-zeros only (compiled, CPU backend).

Every S-PSP sum of spec section 4 is e_bij = sum_t Km_bi(t) Xm_bj(t) - Ks_bi(t) Xs_bj(t) (spec
section 3.2; `psp_kernel.PspFactors`). K has two entries per post-spike (at most two more where
the 4*tau_m window cuts), so the reference's dense products over all P*T*B rows and its
`[P*T, B, N]` trace stacks are mostly multiplications by zero. Here:

- `side_sums`: sum_t Km_i Um_i - Ks_i Us_i of a layer's own feed-forward current (the side effect,
  spec section 4.5), one pass per (sample, neuron block) with the traces in registers, adding
  at K's entries only.
- `fc_sums`: G = sum_b g_bi e_bij (the weight gradient, spec 4.6) and R_bj = sum_i delta_bi w_ij
  e_bij (the effect ratio's numerator, spec 4.7) of a fully connected layer. Per sample only the
  inputs that ever spike have a non-zero trace; a task scans the traces of a block of them over
  time and, at each of K's entries (i, t), adds into row e_bi. of the block, then adds g_bi e_bi.
  into G and delta_bi w_i. e_bi. into R. No trace stack and no e matrix of all pairs is stored.

Both read K as lists of its non-zeros per (sample, step) (`cpu_kernel.KernelEntries`).
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from hm2bp.kernels.cpu_kernel import entries_of
from hm2bp.kernels.cpu_threads import (
    SPIKES,
    cpu_array,
    match_torch_threads,
    neuron_block,
    task_neurons,
)
from hm2bp.kernels.psp_kernel import PspFactors

INPUT_BLOCK = 64  # active pre neurons per task of `fc_sums`: its e rows stay in L2


def side_sums(current: torch.Tensor, factors: PspFactors) -> torch.Tensor:
    """`[B, N]` sum_t Km_i(t) Um_i(t) - Ks_i(t) Us_i(t), U the pre traces of `current` `[T, B, N]`
    with `factors`' filter (the reference: `(kernel_stack * trace_stack(current)).sum(0)`)."""
    x = cpu_array("current", current)
    match_torch_threads()
    entries = entries_of(factors.kernel)[:4]
    out = np.zeros(x.shape[1:], x.dtype)
    block = neuron_block(*x.shape[1:])
    _side_sums(x, *entries, *_filter(factors, x.dtype), block, out)
    return torch.from_numpy(out)


def fc_sums(
    inputs: torch.Tensor,
    factors: PspFactors,
    g: torch.Tensor,
    delta: torch.Tensor | None,
    weight: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(G `[N_out, N_in]` = sum_b g_bi e_bij, R `[B, N_in]` = sum_i delta_bi w_ij e_bij or None
    without `delta`) of input spikes `inputs` `[T, B, N_in]` (uint8 or floats), `g`, `delta`
    `[B, N_out]`, in the weight's dtype.

    Deterministic for a given thread count: tasks go to threads in a fixed order, each thread
    sums into its own copy of G, and the copies are added in thread order."""
    x = cpu_array("inputs", inputs, SPIKES)
    w = cpu_array("weight", weight)
    match_torch_threads()
    entries = entries_of(factors.kernel)[:4]
    active_rows, active = _active_inputs(x, *_filter(factors, w.dtype)[2:])
    grads = np.zeros((numba.get_num_threads(), *w.shape), w.dtype)
    ratio = np.zeros((x.shape[1], x.shape[2]), w.dtype)
    with_ratio = delta is not None
    d = cpu_array("delta", delta) if with_ratio else np.zeros((1, 1), w.dtype)
    _fc_sums(
        x, *entries, active_rows, active, cpu_array("g", g), d,
        w, *_filter(factors, w.dtype), with_ratio, grads, ratio,
    )  # fmt: skip
    grad = torch.from_numpy(grads).sum(dim=0)
    return grad, torch.from_numpy(ratio) if with_ratio else None


def _filter(factors: PspFactors, dtype: np.dtype) -> tuple:
    """(decay_m, decay_s, delay, first) of the pre traces, the decays in the arrays' dtype."""
    decay_m, decay_s, delay, first = factors.filter
    return dtype.type(decay_m), dtype.type(decay_s), delay, first


@numba.njit(parallel=True, cache=True, nogil=True)
def _side_sums(x, rows, neuron, coef_m, coef_s, decay_m, decay_s, delay, first, block, out):
    steps, batch, n = x.shape
    blocks = (n + block - 1) // block
    for task in numba.prange(batch * blocks):
        b, lo, hi = task_neurons(task, block, n)
        um = np.zeros(hi - lo, x.dtype)
        us = np.zeros(hi - lo, x.dtype)
        acc = np.zeros(hi - lo, x.dtype)
        for t in range(steps):
            if t - delay >= first:
                source = x[t - delay, b, lo:hi]
                for k in range(hi - lo):
                    um[k] = source[k] + decay_m * um[k]
                    us[k] = source[k] + decay_s * us[k]
            else:
                for k in range(hi - lo):
                    um[k] = decay_m * um[k]
                    us[k] = decay_s * us[k]
            for at in range(rows[b * steps + t], rows[b * steps + t + 1]):
                k = neuron[at] - lo
                if 0 <= k < hi - lo:
                    acc[k] += coef_m[at] * um[k] + coef_s[at] * us[k]
        out[b, lo:hi] = acc


@numba.njit(parallel=True, cache=True, nogil=True)
def _active_inputs(x, delay, first):
    """Per sample, the inputs whose trace is ever non-zero (a spike at some q >= first that enters
    within T - delay steps): row pointers `[B + 1]` and input indices, increasing per sample.
    Only these inputs can contribute to e_bij (about a fifth of MNIST's pixels)."""
    steps, batch, n_in = x.shape
    seen = np.zeros((batch, n_in), np.bool_)
    for b in numba.prange(batch):
        for t in range(first, steps - delay):
            for j in range(n_in):
                if x[t, b, j] != 0:
                    seen[b, j] = True
    counts = np.zeros(batch + 1, np.int64)
    for b in range(batch):
        counts[b + 1] = seen[b].sum()
    rows = np.cumsum(counts)
    active = np.empty(rows[-1], np.int64)
    for b in numba.prange(batch):
        at = rows[b]
        for j in range(n_in):
            if seen[b, j]:
                active[at] = j
                at += 1
    return rows, active


@numba.njit(parallel=True, cache=True, nogil=True)
def _fc_sums(
    x, rows, neuron, coef_m, coef_s, active_rows, active, g, delta, weight, decay_m, decay_s,
    delay, first, with_ratio, grads, ratio,
):  # fmt: skip
    """One task per (sample, block of INPUT_BLOCK active inputs); thread w takes tasks w, w + W,
    ... and adds into grads[w]. A task scans its block's pre traces over T and accumulates
    e_bi.(block) = sum_t k_m Xm - k_s Xs at K's entries, then adds g_bi e_bi. into G and
    delta_bi w_i. e_bi. into R for every post neuron i with entries."""
    steps, batch, n_in = x.shape
    workers, n_out = grads.shape[0], grads.shape[1]
    task_rows = np.zeros(batch + 1, np.int64)
    for b in range(batch):
        size = active_rows[b + 1] - active_rows[b]
        task_rows[b + 1] = task_rows[b] + (size + INPUT_BLOCK - 1) // INPUT_BLOCK
    kind = grads.dtype.type  # the spikes may be bytes; everything else is in the weight's dtype
    for w in numba.prange(workers):
        e = np.zeros((n_out, INPUT_BLOCK), grads.dtype)
        touched = np.zeros(n_out, np.bool_)
        order = np.empty(n_out, np.int64)
        xm = np.empty(INPUT_BLOCK, grads.dtype)
        xs = np.empty(INPUT_BLOCK, grads.dtype)
        b = 0
        for task in range(w, task_rows[batch], workers):
            while task_rows[b + 1] <= task:
                b += 1
            lo = active_rows[b] + (task - task_rows[b]) * INPUT_BLOCK
            size = min(INPUT_BLOCK, active_rows[b + 1] - lo)
            js = active[lo : lo + size]
            xm[:] = 0
            xs[:] = 0
            n_touched = 0
            for t in range(steps):
                if t - delay >= first:
                    for k in range(size):
                        source = kind(x[t - delay, b, js[k]])
                        xm[k] = source + decay_m * xm[k]
                        xs[k] = source + decay_s * xs[k]
                else:
                    for k in range(size):
                        xm[k] = decay_m * xm[k]
                        xs[k] = decay_s * xs[k]
                for at in range(rows[b * steps + t], rows[b * steps + t + 1]):
                    i = neuron[at]
                    if not touched[i]:
                        touched[i] = True
                        order[n_touched] = i
                        n_touched += 1
                        e[i, :size] = 0
                    cm = coef_m[at]
                    cs = coef_s[at]
                    for k in range(size):
                        e[i, k] += cm * xm[k] + cs * xs[k]
            for n in range(n_touched):
                i = order[n]
                touched[i] = False
                gi = g[b, i]
                for k in range(size):
                    grads[w, i, js[k]] += gi * e[i, k]
                if with_ratio:
                    di = delta[b, i]
                    for k in range(size):
                        ratio[b, js[k]] += di * weight[i, js[k]] * e[i, k]
