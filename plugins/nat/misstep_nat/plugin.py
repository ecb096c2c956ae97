"""Hook implementations of misstep-nat (the entry point named in pyproject.toml)."""

from __future__ import annotations
