"""Backend choice: reference on the CPU, `HM2BP_BACKEND` overrides, unknown names refused."""

from __future__ import annotations

import pytest
from hm2bp.kernels.backend import load_backend, select_backend
from hm2bp.kernels.neuron import lif_scan


def test_cpu_gets_the_reference(monkeypatch):
    monkeypatch.delenv("HM2BP_BACKEND", raising=False)
    assert select_backend("cpu") == "reference"
    assert load_backend(device="cpu").lif_scan is lif_scan


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("HM2BP_BACKEND", "reference")
    assert select_backend("cuda") == "reference"


def test_unknown_names_are_refused(monkeypatch):
    monkeypatch.setenv("HM2BP_BACKEND", "cudnn")
    with pytest.raises(ValueError, match="HM2BP_BACKEND.*'cudnn'"):
        select_backend("cpu")
    with pytest.raises(ValueError, match="backend: found 'fast'"):
        load_backend("fast")
