"""The post-neuron side of the factorised S-PSP: the sparse kernel K (spec section 3.2).

The reference S-PSP e_{i|j} loops over every (post, pre) pair and every post-spike (section 3.1).
Because the reset clears v but never the synaptic current, it factorises exactly into a kernel that
depends only on the post neuron i and a trace that depends only on the pre neuron j
(`traces.py`): e_{i|j} = sum_t K_i(t) D_j(t). K has two entries per post-spike t_f: +c at t_f and
-c * exp(-s_f / tau_m) at the window start r_f (r_1 = 1, r_f = t_{f-1} + R, s_f = t_f - r_f).
The entries are computed for the list of spikes only and scattered into dense `[T, ...]` tensors
(`DenseKernel`); the CPU backend keeps them as lists instead (`cpu_kernel.SparseKernel`). Both
are a `PostKernel`.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Protocol

import torch
from hm2bp.kernels.spec import NeuronConstants
from hm2bp.kernels.traces import TraceFilter, trace_filter


def look_back(tau_m: float) -> int:
    """W of the look-back window: pre-spikes with q < floor(t_f - 4 tau_m) are ignored (spec
    section 3.1 (b)); for the default tau_m = 64 this is 256 steps."""
    return math.ceil(4.0 * tau_m)


class DenseKernel(NamedTuple):
    """K as dense tensors `[T, B, N]`.

    - `k_main`: the kernel K of spec section 3.2, +c at every spike t_f and -c * exp(-s_f / tau_m)
      at its window start r_f, so that (without the window) e_ij = sum_t K_i(t) * D_j(t).
    - `k_m`, `k_s`: with the exact 4*tau_m window emulation, the full kernels against the two pre
      traces: e_ij = sum_t k_m_i(t) * Xm_j(t) - sum_t k_s_i(t) * Xs_j(t), i.e. k_main plus the
      window's excluded-part entries. None when the window is not emulated or cuts nothing (no
      spike at t_f > 4 tau_m + 1, e.g. always for T <= 258): then k_main alone is exact.
    """

    k_main: torch.Tensor
    k_m: torch.Tensor | None = None
    k_s: torch.Tensor | None = None

    @property
    def windowed(self) -> bool:
        return self.k_m is not None

    def dense(self) -> DenseKernel:
        return self

    def stack(self) -> torch.Tensor:
        return kernel_stack(*self)


class PostKernel(Protocol):
    """What the backward needs of a post layer's K, in whatever form a backend keeps it."""

    @property
    def windowed(self) -> bool:
        """True when the window emulation adds entries (P = 2 in the stacked form)."""

    def dense(self) -> DenseKernel:
        """K as dense tensors."""

    def stack(self) -> torch.Tensor:
        """`kernel_stack` of the dense kernels, `[P*T, B, N]`."""


def psp_kernel(
    spikes: torch.Tensor,
    neuron: NeuronConstants,
    *,
    window: bool = True,
    physics_exact: bool = False,
) -> DenseKernel:
    """K of a post layer's spike raster `[T, ...]`, with the post layer's own R and tau.

    Returns (k_main, k_m, k_s) as described by `DenseKernel`: k_m / k_s are the full kernels
    against the Xm / Xs traces when the reference's 4*tau_m window is emulated (`window` and not
    `physics_exact`) and cuts off something in this raster (some spike at t_f > W + 1), else None:
    then e = K . D exactly. `physics_exact` gives the discrete-exact kernel of spec section 3.4
    (decay (1 - 1/tau_m)^(t_f - r'_f), r'_1 = 0), paired with `traces.pre_traces` in that mode.
    """
    steps = spikes.shape[0]
    flat = spikes.reshape(steps, -1)
    t, neuron_index, start = _spike_list(flat, neuron.refractory, 0 if physics_exact else 1)
    since = (t - start).to(spikes.dtype)
    if physics_exact:
        restart = (1.0 - 1.0 / neuron.tau_m) ** since
    else:
        restart = torch.exp(-since / neuron.tau_m)
    c = neuron.c
    k_main = torch.zeros_like(flat)
    k_main.index_put_((t, neuron_index), torch.full_like(since, c), accumulate=True)
    k_main.index_put_((start, neuron_index), -c * restart, accumulate=True)
    cut = t - look_back(neuron.tau_m) > 1
    if not window or physics_exact or not bool(cut.any()):
        return DenseKernel(k_main.view_as(spikes))
    k_m, k_s = _window_entries(k_main, t[cut], neuron_index[cut], start[cut], neuron)
    return DenseKernel(k_main.view_as(spikes), k_m.view_as(spikes), k_s.view_as(spikes))


def _spike_list(
    flat: torch.Tensor, refractory: int, first_start: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(t_f, neuron, r_f) of every spike of `flat` `[T, M]`: r_f = t_{f-1} + R after an earlier
    spike of the same neuron, else `first_start` (clamped to t_f, which only matters for rasters
    that no LIF neuron could produce)."""
    # Row-major order of the transposed raster: by neuron, then by time.
    neuron_index, t = torch.nonzero(flat.T > 0, as_tuple=True)
    same = torch.zeros_like(t, dtype=torch.bool)
    same[1:] = neuron_index[1:] == neuron_index[:-1]
    previous = torch.roll(t, 1)
    start = torch.where(same, previous + refractory, first_start)
    return t, neuron_index, torch.minimum(start, t)


def _window_entries(
    k_main: torch.Tensor,
    t: torch.Tensor,
    neuron_index: torch.Tensor,
    start: torch.Tensor,
    neuron: NeuronConstants,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Add the excluded part X_f of every post-spike whose window cuts off old pre-spikes.

    Spec section 3.2, "Exact emulation of the 4*tau_m window": q_f = t_f - W - 1 + R is the latest
    excluded effective pre time (`t`, `start` hold only the spikes with t_f - W > 1). Two cases, by
    whether q_f falls before the integration window start r_f or inside it.
    """
    c, tau_m, tau_s = neuron.c, neuron.tau_m, neuron.tau_s
    dtype = k_main.dtype
    q = t - look_back(tau_m) - 1 + neuron.refractory
    since = (t - start).to(dtype)
    h = torch.exp(-since / tau_m) - torch.exp(-since / tau_s)  # h(s_f)
    before = q < start
    inside = ~before
    k_m = k_main.clone()
    k_s = k_main.clone()

    def add(kernel, at, values, where):
        kernel.index_put_((at[where], neuron_index[where]), values[where], accumulate=True)

    # Case q_f < r_f: X_f = c h(s_f) exp(-(r_f - q_f)/tau_s) Xs(q_f).
    add(k_s, q, c * h * torch.exp(-(start - q).to(dtype) / tau_s), before)
    # Case q_f >= r_f: the part before r_f through Xs(r_f - 1), the part in [r_f, q_f] through
    # both traces at q_f and r_f - 1.
    until_q = (t - q).to(dtype)
    until_r = (t - start + 1).to(dtype)
    r_before = start - 1
    add(k_s, r_before, c * h * math.exp(-1.0 / tau_s), inside)
    add(k_m, q, -c * torch.exp(-until_q / tau_m), inside)
    add(k_m, r_before, c * torch.exp(-until_r / tau_m), inside)
    add(k_s, q, -c * torch.exp(-until_q / tau_s), inside)
    add(k_s, r_before, c * torch.exp(-until_r / tau_s), inside)
    return k_m, k_s


def kernel_stack(
    k_main: torch.Tensor, k_m: torch.Tensor | None = None, k_s: torch.Tensor | None = None
) -> torch.Tensor:
    """The post factor of e_ij = sum_p kernel_stack_i(p) * trace_stack_j(p), `[P*T, B, N]`.

    K when there are no window entries (P = 1); [k_m; -k_s] with them (P = 2, paired with
    [Xm; Xs] of `traces.trace_stack(..., window=True)`), so that every S-PSP sum of the backward is
    one GEMM over P*T*B rows.
    """
    if k_m is None or k_s is None:
        return k_main
    return torch.cat([k_m, -k_s])


class PspFactors(NamedTuple):
    """A post layer's side of every S-PSP sum, as its backward consumes it (spec section 3.2):
    e_bij = sum_t k_m_bi(t) Xm_bj(t) - k_s_bi(t) Xs_bj(t), plus the silent-post constant, where
    Xm, Xs are the pre traces with this layer's filter (`filter`) and `kernel` is K
    (`DenseKernel`: k_m = k_s = k_main without window entries)."""

    kernel: PostKernel
    neuron: NeuronConstants
    physics_exact: bool

    @property
    def windowed(self) -> bool:
        return self.kernel.windowed

    @property
    def filter(self) -> TraceFilter:
        return trace_filter(self.neuron, self.physics_exact)

    def stack(self) -> torch.Tensor:
        """`kernel_stack` of the kernels, `[P*T, B, N]`."""
        return self.kernel.stack()
