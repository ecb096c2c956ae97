"""Hook implementations of misstep-tools (the entry point named in pyproject.toml)."""

from __future__ import annotations
