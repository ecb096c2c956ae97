"""Hook implementations of misstep-tripost (the entry point named in pyproject.toml)."""

from __future__ import annotations
