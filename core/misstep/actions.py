"""Parsing the agent's actions: ReAct ``Action: tool[argument]`` (NAT) and ``tool(argument)`` (TRICE).

Every input yields either an :class:`Action` or an :class:`ActionError`; the parser never raises.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

FINISH = "finish"
CLOSERS = {"[": "]", "(": ")"}
_ACTION = re.compile(r"(?im)^[ \t*]*Action[ \t]*\d*[ \t]*:[ \t*]*")  # also markdown bold: **Action:**
_THOUGHT = re.compile(r"(?i)^\s*Thought[ \t]*\d*[ \t]*:\s*")
_NAME = re.compile(r"[A-Za-z_][\w-]*")


@dataclass(frozen=True)
class Action:
    """A parsed call: ``tool`` (``finish`` ends the episode), its raw ``argument`` and the thought before it."""

    tool: str
    argument: str
    thought: str = ""
    style: Literal["bracket", "paren"] = "bracket"

    @property
    def is_finish(self) -> bool:
        return self.tool == FINISH

    def render(self) -> str:
        opening = "[" if self.style == "bracket" else "("
        return f"{self.tool}{opening}{self.argument}{CLOSERS[opening]}"


@dataclass(frozen=True)
class ActionError:
    """Why a turn holds no usable action; recorded as an action error, and the episode ends."""

    message: str
    thought: str = ""


def _balanced(text: str, start: int) -> int | None:
    """Index of the bracket closing the one at ``text[start]``, counting nesting of the same kind."""
    opening = text[start]
    closing = CLOSERS[opening]
    depth = 0
    for index in range(start, len(text)):
        char = text[index]
        if char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth == 0:
                return index
    return None


def _call_at(text: str, position: int) -> tuple[str, str, Literal["bracket", "paren"]] | str:
    """Parse ``name[arg]`` or ``name(arg)`` at ``position``; a string result explains what is wrong."""
    match = _NAME.match(text, position)
    if not match:
        snippet = text[position : position + 40].strip() or "nothing"
        return f"expected tool[argument] after 'Action:', found {snippet!r}"
    name = match.group(0)
    index = match.end()
    while index < len(text) and text[index] in " \t":
        index += 1
    if index >= len(text) or text[index] not in CLOSERS:
        return f"expected '[' after the tool name {name!r}"
    end = _balanced(text, index)
    if end is None:
        return f"the argument of {name!r} has no closing {CLOSERS[text[index]]!r}"
    style: Literal["bracket", "paren"] = "bracket" if text[index] == "[" else "paren"
    return name, text[index + 1 : end].strip(), style


def _thought(text: str) -> str:
    return _THOUGHT.sub("", text, count=1).strip()


def parse_action(text: str, tools: Collection[str]) -> Action | ActionError:
    """Parse one ReAct assistant turn. ``tools`` are the callable tool names (``finish`` is implied).

    The first ``Action:`` line counts; text after the call is ignored. Both ``tool[arg]`` and
    ``tool(arg)`` are accepted, with nested brackets inside the argument.
    """
    match = _ACTION.search(text)
    if match is None:
        return ActionError("no 'Action:' in the response", thought=_thought(text))
    thought = _thought(text[: match.start()])
    parsed = _call_at(text, match.end())
    if isinstance(parsed, str):
        return ActionError(parsed, thought=thought)
    name, argument, style = parsed
    known = {FINISH, *tools}
    if name not in known:
        lowered = {k.lower(): k for k in known}
        if name.lower() not in lowered:
            return ActionError(f"unknown tool {name!r}; available: {', '.join(sorted(known))}", thought=thought)
        name = lowered[name.lower()]
    return Action(tool=name, argument=argument, thought=thought, style=style)


def find_call(text: str, tools: Collection[str]) -> Action | None:
    """The first ``tool(argument)`` or ``tool[argument]`` of a known tool anywhere in ``text`` (TRICE style).

    Returns None when the text calls no tool (a plain answer).
    """
    if not tools:
        return None
    pattern = re.compile(r"\b(" + "|".join(re.escape(t) for t in sorted(tools, key=len, reverse=True)) + r")\s*[\[(]")
    for match in pattern.finditer(text):
        parsed = _call_at(text, match.start())
        if not isinstance(parsed, str):
            name, argument, style = parsed
            return Action(tool=name, argument=argument, thought=text[: match.start()].strip(), style=style)
    return None
