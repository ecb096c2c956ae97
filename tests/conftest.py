"""Fixtures for every test folder: a fresh plugin manager per test, one tiny local model per session, a
recipe writer, a JSON Lines writer and Python's own SIGINT handler."""

from __future__ import annotations

import json
import signal
import textwrap
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from misstep.plugins import reset_plugins
from misstep.testing import build_tiny_model, build_tiny_tools_model


@pytest.fixture(autouse=True)
def _fresh_plugins(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MISSTEP_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("MISSTEP_DISABLE_PLUGINS", raising=False)
    reset_plugins()
    yield
    reset_plugins()


@pytest.fixture
def python_sigint() -> Iterator[None]:
    """Python's own SIGINT handler (KeyboardInterrupt), as in a terminal: a shell starts background jobs with
    SIGINT ignored, and tests of a real Ctrl-C would see nothing there."""
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, outer)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama with a locally trained tokenizer and a ChatML template (built once per session)."""
    return build_tiny_model(tmp_path_factory.mktemp("models") / "chatml")


@pytest.fixture(scope="session")
def tiny_hermes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama whose Hermes/Qwen-style template renders tools and tool calls (built once per session)."""
    return build_tiny_tools_model(tmp_path_factory.mktemp("models") / "hermes")


@pytest.fixture
def write_recipe(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


@pytest.fixture
def tasks_file(tmp_path: Path) -> Callable[..., Path]:
    """Write rows (tasks, passages, ...) as JSON Lines into ``tmp_path``; returns the path."""

    def write(rows: Sequence[dict[str, Any]], name: str = "tasks.jsonl") -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return path

    return write
