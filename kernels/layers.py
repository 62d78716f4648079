"""The layers' linear maps: how input spikes become a feed-forward current, and the transposes and
weight gradients the backward needs, all on flattened neurons `[M, N]` (M = T*B or P*T*B rows).

Every layer is a LIF population (`neuron.lif_scan`) driven by one of these maps (spec section 1.3):
fully connected (also the output layer), valid convolution (cross-correlation, channel-major
flatten, exactly `torch.flatten` of (C, H, W)), or pooling neurons driven by the sum of their 2x2
block with fixed weight 1. One map per layer means the backward has one formula for all of them
(spec section 6.2: GEMMs become `conv2d` / `conv2d_weight` / `conv_transpose2d`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from hm2bp.kernels.neuron import FC_SLACK
from hm2bp.kernels.spec import LayerSpec
from torch import nn

POOL = 2  # pooling size = stride (spec section 1.3)


def dense_current(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x W^T `[M, N_out]` of `x` `[M, N_in]` (spikes as uint8 or floats) and `weight`
    `[N_out, N_in]`: one GEMM in the weight's dtype."""
    return x.to(weight.dtype) @ weight.T


class Layer(nn.Module, ABC):
    """A linear map from `in_shape` to `out_shape` with the layer's neuron constants. Trained
    layers (`Dense`, `Conv`) also have `weight`, `weight_grad` and `row_sums`."""

    def __init__(self, spec: LayerSpec, in_shape: tuple[int, ...], name: str) -> None:
        super().__init__()
        self.spec = spec
        self.neuron = spec.neuron
        self.in_shape = in_shape
        self.name = name
        self.out_shape = self._output_shape()
        # Conv layers fire at v > nu, all others at v > nu - 1e-6 (spec sections 1.1, 8.10).
        self.slack = 0.0 if spec.kind == "conv" else FC_SLACK

    @property
    def n_in(self) -> int:
        return math.prod(self.in_shape)

    @property
    def n_out(self) -> int:
        return math.prod(self.out_shape)

    @abstractmethod
    def _output_shape(self) -> tuple[int, ...]: ...

    @abstractmethod
    def current(self, x: torch.Tensor) -> torch.Tensor:
        """Feed-forward current `[M, N_out]` of input spikes or traces `[M, N_in]`."""

    @abstractmethod
    def transpose(self, y: torch.Tensor) -> torch.Tensor:
        """The transposed map `[M, N_out] -> [M, N_in]` (sum_i y_i w_ij)."""


class Dense(Layer):
    """Fully connected (kinds "fc" and "output"): I = S W^T, W `[N_out, N_in]`."""

    def __init__(self, spec: LayerSpec, in_shape: tuple[int, ...], name: str) -> None:
        super().__init__(spec, in_shape, name)
        self.weight = nn.Parameter(torch.empty(spec.size, self.n_in))

    def _output_shape(self) -> tuple[int, ...]:
        return (self.spec.size,)

    def current(self, x: torch.Tensor) -> torch.Tensor:
        return dense_current(x, self.weight)

    def transpose(self, y: torch.Tensor) -> torch.Tensor:
        return y @ self.weight

    def weight_grad(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """sum_m y[m, i] x[m, j] `[N_out, N_in]`."""
        return y.T @ x

    def row_sums(self) -> torch.Tensor:
        """`[N_out]` sum_j w_ij."""
        return self.weight.sum(dim=1)


class Conv(Layer):
    """Valid cross-correlation, stride 1: I[o, x, y] = sum W[o, c, p, q] s[c, x + p, y + q]."""

    def __init__(self, spec: LayerSpec, in_shape: tuple[int, ...], name: str) -> None:
        super().__init__(spec, in_shape, name)
        k = spec.kernel
        self.weight = nn.Parameter(torch.empty(spec.size, in_shape[0], k, k))

    def _output_shape(self) -> tuple[int, ...]:
        channels, height, width = self.in_shape
        k = self.spec.kernel
        if k > height or k > width:
            raise ValueError(
                f"{self.name}.kernel: found {k}, expected at most the input's {height}x{width}"
            )
        return (self.spec.size, height - k + 1, width - k + 1)

    def current(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x.view(-1, *self.in_shape), self.weight).flatten(1)

    def transpose(self, y: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(y.view(-1, *self.out_shape), self.weight).flatten(1)

    def weight_grad(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """sum over rows and output positions of y[o, x, y] s[c, x + p, y + q], like W."""
        return torch.nn.grad.conv2d_weight(
            x.view(-1, *self.in_shape), self.weight.shape, y.view(-1, *self.out_shape)
        )

    def row_sums(self) -> torch.Tensor:
        """`[N_out]` the sum of each output channel's C_in*k*k weights, at every position."""
        per_channel = self.weight.sum(dim=(1, 2, 3))
        return per_channel.view(-1, 1, 1).expand(self.out_shape).flatten()


class Pool(Layer):
    """Pooling neurons: each is a LIF neuron driven by the sum of its 2x2 block (fixed weight 1,
    output size ceil(in / 2), spec section 1.3). Not trained."""

    def _output_shape(self) -> tuple[int, ...]:
        channels, height, width = self.in_shape
        return (channels, -(-height // POOL), -(-width // POOL))

    def current(self, x: torch.Tensor) -> torch.Tensor:
        channels, height, width = self.in_shape
        _, out_h, out_w = self.out_shape
        x = x.view(-1, *self.in_shape)
        x = F.pad(x, (0, out_w * POOL - width, 0, out_h * POOL - height))
        blocks = x.view(-1, channels, out_h, POOL, out_w, POOL)
        return blocks.sum(dim=(3, 5)).flatten(1)

    def transpose(self, y: torch.Tensor) -> torch.Tensor:
        _, height, width = self.in_shape
        y = y.view(-1, *self.out_shape)
        up = y.repeat_interleave(POOL, dim=2).repeat_interleave(POOL, dim=3)
        return up[:, :, :height, :width].flatten(1)


LAYER_TYPES: dict[str, type[Layer]] = {"fc": Dense, "output": Dense, "conv": Conv, "pool": Pool}


def build_layer(spec: LayerSpec, in_shape: tuple[int, ...], name: str) -> Layer:
    return LAYER_TYPES[spec.kind](spec, in_shape, name)
