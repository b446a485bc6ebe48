"""Shared test fixtures: where the footage, the design's shared/ folder and the repo live."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOOTAGE = REPO / ".cache" / "footage"
SHARED = Path(os.environ.get("DFWATCH_SHARED", REPO.parent / "shared"))
DFWATCH = [sys.executable, "-m", "engines.cli"]  # the console script, with this interpreter


@pytest.fixture(scope="session")
def footage() -> Path:
    if not (FOOTAGE / "franck.mp4").exists():
        pytest.fail("test footage missing: run scripts/setup.sh (it fetches .cache/footage)")
    return FOOTAGE


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "parity" / "make_checkpoint.py").exists():
        pytest.fail(f"{SHARED} has no parity/make_checkpoint.py: check out shared/ beside the repo "
                    "or set DFWATCH_SHARED")
    return SHARED
