"""The networks of the step benchmarks (`gpu_bench.py`, `engine_cpu.py`), built once from one
description for every engine.

An architecture is a tuple of layers (`Layer`), the same for hm2bp (a `NetworkSpec`), SpikingJelly
2.0 (`LIFNode(tau=64, decay_input=False, step_mode="m")`, its default backend) and snnTorch
(`Synaptic`, alpha = 1 - 1/tau_s, beta = 1 - 1/tau_m, reset to zero). Every engine gets the same
thresholds and the same count loss (sum over the outputs of (o - y)^2, targets 35 / 5), and one
"step" is forward + backward + Adam on a `[T, B, ...]` spike batch.

The competitors run layer by layer (all steps' currents in one GEMM or convolution over T*B, then
the neuron over time), which is SpikingJelly's multi-step mode and the fastest way to drive
snnTorch's per-step neuron. A pooling layer is a spiking neuron fed by the 2x2 sum in hm2bp (spec
section 1.3); the competitors use an average pool and a LIF with a quarter of the threshold, the
same thing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

TAU_M = 64.0
TAU_S = 8.0
DESIRED, UNDESIRED = 35.0, 5.0


@dataclass(frozen=True)
class Layer:
    """One layer: kind "fc" | "conv" | "pool" | "output"; size = neurons or output channels."""

    kind: str
    threshold: float
    size: int = 0
    kernel: int = 0


@dataclass(frozen=True)
class Architecture:
    name: str
    input_shape: tuple[int, ...]  # (N,) or (C, H, W)
    layers: tuple[Layer, ...]
    reg_lambda: float = 0.0
    reg_beta: float = 0.0


Step = Callable[[], None]

# The paper's networks (reference settings: thresholds, lambda, beta) and tiny ones for smoke runs.
MNIST_MLP = Architecture(
    "784-800-10", (784,), (Layer("fc", 20.0, 800), Layer("output", 8.0, 10)), 10.0, 0.04
)
NMNIST_MLP = Architecture(
    "2312-800-10", (2312,), (Layer("fc", 15.0, 800), Layer("output", 15.0, 10)), 10.0, 0.01
)
MNIST_CNN = Architecture(
    "15C5-P2-40C5-P2-300-10",
    (1, 28, 28),
    (
        Layer("conv", 5.0, 15, 5),
        Layer("pool", 2.0),
        Layer("conv", 12.0, 40, 5),
        Layer("pool", 4.0),
        Layer("fc", 10.0, 300),
        Layer("output", 10.0, 10),
    ),
)
SMOKE_MLP = Architecture("64-16-4", (64,), (Layer("fc", 2.0, 16), Layer("output", 2.0, 4)))
SMOKE_CNN = Architecture(
    "3C3-P2-4C2-P2-8-4",
    (1, 12, 12),
    (
        Layer("conv", 2.0, 3, 3),
        Layer("pool", 1.0),
        Layer("conv", 2.0, 4, 2),
        Layer("pool", 1.0),
        Layer("fc", 2.0, 8),
        Layer("output", 2.0, 4),
    ),
)


def hm2bp_spec(arch: Architecture):
    """The hm2bp `NetworkSpec` of `arch` (reference defaults otherwise: window emulated, w0 = 1)."""
    from hm2bp.kernels.spec import LayerSpec, NetworkSpec, NeuronConstants

    layers = tuple(
        LayerSpec(
            kind=layer.kind,
            neuron=NeuronConstants(threshold=layer.threshold),
            size=layer.size,
            kernel=layer.kernel,
            init_range=0.5 if layer.kind == "conv" else 1.0,
        )
        for layer in arch.layers
    )
    return NetworkSpec(
        input_shape=arch.input_shape,
        layers=layers,
        reg_lambda=arch.reg_lambda,
        reg_beta=arch.reg_beta,
    )


def hm2bp_step(
    arch: Architecture, spikes: torch.Tensor, labels: torch.Tensor, backend: str
) -> Step:
    from hm2bp.kernels.network import Network

    net = Network(hm2bp_spec(arch), seed=0, device=spikes.device, backend=backend)
    return _adam_step(net, lambda: net(spikes, labels).loss)


def _count_loss(spikes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    counts = spikes.sum(0)  # [B, n_classes]
    target = torch.full_like(counts, UNDESIRED)
    target.scatter_(1, labels[:, None], DESIRED)
    return ((counts - target) ** 2).sum(1).mean()


def _adam_step(model: nn.Module, forward: Callable[[], torch.Tensor]) -> Step:
    """One step: loss, backward (HM2-BP's gradient for hm2bp, BPTT for the others), Adam with the
    reference's settings (spec section 4.9)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)

    def step() -> None:
        forward().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def _flat_size(arch: Architecture, upto: int) -> int:
    """Neurons feeding layer `upto` (conv: valid, pool: ceil(n/2))."""
    shape = list(arch.input_shape)
    for layer in arch.layers[:upto]:
        if layer.kind == "conv":
            shape = [layer.size, shape[1] - layer.kernel + 1, shape[2] - layer.kernel + 1]
        elif layer.kind == "pool":
            shape = [shape[0], (shape[1] + 1) // 2, (shape[2] + 1) // 2]
        else:
            shape = [layer.size]
    n = 1
    for s in shape:
        n *= s
    return n


def _synapse(arch: Architecture, i: int, in_channels: int) -> nn.Module:
    """The torch module that turns layer i's input spikes into its current, [T*B, ...] in/out."""
    layer = arch.layers[i]
    if layer.kind == "conv":
        return nn.Conv2d(in_channels, layer.size, layer.kernel, bias=False)
    if layer.kind == "pool":
        return nn.AvgPool2d(2, ceil_mode=True)
    flat = _flat_size(arch, i)
    return nn.Sequential(nn.Flatten(), nn.Linear(flat, layer.size, bias=False))


def _threshold(layer: Layer) -> float:
    return layer.threshold / 4 if layer.kind == "pool" else layer.threshold


def _synapses(arch: Architecture) -> nn.ModuleList:
    channels = arch.input_shape[0]
    modules = []
    for i, layer in enumerate(arch.layers):
        modules.append(_synapse(arch, i, channels))
        if layer.kind == "conv":
            channels = layer.size
    return nn.ModuleList(modules)


def _over_time(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a per-sample module to [T, B, ...] by flattening T*B."""
    T, B = x.shape[:2]
    y = module(x.reshape(T * B, *x.shape[2:]))
    return y.reshape(T, B, *y.shape[1:])


def spikingjelly_step(arch: Architecture, spikes: torch.Tensor, labels: torch.Tensor) -> Step:
    from spikingjelly.activation_based import functional, neuron

    synapses = _synapses(arch)
    neurons = nn.ModuleList(
        neuron.LIFNode(tau=TAU_M, decay_input=False, v_threshold=_threshold(layer), step_mode="m")
        for layer in arch.layers
    )
    model = nn.ModuleList([synapses, neurons]).to(spikes.device)
    x0 = spikes.float()

    def forward() -> torch.Tensor:
        functional.reset_net(neurons)
        x = x0
        for synapse, lif in zip(synapses, neurons, strict=True):
            x = lif(_over_time(synapse, x))
        return _count_loss(x, labels)

    return _adam_step(model, forward)


def snntorch_step(arch: Architecture, spikes: torch.Tensor, labels: torch.Tensor) -> Step:
    import snntorch

    synapses = _synapses(arch)
    neurons = nn.ModuleList(
        snntorch.Synaptic(
            alpha=1 - 1 / TAU_S,
            beta=1 - 1 / TAU_M,
            threshold=_threshold(layer),
            reset_mechanism="zero",
        )
        for layer in arch.layers
    )
    model = nn.ModuleList([synapses, neurons]).to(spikes.device)
    x0 = spikes.float()

    def forward() -> torch.Tensor:
        x = x0
        for synapse, lif in zip(synapses, neurons, strict=True):
            current = _over_time(synapse, x)
            syn = torch.zeros_like(current[0])
            mem = torch.zeros_like(current[0])
            out = []
            for t in range(current.shape[0]):
                spk, syn, mem = lif(current[t], syn, mem)
                out.append(spk)
            x = torch.stack(out)
        return _count_loss(x, labels)

    return _adam_step(model, forward)


# Engines by name: "hm2bp-<backend>" or a competitor, with the module each needs beyond torch (the
# competitors and the compiled backends are not runtime dependencies of hm2bp).
ENGINE_MODULES = {
    "hm2bp-reference": None,
    "hm2bp-cpu": "numba",
    "hm2bp-triton": "triton",
    "spikingjelly": "spikingjelly",
    "snntorch": "snntorch",
}


def missing(engine: str) -> str:
    """Why `engine` cannot run here ("<module> not installed"), or "" when it can."""
    module = ENGINE_MODULES[engine]
    if module and importlib.util.find_spec(module) is None:
        return f"{module} not installed"
    return ""


def engine_step(
    engine: str, arch: Architecture, spikes: torch.Tensor, labels: torch.Tensor
) -> Step:
    """One training step of `engine` (a name of `ENGINE_MODULES`) on this batch."""
    if engine.startswith("hm2bp-"):
        return hm2bp_step(arch, spikes, labels, backend=engine.removeprefix("hm2bp-"))
    if engine == "spikingjelly":
        return spikingjelly_step(arch, spikes, labels)
    return snntorch_step(arch, spikes, labels)
