"""`misstep new-plugin NAME --kind KIND`: every kind's folder passes its own test as generated, and
docs/plugins.md shows exactly these components."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from misstep.cli import cli
from misstep.scaffold import SCAFFOLD_KINDS, render_plugin

ROOT = Path(__file__).resolve().parents[2]

# `pytest` inside each folder, all in one interpreter (each folder's pyproject puts it on sys.path)
DRIVER = """
import os, sys, pytest
failed = []
for folder in sys.argv[1:]:
    os.chdir(folder)
    if pytest.main(["-q", "-p", "no:cacheprovider"]) != 0:
        failed.append(folder)
sys.exit(f"failed: {failed}" if failed else 0)
"""


@pytest.mark.slow
def test_every_kind_scaffolds_a_plugin_whose_test_passes(tmp_path: Path) -> None:
    folders = []
    for kind in SCAFFOLD_KINDS:
        result = CliRunner().invoke(cli, ["new-plugin", f"demo-{kind}", "--kind", kind, "--dir", str(tmp_path)])
        assert result.exit_code == 0, result.output
        folders.append(tmp_path / f"misstep-demo-{kind}")
        assert {p.name for p in folders[-1].iterdir()} == {"pyproject.toml", "README.md", f"misstep_demo_{kind}",
                                                           "tests"}
    env = {**os.environ, "PYTHONPATH": str(ROOT / "core")}  # misstep itself; the plugin is not installed
    result = subprocess.run([sys.executable, "-c", DRIVER, *map(str, folders)], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert len(re.findall(r"\b\d+ passed", result.stdout)) == len(SCAFFOLD_KINDS)


def test_unknown_kind_and_bad_name_are_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["new-plugin", "x-y", "--kind", "widget", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "widget" in result.output
    with pytest.raises(Exception, match="lower-case"):
        render_plugin("Bad Name!", "loss")


def test_docs_show_what_the_scaffold_writes() -> None:
    text = (ROOT / "docs" / "plugins.md").read_text()
    shown = re.findall(r"<!-- scaffold: (\w+) ([\w-]+) -->\n`[^`]+`:\n\n```python\n(.*?)```\n\n`[^`]+`:\n\n"
                       r"```python\n(.*?)```", text, re.DOTALL)
    assert sorted(kind for kind, *_ in shown) == sorted(SCAFFOLD_KINDS)
    for kind, name, code, test in shown:
        files = render_plugin(name, kind)
        module = "misstep_" + name.replace("-", "_")
        assert code == files[f"{module}/__init__.py"], f"docs/plugins.md: the {kind} example differs from the scaffold"
        assert test == files[f"tests/test_{module}.py"], f"docs/plugins.md: the {kind} test differs from the scaffold"
