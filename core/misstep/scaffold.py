"""``misstep new-plugin``: writes a ready-to-install plugin distribution from the bundled templates.

The distribution holds one working component of the chosen kind and a test that passes as generated
(``pytest`` inside the folder, installed or not). docs/plugins.md shows these same components.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from string import Template

from misstep.errors import MisstepError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")

# --kind -> the component kind it makes (the registry's name for it)
SCAFFOLD_KINDS = {"tool": "tool", "tasks": "task", "verifier": "verifier", "reformatter": "reformatter",
                  "loss": "loss", "backend": "backend", "source": "source", "stage": "stage"}


def render_plugin(name: str, kind: str = "tool") -> dict[str, str]:
    """The files of plugin ``name`` with one component of ``kind``: relative path -> text."""
    short = name.removeprefix("misstep-")
    if not NAME_PATTERN.match(short):
        raise MisstepError(f"plugin name {name!r}: use lower-case letters, digits and dashes, e.g. 'my-tool'")
    if kind not in SCAFFOLD_KINDS:
        raise MisstepError(f"unknown kind {kind!r}; choose one of: {', '.join(SCAFFOLD_KINDS)}")
    distribution = f"misstep-{short}"
    module = distribution.replace("-", "_")
    values = {"distribution": distribution, "short": short, "module": module, "kind": SCAFFOLD_KINDS[kind],
              "cls": "".join(part.title() for part in short.split("-")) + kind.title(),
              "requirement": "misstep[train]" if kind == "loss" else "misstep"}
    templates = resources.files("misstep") / "templates"

    def fill(template: str) -> str:
        return Template((templates / template).read_text(encoding="utf-8")).substitute(values)

    return {
        "pyproject.toml": fill("plugin/pyproject.toml.tmpl"),
        "README.md": fill("plugin/README.md.tmpl"),
        f"{module}/__init__.py": fill(f"kinds/{kind}.py.tmpl"),
        f"tests/test_{module}.py": fill(f"kinds/test_{kind}.py.tmpl"),
    }


def scaffold_plugin(name: str, directory: Path, kind: str = "tool") -> Path:
    """Create ``directory/misstep-<name>`` (or ``directory/<name>`` if it already starts with misstep-)."""
    files = render_plugin(name, kind)
    folder = directory / f"misstep-{name.removeprefix('misstep-')}"
    if folder.exists():
        raise MisstepError(f"{folder} already exists; choose another name or remove it")
    for relative, text in files.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return folder
