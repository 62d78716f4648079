"""What a spiking network is, as frozen data: neuron constants, layers, targets, the whole network.

These dataclasses are the engine's only configuration; they validate themselves on construction so
that a bad value is refused with the field's name before any tensor is allocated. Defaults are the
reference's (`hm2bp-spec.md` section 5): tau_m = 64, tau_s = 8, R = 2 steps, targets 35 / 5 / 5,
lateral strength w0 = 1, weight limit L_w = 8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

LAYER_KINDS = ("fc", "conv", "pool", "output")


def _require(condition: bool, where: str, found: object, expected: str) -> None:
    if not condition:
        raise ValueError(f"{where}: found {found!r}, expected {expected}")


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class NeuronConstants:
    """One layer's LIF constants (spec section 1.1): threshold nu, time constants in steps, and the
    refractory period R in steps (also the S-PSP's pre-spike delay, spec section 3.1 (a))."""

    threshold: float
    tau_m: float = 64.0
    tau_s: float = 8.0
    refractory: int = 2

    def __post_init__(self) -> None:
        _require(
            _finite(self.threshold) and self.threshold > 0,
            "NeuronConstants.threshold",
            self.threshold,
            "a finite number > 0",
        )
        _require(
            _finite(self.tau_m) and self.tau_m > 1, "NeuronConstants.tau_m", self.tau_m, "> 1 step"
        )
        _require(
            _finite(self.tau_s) and self.tau_s > 1, "NeuronConstants.tau_s", self.tau_s, "> 1 step"
        )
        _require(
            self.tau_s != self.tau_m,
            "NeuronConstants.tau_s",
            self.tau_s,
            "a value different from tau_m (c = 1 / (1 - tau_s / tau_m) would be infinite)",
        )
        _require(
            isinstance(self.refractory, int)
            and not isinstance(self.refractory, bool)
            and self.refractory >= 1,
            "NeuronConstants.refractory",
            self.refractory,
            "an int >= 1 (steps)",
        )

    @property
    def c(self) -> float:
        """c = 1 / (1 - tau_s / tau_m), the PSP normalisation of spec section 0 (8/7 by default)."""
        return 1.0 / (1.0 - self.tau_s / self.tau_m)


@dataclass(frozen=True)
class LayerSpec:
    """One layer. `size` is the neuron count (fc/output) or the number of output channels (conv);
    pooling is always 2x2 with stride 2 and has no weights (spec section 1.3)."""

    kind: str
    neuron: NeuronConstants
    size: int = 0
    kernel: int = 0
    init_range: float = 1.0

    def __post_init__(self) -> None:
        _require(self.kind in LAYER_KINDS, "LayerSpec.kind", self.kind, f"one of {LAYER_KINDS}")
        _require(
            isinstance(self.neuron, NeuronConstants),
            "LayerSpec.neuron",
            type(self.neuron).__name__,
            "a NeuronConstants",
        )
        if self.kind != "pool":
            _require(
                isinstance(self.size, int) and self.size >= 1,
                f"LayerSpec.size ({self.kind})",
                self.size,
                "an int >= 1",
            )
            _require(
                _finite(self.init_range) and self.init_range >= 0,
                "LayerSpec.init_range",
                self.init_range,
                "a finite number >= 0",
            )
        if self.kind == "conv":
            _require(
                isinstance(self.kernel, int) and self.kernel >= 1,
                "LayerSpec.kernel (conv)",
                self.kernel,
                "an int >= 1",
            )

    @property
    def trained(self) -> bool:
        return self.kind != "pool"


@dataclass(frozen=True)
class TargetSpec:
    """Desired / undesired output spike counts and the dead-zone margin (spec section 4.1)."""

    desired: float = 35.0
    undesired: float = 5.0
    margin: float = 5.0

    def __post_init__(self) -> None:
        for name in ("desired", "undesired", "margin"):
            value = getattr(self, name)
            _require(_finite(value) and value >= 0, f"TargetSpec.{name}", value, "a number >= 0")
        _require(self.desired >= 1, "TargetSpec.desired", self.desired, ">= 1 spike")


@dataclass(frozen=True)
class NetworkSpec:
    """A feed-forward spiking network and the options of its HM2-BP backward.

    `window` emulates the reference's 4*tau_m look-back window exactly (spec section 3.2);
    `physics_exact` swaps the reference S-PSP for the discrete-exact one (spec section 3.4, a
    deliberate deviation, which has no window); `effect_ratio` is the reference's EFFECT_RATIO
    switch for fully connected layers (spec section 4.7; conv and pool always use it).
    """

    input_shape: tuple[int, ...]
    layers: tuple[LayerSpec, ...]
    targets: TargetSpec = field(default_factory=TargetSpec)
    lateral_strength: float = 1.0
    reg_lambda: float = 0.0
    reg_beta: float = 0.0
    weight_limit: float = 8.0
    window: bool = True
    effect_ratio: bool = True
    physics_exact: bool = False

    def __post_init__(self) -> None:
        shape = tuple(self.input_shape)
        _require(
            len(shape) in (1, 3) and all(isinstance(n, int) and n >= 1 for n in shape),
            "NetworkSpec.input_shape",
            self.input_shape,
            "(n_inputs,) or (C, H, W) of positive ints",
        )
        object.__setattr__(self, "input_shape", shape)
        layers = tuple(self.layers)
        object.__setattr__(self, "layers", layers)
        _require(len(layers) >= 1, "NetworkSpec.layers", layers, "at least the output layer")
        for i, layer in enumerate(layers):
            _require(
                isinstance(layer, LayerSpec),
                f"NetworkSpec.layers[{i}]",
                type(layer).__name__,
                "a LayerSpec",
            )
        kinds = [layer.kind for layer in layers]
        _require(kinds[-1] == "output", "NetworkSpec.layers[-1].kind", kinds[-1], '"output"')
        _require(
            "output" not in kinds[:-1],
            "NetworkSpec.layers",
            kinds,
            'exactly one "output" layer, the last',
        )
        spatial = len(shape) == 3
        for i, kind in enumerate(kinds):
            if kind in ("conv", "pool"):
                _require(
                    spatial,
                    f"NetworkSpec.layers[{i}].kind",
                    kind,
                    "conv/pool only on (C, H, W) inputs and before any fc layer",
                )
            else:
                spatial = False
        _require(
            isinstance(self.targets, TargetSpec),
            "NetworkSpec.targets",
            type(self.targets).__name__,
            "a TargetSpec",
        )
        for name in ("lateral_strength", "reg_lambda", "reg_beta"):
            value = getattr(self, name)
            _require(_finite(value) and value >= 0, f"NetworkSpec.{name}", value, "a number >= 0")
        _require(
            _finite(self.weight_limit) and self.weight_limit > 0,
            "NetworkSpec.weight_limit",
            self.weight_limit,
            "a number > 0",
        )
        for name in ("window", "effect_ratio", "physics_exact"):
            value = getattr(self, name)
            _require(isinstance(value, bool), f"NetworkSpec.{name}", value, "a bool")

    @property
    def n_inputs(self) -> int:
        return math.prod(self.input_shape)

    @property
    def n_classes(self) -> int:
        return self.layers[-1].size

    @property
    def window_emulated(self) -> bool:
        """The look-back window applies to the reference S-PSP only (spec sections 3.2, 3.4)."""
        return self.window and not self.physics_exact
