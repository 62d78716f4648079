"""The pre-neuron side of the factorised S-PSP: first-order IIR traces (spec section 3.2).

A trace depends only on the pre neuron and on the *consumer* layer's constants (R, tau_m, tau_s),
so one scan per layer input replaces the reference's loop over (post, pre) pairs. The same linear
filters applied to a layer's feed-forward current give its side-effect sums U_i = sum_j w_ij D_j
without another GEMM (spec section 6.2).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from hm2bp.kernels.spec import NeuronConstants

TraceScan = Callable[[torch.Tensor, float], torch.Tensor]


class TraceFilter(NamedTuple):
    """The pre traces' filter: Xm(t) = decay_m Xm(t-1) + x~(t), likewise Xs with decay_s, of the
    train x~(p) = x(p - delay) for p - delay >= first, else 0."""

    decay_m: float
    decay_s: float
    delay: int
    first: int


def trace_filter(neuron: NeuronConstants, physics_exact: bool = False) -> TraceFilter:
    """The consumer's filter. Reference (spec section 3.2): the train delayed by R, its t = 0 step
    dropped, decays exp(-1/tau). Physics-exact (spec section 3.4): no delay, every step kept,
    decays (1 - 1/tau); then c * (Xm - Xs) is P, the exact contribution of the input to v."""
    if physics_exact:
        return TraceFilter(1.0 - 1.0 / neuron.tau_m, 1.0 - 1.0 / neuron.tau_s, 0, 0)
    return TraceFilter(
        math.exp(-1.0 / neuron.tau_m), math.exp(-1.0 / neuron.tau_s), neuron.refractory, 1
    )


def exp_trace(x: torch.Tensor, decay: float) -> torch.Tensor:
    """X(t) = decay * X(t-1) + x(t) over the leading (time) dimension of `x` `[T, ...]`."""
    out = torch.empty_like(x)
    if x.shape[0] == 0:
        return out
    out[0] = x[0]
    for t in range(1, x.shape[0]):
        torch.add(x[t], out[t - 1], alpha=decay, out=out[t])
    return out


def delayed(x: torch.Tensor, delay: int, first: int = 1) -> torch.Tensor:
    """x~(p) = x(p - delay) for p - delay >= first, else 0, over time-major `x` `[T, ...]`.

    The reference S-PSP treats a pre-spike at q as arriving at q + R and ignores pre-spikes at
    q = 0 (spec sections 3.1 (a) and 8.23); dropping x(0) is also what makes the side effect of a
    filtered current equal sum_j w_ij e_ij when the input has t = 0 spikes (section 6.2).
    """
    out = torch.zeros_like(x)
    if x.shape[0] > delay + first:
        out[delay + first :] = x[first : x.shape[0] - delay]
    return out


def pre_traces(
    x: torch.Tensor,
    neuron: NeuronConstants,
    *,
    physics_exact: bool = False,
    scan: TraceScan = exp_trace,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(Xm, Xs) `[T, ...]` of spikes or a current `x` `[T, ...]`, with the consumer's constants
    (`trace_filter`), so that D = Xm - Xs is the free PSP without the factor c."""
    decay_m, decay_s, delay, first = trace_filter(neuron, physics_exact)
    source = delayed(x, delay, first)
    return scan(source, decay_m), scan(source, decay_s)


def trace_stack(
    x: torch.Tensor,
    neuron: NeuronConstants,
    *,
    window: bool,
    physics_exact: bool = False,
    scan: TraceScan = exp_trace,
) -> torch.Tensor:
    """The pre factor of e_ij = sum_p kernel_stack_i(p) * trace_stack_j(p), `[P*T, ...]`.

    P = 1 (D = Xm - Xs) without the window emulation, P = 2 ([Xm; Xs]) with it; pair it with
    `psp_kernel.kernel_stack` of the post layer in the same mode.
    """
    xm, xs = pre_traces(x, neuron, physics_exact=physics_exact, scan=scan)
    if window and not physics_exact:
        return torch.cat([xm, xs])
    return xm - xs
