"""The compiled CPU backend (`kernels/cpu_*.py`) against the torch reference it stands in for.

Every kernel runs beside its reference on the same random inputs. The LIF scan (`neuron.lif_scan`)
must give the same rasters and counts bit for bit and the same K to about one ulp of `exp`; the
trace scan (`traces.exp_trace`), the event-driven fc current (`x @ weight.T`) and the S-PSP sums
(`spsp_sums.py`) must agree to rounding: 1e-12 relative in float64, 1e-5 in float32. The cases
cover odd sizes, B = 1 and B > 1, silent layers, dense inputs, the 4*tau_m window cutting (T = 300,
late spikes) and cutting nothing (T = 200), no window, the physics-exact S-PSP, the output layer's
lateral inhibition and non-power-of-two neuron constants, each in float32 and float64. Each case
first checks that the reference really is in the situation it is named after.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import pytest
import torch
from hm2bp.kernels import cpu_current, cpu_scan, cpu_spsp, cpu_traces, neuron, spsp_sums, traces
from hm2bp.kernels.neuron import FC_SLACK
from hm2bp.kernels.psp_kernel import PspFactors
from hm2bp.kernels.spec import NeuronConstants

DEFAULT = NeuronConstants(threshold=1.0)  # W = 256: the window cuts only spikes after t = 258
ODD = NeuronConstants(threshold=1.7, tau_m=7.3, tau_s=5.1, refractory=3)  # W = 30

DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])


def rounding(dtype: torch.dtype) -> float:
    """Relative tolerance of results that add many terms in a different order."""
    return 1e-12 if dtype == torch.float64 else 1e-5


def ulps(dtype: torch.dtype) -> float:
    """Relative tolerance of values that differ at most in the last bit of `exp`."""
    return 2 * torch.finfo(dtype).eps


def assert_close(got: torch.Tensor, expected: torch.Tensor, rtol: float) -> None:
    """Same dtype and shape; each element within `rtol` of itself or of the largest |expected|
    (sums that cancel to near zero keep the absolute error of their terms). All-zero expected
    values must be matched exactly."""
    scale = expected.abs().max().item() if expected.numel() else 0.0
    torch.testing.assert_close(got, expected, rtol=rtol, atol=rtol * scale)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# One table of layers for the scan and the sums -------------------------------------------------


class Case(NamedTuple):
    """A fully connected layer of `n` neurons on `n_in` random input spikes over `steps` steps,
    and what its reference scan must show: silent and firing neurons (or a silent layer), and the
    window emulation cutting something (k_m, k_s present) or not."""

    steps: int
    batch: int
    n: int
    n_in: int = 61
    density: float = 0.05  # input spikes per input and step
    weight_scale: float = 0.1
    neuron: NeuronConstants = DEFAULT
    slack: float = FC_SLACK
    lateral: float = 0.0
    window: bool = True
    physics_exact: bool = False
    fires: bool = True
    cuts: bool = True


CASES = {
    "odd-constants": Case(200, 3, 37, density=0.1, weight_scale=1.0, neuron=ODD, slack=0.0),
    "one-sample": Case(300, 1, 37),
    "window-cuts": Case(300, 4, 37),
    "window-cuts-nothing": Case(200, 2, 37, cuts=False),
    "no-window": Case(300, 2, 37, window=False, cuts=False),
    "physics-exact": Case(300, 2, 37, physics_exact=True, cuts=False),
    "lateral": Case(300, 3, 10, weight_scale=0.3, lateral=1.0),
    "dense-inputs": Case(200, 2, 70, n_in=131, density=0.5, weight_scale=0.02, cuts=False),
    "silent": Case(300, 2, 37, weight_scale=1e-4, fires=False, cuts=False),
}
PARAMETRIZE_CASES = pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())


class FcLayer(NamedTuple):
    inputs: torch.Tensor  # [T, B, N_in] spikes
    weight: torch.Tensor  # [N, N_in]
    current: torch.Tensor  # [T, B, N]
    scan: neuron.ScanResult  # the reference's
    g: torch.Tensor  # [B, N]
    delta: torch.Tensor  # [B, N]

    def factors(self, case: Case) -> PspFactors:
        return PspFactors(self.scan.kernel, case.neuron, case.physics_exact)


def fc_layer(case: Case, dtype: torch.dtype) -> FcLayer:
    """The case's layer, scanned by the reference. Each neuron's weights are shifted by its own
    offset, so that some neurons stay silent while others fire."""
    gen = generator()
    inputs = (torch.rand(case.steps, case.batch, case.n_in, generator=gen) < case.density).to(dtype)
    spread = torch.rand(case.n, case.n_in, generator=gen, dtype=torch.float64)
    offset = torch.rand(case.n, 1, generator=gen, dtype=torch.float64)
    weight = (case.weight_scale * (spread - offset)).to(dtype)
    current = inputs @ weight.T
    scan = run_scan(neuron.lif_scan, case, current)
    counts = scan.counts.flatten()
    if case.fires:
        assert (counts == 0).any() and (counts > 0).any(), "want silent and firing neurons"
    else:
        assert not scan.spikes.any() and not scan.k_main.any(), "want a silent layer"
    assert (scan.k_m is not None) == case.cuts, f"want the window cutting: {case.cuts}"
    g, delta = torch.randn(2, case.batch, case.n, generator=gen, dtype=torch.float64).to(dtype)
    return FcLayer(inputs, weight, current, scan, g, delta)


def run_scan(scan, case: Case, current: torch.Tensor) -> neuron.ScanResult:
    """`scan` (the reference's or the compiled one) of `current` with the case's neuron."""
    options = {"window": case.window, "physics_exact": case.physics_exact}
    return scan(current, case.neuron, case.slack, case.lateral, **options)


# The LIF scan -----------------------------------------------------------------------------------


@DTYPES
@PARAMETRIZE_CASES
def test_lif_scan_equals_the_reference(case, dtype):
    layer = fc_layer(case, dtype)
    got = run_scan(cpu_scan.lif_scan, case, layer.current)
    expected = layer.scan
    assert_close(got.spikes, expected.spikes, rtol=0.0)  # bit for bit
    assert_close(got.counts, expected.counts, rtol=0.0)
    for name in ("k_main", "k_m", "k_s"):
        ours, theirs = getattr(got, name), getattr(expected, name)
        if theirs is None:
            assert ours is None, f"{name}: the reference has none"
        else:
            assert_close(ours, theirs, rtol=ulps(dtype))


# The trace scan ---------------------------------------------------------------------------------


@DTYPES
@pytest.mark.parametrize("shape", [(300, 3, 100), (200, 1, 37), (61, 5)], ids=str)
@pytest.mark.parametrize("decay", [math.exp(-1 / 7.3), 1 - 1 / 5.1])
def test_exp_trace_equals_the_reference(shape, decay, dtype):
    x = torch.randn(shape, generator=generator(), dtype=torch.float64).to(dtype)
    assert_close(cpu_traces.exp_trace(x, decay), traces.exp_trace(x, decay), rounding(dtype))


# The fc forward current -------------------------------------------------------------------------


def fc_input(kind: str, dtype: torch.dtype, rows: int = 600, n_in: int = 61) -> torch.Tensor:
    """`[M, N_in]` inputs: sparse spikes (event-driven path), dense spikes (the GEMM), sparse
    real values, and sparse spikes with a single 2 (both must be recognised as not binary)."""
    gen = generator()
    density = 0.5 if kind == "dense" else 0.03
    x = (torch.rand(rows, n_in, generator=gen) < density).to(dtype)
    if kind == "non-binary":
        x *= torch.rand(rows, n_in, generator=gen, dtype=torch.float64).to(dtype) + 0.5
    if kind == "one-two":
        x[x.nonzero()[len(x.nonzero()) // 2].unbind()] = 2.0
    return x


@DTYPES
@pytest.mark.parametrize("kind", ["sparse", "dense", "non-binary", "one-two"])
def test_fc_current_equals_the_gemm(kind, dtype):
    x = fc_input(kind, dtype)
    below = x.count_nonzero().item() < cpu_current.DENSE_MIN_DENSITY * x.numel()
    assert below == (kind != "dense"), "the case must sit on its side of DENSE_MIN_DENSITY"
    outputs = cpu_current.EVENT_MIN_OUTPUTS + 3  # enough outputs for the event-driven path
    weight = torch.randn(outputs, 61, generator=generator(1), dtype=torch.float64).to(dtype)
    assert_close(cpu_current.fc_current(x, weight), x @ weight.T, rounding(dtype))


# The S-PSP sums ---------------------------------------------------------------------------------


@DTYPES
@PARAMETRIZE_CASES
def test_side_sums_equal_the_reference(case, dtype):
    layer = fc_layer(case, dtype)
    factors = layer.factors(case)
    expected = spsp_sums.side_sums(layer.current, factors)
    assert_close(cpu_spsp.side_sums(layer.current, factors), expected, rounding(dtype))


@DTYPES
@PARAMETRIZE_CASES
def test_fc_sums_equal_the_reference(case, dtype):
    layer = fc_layer(case, dtype)
    args = (layer.inputs, layer.factors(case), layer.g, layer.delta, layer.weight)
    expected_grad, expected_ratio = spsp_sums.fc_sums(*args)
    grad, ratio = cpu_spsp.fc_sums(*args)
    assert_close(grad, expected_grad, rounding(dtype))
    assert_close(ratio, expected_ratio, rounding(dtype))


def test_fc_sums_without_delta_has_no_ratio():
    case = CASES["window-cuts"]
    layer = fc_layer(case, torch.float64)
    args = (layer.inputs, layer.factors(case), layer.g, None, layer.weight)
    grad, ratio = cpu_spsp.fc_sums(*args)
    assert ratio is None
    expected, _ = spsp_sums.fc_sums(*args)
    assert_close(grad, expected, rounding(torch.float64))


# Refusals ---------------------------------------------------------------------------------------


def meta(*shape: int) -> torch.Tensor:
    """A tensor on the "meta" device: stands in for a CUDA tensor on a machine without a GPU."""
    return torch.zeros(shape, dtype=torch.float64, device="meta")


def off_cpu_calls():
    case = CASES["window-cuts-nothing"]
    factors = fc_layer(case, torch.float64).factors(case)  # [200, 2, 37] kernels
    g = torch.zeros(2, 37, dtype=torch.float64)
    weight = torch.zeros(37, 61, dtype=torch.float64)
    wide = torch.zeros(cpu_current.EVENT_MIN_OUTPUTS, 61, dtype=torch.float64)
    return {
        "lif_scan": (lambda: cpu_scan.lif_scan(meta(5, 2, 3), DEFAULT, 0.0), "current"),
        "exp_trace": (lambda: cpu_traces.exp_trace(meta(5, 2, 3), 0.5), "x"),
        "fc_current": (lambda: cpu_current.fc_current(meta(5, 61), wide), "x"),
        "side_sums": (lambda: cpu_spsp.side_sums(meta(200, 2, 37), factors), "current"),
        "fc_sums": (lambda: cpu_spsp.fc_sums(meta(200, 2, 61), factors, g, g, weight), "inputs"),
    }


@pytest.mark.parametrize("kernel", ["lif_scan", "exp_trace", "fc_current", "side_sums", "fc_sums"])
def test_kernels_refuse_tensors_off_the_cpu(kernel):
    call, argument = off_cpu_calls()[kernel]
    with pytest.raises(ValueError, match=f"{argument}: found device meta, expected the CPU"):
        call()


def test_scans_refuse_integer_tensors():
    with pytest.raises(TypeError, match="current: found dtype torch.int32"):
        cpu_scan.lif_scan(torch.zeros(5, 2, 3, dtype=torch.int32), DEFAULT, 0.0)
    with pytest.raises(TypeError, match="x: found torch.int64"):
        cpu_traces.exp_trace(torch.zeros(5, 2, 3, dtype=torch.int64), 0.5)


@DTYPES
@PARAMETRIZE_CASES
def test_sums_over_the_compiled_scans_kernel_equal_the_reference(case, dtype):
    """The CPU backend's own K (`cpu_kernel.SparseKernel`, lists read off its raster) gives the
    same sums as the reference's dense K."""
    layer = fc_layer(case, dtype)
    kernel = run_scan(cpu_scan.lif_scan, case, layer.current).kernel
    ours = PspFactors(kernel, case.neuron, case.physics_exact)
    theirs = layer.factors(case)
    side = cpu_spsp.side_sums(layer.current, ours)
    assert_close(side, spsp_sums.side_sums(layer.current, theirs), rounding(dtype))
    args = (layer.inputs, layer.g, layer.delta, layer.weight)
    got = cpu_spsp.fc_sums(args[0], ours, *args[1:])
    expected = spsp_sums.fc_sums(args[0], theirs, *args[1:])
    for ours_sum, their_sum in zip(got, expected, strict=True):
        assert_close(ours_sum, their_sum, rounding(dtype))
