"""HM2-BP gradients of a recorded forward pass (spec section 4), through the trace factorisation.

Every S-PSP sum of section 4 is written with the factors of section 3.2, e_bij =
sum_p Kst_bi(p) Xst_bj(p) + 0.1 [o_i = 0 < o_j] (case 3.1 (d)), so that a layer's backward is a few
GEMMs over the P*T*B rows (section 6.2) and never a loop over neuron pairs:

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
from hm2bp.kernels.layers import Layer
from hm2bp.kernels.neuron import ScanResult
from hm2bp.kernels.output_error import OutputError
from hm2bp.kernels.psp_kernel import kernel_stack
from hm2bp.kernels.sparse_grad import WeightGrad, weight_grad
from hm2bp.kernels.spec import NetworkSpec
from hm2bp.kernels.traces import TraceScan, exp_trace, trace_stack

SILENT_POST_EFFECT = 0.1  # e_{i|j} of a silent post and an active pre (spec 3.1 (d))
SILENT_SIDE_EFFECT = 0.5  # rho^o of a silent post in the side effect (spec 4.5)
POOL_SCALE = 0.25  # pooling passes delta / 4 and never divides by its threshold (spec 4.8)


class LayerRecord(NamedTuple):
    """What the forward keeps of one layer: its input spikes `[T, B, N_in]`, its feed-forward
    current `[T, B, N_out]` (without lateral inhibition; None for pooling) and its scan."""

    inputs: torch.Tensor
    current: torch.Tensor | None
    scan: ScanResult


def regulariser(weight: torch.Tensor, spec: NetworkSpec) -> torch.Tensor:
    """lambda beta (w / L_w) exp(beta (q_i - 1)), q_i the mean of (w / L_w)^2 over the row of output
    neuron (conv: output channel) i (spec section 4.6)."""
    scaled = weight / spec.weight_limit
    rows = scaled.flatten(1)
    q = rows.square().mean(dim=1)
    factor = spec.reg_lambda * spec.reg_beta * torch.exp(spec.reg_beta * (q - 1.0))
    return (rows * factor[:, None]).view_as(weight)


def hm2bp_gradients(
    layers: list[Layer],
    records: list[LayerRecord],
    output: OutputError,
    spec: NetworkSpec,
    scan: TraceScan = exp_trace,
    fc_grad: WeightGrad = weight_grad,
) -> list[torch.Tensor]:
    """Gradients of the trained layers' weights, in layer order, top layer first in the math.

    The first layer after the data computes no preDelta (spec section 4.7). `scan` and `fc_grad`
    are the backend's trace scan and fc weight gradient.
    """
    delta = output.delta
    grads: list[torch.Tensor] = []
    for index in reversed(range(len(layers))):
        layer, record = layers[index], records[index]
        if index == len(layers) - 1:
            kernels, counts, lateral = output.kernels, output.counts, output.lateral
        else:
            kernels = (record.scan.k_main, record.scan.k_m, record.scan.k_s)
            counts, lateral = record.scan.counts, None
        grad, delta = layer_backward(
            layer,
            record,
            kernel_stack(*kernels),
            counts,
            delta,
            lateral,
            index > 0,
            spec,
            scan,
            fc_grad,
        )
        if grad is not None:
            grads.append(grad)
    return grads[::-1]


def layer_backward(
    layer: Layer,
    record: LayerRecord,
    kernel: torch.Tensor,
    counts: torch.Tensor,
    delta: torch.Tensor,
    lateral: torch.Tensor | None,
    need_previous: bool,
    spec: NetworkSpec,
    scan: TraceScan = exp_trace,
    fc_grad: WeightGrad = weight_grad,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(weight gradient or None, delta of the layer below `[B, N_in]` or None) of one layer.

    `kernel` `[P*T, B, N_out]` is the post factor of the S-PSP (`psp_kernel.kernel_stack`),
    `counts` `[B, N_out]` the post counts it belongs to, `delta` `[B, N_out]` the error handed down
    (the output error for the top layer). fc and output layers take the S-PSP part of their weight
    gradient from `fc_grad` (a sparse gather over gk's non-zeros when K is sparse enough,
    `sparse_grad.py`); conv layers from cuDNN's `conv2d_weight`.
    """
    trained = layer.spec.trained
    if not trained and not need_previous:
        return None, None
    # 1/nu once per fc/conv layer (spec 4.4); pooling divides by 4 instead (spec 4.8).
    delta = delta * (1.0 / layer.neuron.threshold if trained else POOL_SCALE)
    window = kernel.shape[0] != record.inputs.shape[0]  # P = 2: the window cut something
    traces = _traces(record.inputs, layer, window, spec, scan)
    pre_active = (record.inputs.sum(dim=0) > 0).to(delta.dtype)
    post_silent = (counts == 0).to(delta.dtype)
    grad = None
    if trained:
        side = side_effect(layer, record, kernel, counts, spec, scan)
        g = delta * (1.0 + side) * (1.0 if lateral is None else lateral)
        batch = delta.shape[0]
        if layer.spec.kind in ("fc", "output"):
            grad = fc_grad(traces, g * kernel)
        else:
            grad = layer.weight_grad(traces.flatten(0, 1), (g * kernel).flatten(0, 1))
        grad = grad + SILENT_POST_EFFECT * layer.weight_grad(pre_active, g * post_silent)
        grad = grad / batch + regulariser(layer.weight, spec)
    if not need_previous:
        return grad, None
    plain = layer.transpose(delta)
    # Without the effect ratio, fc layers pass delta~ W down; conv and pooling always use it (8.19).
    if layer.spec.kind in ("fc", "output") and not spec.effect_ratio:
        return grad, plain
    q = layer.transpose((delta * kernel).flatten(0, 1)).view_as(traces)
    pre_counts = record.inputs.sum(dim=0)
    ratio = (q * traces).sum(dim=0) / pre_counts.clamp(min=1)
    previous = torch.where(pre_counts > 0, ratio + layer.transpose(delta * post_silent), plain)
    return grad, previous


def side_effect(
    layer: Layer,
    record: LayerRecord,
    kernel: torch.Tensor,
    counts: torch.Tensor,
    spec: NetworkSpec,
    scan: TraceScan = exp_trace,
) -> torch.Tensor:
    """s `[B, N_out]` of spec section 4.5, from the traces of the layer's feed-forward current."""
    window = kernel.shape[0] != record.current.shape[0]
    filtered = _traces(record.current, layer, window, spec, scan)
    active = (kernel * filtered).sum(dim=0) / (layer.neuron.threshold * counts.clamp(min=1))
    silent = SILENT_SIDE_EFFECT * layer.row_sums() / layer.neuron.threshold
    return torch.where(counts > 0, active, silent)


def _traces(
    x: torch.Tensor, layer: Layer, window: bool, spec: NetworkSpec, scan: TraceScan
) -> torch.Tensor:
    """Pre traces `[P*T, B, N]` with the consuming layer's constants, P matching the kernel's."""
    return trace_stack(x, layer.neuron, window=window, physics_exact=spec.physics_exact, scan=scan)
