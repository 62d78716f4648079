"""Backend choice: the compiled CPU backend on the CPU, `HM2BP_BACKEND` overrides, unknown names
refused, and every backend provides the whole seam."""

from __future__ import annotations

import pytest
from hm2bp.kernels import cpu_backend
from hm2bp.kernels.backend import Backend, load_backend, select_backend
from hm2bp.kernels.neuron import lif_scan


def test_cpu_gets_the_compiled_backend(monkeypatch):
    monkeypatch.delenv("HM2BP_BACKEND", raising=False)
    assert select_backend("cpu") == "cpu"
    backend = load_backend(device="cpu")
    assert backend.lif_scan is cpu_backend.lif_scan
    assert backend.fc_sums is cpu_backend.fc_sums


def test_reference_is_the_torch_oracle(monkeypatch):
    monkeypatch.setenv("HM2BP_BACKEND", "reference")
    assert select_backend("cpu") == "reference"
    assert load_backend(device="cpu").lif_scan is lif_scan


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("HM2BP_BACKEND", "reference")
    assert select_backend("cuda") == "reference"


@pytest.mark.parametrize("name", ["reference", "cpu"])
def test_every_backend_fills_the_seam(name):
    backend = load_backend(name)
    assert backend.name == name
    assert all(callable(part) for part in backend[1:]), Backend._fields


def test_unknown_names_are_refused(monkeypatch):
    monkeypatch.setenv("HM2BP_BACKEND", "cudnn")
    with pytest.raises(ValueError, match="HM2BP_BACKEND.*'cudnn'"):
        select_backend("cpu")
    with pytest.raises(ValueError, match="backend: found 'fast'"):
        load_backend("fast")
