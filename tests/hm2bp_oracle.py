"""The literal HM2-BP backward of `hm2bp-spec.md` section 4 (summary 4.11), pair by pair.

Every layer is written as its list of connections (post i, pre j, weight index k; k = None for the
fixed weight 1 of pooling), and every formula of section 4 is a Python loop over those connections
with the per-pair S-PSP of `spsp_oracle.py`. Nothing here shares code with the engine's
factorisation, so agreement checks the factorisation, the GEMM formulation and the special cases.
"""

from __future__ import annotations

import math

import numpy as np
from hm2bp.kernels.spec import NetworkSpec
from hm2bp.tests.spsp_oracle import spsp_pair


def connections(kind: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...], kernel: int):
    """[(i, j, k)] of a layer: flat post index, flat pre index, flat weight index (None: w = 1)."""
    if kind in ("fc", "output"):
        n_in, n_out = math.prod(in_shape), out_shape[0]
        return [(i, j, i * n_in + j) for i in range(n_out) for j in range(n_in)]
    channels, height, width = in_shape
    out_c, out_h, out_w = out_shape
    result = []
    for o in range(out_c):
        for x in range(out_h):
            for y in range(out_w):
                i = (o * out_h + x) * out_w + y
                if kind == "pool":
                    for dx in range(2):
                        for dy in range(2):
                            if 2 * x + dx < height and 2 * y + dy < width:
                                j = (o * height + 2 * x + dx) * width + 2 * y + dy
                                result.append((i, j, None))
                    continue
                for c in range(channels):
                    for p in range(kernel):
                        for q in range(kernel):
                            j = (c * height + x + p) * width + y + q
                            k = ((o * channels + c) * kernel + p) * kernel + q
                            result.append((i, j, k))
    return result


def times(raster: np.ndarray) -> list[list[int]]:
    """Spike times per neuron of a `[T, N]` raster."""
    return [np.flatnonzero(raster[:, n]).tolist() for n in range(raster.shape[1])]


def literal_gradients(
    spec: NetworkSpec,
    shapes: list[tuple[tuple[int, ...], tuple[int, ...]]],
    weights: list[np.ndarray | None],
    rasters: list[np.ndarray],
    labels: list[int],
    sample_weights: list[float],
) -> list[np.ndarray]:
    """Weight gradients (batch mean + regulariser) of the trained layers, in layer order.

    `rasters[0]` is the input `[T, B, N_in]`, `rasters[k + 1]` layer k's output `[T, B, N_k]`;
    `weights[k]` layer k's weight (None for pooling); `shapes[k]` its (in_shape, out_shape).
    """
    steps, batch = rasters[0].shape[:2]
    n_layers = len(spec.layers)
    grads = [None if w is None else np.zeros(w.size) for w in weights]
    for b in range(batch):
        delta, lateral, top_raster = _output_error(spec, rasters[-1][:, b], labels[b], steps)
        delta = delta * sample_weights[b]
        for index in reversed(range(n_layers)):
            layer = spec.layers[index]
            post = top_raster if index == n_layers - 1 else rasters[index + 1][:, b]
            pre = rasters[index][:, b]
            conns = connections(layer.kind, *shapes[index], layer.kernel)
            flat_w = None if weights[index] is None else weights[index].ravel()
            delta = _layer(
                spec, index, conns, flat_w, post, pre, delta, lateral, grads[index], batch
            )
            lateral = None
    result = []
    for index, g in enumerate(grads):
        if g is not None:
            w = weights[index]
            result.append(g.reshape(w.shape) + _regulariser(w, spec))
    return result


def _output_error(spec: NetworkSpec, spikes: np.ndarray, label: int, steps: int):
    """delta (original counts), L (original spikes), and the raster with the fake target train."""
    neuron = spec.layers[-1].neuron
    n = spikes.shape[1]
    counts = spikes.sum(axis=0)
    targets = spec.targets
    delta = np.zeros(n)
    for i in range(n):
        y = targets.desired if i == label else targets.undesired
        if abs(counts[i] - y) > targets.margin:
            delta[i] = counts[i] - y
    lateral = np.ones(n)
    if spec.lateral_strength:
        spike_times = times(spikes)

        def ratio(j, l_):  # ratio(j -> l) = e_{l|j} / o_j when both fire
            if counts[j] > 0 and counts[l_] > 0:
                e = spsp_pair(spike_times[l_], spike_times[j], neuron, window=spec.window,
                              physics_exact=spec.physics_exact)  # fmt: skip
                return e / counts[j]
            return 1.0

        d = [1 / neuron.threshold if (counts[j] > 0 or j == label) else 0.0 for j in range(n)]
        for j in range(n):
            s = sum(ratio(j, l_) * ratio(l_, j) * d[l_] * d[j] for l_ in range(n) if l_ != j)
            denominator = 1 - spec.lateral_strength**2 * s
            lateral[j] = 1 / max(denominator, 0.1)
    modified = spikes.copy()
    if counts[label] == 0:
        interval = steps // int(targets.desired)
        modified[interval::interval, label] = 1
    return delta, lateral, modified


def _layer(spec, index, conns, flat_w, post, pre, delta, lateral, grad, batch):
    layer = spec.layers[index]
    neuron = layer.neuron
    trained = flat_w is not None
    delta_t = delta / neuron.threshold if trained else delta / 4
    o_post, o_pre = post.sum(axis=0), pre.sum(axis=0)
    post_t, pre_t = times(post), times(pre)
    e = {
        (i, j): spsp_pair(
            post_t[i], pre_t[j], neuron, window=spec.window, physics_exact=spec.physics_exact
        )  # fmt: skip
        for i, j, _ in conns
    }
    if trained:
        side = np.zeros(post.shape[1])
        for i, j, k in conns:
            rho = e[i, j] / o_post[i] if o_post[i] > 0 else 0.5
            side[i] += flat_w[k] * rho / neuron.threshold
        for i, j, k in conns:
            factor = 1.0 if lateral is None else lateral[i]
            grad[k] += delta_t[i] * e[i, j] * (1 + side[i]) * factor / batch
    if index == 0:
        return None
    previous = np.zeros(pre.shape[1])
    ratio_always = layer.kind in ("conv", "pool") or spec.effect_ratio
    for i, j, k in conns:
        w = 1.0 if k is None else flat_w[k]
        both = o_post[i] > 0 and o_pre[j] > 0
        rho = e[i, j] / o_pre[j] if (both and ratio_always) else 1.0
        previous[j] += delta_t[i] * w * rho
    return previous


def _regulariser(w: np.ndarray, spec: NetworkSpec) -> np.ndarray:
    rows = w.reshape(w.shape[0], -1)
    out = np.zeros_like(rows)
    for i in range(rows.shape[0]):
        q = np.mean((rows[i] / spec.weight_limit) ** 2)
        for j in range(rows.shape[1]):
            out[i, j] = (
                spec.reg_lambda
                * spec.reg_beta
                * (rows[i, j] / spec.weight_limit)
                * math.exp(spec.reg_beta * (q - 1))
            )
    return out.reshape(w.shape)
