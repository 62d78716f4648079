"""The output layer's error (spec sections 4.1 to 4.3): dead zone, fake target train, lateral factor
with its guard, the logged cost."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hm2bp.kernels.neuron import ScanResult
from hm2bp.kernels.output_error import LATERAL_GUARD, fake_target_train, output_error
from hm2bp.kernels.psp_kernel import psp_kernel
from hm2bp.kernels.spec import LayerSpec, NetworkSpec, NeuronConstants
from hm2bp.tests.spsp_oracle import spsp_pair


def scan_of(spikes: torch.Tensor, neuron: NeuronConstants) -> ScanResult:
    k = psp_kernel(spikes, neuron, window=True)
    return ScanResult(spikes, spikes.sum(0), k)


def output_spec(threshold: float, w0: float = 1.0) -> NetworkSpec:
    layer = LayerSpec("output", NeuronConstants(threshold=threshold), size=3)
    return NetworkSpec((4,), (layer,), lateral_strength=w0)


@pytest.mark.parametrize(("steps", "count"), [(400, 36), (540, 35), (450, 37)])
def test_fake_train_is_regular(steps, count):
    train = fake_target_train(steps, 35.0, torch.zeros(1))
    interval = steps // 35
    assert int(train.sum()) == count
    assert torch.nonzero(train).flatten().tolist() == list(range(interval, steps, interval))


def raster(steps: int, times_per_neuron: list[list[int]]) -> torch.Tensor:
    spikes = torch.zeros(steps, 1, len(times_per_neuron), dtype=torch.float64)
    for n, times in enumerate(times_per_neuron):
        spikes[times, 0, n] = 1
    return spikes


def test_dead_zone_fake_train_and_cost():
    """Label 1 silent: delta -35 from o = 0, cost and kernel from the fake train; neuron 0 with
    12 spikes: |12 - 5| > 5; neuron 2 silent: |0 - 5| = 5 is no error."""
    spec = output_spec(threshold=5.0)
    spikes = raster(400, [list(range(10, 400, 30))[:12], [], []])
    error = output_error(scan_of(spikes, spec.layers[0].neuron), torch.tensor([1]),
                         torch.tensor([2.0], dtype=torch.float64), spec)  # fmt: skip
    assert error.delta[0].tolist() == [2.0 * 7, 2.0 * -35, 0.0]  # times the sample weight
    assert error.counts[0].tolist() == [12.0, 36.0, 0.0]
    assert error.loss.item() == 7**2  # the fake count 36 is within the margin of 35
    assert error.kernel.k_main[:, 0, 1].abs().sum() > 0


def test_lateral_factor_matches_its_definition_and_guard():
    neuron = NeuronConstants(threshold=5.0)
    spikes = raster(300, [[20, 60, 100, 140], [30, 70, 110], []])
    scan = scan_of(spikes, neuron)
    counts = [4, 3, 0]
    times = [[20, 60, 100, 140], [30, 70, 110], []]

    def ratio(j, k):
        if counts[j] and counts[k]:
            return spsp_pair(times[k], times[j], neuron) / counts[j]
        return 1.0

    label = 2  # silent label: d = 1/nu for it too
    d = [1 / 5, 1 / 5, 1 / 5]
    expected = [
        1 / (1 - sum(ratio(j, k) * ratio(k, j) * d[k] * d[j] for k in range(3) if k != j))
        for j in range(3)
    ]
    error = output_error(scan, torch.tensor([label]), torch.ones(1, dtype=torch.float64),
                         output_spec(5.0))  # fmt: skip
    np.testing.assert_allclose(error.lateral[0].numpy(), expected, rtol=1e-12)
    assert error.guard_triggers == 0 and min(expected) > 1.0

    strong = output_error(scan, torch.tensor([label]), torch.ones(1, dtype=torch.float64),
                          output_spec(5.0, w0=5.0))  # fmt: skip
    assert strong.guard_triggers == 3
    assert torch.equal(strong.lateral, torch.full((1, 3), 1 / LATERAL_GUARD, dtype=torch.float64))
    off = output_error(scan, torch.tensor([label]), torch.ones(1, dtype=torch.float64),
                       output_spec(5.0, w0=0.0))  # fmt: skip
    assert torch.equal(off.lateral, torch.ones(1, 3, dtype=torch.float64))
