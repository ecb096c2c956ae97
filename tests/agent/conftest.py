"""Fixtures for the agent runtime tests: plugins with the test components, a tiny local model, files."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import misstep
import pytest
from agent_components import AgentTestPlugin, ScriptedBackend


@pytest.fixture(autouse=True)
def _no_scripted_calls():
    ScriptedBackend.calls = []


@pytest.fixture
def plugins() -> misstep.Plugins:
    manager = misstep.Plugins(entry_points=False)
    manager.add(AgentTestPlugin(), "agent-test")
    return manager


@pytest.fixture
def tasks_file(tmp_path: Path) -> Callable[[Sequence[dict]], Path]:
    def write(rows: Sequence[dict], name: str = "tasks.jsonl") -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        return path

    return write


