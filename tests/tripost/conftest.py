"""Fixtures for the TriPosT plugin's tests: a fresh plugin manager, the shared TriPosT data (or a skip)."""

from __future__ import annotations

from pathlib import Path

import misstep
import pytest
from shared_data import SHARED_DATA

SHARED = SHARED_DATA / "tripost"


@pytest.fixture
def shared() -> Path:
    """The TriPosT release folder of the shared data (the test is skipped where it is absent)."""
    if not (SHARED / "raw").is_dir():
        pytest.skip(f"shared TriPosT data not found at {SHARED}")
    return SHARED


@pytest.fixture
def plugins() -> misstep.Plugins:
    """Installed plugins (misstep-tripost among them) and the test backends of tripost_components."""
    from tripost_components import CannedBackend, SelfImproverBackend, StudentBackend, TriPosTTestPlugin

    CannedBackend.prompts = []
    SelfImproverBackend.prefills = []
    StudentBackend.calls, StudentBackend.crash_at = 0, None
    manager = misstep.Plugins()
    manager.add(TriPosTTestPlugin(), "tripost-test")
    return manager
