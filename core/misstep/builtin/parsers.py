"""Built-in tool-call parsers: ``hermes`` (``<tool_call>{json}</tool_call>`` blocks, as Hermes, Qwen 2.5/3
and SmolLM3 write them) and ``json`` (the reply is a bare JSON call, or a list of them)."""

from __future__ import annotations

import json
import re
from typing import Any

from misstep.components import ParsedCall, ParsedReply, ToolCallParser
from misstep.hookspecs import Register, hookimpl

_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def call_from_json(value: Any) -> ParsedCall | str:
    """A call from ``{"name": ..., "arguments": {...}}`` (``parameters`` also names the arguments, and they may
    be a JSON string); a string says what is wrong."""
    if not isinstance(value, dict) or not isinstance(value.get("name"), str) or not value["name"]:
        return f'expected {{"name": ..., "arguments": {{...}}}}, found {json.dumps(value)[:80]}'
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as error:
            return f"the arguments of {value['name']!r} are not JSON ({error.msg})"
    if not isinstance(arguments, dict):
        return f"the arguments of {value['name']!r} must be a JSON object, found {json.dumps(arguments)[:80]}"
    return ParsedCall(name=value["name"], arguments=arguments)


class HermesParser(ToolCallParser):
    """Calls in <tool_call>{"name": ..., "arguments": {...}}</tool_call> blocks; the text around them is the content."""

    name = "hermes"

    def parse(self, text: str) -> ParsedReply:
        if "<tool_call>" not in text:
            return ParsedReply(content=text.strip())
        calls = []
        for match in _BLOCK.finditer(text):
            body = match.group(1).strip()
            try:
                call = call_from_json(json.loads(body))
            except json.JSONDecodeError as error:
                call = f"not JSON ({error.msg}): {body[:80]!r}"
            if isinstance(call, str):
                return ParsedReply(content=text.strip(), error=f"a <tool_call> block cannot be read: {call}")
            calls.append(call)
        return ParsedReply(content=_BLOCK.sub("", text).strip(), calls=tuple(calls))


class JsonParser(ToolCallParser):
    """The whole reply (optionally in a ```json fence) is one JSON call {"name", "arguments"} or a list of them;
    any other reply is the content."""

    name = "json"

    def parse(self, text: str) -> ParsedReply:
        body = text.strip()
        fenced = _FENCE.match(body)
        body = fenced.group(1) if fenced else body
        if not body.startswith(("{", "[")):
            return ParsedReply(content=text.strip())
        try:
            value = json.loads(body)
        except json.JSONDecodeError as error:
            if '"name"' in body:
                return ParsedReply(content=text.strip(), error=f"the call is not JSON ({error.msg}): {body[:80]!r}")
            return ParsedReply(content=text.strip())
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(item, dict) and "name" in item for item in items):
            return ParsedReply(content=text.strip())  # JSON, but not calls: an answer
        calls = [call_from_json(item) for item in items]
        problems = [call for call in calls if isinstance(call, str)]
        if problems:
            return ParsedReply(content=text.strip(), error=f"a call cannot be read: {problems[0]}")
        return ParsedReply(content="", calls=tuple(call for call in calls if not isinstance(call, str)))


@hookimpl
def register_parsers(register: Register) -> None:
    register(HermesParser)
    register(JsonParser)
