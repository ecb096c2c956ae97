"""Fixtures for the agent runtime tests: plugins with the test components."""

from __future__ import annotations

import misstep
import pytest
from agent_components import AgentTestPlugin, ScriptedBackend
from local_http import Servers


@pytest.fixture(autouse=True)
def _no_scripted_calls():
    ScriptedBackend.calls = []


@pytest.fixture
def plugins() -> misstep.Plugins:
    manager = misstep.Plugins(entry_points=False)
    manager.add(AgentTestPlugin(), "agent-test")
    return manager


@pytest.fixture
def http_servers():
    """Start HTTP servers on 127.0.0.1 (``http_servers.start(answer)``); all stopped after the test."""
    servers = Servers()
    yield servers
    servers.close()
