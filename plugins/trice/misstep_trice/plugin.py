"""Hook implementations of misstep-trice (the entry point named in pyproject.toml)."""

from __future__ import annotations

import misstep
from misstep_trice.answers import TriceMath, TriceQA


@misstep.hookimpl
def register_verifiers(register):  # type: ignore[no-untyped-def]
    register(TriceMath)
    register(TriceQA)
