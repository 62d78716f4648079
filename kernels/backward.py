"""HM2-BP gradients of a recorded forward pass (spec section 4), through the trace factorisation.

Every S-PSP sum of section 4 is written with the factors of section 3.2, e_bij =
sum_p Kst_bi(p) Xst_bj(p) + 0.1 [o_i = 0 < o_j] (case 3.1 (d)), so that a layer's backward is a few
GEMMs over the P*T*B rows (section 6.2), or sums over K's non-zeros (the CPU backend), and never a
loop over neuron pairs:

- side effect  s_i = [o_i > 0] sum_p Kst_i U_i / (nu o_i) + [o_i = 0] 0.5 sum_j w_ij / nu, with U
  the same traces of the feed-forward current (= sum_j w_ij Xst_j, no extra GEMM);
- weight grad  G = (1/B) [ (g Kst)^T Xst + 0.1 (g [o_out = 0])^T [o_in > 0] ] + Reg,
  g = delta~ (1 + s) L (L only in the output layer, spec 4.3);
- preDelta     delta_prev_j = [o_j > 0] (sum_p Q_j Xst_j / o_j + sum_i delta~_i [o_i = 0] w_ij)
  + [o_j = 0] sum_i delta~_i w_ij, with Q = (delta~ Kst) W (the effect ratio, spec 4.7).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from hm2bp.kernels.backend import Backend
from hm2bp.kernels.layers import Layer
from hm2bp.kernels.neuron import ScanResult
from hm2bp.kernels.output_error import OutputError
from hm2bp.kernels.psp_kernel import PspFactors
from hm2bp.kernels.spec import NetworkSpec
from hm2bp.kernels.spsp_sums import stacked_traces

SILENT_POST_EFFECT = 0.1  # e_{i|j} of a silent post and an active pre (spec 3.1 (d))
SILENT_SIDE_EFFECT = 0.5  # rho^o of a silent post in the side effect (spec 4.5)
POOL_SCALE = 0.25  # pooling passes delta / 4 and never divides by its threshold (spec 4.8)


class LayerRecord(NamedTuple):
    """What the forward keeps of one layer: its input spikes `[T, B, N_in]` (uint8 for the data,
    the scan's dtype above), its feed-forward current `[T, B, N_out]` (without lateral
    inhibition; None for pooling) and its scan."""

    inputs: torch.Tensor
    current: torch.Tensor | None
    scan: ScanResult


def regulariser(weight: torch.Tensor, spec: NetworkSpec) -> torch.Tensor:
    """lambda beta (w / L_w) exp(beta (q_i - 1)), q_i the mean of (w / L_w)^2 over the row of output
    neuron (conv: output channel) i (spec section 4.6). Two passes over the weights (a norm and a
    product), as it runs on every step whatever the batch."""
    rows = weight.flatten(1)
    limit = spec.weight_limit
    q = torch.linalg.vector_norm(rows, dim=1).square() / (rows.shape[1] * limit * limit)
    factor = (spec.reg_lambda * spec.reg_beta / limit) * torch.exp(spec.reg_beta * (q - 1.0))
    return (rows * factor[:, None]).view_as(weight)


def hm2bp_gradients(
    layers: list[Layer],
    records: list[LayerRecord],
    output: OutputError,
    spec: NetworkSpec,
    backend: Backend,
) -> list[torch.Tensor]:
    """Gradients of the trained layers' weights, in layer order, top layer first in the math.

    The first layer after the data computes no preDelta (spec section 4.7). `backend` computes the
    S-PSP sums (`spsp_sums.py` on the reference backend, `cpu_spsp.py` on the CPU backend).
    """
    delta = output.delta
    grads: list[torch.Tensor] = []
    for index in reversed(range(len(layers))):
        layer, record = layers[index], records[index]
        if index == len(layers) - 1:
            kernel, counts, lateral = output.kernel, output.counts, output.lateral
        else:
            kernel, counts, lateral = record.scan.kernel, record.scan.counts, None
        factors = PspFactors(kernel, layer.neuron, spec.physics_exact)
        below = records[index - 1].scan.counts if index > 0 else None
        grad, delta = layer_backward(
            layer, record, factors, counts, below, delta, lateral, spec, backend
        )
        if grad is not None:
            grads.append(grad)
    return grads[::-1]


def layer_backward(
    layer: Layer,
    record: LayerRecord,
    factors: PspFactors,
    counts: torch.Tensor,
    input_counts: torch.Tensor | None,
    delta: torch.Tensor,
    lateral: torch.Tensor | None,
    spec: NetworkSpec,
    backend: Backend,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(weight gradient or None, delta of the layer below `[B, N_in]` or None) of one layer.

    `factors` is the layer's side of the S-PSP, `counts` `[B, N_out]` the post counts it belongs
    to, `input_counts` `[B, N_in]` those of its input spikes (None for the data: the first layer
    passes no delta down, spec 4.7), `delta` `[B, N_out]` the error handed down (the output error
    for the top layer). fc and
    output layers take their S-PSP sums from `backend.fc_sums`; conv and pooling layers use the
    stacked traces with `conv2d_weight` and `conv_transpose2d` (spec section 6.2).
    """
    trained = layer.spec.trained
    need_previous = input_counts is not None
    if not trained and not need_previous:
        return None, None
    # 1/nu once per fc/conv layer (spec 4.4); pooling divides by 4 instead (spec 4.8).
    delta = delta * (1.0 / layer.neuron.threshold if trained else POOL_SCALE)
    dense = layer.spec.kind in ("fc", "output")
    # Without the effect ratio, fc layers pass delta~ W down; conv and pooling always use it (8.19).
    ratio_delta = delta if need_previous and (spec.effect_ratio or not dense) else None
    inputs = record.inputs if dense else record.inputs.to(delta.dtype)  # the data: uint8
    traces = None if dense else stacked_traces(inputs, factors, backend.exp_trace)
    post_silent = (counts == 0).to(delta.dtype)
    grad = ratio_sum = None
    if trained:
        side = side_effect(layer, record, factors, counts, backend)
        g = delta * (1.0 + side) * (1.0 if lateral is None else lateral)
        if dense:
            grad, ratio_sum = backend.fc_sums(record.inputs, factors, g, ratio_delta, layer.weight)
        else:
            kernel = (g * factors.stack()).flatten(0, 1)
            grad = layer.weight_grad(traces.flatten(0, 1), kernel)
        pre_active = _fired(record.inputs) if input_counts is None else input_counts > 0
        pre_active = pre_active.to(delta.dtype)
        grad = grad + SILENT_POST_EFFECT * layer.weight_grad(pre_active, g * post_silent)
        grad = grad / delta.shape[0] + regulariser(layer.weight, spec)
    if not need_previous:
        return grad, None
    plain = layer.transpose(delta)
    if ratio_delta is None:
        return grad, plain
    if ratio_sum is None:
        q = layer.transpose((delta * factors.stack()).flatten(0, 1)).view_as(traces)
        ratio_sum = (q * traces).sum(dim=0)
    ratio = ratio_sum / input_counts.clamp(min=1)
    previous = torch.where(input_counts > 0, ratio + layer.transpose(delta * post_silent), plain)
    return grad, previous


def _fired(data: torch.Tensor) -> torch.Tensor:
    """`[B, N]` whether each input of the data raster `[T, B, N]` fired at all (o > 0): `any`
    reduces torch's bytes about ten times faster than `sum` on the CPU."""
    return data.any(dim=0)


def side_effect(
    layer: Layer,
    record: LayerRecord,
    factors: PspFactors,
    counts: torch.Tensor,
    backend: Backend,
) -> torch.Tensor:
    """s `[B, N_out]` of spec section 4.5, from the traces of the layer's feed-forward current."""
    active = backend.side_sums(record.current, factors)
    active = active / (layer.neuron.threshold * counts.clamp(min=1))
    silent = SILENT_SIDE_EFFECT * layer.row_sums() / layer.neuron.threshold
    return torch.where(counts > 0, active, silent)
