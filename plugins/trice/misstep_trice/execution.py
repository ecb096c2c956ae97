"""Running a TRICE response: a plain answer, or one ``tool(argument)`` call whose result is the answer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import misstep
from misstep.actions import Action, find_call


@dataclass(frozen=True)
class Execution:
    """A response, the tool call found in it (if any) and the tool's observation."""

    response: str
    call: Action | None = None
    observation: str | None = None

    @property
    def used_tool(self) -> bool:
        return self.call is not None

    @property
    def answer(self) -> str:
        """What is judged: the tool's result when a tool was called, else the response itself."""
        return self.observation if self.call is not None and self.observation is not None else self.response


def build_tools(refs: Sequence[misstep.ToolRef]) -> dict[str, misstep.Tool]:
    """Tool instances by the name a response calls them with."""
    return {ref.use: ref.build() for ref in refs}


def execute(response: str, tools: Mapping[str, misstep.Tool]) -> Execution:
    """Find the first call of a known tool in ``response`` and run it under the tool guard (``misstep.observe``)."""
    call = find_call(response, tools)
    if call is None:
        return Execution(response)
    return Execution(response, call, misstep.observe(tools[call.tool], call.argument))
