"""Fixtures for every test folder: a fresh plugin manager per test and one tiny local model per session."""

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
    """A tiny Llama with a locally trained tokenizer and a ChatML template (built once per session)."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / "chatml")
