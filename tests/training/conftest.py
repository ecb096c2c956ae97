"""Fixtures for the training tests: tiny local models (ChatML and Llama-2 templates), built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from misstep.plugins import reset_plugins
from misstep.testing import build_tiny_model


@pytest.fixture(autouse=True)
def _fresh_plugins(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MISSTEP_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("MISSTEP_DISABLE_PLUGINS", raising=False)
    reset_plugins()
    yield
    reset_plugins()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama with a ChatML template."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / "chatml")


@pytest.fixture(scope="session")
def tiny_llama2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama with a Llama-2-chat template (system folded into the first user turn)."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / "llama2", template="llama2")
