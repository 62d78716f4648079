"""Trace scans: the IIR recursion, the R-step delay that drops t = 0, and the physics-exact trace
equal to the discrete synaptic/membrane recursion of spec section 3.4."""

from __future__ import annotations

import math

import torch
from hm2bp.kernels.spec import NeuronConstants
from hm2bp.kernels.traces import delayed, exp_trace, pre_traces, trace_stack


def test_exp_trace_is_the_closed_form_sum():
    x = torch.rand(30, 2, 3, dtype=torch.float64)
    decay = math.exp(-1 / 8)
    expected = torch.stack(
        [sum(x[p] * decay ** (t - p) for p in range(t + 1)) for t in range(x.shape[0])]
    )
    torch.testing.assert_close(exp_trace(x, decay), expected, rtol=1e-13, atol=0)


def test_delayed_shifts_by_r_and_drops_step_zero():
    x = torch.arange(1.0, 9.0).view(8, 1)
    assert delayed(x, 2).flatten().tolist() == [0, 0, 0, 2, 3, 4, 5, 6]
    assert delayed(x[:3], 2).flatten().tolist() == [0, 0, 0]


def test_reference_trace_is_the_free_psp_of_the_delayed_train():
    neuron = NeuronConstants(threshold=1.0)
    spikes = torch.zeros(40, 1, dtype=torch.float64)
    spikes[[0, 3, 10], 0] = 1  # the t = 0 spike never enters the S-PSP
    d = trace_stack(spikes, neuron, window=False)[:, 0]
    for t in range(40):
        expected = sum(
            math.exp(-(t - p) / neuron.tau_m) - math.exp(-(t - p) / neuron.tau_s)
            for p in (3 + 2, 10 + 2)
            if p <= t
        )
        assert abs(d[t].item() - expected) < 1e-14


def test_physics_trace_is_the_discrete_membrane_contribution():
    neuron = NeuronConstants(threshold=1.0)
    spikes = (torch.rand(60, 4, dtype=torch.float64) < 0.2).double()
    xm, xs = pre_traces(spikes, neuron, physics_exact=True)
    current = torch.zeros(4, dtype=torch.float64)
    potential = torch.zeros(4, dtype=torch.float64)
    for t in range(1, 60):
        current = current * (1 - 1 / neuron.tau_s) + spikes[t - 1]
        potential = potential * (1 - 1 / neuron.tau_m) + current / neuron.tau_s
        torch.testing.assert_close(neuron.c * (xm[t] - xs[t]), potential, rtol=1e-12, atol=1e-14)


def test_window_stack_has_both_traces():
    neuron = NeuronConstants(threshold=1.0)
    spikes = (torch.rand(20, 3) < 0.3).double()
    assert trace_stack(spikes, neuron, window=True).shape == (40, 3)
    assert trace_stack(spikes, neuron, window=True, physics_exact=True).shape == (20, 3)
