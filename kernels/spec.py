"""What a spiking network is, as frozen data: neuron constants, layers, targets, the whole network.

These dataclasses are the engine's only configuration, and also the `network` section of an
experiment config (`orchestration.config`): one set of limits, stated here. Each refuses bad values
on construction, all of them at once, so that a config or a caller learns every problem before any
tensor is allocated: `SpecError` lists them, each `field: got X (expected Y)`. Defaults are the
reference's (`hm2bp-spec.md` section 5): tau_m = 64, tau_s = 8, R = 2 steps, targets 35 / 5 / 5,
lateral strength w0 = 1, weight limit L_w = 8.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field
from typing import Literal

LayerKind = Literal["fc", "conv", "pool", "output"]
LAYER_KINDS = typing.get_args(LayerKind)


class SpecError(ValueError):
    """Every problem of one spec, each `field: got X (expected Y)`, in `problems`."""

    def __init__(self, spec: str, problems: list[str]) -> None:
        self.spec = spec
        self.problems = list(problems)
        super().__init__(f"{spec}: " + "; ".join(self.problems))

    def __reduce__(self):  # crosses Ray boundaries with its arguments
        return (SpecError, (self.spec, self.problems))


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Checked:
    """Runs the subclass's `problems()` after construction and raises them together."""

    def __post_init__(self) -> None:
        found = self.problems()
        if found:
            raise SpecError(type(self).__name__, found)


def _check(found: list[str], ok: bool, name: str, value: object, expected: str) -> None:
    if not ok:
        found.append(f"{name}: got {value!r} (expected {expected})")


@dataclass(frozen=True)
class NeuronConstants(_Checked):
    """One layer's LIF constants (spec section 1.1): threshold nu, time constants in steps, and the
    refractory period R in steps (also the S-PSP's pre-spike delay, spec section 3.1 (a))."""

    threshold: float
    tau_m: float = 64.0
    tau_s: float = 8.0
    refractory: int = 2

    def problems(self) -> list[str]:
        found: list[str] = []
        _check(
            found,
            _finite(self.threshold) and self.threshold > 0,
            "threshold",
            self.threshold,
            "a finite number > 0",
        )
        _check(found, _finite(self.tau_m) and self.tau_m > 1, "tau_m", self.tau_m, "> 1 step")
        _check(found, _finite(self.tau_s) and self.tau_s > 1, "tau_s", self.tau_s, "> 1 step")
        _check(
            found,
            self.tau_s != self.tau_m,
            "tau_s",
            self.tau_s,
            "a value different from tau_m (c = 1 / (1 - tau_s / tau_m) would be infinite)",
        )
        _check(
            found,
            _count(self.refractory) and self.refractory >= 1,
            "refractory",
            self.refractory,
            "an int >= 1 (steps)",
        )
        return found

    @property
    def c(self) -> float:
        """c = 1 / (1 - tau_s / tau_m), the PSP normalisation of spec section 0 (8/7 by default)."""
        return 1.0 / (1.0 - self.tau_s / self.tau_m)


@dataclass(frozen=True)
class LayerSpec(_Checked):
    """One layer. `size` is the neuron count (fc/output) or the number of output channels (conv);
    pooling is always 2x2 with stride 2 and has no weights (spec section 1.3). In a config the
    neuron's constants sit beside the layer's own keys (`inline`: `layers.0.threshold`)."""

    kind: LayerKind
    neuron: NeuronConstants = field(metadata={"inline": True})
    size: int = 0
    kernel: int = 0
    init_range: float = 1.0  # U(-r, r): the reference's 1 for fc/output, 0.5 for conv

    def problems(self) -> list[str]:
        found: list[str] = []
        _check(found, self.kind in LAYER_KINDS, "kind", self.kind, f"one of {LAYER_KINDS}")
        if not isinstance(self.neuron, NeuronConstants):
            found.append(f"neuron: got a {type(self.neuron).__name__} (expected NeuronConstants)")
        if self.kind != "pool":
            _check(
                found,
                _count(self.size) and self.size >= 1,
                "size",
                self.size,
                f"an int >= 1 for a {self.kind} layer",
            )
            _check(
                found,
                _finite(self.init_range) and self.init_range >= 0,
                "init_range",
                self.init_range,
                "a finite number >= 0",
            )
        if self.kind == "conv":
            _check(
                found,
                _count(self.kernel) and self.kernel >= 1,
                "kernel",
                self.kernel,
                "an int >= 1 for a conv layer",
            )
        return found

    @property
    def trained(self) -> bool:
        return self.kind != "pool"


@dataclass(frozen=True)
class TargetSpec(_Checked):
    """Desired / undesired output spike counts and the dead-zone margin (spec section 4.1)."""

    desired: float = 35.0
    undesired: float = 5.0
    margin: float = 5.0

    def problems(self) -> list[str]:
        found: list[str] = []
        for name in ("desired", "undesired", "margin"):
            value = getattr(self, name)
            _check(found, _finite(value) and value >= 0, name, value, "a number >= 0")
        if _finite(self.desired) and 0 <= self.desired < 1:
            found.append(f"desired: got {self.desired!r} (expected >= 1 spike)")
        return found


@dataclass(frozen=True)
class NetworkSpec(_Checked):
    """A feed-forward spiking network and the options of its HM2-BP backward.

    `window` emulates the reference's 4*tau_m look-back window exactly (spec section 3.2);
    `physics_exact` swaps the reference S-PSP for the discrete-exact one (spec section 3.4, a
    deliberate deviation, which has no window); `effect_ratio` is the reference's EFFECT_RATIO
    switch for fully connected layers (spec section 4.7; conv and pool always use it).
    """

    input_shape: tuple[int, ...]  # (n_inputs,) for MLPs; (C, H, W) for CNNs
    layers: tuple[LayerSpec, ...]
    targets: TargetSpec = field(default_factory=TargetSpec)
    lateral_strength: float = 1.0  # w0; 0 disables lateral inhibition
    reg_lambda: float = 0.0  # spec 4.6
    reg_beta: float = 0.0
    weight_limit: float = 8.0
    window: bool = True
    effect_ratio: bool = True
    physics_exact: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        object.__setattr__(self, "layers", tuple(self.layers))
        super().__post_init__()

    def problems(self) -> list[str]:
        found: list[str] = []
        shape = self.input_shape
        _check(
            found,
            len(shape) in (1, 3) and all(_count(n) and n >= 1 for n in shape),
            "input_shape",
            list(shape),
            "[n_inputs] or [C, H, W] of positive ints",
        )
        if not self.layers:
            found.append("layers: got none (expected at least the output layer)")
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, LayerSpec):
                found.append(f"layers.{i}: got a {type(layer).__name__} (expected a LayerSpec)")
        if found:
            return found
        kinds = [layer.kind for layer in self.layers]
        if kinds[-1] != "output":
            found.append(f"layers.{len(kinds) - 1}.kind: got {kinds[-1]!r} (expected 'output')")
        found += [
            f"layers.{i}.kind: got 'output' before the last layer (expected exactly one "
            "output layer, the last)"
            for i, kind in enumerate(kinds[:-1])
            if kind == "output"
        ]
        spatial = len(shape) == 3
        for i, kind in enumerate(kinds):
            if kind in ("conv", "pool") and not spatial:
                found.append(
                    f"layers.{i}.kind: got {kind!r} (expected conv and pool only on "
                    "[C, H, W] inputs and before any fc layer)"
                )
            spatial = spatial and kind in ("conv", "pool")
        if not isinstance(self.targets, TargetSpec):
            found.append(f"targets: got a {type(self.targets).__name__} (expected a TargetSpec)")
        for name in ("lateral_strength", "reg_lambda", "reg_beta"):
            value = getattr(self, name)
            _check(found, _finite(value) and value >= 0, name, value, "a number >= 0")
        _check(
            found,
            _finite(self.weight_limit) and self.weight_limit > 0,
            "weight_limit",
            self.weight_limit,
            "a number > 0",
        )
        for name in ("window", "effect_ratio", "physics_exact"):
            value = getattr(self, name)
            _check(found, isinstance(value, bool), name, value, "a bool")
        return found

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
