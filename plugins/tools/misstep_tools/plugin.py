"""Hook implementations of misstep-tools (the entry point named in pyproject.toml)."""

from __future__ import annotations

import misstep

from misstep_tools.calculator import Calculate, Calculator
from misstep_tools.search import Search


@misstep.hookimpl
def register_tools(register: misstep.Register) -> None:
    register(Calculate)
    register(Calculator)
    register(Search)
