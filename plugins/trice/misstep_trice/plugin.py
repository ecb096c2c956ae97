"""Hook implementations of misstep-trice (the entry point named in pyproject.toml)."""

from __future__ import annotations
