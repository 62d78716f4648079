"""Shared fixtures.

The real data slices and the reference's golden vectors live beside the project, found through one
setting, `HM2BP_SHARED_DIR` (default `../shared` from the project root). Where they are absent, the
tests that need them skip with the reason; in CI (`CI=true`) their absence is a failure.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Triton decides when a kernel is decorated (when `hm2bp.kernels.triton_*` is first imported)
# whether it runs compiled or through its interpreter. Without CUDA only the interpreter can run
# the kernels (on CPU tensors), so turn it on before any test module imports them.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def shared_path(*parts: str) -> Path:
    """`HM2BP_SHARED_DIR/<parts>`, or skip (fail in CI) when it is missing."""
    root = Path(os.environ.get("HM2BP_SHARED_DIR", PROJECT_ROOT.parent / "shared"))
    path = root.joinpath(*parts)
    if not path.exists():
        reason = f"{path} not found (set HM2BP_SHARED_DIR to the folder holding data/ and golden/)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + "; CI requires the shared data")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return shared_path()


@pytest.fixture(params=["reference", "cpu"])
def backend_name(request, monkeypatch) -> str:
    """Runs a test once per CPU backend, the torch reference and the compiled one: every
    `Network(...)` it builds without naming a backend takes this one from `HM2BP_BACKEND`."""
    monkeypatch.setenv("HM2BP_BACKEND", request.param)
    return request.param


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray for the whole session: 2 CPUs, no dashboard, a 512 MiB object store, and
    Ray Data's progress bars and per-run log lines off. Tests use `address="local"` so that they
    never join a cluster named by `RAY_ADDRESS` (product code calls plain `ray.init()`)."""
    import ray
    import ray.data

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=512 * 1024**2,
        logging_level=logging.WARNING,
    )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    yield ray
    ray.shutdown()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@contextlib.contextmanager
def on_a_terminal() -> Iterator[io.StringIO]:
    """stderr as a terminal (what tqdm's `disable=None` asks), read back as text. A context in
    the test, not a fixture: pytest sets its own stderr capture after a fixture's setup."""
    screen, saved = _Terminal(), sys.stderr
    sys.stderr = screen
    try:
        yield screen
    finally:
        sys.stderr = saved
