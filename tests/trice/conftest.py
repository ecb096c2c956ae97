"""Fixtures for the TRICE tests: a plugin manager with TRICE, the tools and a scripted backend."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import misstep
import misstep_tools.plugin
import misstep_trice.plugin
import pytest
import yaml
from misstep.recipe import validate_recipe
from trice_components import Scripted, TriceTestPlugin


@pytest.fixture(autouse=True)
def _no_scripted_calls():
    Scripted.seen = []


@pytest.fixture
def plugins() -> misstep.Plugins:
    manager = misstep.Plugins(entry_points=False)
    manager.add(misstep_tools.plugin, "tools")
    manager.add(misstep_trice.plugin, "trice")
    manager.add(TriceTestPlugin(), "trice-test")
    return manager


@pytest.fixture
def run(tmp_path: Path, plugins: misstep.Plugins) -> Callable[..., Any]:
    """Validate recipe YAML text and run it in ``tmp_path/run``; returns the run."""

    def execute(text: str, *, run_dir: Path | None = None) -> Any:
        recipe = validate_recipe(yaml.safe_load(textwrap.dedent(text)), plugins=plugins)
        return misstep.run_recipe(recipe, run_dir=run_dir or tmp_path / "run", plugins=plugins, quiet=True)

    return execute
