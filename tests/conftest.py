"""Fixtures for every test folder: a fresh plugin manager per test, one tiny local model per session, a
recipe writer."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
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


@pytest.fixture
def write_recipe(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write
