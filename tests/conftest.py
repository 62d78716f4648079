"""Shared fixtures.

The real data slices and the reference's golden vectors live beside the project, found through one
setting, `HM2BP_SHARED_DIR` (default `../shared` from the project root). Where they are absent, the
tests that need them skip with the reason; in CI (`CI=true`) their absence is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent


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
