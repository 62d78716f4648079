"""The literal per-pair S-PSP of `hm2bp-spec.md` section 3.1 (and 3.4), the slow oracle.

Written straight from the spec's double sum over post-spikes f and pre-spikes q, in plain Python
floats (float64), with no traces or kernels, so that the engine's factorisation (sections 3.2,
6.2) is checked against an independent reading of the definition.
"""

from __future__ import annotations

import math

import numpy as np
from hm2bp.kernels.spec import NeuronConstants

SILENT_POST_EFFECT = 0.1


def kappa(s: float, delta: float, neuron: NeuronConstants) -> float:
    """kappa(s, Delta) of spec section 3.1: the SRM kernel with the window starting s before t_f."""
    short = min(s, delta)
    return (
        neuron.c
        * math.exp(-max(delta - s, 0.0) / neuron.tau_s)
        * (math.exp(-short / neuron.tau_m) - math.exp(-short / neuron.tau_s))
    )


def spsp_pair(
    post: list[int],
    pre: list[int],
    neuron: NeuronConstants,
    *,
    window: bool = True,
    physics_exact: bool = False,
) -> float:
    """e_{i|j} for sorted post- and pre-spike times (with the post layer's constants)."""
    if not post:
        return SILENT_POST_EFFECT if pre else 0.0
    if physics_exact:
        return _physics_pair(post, pre, neuron)
    total = 0.0
    for f, t_f in enumerate(post):
        r_f = 1 if f == 0 else post[f - 1] + neuron.refractory
        s_f = t_f - r_f
        lower = max(1, math.floor(t_f - 4 * neuron.tau_m)) if window else 1
        for q in pre:
            if lower <= q < t_f and q + neuron.refractory <= t_f:
                total += kappa(s_f, t_f - (q + neuron.refractory), neuron)
    return total


def _physics_pair(post: list[int], pre: list[int], neuron: NeuronConstants) -> float:
    """Spec section 3.4: the exact contribution of each pre-spike q to v, summed from the step after
    the window start r'_f (r'_1 = 0, r'_f = t_{f-1} + R) to t_f, step by step."""
    a = 1.0 - 1.0 / neuron.tau_m
    b = 1.0 - 1.0 / neuron.tau_s
    total = 0.0
    for f, t_f in enumerate(post):
        r_f = 0 if f == 0 else post[f - 1] + neuron.refractory
        for q in pre:
            for step in range(max(r_f, q) + 1, t_f + 1):
                total += a ** (t_f - step) * b ** (step - 1 - q) / neuron.tau_s
    return total


def spsp_matrix(
    post_spikes: np.ndarray,
    pre_spikes: np.ndarray,
    neuron: NeuronConstants,
    *,
    window: bool = True,
    physics_exact: bool = False,
) -> np.ndarray:
    """E `[N_out, N_in]` from rasters `[T, N_out]` and `[T, N_in]` of one sample, pair by pair."""
    post_times = [np.flatnonzero(post_spikes[:, i]).tolist() for i in range(post_spikes.shape[1])]
    pre_times = [np.flatnonzero(pre_spikes[:, j]).tolist() for j in range(pre_spikes.shape[1])]
    return np.array(
        [
            [
                spsp_pair(post, pre, neuron, window=window, physics_exact=physics_exact)
                for pre in pre_times
            ]
            for post in post_times
        ]
    )
