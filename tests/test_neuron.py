"""The LIF scan against a literal per-neuron reading of spec section 1.1, and its S-PSP kernel K
against the literal per-pair S-PSP (`spsp_oracle.py`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hm2bp.kernels.neuron import FC_SLACK, lif_scan
from hm2bp.kernels.psp_kernel import kernel_stack, psp_kernel
from hm2bp.kernels.spec import NeuronConstants
from hm2bp.kernels.traces import pre_traces, trace_stack
from hm2bp.tests.spsp_oracle import spsp_matrix


def literal_lif(current: np.ndarray, neuron: NeuronConstants, slack: float, lateral: float):
    """Spec section 1.1 for one sample `[T, N]`, neuron by neuron in Python floats: the raster and
    the sum over each neuron's spikes of v just before its reset."""
    steps, n = current.shape
    v = [0.0] * n
    a = [0.0] * n
    ref = [0] * n
    spikes = np.zeros((steps, n))
    potential_at_spikes = np.zeros(n)
    for t in range(steps):
        for i in range(n):
            v[i] *= 1 - 1 / neuron.tau_m
            a[i] *= 1 - 1 / neuron.tau_s
        if t == 0:
            continue
        others = spikes[t - 1].sum()
        for i in range(n):
            a[i] += current[t - 1, i] - lateral * (others - spikes[t - 1, i])
            v[i] += a[i] / neuron.tau_s
            if ref[i] > 0:
                v[i] = 0.0
                ref[i] -= 1
            if v[i] > neuron.threshold - slack:
                spikes[t, i] = 1
                potential_at_spikes[i] += v[i]
                ref[i] = neuron.refractory
                v[i] = 0.0
    return spikes, potential_at_spikes


@pytest.mark.parametrize("lateral", [0.0, 1.0])
def test_scan_matches_the_literal_neuron(lateral):
    gen = torch.Generator().manual_seed(0)
    neuron = NeuronConstants(threshold=3.0)
    current = torch.rand(120, 3, 7, generator=gen, dtype=torch.float64) * 2.5
    result = lif_scan(current, neuron, FC_SLACK, lateral)
    for b in range(3):
        expected, _ = literal_lif(current[:, b].numpy(), neuron, FC_SLACK, lateral)
        np.testing.assert_array_equal(result.spikes[:, b].numpy(), expected)
    assert result.spikes.sum() > 50
    torch.testing.assert_close(result.counts, result.spikes.sum(0))


def test_physics_exact_psp_adds_up_to_the_potential_at_each_spike():
    """Spec section 3.4: sum_j w_ij e^ex_ij = sum_f v_i(t_f) just before the reset, exactly; the
    sum over inputs is the physics-exact traces of the current (no lateral input here)."""
    gen = torch.Generator().manual_seed(3)
    neuron = NeuronConstants(threshold=2.0)
    current = torch.rand(300, 1, 6, generator=gen, dtype=torch.float64) * 1.5
    scan = lif_scan(current, neuron, 0.0, physics_exact=True)
    xm, xs = pre_traces(current, neuron, physics_exact=True)
    factorised = (scan.k_main * (xm - xs)).sum(dim=0)[0]
    raster, expected = literal_lif(current[:, 0].numpy(), neuron, 0.0, 0.0)
    np.testing.assert_array_equal(scan.spikes[:, 0].numpy(), raster)
    assert raster.sum() > 20
    np.testing.assert_allclose(factorised.numpy(), expected, rtol=1e-12)


def test_refractory_clamp_and_one_step_lag():
    """A huge constant current: first spike at t = 1 (I(0) acts at t = 1), then every R + 1 steps,
    because v is clamped for R steps after each spike while the synaptic current keeps growing."""
    neuron = NeuronConstants(threshold=1.0, refractory=2)
    current = torch.full((12, 1, 1), 100.0, dtype=torch.float64)
    spikes = lif_scan(current, neuron, 0.0).spikes[:, 0, 0]
    assert torch.nonzero(spikes).flatten().tolist() == [1, 4, 7, 10]


def test_slack_fires_just_below_threshold():
    """One input step gives v(1) = I/tau_s = 1; at nu = 1 + 5e-7 only the slack makes it fire."""
    neuron = NeuronConstants(threshold=1.0 + 5e-7)
    current = torch.zeros(3, 1, 1, dtype=torch.float64)
    current[0] = neuron.tau_s  # v(1) = a(1) / tau_s = 1.0
    assert lif_scan(current, neuron, FC_SLACK).spikes[1].item() == 1.0
    assert lif_scan(current, neuron, 0.0).spikes[1].item() == 0.0


def test_float32_scan_is_float32():
    current = torch.rand(20, 2, 3) * 3
    result = lif_scan(current, NeuronConstants(threshold=1.0), FC_SLACK)
    assert result.spikes.dtype == torch.float32 and result.k_main.dtype == torch.float32


def random_raster(gen, steps, n, rate, t0_spikes=True):
    raster = (torch.rand(steps, n, generator=gen) < rate).double()
    if not t0_spikes:
        raster[0] = 0
    raster[:, 0] = 0  # one silent neuron
    return raster


def lif_raster(gen, steps, n, neuron, scale):
    current = torch.rand(steps, 1, n, generator=gen, dtype=torch.float64) * scale
    current[:, :, 0] = 0  # one silent neuron
    return lif_scan(current, neuron, FC_SLACK).spikes[:, 0]


@pytest.mark.parametrize(
    ("window", "physics_exact"), [(True, False), (False, False), (False, True)]
)
def test_kernel_times_trace_is_the_literal_spsp(window, physics_exact):
    """Long enough (T = 700 > 4 tau_m + ...) that the window cuts off pre-spikes, both cases."""
    gen = torch.Generator().manual_seed(1)
    neuron = NeuronConstants(threshold=2.0)
    steps = 700
    post = lif_raster(gen, steps, 6, neuron, 1.2)
    post[40:360, 3] = 0  # a long gap: q_f < r_f for the next spike of neuron 3
    pre = random_raster(gen, steps, 5, 0.05)
    k = psp_kernel(post[:, None], neuron, window=window, physics_exact=physics_exact)
    traces = trace_stack(pre[:, None], neuron, window=window, physics_exact=physics_exact)
    factorised = torch.einsum("pbi,pbj->ij", kernel_stack(*k), traces)
    literal = spsp_matrix(
        post.numpy(), pre.numpy(), neuron, window=window, physics_exact=physics_exact
    )
    active = post.sum(0).numpy() > 0
    assert active.sum() >= 4
    np.testing.assert_allclose(factorised.numpy()[active], literal[active], rtol=1e-12, atol=1e-13)
    if window:  # the window matters on this raster
        unwindowed = spsp_matrix(post.numpy(), pre.numpy(), neuron, window=False)
        assert np.abs(unwindowed - literal).max() > 1e-6


def test_scan_returns_window_kernels_only_when_the_window_cuts():
    neuron = NeuronConstants(threshold=1.0)
    short = torch.rand(50, 2, 3, dtype=torch.float64) * 3
    assert lif_scan(short, neuron, FC_SLACK, window=True).k_m is None  # T <= W + 2: no cut
    long = torch.rand(300, 2, 3, dtype=torch.float64) * 3
    assert lif_scan(long, neuron, FC_SLACK, window=False).k_m is None
    windowed = lif_scan(long, neuron, FC_SLACK, window=True)
    assert windowed.k_m is not None and windowed.k_s is not None


@pytest.mark.parametrize("bad", [torch.zeros(3, 4), torch.zeros(3, 2, 2, dtype=torch.int64)])
def test_scan_refuses_bad_current(bad):
    with pytest.raises((ValueError, TypeError), match="current"):
        lif_scan(bad, NeuronConstants(threshold=1.0), FC_SLACK)


@pytest.mark.parametrize(
    ("post_times", "pre_times"), [([100, 355], [98, 99]), ([20, 300], [40, 99, 200])]
)
def test_window_cases_with_large_excluded_parts(post_times, pre_times):
    """Post-spikes at 100 and 355: for t_f = 355 the window (q >= 99) starts before r_f = 102, so
    q = 98 is excluded although its residual current at r_f is large (case q_f < r_f). Post-spikes
    at 20 and 300: the cut (q >= 44) falls inside the integration window (case q_f >= r_f)."""
    neuron = NeuronConstants(threshold=1.0)
    post = torch.zeros(400, 1, 1, dtype=torch.float64)
    post[post_times] = 1
    pre = torch.zeros(400, 1, 1, dtype=torch.float64)
    pre[pre_times] = 1
    kernel = kernel_stack(*psp_kernel(post, neuron, window=True))
    factorised = torch.einsum("pbi,pbj->ij", kernel, trace_stack(pre, neuron, window=True))
    literal = spsp_matrix(post[:, 0].numpy(), pre[:, 0].numpy(), neuron, window=True)
    unwindowed = spsp_matrix(post[:, 0].numpy(), pre[:, 0].numpy(), neuron, window=False)
    np.testing.assert_allclose(factorised.numpy(), literal, rtol=1e-12)
    assert abs(unwindowed - literal).max() > 0.05 * abs(literal).max()
