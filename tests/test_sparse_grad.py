"""The fc weight gradient as a sparse gather (`sparse_grad.py`, `triton_grad.py`) equals the dense
GEMM gk^T D: torch gather to 1e-12 in float64, the Triton gather (interpreter on the CPU, `-m gpu`
on CUDA) to 1e-12 in float64 and 1e-5 in float32; and the engine's gradients through the gather
still equal the literal per-pair oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hm2bp.kernels import sparse_grad
from hm2bp.kernels.sparse_grad import dense_weight_grad, gather_weight_grad, weight_grad
from hm2bp.tests.test_backward_oracle import assert_scenario, run_both, small_spec
from hm2bp.tests.test_triton_network import SPECS, assert_backends_agree

triton_grad = pytest.importorskip("hm2bp.kernels.triton_grad", reason="Triton is not installed")

STEPS, BATCH, N_IN, N_OUT = 40, 3, 37, 9


def operands(dtype: torch.dtype, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """D `[2T, B, N_in]` (P = 2) and a gk `[2T, B, N_out]` of ~3 % non-zeros with silent post
    neurons (empty CSR rows), an all-zero sample and all-zero pre columns."""
    gen = torch.Generator().manual_seed(5)
    traces = torch.rand(2 * STEPS, BATCH, N_IN, generator=gen, dtype=torch.float64)
    traces[:, :, :4] = 0
    mask = torch.rand(2 * STEPS, BATCH, N_OUT, generator=gen) < 0.03
    gk = torch.randn(2 * STEPS, BATCH, N_OUT, generator=gen, dtype=torch.float64) * mask
    gk[:, :, [0, 4]] = 0
    gk[:, 1] = 0
    return traces.to(dtype=dtype, device=device), gk.to(dtype=dtype, device=device)


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got.double() - expected.double()).abs().max() / expected.double().abs().max()).item()


def test_gather_equals_dense_gemm():
    traces, gk = operands(torch.float64)
    expected = dense_weight_grad(traces, gk)
    got = gather_weight_grad(traces, gk)
    assert got.shape == (N_OUT, N_IN)
    assert torch.equal(got[[0, 4]], torch.zeros(2, N_IN, dtype=torch.float64))
    assert relative_error(got, expected) <= 1e-12


def test_density_threshold_chooses_the_path():
    traces, gk = operands(torch.float64)
    calls = []

    def gather(d: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        calls.append(g.shape)
        return gather_weight_grad(d, g)

    density = float(torch.count_nonzero(gk)) / gk.numel()
    assert 0 < density < 0.05
    dense = weight_grad(traces, gk, gather=gather, max_density=density / 2)
    assert calls == [] and torch.equal(dense, dense_weight_grad(traces, gk))
    sparse = weight_grad(traces, gk, gather=gather, max_density=density)
    assert calls == [gk.shape] and relative_error(sparse, dense) <= 1e-12


def check_triton(device: str) -> None:
    for dtype, tolerance in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        traces, gk = operands(dtype, device)
        expected = gather_weight_grad(traces.double(), gk.double())
        got = triton_grad.gather_weight_grad(traces, gk)
        assert got.dtype == dtype and got.shape == (N_OUT, N_IN)
        assert relative_error(got, expected) <= tolerance
        through = triton_grad.weight_grad(traces, gk)  # above the threshold: the dense GEMM
        assert relative_error(through, expected) <= tolerance


def test_triton_gather_equals_reference():
    check_triton("cpu")


def test_arguments_are_checked():
    traces, gk = operands(torch.float64)
    with pytest.raises(ValueError, match=r"gk: found rows \(80, 2\)"):
        weight_grad(traces, gk[:, :2])
    with pytest.raises(ValueError, match="traces: found shape"):
        triton_grad.gather_weight_grad(traces.flatten(0, 1), gk)
    with pytest.raises(ValueError, match="gk: found torch.float32"):
        weight_grad(traces, gk.float())
    with pytest.raises(TypeError, match="traces: found dtype torch.int64"):
        weight_grad(traces.long(), gk)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_empty_operands(dtype):
    traces = torch.zeros(0, 2, 5, dtype=dtype)
    gk = torch.zeros(0, 2, 3, dtype=dtype)
    assert torch.equal(weight_grad(traces, gk), torch.zeros(3, 5, dtype=dtype))
    zeros = torch.zeros(4, 2, 3, dtype=dtype)
    assert torch.equal(
        triton_grad.gather_weight_grad(torch.ones(4, 2, 5, dtype=dtype), zeros),
        torch.zeros(3, 5, dtype=dtype),
    )


def test_engine_through_the_gather_equals_the_oracle(monkeypatch):
    """Every fc/output gradient taken by the gather (threshold 1): the whole backward still equals
    the literal per-pair HM2-BP, with the window (P = 2)."""
    monkeypatch.setattr(sparse_grad, "SPARSE_MAX_DENSITY", 1.0)
    out, ours, expected = run_both(small_spec())
    assert_scenario(out)
    for layer, (g, e) in enumerate(zip(ours, expected, strict=True)):
        scale = np.abs(e).max()
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12 * scale, err_msg=f"layer {layer}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_triton_engine_through_the_gather(monkeypatch, dtype):
    """Both backends take every fc/output gradient by their gather: same spikes, gradients to
    1e-5 relative (the Triton network test's tolerance)."""
    monkeypatch.setattr(sparse_grad, "SPARSE_MAX_DENSITY", 1.0)
    assert_backends_agree(SPECS["mlp"], dtype, "cpu")


@pytest.mark.gpu
def test_triton_gather_equals_reference_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    check_triton("cuda")
