"""The Triton LIF scan equals the reference scan (`neuron.lif_scan`): identical spikes and counts
given identical currents, in float32 and float64, K within rounding; on the CPU through Triton's
interpreter (tests/conftest.py turns it on), on CUDA compiled (`-m gpu`).

The interpreter runs every kernel op in numpy, step by step, so the CPU cases are small; the window
emulation is exercised with tau_m = 8 (look-back W = 32 steps) so that 60 steps reach it."""

from __future__ import annotations

import pytest
import torch
from hm2bp.kernels.neuron import FC_SLACK, lif_scan
from hm2bp.kernels.spec import NeuronConstants

triton_scan = pytest.importorskip("hm2bp.kernels.triton_scan", reason="Triton is not installed")

SHORT = NeuronConstants(threshold=2.0, tau_m=8.0, tau_s=2.0)  # W = 32: the window cuts in
ODD = NeuronConstants(threshold=1.5, tau_m=7.0, tau_s=3.0)  # 1/tau_s is inexact in binary
REFERENCE = NeuronConstants(threshold=2.0)  # tau_m = 64, tau_s = 8, R = 2

# name: (neuron, slack, lateral, window, physics_exact, T, B, N)
CASES = {
    "fc-window": (SHORT, FC_SLACK, 0.0, True, False, 60, 3, 9),
    "conv-strict": (SHORT, 0.0, 0.0, True, False, 60, 2, 40),
    "output-lateral": (SHORT, FC_SLACK, 1.0, True, False, 60, 3, 10),
    "no-window-odd-tau": (ODD, FC_SLACK, 0.5, False, False, 50, 2, 6),
    "physics-exact": (ODD, FC_SLACK, 0.0, True, True, 50, 2, 6),
}


def currents(steps, batch, n, dtype, device="cpu", seed=0):
    """Random currents with a per-neuron bias: some neurons fire often, some never (silent)."""
    gen = torch.Generator().manual_seed(seed)
    bias = torch.linspace(-1.5, 1.5, n, dtype=torch.float64)
    noise = torch.randn(steps, batch, n, generator=gen, dtype=torch.float64)
    return (noise * 2.0 + bias).to(dtype=dtype, device=device)


def assert_same_scan(current, neuron, slack, lateral, window, physics_exact):
    expected = lif_scan(current, neuron, slack, lateral, window=window, physics_exact=physics_exact)
    got = triton_scan.lif_scan(
        current, neuron, slack, lateral, window=window, physics_exact=physics_exact
    )
    assert torch.equal(got.spikes, expected.spikes)
    assert torch.equal(got.counts, expected.counts)
    assert got.spikes.dtype == current.dtype and got.counts.dtype == current.dtype
    # K's exponentials differ by ulps (Triton's exp); entries are O(c) = O(1).
    tol = {"rtol": 0, "atol": 1e-12 if current.dtype == torch.float64 else 1e-6}
    torch.testing.assert_close(got.k_main, expected.k_main, **tol)
    assert (got.k_m is None) == (expected.k_m is None)
    if expected.k_m is not None:
        torch.testing.assert_close(got.k_m, expected.k_m, **tol)
        torch.testing.assert_close(got.k_s, expected.k_s, **tol)
    return expected


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", list(CASES))
def test_scan_equals_reference(case, dtype):
    neuron, slack, lateral, window, physics_exact, steps, batch, n = CASES[case]
    current = currents(steps, batch, n, dtype)
    expected = assert_same_scan(current, neuron, slack, lateral, window, physics_exact)
    counts = expected.counts
    assert (counts == 0).any() and (counts > 2).any(), "the case must have silent and busy neurons"
    if window and not physics_exact:
        assert not torch.equal(expected.k_s, expected.k_main), "the window must cut in"


def test_spike_at_the_first_step_and_refractory_runs():
    """A huge constant current: spikes at t = 1, 4, 7, ...; the first window starts at r_1 = 1, so
    K's two entries of the first spike fall on the same step and cancel."""
    current = torch.full((12, 1, 2), 100.0, dtype=torch.float64)
    result = triton_scan.lif_scan(current, REFERENCE, 0.0)
    assert torch.nonzero(result.spikes[:, 0, 0]).flatten().tolist() == [1, 4, 7, 10]
    assert result.k_main[1, 0, 0].item() == 0.0
    assert result.k_m is None and result.k_s is None  # T <= W + 1: the window cuts nothing
    assert_same_scan(current, REFERENCE, 0.0, 0.0, True, False)


def test_arguments_are_checked():
    neuron = REFERENCE
    with pytest.raises(ValueError, match=r"current: found shape \(4, 3\), expected \[T, B, N\]"):
        triton_scan.lif_scan(torch.zeros(4, 3), neuron, FC_SLACK)
    with pytest.raises(TypeError, match="current: found dtype torch.int64"):
        triton_scan.lif_scan(torch.zeros(4, 1, 3, dtype=torch.int64), neuron, FC_SLACK)
    with pytest.raises(TypeError, match="neuron: found dict"):
        triton_scan.lif_scan(torch.zeros(4, 1, 3), {"threshold": 1.0}, FC_SLACK)
    with pytest.raises(ValueError, match="lateral: found -1.0"):
        triton_scan.lif_scan(torch.zeros(4, 1, 3), neuron, FC_SLACK, -1.0)


def test_a_compiled_kernel_refuses_cpu_tensors():
    from hm2bp.kernels.triton_launch import check_runnable

    with pytest.raises(ValueError, match="current: found a tensor on cpu.*TRITON_INTERPRET=1"):
        check_runnable(object(), torch.zeros(1), "current")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", list(CASES))
def test_scan_equals_reference_on_cuda(case, dtype):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    neuron, slack, lateral, window, physics_exact, steps, batch, n = CASES[case]
    current = currents(steps, batch, n, dtype, device="cuda")
    assert_same_scan(current, neuron, slack, lateral, window, physics_exact)


@pytest.mark.gpu
@pytest.mark.parametrize("lateral, n", [(0.0, 800), (1.0, 10)], ids=["hidden", "output"])
def test_full_size_scan_equals_reference_on_cuda(lateral, n):
    """The reference's shapes: T = 400 with the 256-step window, 32 samples."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    current = currents(400, 32, n, torch.float32, device="cuda") * 0.5
    assert_same_scan(current, REFERENCE, FC_SLACK, lateral, True, False)
