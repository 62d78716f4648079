"""The usage example of docs/engine.md runs (one epoch of one small batch)."""

from __future__ import annotations

import re

import torch
from hm2bp.tests.conftest import PROJECT_ROOT


def test_engine_doc_example_runs():
    text = (PROJECT_ROOT / "docs" / "engine.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.DOTALL).group(1)
    spikes = (torch.rand(60, 2, 784, generator=torch.Generator().manual_seed(0)) < 0.1).byte()
    namespace = {"epochs": 1, "batches": [(spikes, torch.tensor([3, 7]))]}
    exec(compile(code, "docs/engine.md", "exec"), namespace)
    assert all(p.grad is not None for p in namespace["net"].parameters())
