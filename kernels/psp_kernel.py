"""The post-neuron side of the factorised S-PSP: the sparse kernel K (spec section 3.2).

The reference S-PSP e_{i|j} loops over every (post, pre) pair and every post-spike (section 3.1).
Because the reset clears v but never the synaptic current, it factorises exactly into a kernel that
depends only on the post neuron i and a trace that depends only on the pre neuron j
(`traces.py`): e_{i|j} = sum_t K_i(t) D_j(t). K has two entries per post-spike t_f: +c at t_f and
-c * exp(-s_f / tau_m) at the window start r_f (r_1 = 1, r_f = t_{f-1} + R, s_f = t_f - r_f).
"""

from __future__ import annotations

import math

import torch
from hm2bp.kernels.spec import NeuronConstants


def look_back(tau_m: float) -> int:
    """W of the look-back window: pre-spikes with q < floor(t_f - 4 tau_m) are ignored (spec
    section 3.1 (b)); for the default tau_m = 64 this is 256 steps."""
    return math.ceil(4.0 * tau_m)


def psp_kernel(
    spikes: torch.Tensor,
    neuron: NeuronConstants,
    *,
    window: bool = True,
    physics_exact: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """K of a post layer's spike raster `[T, B, N]`, with the post layer's own R and tau.

    Returns (k_main, k_m, k_s) as described by `neuron.ScanResult`: k_m / k_s are the full kernels
    against the Xm / Xs traces when the reference's 4*tau_m window is emulated (`window` and not
    `physics_exact`), else None. `physics_exact` gives the discrete-exact kernel of spec section
    3.4 (decay (1 - 1/tau_m)^(t_f - r'_f), r'_1 = 0), to be paired with `traces.pre_traces` in the
    same mode.
    """
    steps = spikes.shape[0]
    dtype = spikes.dtype
    time = torch.arange(steps, device=spikes.device).view(steps, *([1] * (spikes.dim() - 1)))
    fired = spikes > 0
    # Last spike at or before t; the window of a spike at t starts after the previous one.
    last = torch.where(fired, time, torch.full_like(time, -1).expand_as(spikes)).cummax(dim=0)[0]
    previous = torch.cat([torch.full_like(last[:1], -1), last[:-1]])
    first_start = 0 if physics_exact else 1
    start = torch.where(previous >= 0, previous + neuron.refractory, first_start)
    start = torch.minimum(start, time.expand_as(start))  # only matters for non-LIF rasters
    since = (time - start).to(dtype)
    if physics_exact:
        restart = (1.0 - 1.0 / neuron.tau_m) ** since
    else:
        restart = torch.exp(-since / neuron.tau_m)
    c = neuron.c
    spike_value = fired.to(dtype) * c
    k_main = spike_value.clone()
    k_main.scatter_add_(0, start, -spike_value * restart)
    if not window or physics_exact:
        return k_main, None, None
    k_m, k_s = _window_entries(k_main, fired, time, start, since, neuron)
    return k_main, k_m, k_s


def _window_entries(
    k_main: torch.Tensor,
    fired: torch.Tensor,
    time: torch.Tensor,
    start: torch.Tensor,
    since: torch.Tensor,
    neuron: NeuronConstants,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Add the excluded part X_f of every post-spike whose window cuts off old pre-spikes.

    Spec section 3.2, "Exact emulation of the 4*tau_m window": q_f = t_f - W - 1 + R is the latest
    excluded effective pre time; excluded spikes exist only where t_f - W > 1. Two cases, by
    whether q_f falls before the integration window start r_f or inside it.
    """
    c, tau_m, tau_s = neuron.c, neuron.tau_m, neuron.tau_s
    dtype = k_main.dtype
    t = time.expand_as(start)
    q = t - look_back(tau_m) - 1 + neuron.refractory
    cut = fired & (t - look_back(tau_m) > 1)
    before = cut & (q < start)
    inside = cut & (q >= start)
    h = torch.exp(-since / tau_m) - torch.exp(-since / tau_s)  # h(s_f)
    zero = torch.zeros((), dtype=dtype, device=k_main.device)
    k_m = k_main.clone()
    k_s = k_main.clone()
    q_at = q.clamp(min=0)
    r_before = (start - 1).clamp(min=0)
    # Case q_f < r_f: X_f = c h(s_f) exp(-(r_f - q_f)/tau_s) Xs(q_f).
    value = c * h * torch.exp(-(start - q).to(dtype) / tau_s)
    k_s.scatter_add_(0, q_at, torch.where(before, value, zero))
    # Case q_f >= r_f: the part before r_f through Xs(r_f - 1), the part in [r_f, q_f] through
    # both traces at q_f and r_f - 1.
    until_q = (t - q).to(dtype)
    until_r = (t - start + 1).to(dtype)
    k_s.scatter_add_(0, r_before, torch.where(inside, c * h * math.exp(-1.0 / tau_s), zero))
    k_m.scatter_add_(0, q_at, torch.where(inside, -c * torch.exp(-until_q / tau_m), zero))
    k_m.scatter_add_(0, r_before, torch.where(inside, c * torch.exp(-until_r / tau_m), zero))
    k_s.scatter_add_(0, q_at, torch.where(inside, -c * torch.exp(-until_q / tau_s), zero))
    k_s.scatter_add_(0, r_before, torch.where(inside, c * torch.exp(-until_r / tau_s), zero))
    return k_m, k_s


def kernel_stack(
    k_main: torch.Tensor, k_m: torch.Tensor | None = None, k_s: torch.Tensor | None = None
) -> torch.Tensor:
    """The post factor of e_ij = sum_p kernel_stack_i(p) * trace_stack_j(p), `[P*T, B, N]`.

    K without the window emulation; [k_m; -k_s] with it (pairs with [Xm; Xs] of
    `traces.trace_stack`), so that every S-PSP sum of the backward is one GEMM over P*T*B rows.
    """
    if k_m is None or k_s is None:
        return k_main
    return torch.cat([k_m, -k_s])
