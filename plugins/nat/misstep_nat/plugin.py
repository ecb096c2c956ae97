"""Hook implementations of misstep-nat (the entry point named in pyproject.toml)."""

from __future__ import annotations

import misstep

from misstep_nat.reformatters import REFORMATTERS


@misstep.hookimpl
def register_reformatters(register):  # type: ignore[no-untyped-def]
    for reformatter in REFORMATTERS:
        register(reformatter)
