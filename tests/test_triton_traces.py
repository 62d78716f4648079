"""The Triton trace scan equals the reference `traces.exp_trace` bit for bit (same operations, no
FMA contraction), on the CPU through Triton's interpreter and on CUDA (`-m gpu`)."""

from __future__ import annotations

import math

import pytest
import torch
from hm2bp.kernels.spec import NeuronConstants
from hm2bp.kernels.traces import exp_trace, trace_stack

triton_traces = pytest.importorskip("hm2bp.kernels.triton_traces", reason="Triton is not installed")

DECAYS = [math.exp(-1 / 64), math.exp(-1 / 8), 1 - 1 / 7]


def check_traces(device: str) -> None:
    gen = torch.Generator().manual_seed(1)
    for dtype in (torch.float64, torch.float32):
        # a spike raster (with silent columns) and a real-valued current, [T, B, C, H, W] too
        spikes = (torch.rand(40, 3, 300, generator=gen) < 0.05).to(dtype)
        spikes[:, :, :20] = 0
        current = torch.randn(40, 2, 3, 5, 5, generator=gen).to(dtype)
        for x in (spikes.to(device), current.to(device)):
            for decay in DECAYS:
                assert torch.equal(triton_traces.exp_trace(x, decay), exp_trace(x, decay))


def test_trace_equals_reference():
    check_traces("cpu")


def test_trace_stack_through_the_seam():
    """`trace_stack` with the Triton scan plugged in, as the network calls it."""
    neuron = NeuronConstants(threshold=1.0)
    spikes = (torch.rand(30, 2, 7, dtype=torch.float64) < 0.2).to(torch.float64)
    expected = trace_stack(spikes, neuron, window=True)
    got = trace_stack(spikes, neuron, window=True, scan=triton_traces.exp_trace)
    assert torch.equal(got, expected)


def test_arguments_are_checked():
    with pytest.raises(TypeError, match="x: found dtype torch.uint8"):
        triton_traces.exp_trace(torch.zeros(3, 2, dtype=torch.uint8), 0.5)
    with pytest.raises(ValueError, match="decay: found nan"):
        triton_traces.exp_trace(torch.zeros(3, 2), float("nan"))
    with pytest.raises(ValueError, match="x: found a 0-d tensor"):
        triton_traces.exp_trace(torch.tensor(1.0), 0.5)


@pytest.mark.gpu
def test_trace_equals_reference_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    check_traces("cuda")
