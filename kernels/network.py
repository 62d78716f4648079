"""The spiking network as a torch module: forward records what HM2-BP needs, `loss.backward()`
puts the HM2-BP gradients into `.grad`.

The forward computes every layer's input current for all B*T steps in one call (a GEMM, the CPU
backend's event-driven sum, or a convolution) and then scans the neurons over time (spec sections
1.1, 6.2). The backward is not autograd's: the loss
is the output of a `torch.autograd.Function` whose inputs are the weights and whose backward returns
the HM2-BP gradients of `backward.hm2bp_gradients`, so DDP's all-reduce hooks, optimizers and
gradient scaling all work unchanged.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from hm2bp.kernels.backend import load_backend
from hm2bp.kernels.backward import LayerRecord, hm2bp_gradients
from hm2bp.kernels.layers import Dense, Layer, build_layer
from hm2bp.kernels.neuron import ScanResult
from hm2bp.kernels.output_error import OutputError, output_error
from hm2bp.kernels.precision import ieee_float32
from hm2bp.kernels.spec import NetworkSpec
from torch import nn

SPIKE_DTYPES = (
    torch.bool,
    torch.uint8,
    torch.float16,
    torch.bfloat16,
    torch.float32,
    torch.float64,
)


class StepOutput(NamedTuple):
    """`counts` `[B, n_classes]` original output counts; `predictions` `[B]` argmax (ties to the
    lowest index, all silent -> 0, spec 1.4); `loss` batch mean of the cost after fake spikes (spec
    4.1) or None; `stats` mean spikes and silent fraction per layer, lateral guard triggers;
    `spikes` per layer rasters `[T, B, *shape]` (uint8)."""

    counts: torch.Tensor
    predictions: torch.Tensor
    loss: torch.Tensor | None
    stats: dict[str, float]
    spikes: tuple[torch.Tensor, ...]


class Network(nn.Module):
    """A feed-forward spiking network trained with HM2-BP. Parameters are `layers.<i>.weight`."""

    def __init__(
        self,
        spec: NetworkSpec,
        *,
        seed: int | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        backend: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(spec, NetworkSpec):
            raise TypeError(f"spec: found {type(spec).__name__}, expected a NetworkSpec")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype: found {dtype}, expected torch.float32 or torch.float64")
        self.spec = spec
        self.backend = load_backend(backend, device)
        layers: list[Layer] = []
        shape = spec.input_shape
        seen: dict[str, int] = {}
        for layer_spec in spec.layers:
            number = seen.get(layer_spec.kind, 0)
            seen[layer_spec.kind] = number + 1
            name = "output" if layer_spec.kind == "output" else f"{layer_spec.kind}{number}"
            layer = build_layer(layer_spec, shape, name)
            layers.append(layer)
            shape = layer.out_shape
        self.layers = nn.ModuleList(layers)
        self.to(device=device, dtype=dtype)
        self.reset_parameters(seed)

    @property
    def dtype(self) -> torch.dtype:
        return self.layers[-1].weight.dtype

    @property
    def device(self) -> torch.device:
        return self.layers[-1].weight.device

    def reset_parameters(self, seed: int | None = None) -> None:
        """U(-init_range, +init_range) per layer (the reference's "Bernoulli" init, spec 4.9)."""
        generator = torch.Generator()
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        with torch.no_grad():
            for layer in self.trained_layers():
                bound = layer.spec.init_range
                values = torch.rand(layer.weight.shape, generator=generator, dtype=torch.float64)
                layer.weight.copy_(values * 2 * bound - bound)

    def trained_layers(self) -> list[Layer]:
        return [layer for layer in self.layers if layer.spec.trained]

    def forward(
        self,
        spikes: torch.Tensor,
        labels: torch.Tensor | None = None,
        sample_weights: torch.Tensor | None = None,
    ) -> StepOutput:
        """Run `spikes` `[T, B, *input_shape]` or `[T, B, n_inputs]` (0/1; bool, uint8 or float).

        With `labels` `[B]`, `loss.backward()` fills `.grad` with the HM2-BP gradient (batch mean
        plus regulariser); `sample_weights` `[B]` (boosting, spec 4.10) multiply the output error.
        Without gradients (`torch.no_grad()`, as in validation) nothing is kept for a backward: a
        layer's input and current (`[T, B, N]` each) are freed as soon as its scan no longer needs
        them, so the peak is one layer's, not the whole network's (docs/benchmarks.md).
        """
        x = self._check_spikes(spikes)
        steps, batch = x.shape[:2]
        backward = labels is not None and torch.is_grad_enabled()
        records: list[LayerRecord] = []  # every layer's, for a backward
        stats: dict[str, float] = {}
        rasters = []
        scan = None
        with torch.no_grad():
            for layer in self.layers:
                if backward:
                    records.append(self._layer_forward(layer, x))
                    scan = records[-1].scan
                else:
                    current = self._current(layer, x)
                    x = scan = None  # the input: the previous scan's spikes, freed before this scan
                    scan = self._scan(layer, current)
                    del current
                x = scan.spikes
                stats.update(self._stats(layer, scan.counts))
                rasters.append(x.to(torch.uint8).view(steps, batch, *layer.out_shape))
        counts = scan.counts
        loss = None
        if labels is not None:
            labels, weights = self._check_targets(labels, sample_weights, batch)
            with torch.no_grad():
                error = output_error(scan, labels, weights, self.spec, self._trace)
            stats["lateral_guard_triggers"] = float(error.guard_triggers)
            loss = self._attach_gradient(records, error) if backward else error.loss.detach()
        else:
            stats["lateral_guard_triggers"] = 0.0
        return StepOutput(counts, counts.argmax(dim=1), loss, stats, tuple(rasters))

    def _trace(self, x: torch.Tensor, decay: float) -> torch.Tensor:
        return self.backend.exp_trace(x, decay)

    def _layer_forward(self, layer: Layer, x: torch.Tensor) -> LayerRecord:
        """A layer's record for the backward: its input `[T, B, N_in]`, current and scan."""
        current = self._current(layer, x)
        return LayerRecord(x.reshape(*x.shape[:2], -1), current, self._scan(layer, current))

    def _current(self, layer: Layer, x: torch.Tensor) -> torch.Tensor:
        """The current `[T, B, N_out]` of all T*B steps at once (fc layers: the backend's
        `fc_current`, a GEMM or the CPU backend's event-driven sum; conv and pooling: the
        layer's map; spec 1.1, 6.2)."""
        steps, batch = x.shape[:2]
        flat = x.reshape(steps * batch, -1)
        with ieee_float32():  # never TF32 here: spikes are discontinuous in the current
            if isinstance(layer, Dense):
                current = self.backend.fc_current(flat, layer.weight)
            else:
                current = layer.current(flat.to(self.dtype))
        return current.view(steps, batch, -1)

    def _scan(self, layer: Layer, current: torch.Tensor) -> ScanResult:
        """The layer's neurons scanned over T (spec 1.1): lateral inhibition at the output."""
        lateral = self.spec.lateral_strength if layer.spec.kind == "output" else 0.0
        return self.backend.lif_scan(
            current,
            layer.neuron,
            layer.slack,
            lateral,
            window=self.spec.window_emulated,
            physics_exact=self.spec.physics_exact,
        )

    def _attach_gradient(self, records: list[LayerRecord], error: OutputError) -> torch.Tensor:
        layers = list(self.layers)
        weights = [layer.weight for layer in self.trained_layers()]

        def gradients() -> list[torch.Tensor]:
            with torch.no_grad():
                return hm2bp_gradients(layers, records, error, self.spec, self.backend)

        return _HM2BPGradient.apply(error.loss, gradients, *weights)

    @staticmethod
    def _stats(layer: Layer, counts: torch.Tensor) -> dict[str, float]:
        return {
            f"{layer.name}/mean_spikes": float(counts.mean()),
            f"{layer.name}/silent_fraction": float((counts == 0).to(counts.dtype).mean()),
        }

    def _check_spikes(self, spikes: torch.Tensor) -> torch.Tensor:
        if not isinstance(spikes, torch.Tensor):
            raise TypeError(f"spikes: found {type(spikes).__name__}, expected a torch.Tensor")
        shape = tuple(spikes.shape)
        spec_shape = self.spec.input_shape
        if shape[2:] not in (spec_shape, (self.spec.n_inputs,)) or min(shape[:2], default=0) < 1:
            raise ValueError(
                f"spikes: found shape {shape}, expected [T, B, *{spec_shape}] or "
                f"[T, B, {self.spec.n_inputs}] with T, B >= 1"
            )
        if spikes.dtype not in SPIKE_DTYPES:
            raise TypeError(f"spikes: found dtype {spikes.dtype}, expected bool, uint8 or float")
        if not _binary(spikes):
            raise ValueError("spikes: found values other than 0 and 1, expected a binary raster")
        # One byte per input and step: the layers convert what they need (`fc_current` reads the
        # bytes as they are on the CPU backend).
        x = spikes.to(device=self.device, dtype=torch.uint8)
        return x.view(shape[0], shape[1], *spec_shape)

    def _check_targets(
        self, labels: torch.Tensor, sample_weights: torch.Tensor | None, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n_classes = self.spec.n_classes
        if not isinstance(labels, torch.Tensor) or labels.shape != (batch,):
            found = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels)
            raise ValueError(f"labels: found {found}, expected a tensor of shape ({batch},)")
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise TypeError(f"labels: found dtype {labels.dtype}, expected an integer dtype")
        if bool(((labels < 0) | (labels >= n_classes)).any()):
            raise ValueError(
                f"labels: found {labels.tolist()}, expected classes in [0, {n_classes})"
            )
        labels = labels.to(device=self.device, dtype=torch.long)
        if sample_weights is None:
            return labels, torch.ones(batch, dtype=self.dtype, device=self.device)
        if not isinstance(sample_weights, torch.Tensor) or sample_weights.shape != (batch,):
            raise ValueError(f"sample_weights: expected a tensor of shape ({batch},)")
        weights = sample_weights.to(device=self.device, dtype=self.dtype)
        if not bool(torch.isfinite(weights).all() & (weights >= 0).all()):
            raise ValueError("sample_weights: found negative or non-finite values, expected >= 0")
        return labels, weights


def _binary(spikes: torch.Tensor) -> bool:
    """Whether every value is 0 or 1, checked in the raster's own dtype (no float copy)."""
    if spikes.dtype == torch.bool or spikes.numel() == 0:
        return True
    if spikes.dtype == torch.uint8:
        return int(spikes.max()) <= 1
    return bool(((spikes == 0) | (spikes == 1)).all())


class _HM2BPGradient(torch.autograd.Function):
    """Loss in, loss out; its backward hands the weights their HM2-BP gradients (times the incoming
    gradient, so scaled losses scale the step). Saving the weights makes autograd refuse a backward
    after they were changed in place."""

    @staticmethod
    def forward(ctx, loss, gradients, *weights):  # type: ignore[override]
        ctx.gradients = gradients
        ctx.save_for_backward(*weights)
        return loss.detach().clone()

    @staticmethod
    def backward(ctx, grad_loss):  # type: ignore[override]
        ctx.saved_tensors  # noqa: B018 -- raises if a weight changed since the forward
        return (None, None, *(grad * grad_loss for grad in ctx.gradients()))
