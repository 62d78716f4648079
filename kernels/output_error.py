"""The output layer's side of a training step (spec sections 4.1 to 4.3): the dead-zone count error,
the fake spike train of a silent target neuron, the lateral-inhibition factor, the logged cost.

Order matters and follows the reference (spec section 8.13): delta uses the original counts; the
lateral factor uses the original spikes; the S-PSP, side effect and effect ratio of the output layer
and the cost use the fake train and its count.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from hm2bp.kernels.neuron import ScanResult
from hm2bp.kernels.psp_kernel import DenseKernel, psp_kernel
from hm2bp.kernels.spec import NetworkSpec, NeuronConstants, TargetSpec
from hm2bp.kernels.traces import TraceScan, exp_trace, trace_stack

LATERAL_GUARD = 0.1
"""Smallest denominator 1 - w0^2 S_j of the lateral factor. The reference has no clamp and its
factor explodes or flips sign once the loop gain w0^2 S_j reaches 1 (spec section 8.14); here the
denominator is held at this floor (|L| <= 10) and every such case is counted in the step's stats."""


class OutputError(NamedTuple):
    """`delta` `[B, N]` (o - y) in the dead zone, times the sample weights, before 1/nu; `counts`
    and `kernel` (K) after the fake target train; `lateral` `[B, N]` the factor L;
    `loss` the batch mean of the logged cost; `guard_triggers` how often LATERAL_GUARD held."""

    delta: torch.Tensor
    counts: torch.Tensor
    kernel: DenseKernel
    lateral: torch.Tensor
    loss: torch.Tensor
    guard_triggers: int


def target_counts(labels: torch.Tensor, n_classes: int, targets: TargetSpec, like: torch.Tensor):
    """y `[B, N]`: y+ for the label neuron, y- for the others."""
    y = torch.full((labels.shape[0], n_classes), targets.undesired, dtype=like.dtype)
    y = y.to(like.device)
    y[torch.arange(labels.shape[0], device=like.device), labels] = targets.desired
    return y


def fake_target_train(steps: int, desired: float, like: torch.Tensor) -> torch.Tensor:
    """`[T]` spikes at t = n * Delta, n >= 1, t < T, Delta = floor(T / floor(y+)) (spec 4.2)."""
    interval = steps // int(desired)
    train = torch.zeros(steps, dtype=like.dtype, device=like.device)
    if interval >= 1:
        train[interval::interval] = 1
    return train


def output_error(
    scan: ScanResult,
    labels: torch.Tensor,
    sample_weights: torch.Tensor,
    spec: NetworkSpec,
    scan_fn: TraceScan = exp_trace,
) -> OutputError:
    """What the output layer's backward needs, from its scan `[T, B, N]` and the labels `[B]`."""
    neuron = spec.layers[-1].neuron
    counts = scan.counts
    batch = torch.arange(labels.shape[0], device=labels.device)
    y = target_counts(labels, spec.n_classes, spec.targets, counts)
    error = counts - y
    delta = error * (error.abs() > spec.targets.margin) * sample_weights[:, None]
    lateral, triggers = lateral_factor(scan, labels, neuron, spec, scan_fn)

    silent_target = counts[batch, labels] == 0
    spikes = scan.spikes.clone()
    fake = fake_target_train(spikes.shape[0], spec.targets.desired, spikes)
    spikes[:, batch[silent_target], labels[silent_target]] = fake[:, None]
    modified = spikes.sum(dim=0)
    options = {"window": spec.window_emulated, "physics_exact": spec.physics_exact}
    kernel = psp_kernel(spikes, neuron, **options)
    error = modified - y
    cost = (error.square() * (error.abs() > spec.targets.margin)).sum(dim=1)
    return OutputError(delta, modified, kernel, lateral, cost.mean(), triggers)


def lateral_factor(
    scan: ScanResult,
    labels: torch.Tensor,
    neuron: NeuronConstants,
    spec: NetworkSpec,
    scan_fn: TraceScan = exp_trace,
) -> tuple[torch.Tensor, int]:
    """L `[B, N]` = 1 / (1 - w0^2 S_j) from the original output spikes (spec section 4.3).

    S_j = sum_{l != j} ratio(j->l) ratio(l->j) d_l d_j, ratio(j->l) = e_{l|j} / o_j when both
    neurons fire, else 1; d_j = 1/nu for firing neurons and the label neuron, else 0. The S-PSP
    e_{l|j} among output neurons uses the output layer's own constants.
    """
    counts = scan.counts
    w0 = spec.lateral_strength
    if w0 == 0.0:
        return torch.ones_like(counts), 0
    kernel = scan.kernel.stack()
    traces = trace_stack(
        scan.spikes,
        neuron,
        window=scan.kernel.windowed,
        physics_exact=spec.physics_exact,
        scan=scan_fn,
    )
    effect = torch.einsum("pbl,pbj->bjl", kernel, traces)  # [b, j, l] = e_{l|j}
    active = counts > 0
    both = active[:, :, None] & active[:, None, :]
    ratio = torch.where(both, effect / counts.clamp(min=1)[:, :, None], 1.0)  # ratio(j -> l)
    label = torch.zeros_like(active)
    label[torch.arange(labels.shape[0], device=labels.device), labels] = True
    d = (active | label).to(counts.dtype) / neuron.threshold
    loop = ratio * ratio.transpose(1, 2) * d[:, :, None] * d[:, None, :]
    loop = loop - torch.diag_embed(torch.diagonal(loop, dim1=1, dim2=2))
    denominator = 1.0 - w0**2 * loop.sum(dim=2)
    guarded = denominator < LATERAL_GUARD
    denominator = torch.where(guarded, LATERAL_GUARD, denominator)
    return 1.0 / denominator, int(guarded.sum())
