"""Fixtures for the training tests: tiny local models (ChatML and Llama-2 templates), built once."""

from __future__ import annotations

from pathlib import Path

import pytest
from misstep.testing import build_tiny_model


@pytest.fixture(scope="session")
def tiny_llama2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama with a Llama-2-chat template (system folded into the first user turn)."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / "llama2", template="llama2")
