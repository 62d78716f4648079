"""The discrete LIF neuron with a first-order synaptic current, scanned over time (reference).

This is the only sequential part of a forward pass and the ground truth for the Triton scan. It
follows `hm2bp-spec.md` section 1.1 line by line, because the golden rasters are reproduced bit for
bit only with exactly this order of operations (section 8.11).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from hm2bp.kernels.psp_kernel import PostKernel, psp_kernel
from hm2bp.kernels.spec import NeuronConstants
from hm2bp.kernels.tensor_checks import check_float_tensor

FC_SLACK = 1e-6
"""Threshold slack of fully connected, pooling and output layers: they fire at v > nu - 1e-6
(spec sections 1.1 and 8.10); conv layers use a strict threshold (slack 0)."""


class ScanResult(NamedTuple):
    """What one layer's scan hands to the next layer and to the backward.

    - `spikes` `[T, B, N]`: 0/1 in the dtype of the current.
    - `counts` `[B, N]`: spikes per neuron (o of the spec), same dtype.
    - `kernel`: the layer's S-PSP kernel K (`psp_kernel.PostKernel`; the reference and Triton
      backends give a `DenseKernel`, the CPU backend K's non-zeros as lists). `k_main`, `k_m` and
      `k_s` are its dense tensors (`psp_kernel.DenseKernel`).
    """

    spikes: torch.Tensor
    counts: torch.Tensor
    kernel: PostKernel

    @property
    def k_main(self) -> torch.Tensor:
        return self.kernel.dense().k_main

    @property
    def k_m(self) -> torch.Tensor | None:
        return self.kernel.dense().k_m

    @property
    def k_s(self) -> torch.Tensor | None:
        return self.kernel.dense().k_s


def lif_scan(
    current: torch.Tensor,
    neuron: NeuronConstants,
    slack: float,
    lateral: float = 0.0,
    *,
    window: bool = True,
    physics_exact: bool = False,
) -> ScanResult:
    """Scan the LIF neuron over `current` `[T, B, N]` (I(t) drives step t + 1).

    Per step (spec section 1.1): multiplicative decay of v and a; no integration at t = 0;
    a += I(t-1) + lat(t-1); v += a / tau_s; refractory clamp v = 0 *after* integration; spike if
    v > nu - slack; on a spike v = 0 and ref = R, the synaptic current a is never reset.
    `lateral` = w0 adds lat_i(t) = -w0 * sum_{l != i} s_l(t) (output layer, spec section 1.2).
    `window` / `physics_exact` choose the S-PSP kernel returned with the spikes (`ScanResult`).
    """
    check_float_tensor("current", current, "[T, B, N]", dtypes=None)
    steps, batch, n = current.shape
    decay_m = 1.0 - 1.0 / neuron.tau_m
    decay_s = 1.0 - 1.0 / neuron.tau_s
    threshold = neuron.threshold - slack
    v = current.new_zeros(batch, n)
    a = current.new_zeros(batch, n)
    ref = torch.zeros(batch, n, dtype=torch.int32, device=current.device)
    spikes = current.new_zeros(steps, batch, n)
    for t in range(1, steps):
        v.mul_(decay_m)
        a.mul_(decay_s)
        a.add_(current[t - 1])
        if lateral != 0.0:
            previous = spikes[t - 1]
            a.sub_(lateral * (previous.sum(dim=1, keepdim=True) - previous))
        v.add_(a / neuron.tau_s)
        v.masked_fill_(ref > 0, 0.0)  # the refractory clamp acts after integration
        ref.sub_(1).clamp_(min=0)
        fired = v > threshold
        spikes[t] = fired
        ref.masked_fill_(fired, neuron.refractory)
        v.masked_fill_(fired, 0.0)  # v resets; the synaptic current a does not
    kernel = psp_kernel(spikes, neuron, window=window, physics_exact=physics_exact)
    return ScanResult(spikes, spikes.sum(dim=0), kernel)
