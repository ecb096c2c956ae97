"""The core reads bottom-up: lower layers do not load the plugin manager, recipes or torch, and the
public names of ``misstep`` are the ones its type-checking imports declare."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import misstep

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module", ["misstep", "misstep.models", "misstep.specs", "misstep.training.engine",
                                    "misstep.backends.hf", "misstep.components", "misstep.training.token_loss"])
def test_lower_layers_do_not_import_the_plugin_manager(module: str) -> None:
    code = (f"import sys, {module}\n"
            "print(sorted(m for m in ('misstep.plugins', 'pluggy', 'misstep.recipe', 'torch') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={"PYTHONPATH": str(ROOT / "core")})
    assert result.stdout.strip() == "[]", f"import {module} loaded {result.stdout.strip()}"


def test_public_names_match_their_type_checking_imports() -> None:
    tree = ast.parse((ROOT / "core" / "misstep" / "__init__.py").read_text())
    block = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    declared = {alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    assert declared == misstep._EXPORTS
    for name in misstep.__all__:
        assert getattr(misstep, name) is not None
    assert misstep.testing.__name__ == "misstep.testing"  # submodules too, on first use
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        misstep.nope  # noqa: B018


def test_loading_every_first_party_plugin_imports_no_torch_or_sympy() -> None:
    # what every `misstep` command does first: `misstep --help` stays about a second, not four
    code = ("import sys, misstep\nmisstep.get_plugins()\n"
            "print(sorted(m for m in ('torch', 'sympy', 'transformers', 'rank_bm25') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", f"loading the plugins imported {result.stdout.strip()}"
