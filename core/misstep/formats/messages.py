"""Chat messages as the OpenAI API and TRL write them, to and from misstep :class:`Message` records.

Reading checks what misstep relies on and names the message of each problem: a known role, text content
(a list of text parts is joined), calls whose arguments are a JSON object (or a string holding one), and
tool results that answer an earlier call. Calls without an id get ``call_<n>`` (n counts the calls of the
conversation); a tool result without ``tool_call_id`` answers the oldest call not answered yet.
misstep's training attributes travel as the extra keys ``train`` and ``weight``, written only when not the
defaults, so files from elsewhere round-trip unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from misstep.datamodel import Message, ToolCall
from misstep.training.encode import chat_call

ROLES = ("system", "user", "assistant", "tool")
KEYS = {"role", "content", "tool_calls", "tool_call_id", "name", "train", "weight"}


class MessageError(ValueError):
    """A message that cannot be read; ``index`` is its position in the conversation."""

    def __init__(self, index: int, message: str) -> None:
        self.index = index
        super().__init__(f"message {index}: {message}")


def text_of(content: Any, index: int) -> str:
    """A message's content as text: a string, null (empty) or a list of text parts (joined)."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(part.get("text", "")) for part in content)
    raise MessageError(index, f"content must be text, null or a list of text parts, not {json.dumps(content)[:80]}")


def arguments_of(value: Any, index: int, name: str) -> dict[str, Any]:
    """A call's arguments: a JSON object, or a string holding one (the OpenAI API's form)."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError as error:
            raise MessageError(index, f"the arguments of the call to {name!r} are not JSON ({error.msg}): "
                                      f"{value[:80]!r}") from None
    if not isinstance(value, dict):
        raise MessageError(index, f"the arguments of the call to {name!r} must be a JSON object, not "
                                  f"{json.dumps(value)[:80]}")
    return value


def read_call(raw: Any, index: int, number: int) -> ToolCall:
    """One ``{"id", "type": "function", "function": {"name", "arguments"}}`` entry (or the same without the
    ``function`` wrapper); ``number`` names a call without an id."""
    if not isinstance(raw, dict):
        raise MessageError(index, f"a tool call must be an object, not {json.dumps(raw)[:80]}")
    function = raw.get("function", raw)
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name:
        raise MessageError(index, f"a tool call has no function name: {json.dumps(raw)[:80]}")
    call_id = raw.get("id") or f"call_{number}"
    return ToolCall(id=str(call_id), name=name, arguments=arguments_of(function.get("arguments"), index, name))


def read_messages(raw: Any) -> list[Message]:
    """Messages from a list of OpenAI-style message objects; :class:`MessageError` names a bad one."""
    if not isinstance(raw, list):
        raise MessageError(0, f"expected a list of messages, not {type(raw).__name__}")
    messages: list[Message] = []
    unanswered: list[str] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise MessageError(index, f"a message must be an object, not {json.dumps(item)[:80]}")
        role = item.get("role")
        if role not in ROLES:
            raise MessageError(index, f"unknown role {role!r}; the roles are {', '.join(ROLES)}")
        unknown = sorted(key for key, value in item.items() if key not in KEYS and value not in (None, "", [], {}))
        if unknown:
            raise MessageError(index, f"unsupported message key {unknown[0]!r} (known: {', '.join(sorted(KEYS))})")
        tool_calls = []
        for raw_call in item.get("tool_calls") or []:
            call = read_call(raw_call, index, len(seen))
            if call.id in seen:
                raise MessageError(index, f"two tool calls have the id {call.id!r}; give each call its own id")
            seen.add(call.id)
            tool_calls.append(call)
        unanswered.extend(call.id for call in tool_calls)
        fields: dict[str, Any] = {"role": role, "content": text_of(item.get("content"), index),
                                  "tool_calls": tool_calls}
        if role == "tool":
            call_id = item.get("tool_call_id") or (unanswered[0] if unanswered else None)
            if call_id is None or call_id not in unanswered:
                raise MessageError(index, "a tool message with no matching call: " + (
                    f"no earlier assistant message called {call_id!r}" if call_id else
                    "no earlier assistant call is left unanswered"))
            unanswered.remove(call_id)
            fields["tool_call_id"] = str(call_id)
        for key in ("name", "train", "weight"):
            if item.get(key) is not None:
                fields[key] = item[key]
        try:
            messages.append(Message.model_validate(fields))
        except ValidationError as error:
            problem = error.errors()[0]
            where = ".".join(str(part) for part in problem["loc"])
            raise MessageError(index, f"{where + ': ' if where else ''}{problem['msg']}") from None
    return messages


def write_messages(messages: Sequence[Message], *, arguments_as_text: bool = True,
                   null_content: bool = True) -> list[dict[str, Any]]:
    """OpenAI-style message objects. ``arguments_as_text``: call arguments as JSON strings (the OpenAI API)
    or objects (chat templates, TRL). ``null_content``: a calling assistant message without text has
    ``content: null`` (the OpenAI API) or ``""``."""
    rows = []
    for message in messages:
        row: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            row["tool_calls"] = [chat_call(call, arguments_as_text=arguments_as_text) for call in message.tool_calls]
            if null_content and not message.content:
                row["content"] = None
        if message.tool_call_id is not None:
            row["tool_call_id"] = message.tool_call_id
        if message.name is not None:
            row["name"] = message.name
        if message.train is not None:
            row["train"] = message.train
        if message.weight != 1.0:
            row["weight"] = message.weight
        rows.append(row)
    return rows
