"""``misstep new-plugin``: writes a ready-to-install plugin distribution from the bundled templates."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from string import Template

from misstep.errors import MisstepError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")


def scaffold_plugin(name: str, directory: Path) -> Path:
    """Create ``directory/misstep-<name>`` (or ``directory/<name>`` if it already starts with misstep-)."""
    short = name.removeprefix("misstep-")
    if not NAME_PATTERN.match(short):
        raise MisstepError(f"plugin name {name!r}: use lower-case letters, digits and dashes, e.g. 'my-tool'")
    distribution = f"misstep-{short}"
    folder = directory / distribution
    if folder.exists():
        raise MisstepError(f"{folder} already exists; choose another name or remove it")
    values = {"distribution": distribution, "short": short, "module": distribution.replace("-", "_"),
              "cls": "".join(part.title() for part in short.split("-")) + "Tool"}
    templates = resources.files("misstep") / "templates" / "plugin"
    for template in _walk(templates):
        relative = Template(str(template.relative_to(templates)).removesuffix(".tmpl")).substitute(values)  # type: ignore[attr-defined]
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(Template(template.read_text(encoding="utf-8")).substitute(values), encoding="utf-8")
    return folder


def _walk(root):  # type: ignore[no-untyped-def]
    for item in sorted(root.iterdir(), key=lambda p: p.name):
        if item.is_dir():
            yield from _walk(item)
        elif item.name.endswith(".tmpl"):
            yield item
