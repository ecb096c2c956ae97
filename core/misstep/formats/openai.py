"""The ``openai`` format: one record per trajectory holding its chat messages as the OpenAI API writes them.

```json
{"id": "t1#0", "task_id": "t1", "reward": 1.0, "tools": [...],
 "messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."},
              {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
               "function": {"name": "calculate", "arguments": "{\"expression\": \"3 * 4\"}"}}]},
              {"role": "tool", "tool_call_id": "call_1", "name": "calculate", "content": "12"},
              {"role": "assistant", "content": "12"}]}
```
Call arguments are JSON strings and a calling turn without text has ``content: null``. ``trl-sft``
(:mod:`misstep.formats.trl`) is the same record with arguments as objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from misstep.datamodel import Trajectory
from misstep.formats.fields import FieldMap, RecordReader, record_fields
from misstep.formats.messages import read_messages, write_messages

MESSAGES = "messages"


def read_chat(rows: Iterable[tuple[int, dict[str, Any]]], fields: FieldMap, path: Path,
              source: str) -> Iterator[Trajectory]:
    """Trajectories from records holding a message list (the ``openai`` and ``trl-sft`` formats)."""
    reader = RecordReader(fields, path, source)
    key = fields.messages_key(MESSAGES)
    for line, row in rows:
        messages = reader.conversation(row, line, key, read_messages)
        yield reader.trajectory(row, line, messages, tools=row.get("tools"), used=(key,))


def write_chat(trajectories: Iterable[Trajectory], fields: FieldMap, *, arguments_as_text: bool,
               null_content: bool) -> Iterator[dict[str, Any]]:
    key = fields.messages_key(MESSAGES)
    for trajectory in trajectories:
        row = record_fields(trajectory, fields)
        row[key] = write_messages(trajectory.messages, arguments_as_text=arguments_as_text, null_content=null_content)
        yield row


def read(rows: Iterable[tuple[int, dict[str, Any]]], fields: FieldMap, path: Path) -> Iterator[Trajectory]:
    return read_chat(rows, fields, path, "openai")


def write(trajectories: Iterable[Trajectory], fields: FieldMap) -> Iterator[dict[str, Any]]:
    return write_chat(trajectories, fields, arguments_as_text=True, null_content=True)
