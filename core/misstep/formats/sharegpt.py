"""The ``sharegpt`` format as LLaMA-Factory reads it: ``from``/``value`` turns with tool calls.

```json
{"conversations": [{"from": "human", "value": "What is 3 * 4?"},
                   {"from": "function_call", "value": "{\"name\": \"calculate\", \"arguments\": {\"expression\": \"3 * 4\"}}"},
                   {"from": "observation", "value": "12"},
                   {"from": "gpt", "value": "12"}],
 "system": "Use the tools.", "tools": "[{\"name\": \"calculate\", ...}]", "reward": 1.0}
```
Turns: ``system``, ``human``, ``gpt``, ``function_call`` (one call ``{"name", "arguments"}``, or a list of
them for parallel calls) and ``observation`` (the result; a JSON list of results after parallel calls).
``system`` and ``tools`` (a JSON string of bare function schemas) are record fields. The format has no
call ids (reading numbers the calls ``call_0``, ``call_1``, ...) and no text beside a call: writing a
trajectory with such text is an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from misstep.datamodel import Message, ToolCall, Trajectory
from misstep.errors import DataError
from misstep.formats.fields import FieldMap, RecordReader, record_fields
from misstep.formats.messages import MessageError, arguments_of

CONVERSATIONS = "conversations"
ROLES = {"system": "system", "human": "user", "gpt": "assistant", "function_call": "assistant", "observation": "tool"}


def _calls(value: str, index: int, first: int) -> list[ToolCall]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise MessageError(index, f"a function_call value is not JSON ({error.msg}): {value[:80]!r}") from None
    calls = []
    for offset, call in enumerate(parsed if isinstance(parsed, list) else [parsed]):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise MessageError(index, f"a function_call needs a name: {value[:80]!r}")
        calls.append(ToolCall(id=f"call_{first + offset}", name=call["name"],
                              arguments=arguments_of(call.get("arguments", {}), index, call["name"])))
    return calls


def read_turns(turns: Any) -> list[Message]:
    if not isinstance(turns, list):
        raise MessageError(0, f"expected a list of turns, not {type(turns).__name__}")
    messages: list[Message] = []
    pending: list[ToolCall] = []
    calls = 0
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get("from") not in ROLES or not isinstance(turn.get("value"), str):
            raise MessageError(index, f"expected {{\"from\": {' | '.join(ROLES)}, \"value\": text}}, not "
                                      f"{json.dumps(turn)[:80]}")
        kind, value = turn["from"], turn["value"]
        if kind == "function_call":
            pending = _calls(value, index, calls)
            calls += len(pending)
            messages.append(Message(role="assistant", tool_calls=pending))
        elif kind == "observation":
            if not pending:
                raise MessageError(index, "an observation with no matching function_call before it")
            try:
                results = json.loads(value) if len(pending) > 1 else [value]
            except json.JSONDecodeError:
                results = [value]
            if not isinstance(results, list) or len(results) != len(pending):
                raise MessageError(index, f"{len(pending)} parallel calls need a JSON list of {len(pending)} results")
            messages.extend(Message(role="tool", content=str(result), tool_call_id=call.id, name=call.name)
                            for call, result in zip(pending, results))
            pending = []
        else:
            messages.append(Message(role=ROLES[kind], content=value))  # type: ignore[arg-type]
    return messages


def read(rows: Iterable[tuple[int, dict[str, Any]]], fields: FieldMap, path: Path) -> Iterator[Trajectory]:
    reader = RecordReader(fields, path, "sharegpt")
    key = fields.messages_key(CONVERSATIONS)
    for line, row in rows:
        messages = reader.conversation(row, line, key, read_turns)
        if row.get("system"):
            messages.insert(0, Message(role="system", content=str(row["system"])))
        yield reader.trajectory(row, line, messages, tools=row.get("tools") or None, used=(key, "system"))


def write_turns(messages: list[Message], where: str, start: int = 0) -> list[dict[str, str]]:
    """The turns of ``messages`` (the conversation's messages from index ``start`` on)."""
    turns: list[dict[str, str]] = []
    results: list[str] = []
    for index, message in enumerate(messages, start=start):
        if message.role == "tool" and message.tool_call_id is not None:
            results.append(message.content)
            continue
        if results:
            turns.append({"from": "observation", "value": results[0] if len(results) == 1 else json.dumps(results)})
            results = []
        if message.tool_calls:
            if message.content:
                raise DataError(f"{where}, message {index}: sharegpt cannot hold text beside a tool call; convert "
                                "to openai or trl-sft instead")
            calls = [{"name": call.name, "arguments": call.arguments} for call in message.tool_calls]
            turns.append({"from": "function_call", "value": json.dumps(calls[0] if len(calls) == 1 else calls,
                                                                        ensure_ascii=False)})
        else:
            kind = {"user": "human", "assistant": "gpt", "system": "system", "tool": "observation"}[message.role]
            turns.append({"from": kind, "value": message.content})
    if results:
        turns.append({"from": "observation", "value": results[0] if len(results) == 1 else json.dumps(results)})
    return turns


def write(trajectories: Iterable[Trajectory], fields: FieldMap) -> Iterator[dict[str, Any]]:
    key = fields.messages_key(CONVERSATIONS)
    for trajectory in trajectories:
        row = record_fields(trajectory, fields)
        messages = list(trajectory.messages)
        if messages and messages[0].role == "system":
            row["system"] = messages.pop(0).content
        if trajectory.tools:
            row["tools"] = json.dumps([schema["function"] for schema in trajectory.tools], ensure_ascii=False)
        row[key] = write_turns(messages, f"trajectory {trajectory.id!r}", len(trajectory.messages) - len(messages))
        yield row
