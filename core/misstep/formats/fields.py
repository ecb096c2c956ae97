"""Which fields of a record hold what: the field mapping shared by the formats, the CLI and the source.

A record's id, task, trial, reward and label go to the trajectory's id, task id, sample number and verdict;
every other field goes to its metadata, and writing puts them back, so a file read and written with the
same mapping keeps its fields.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field

from misstep.components import Options
from misstep.datamodel import Message, ToolSchema, Trajectory, Verdict
from misstep.errors import DataError
from misstep.formats.messages import MessageError

T = TypeVar("T")
LABELS = {"true": True, "false": False, "positive": True, "negative": False, "success": True, "failure": False,
          "desirable": True, "undesirable": False}


class FieldMap(Options):
    """Field names of the records (the ``misstep convert`` flags and the ``trajectories`` source's options)."""

    messages_field: str | None = Field(default=None, description="field holding the messages (default: the "
                                       "format's: messages; conversations for sharegpt)")
    reward_field: str | None = Field(default="reward", description="field holding a float or bool reward "
                                     "(the verdict's score)")
    success_threshold: float = Field(default=1.0, description="a reward at least this high is a success")
    label_field: str | None = Field(default=None, description="field holding the success label (bool, 0/1, "
                                    "positive/negative, success/failure); decides success when present")
    task_field: str | None = Field(default="task_id", description="field naming the task (default when absent: "
                                   "the record's id)")
    trial_field: str | None = Field(default=None, description="field numbering a task's trials (default: their "
                                    "order in the file)")
    id_field: str = Field(default="id", description="field holding the trajectory id (default when absent: "
                          "<task>#<trial>)")
    tools: Path | None = Field(default=None, description="JSON file with a list of tool schemas, attached to "
                               "records that carry none")

    def messages_key(self, default: str) -> str:
        return self.messages_field or default


def tool_schemas(value: Any, where: str) -> list[ToolSchema]:
    """Tool schemas from a list (or a JSON string holding one) of ``{"type": "function", "function": {...}}``
    or bare ``{"name", "description", "parameters"}`` objects, as the wrapped form."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError as error:
            raise ValueError(f"{where}: not JSON ({error.msg})") from None
    if not isinstance(value, list):
        raise ValueError(f"{where}: expected a list of tool schemas")
    schemas = []
    for index, item in enumerate(value):
        function = item.get("function", item) if isinstance(item, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ValueError(f"{where}: item {index} is not a tool schema with a function name")
        schemas.append(item if "function" in item else {"type": "function", "function": item})
    return schemas


def json_value(value: Any) -> Any:
    """A field that a CSV file holds as JSON text, parsed; other values as they are."""
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def load_tools(path: Path | None) -> list[ToolSchema]:
    """The tool schemas of a ``--tools`` file (none without a file)."""
    if path is None:
        return []
    if not path.is_file():
        raise DataError("tools file not found", path=path)
    try:
        return tool_schemas(path.read_text(encoding="utf-8"), "the file")
    except ValueError as error:
        raise DataError(str(error), path=path) from None


def _reward(value: Any) -> float:
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, str):
        return float(value)  # ValueError when it is not a number
    raise ValueError


def _label(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in LABELS:
        return LABELS[value.strip().lower()]
    raise ValueError


class RecordReader:
    """Turns one record's fields into a trajectory's identity, verdict and metadata, counting trials per task."""

    def __init__(self, fields: FieldMap, path: Path, source: str) -> None:
        self.fields = fields
        self.path = path
        self.source = source
        self.default_tools = load_tools(fields.tools)
        self._trials: Counter[str] = Counter()

    def error(self, line: int, message: str) -> DataError:
        return DataError(message, path=self.path, line=line)

    def conversation(self, row: dict[str, Any], line: int, key: str,
                     read: Callable[[Any], list[Message]]) -> list[Message]:
        """The messages in the record's field ``key``, read with ``read``; a missing field or a bad message is a
        DataError at the record."""
        if key not in row:
            raise self.error(line, f"no field {key!r} (fields: {', '.join(row)}); set --messages-field "
                                   "(`messages_field:`) to the field that holds the messages")
        try:
            return read(json_value(row[key]))
        except MessageError as error:
            raise self.error(line, str(error)) from None

    def _parsed(self, row: dict[str, Any], line: int, field: str, parse: Callable[[Any], T], expected: str) -> T:
        try:
            return parse(row[field])
        except ValueError:
            raise self.error(line, f"field {field!r} is not {expected}: {row[field]!r}") from None

    def verdict(self, row: dict[str, Any], line: int) -> Verdict | None:
        fields = self.fields
        score: float | None = None
        correct: bool | None = None
        if fields.reward_field and row.get(fields.reward_field) is not None:
            score = self._parsed(row, line, fields.reward_field, _reward, "a number or bool")
            correct = score >= fields.success_threshold
        if fields.label_field and row.get(fields.label_field) is not None:
            correct = self._parsed(row, line, fields.label_field, _label,
                                   f"a label ({', '.join(LABELS)}, a bool or 0/1)")
        if correct is None:
            return None
        if score is None:
            return Verdict(correct=correct, score=float(correct))
        return Verdict(correct=correct, score=score, metrics={"reward": score})

    def trajectory(self, row: dict[str, Any], line: int, messages: list[Message], *, prompt_len: int | None = None,
                   tools: Any = None, used: tuple[str, ...] = ()) -> Trajectory:
        """The trajectory of a record whose messages were read; ``used`` names the fields the format consumed."""
        fields = self.fields
        record_id = row.get(fields.id_field)
        task = row.get(fields.task_field) if fields.task_field else None
        task_id = str(task if task is not None else record_id if record_id is not None else f"{self.path.stem}-{line}")
        trial = row.get(fields.trial_field) if fields.trial_field else None
        if trial is not None and not isinstance(trial, int):
            raise self.error(line, f"field {fields.trial_field!r} is not an integer: {trial!r}")
        sample = self._trials[task_id] if trial is None else trial
        self._trials[task_id] += 1
        try:
            schemas = tool_schemas(tools, "field 'tools'") if tools is not None else self.default_tools
        except ValueError as error:
            raise self.error(line, str(error)) from None
        mapped = {fields.id_field, fields.task_field, fields.trial_field, fields.reward_field, fields.label_field,
                  "tools", "prompt_len", *used}
        first_assistant = next((i for i, m in enumerate(messages) if m.role == "assistant"), len(messages))
        stored_len = row.get("prompt_len")
        return Trajectory(
            id=str(record_id) if record_id is not None else f"{task_id}#{sample}",
            task_id=task_id,
            messages=messages,
            prompt_len=prompt_len if prompt_len is not None else
            stored_len if isinstance(stored_len, int) and 0 <= stored_len <= len(messages) else first_assistant,
            verdict=self.verdict(row, line),
            tools=schemas,
            provenance={"source": self.source, "sample": sample},  # type: ignore[arg-type]
            metadata={key: value for key, value in row.items() if key not in mapped},
        )


def record_fields(trajectory: Trajectory, fields: FieldMap, *, prompt_len: bool = True) -> dict[str, Any]:
    """The mapped fields of a trajectory's record (the inverse of :meth:`RecordReader.trajectory`): its
    metadata, id, task, trial, reward, label and tools. ``prompt_len`` is written only where the prompt does
    not end at the first assistant turn (where reading would put it)."""
    row: dict[str, Any] = dict(trajectory.metadata)
    row[fields.id_field] = trajectory.id
    if fields.task_field:
        row[fields.task_field] = trajectory.task_id
    if fields.trial_field:
        row[fields.trial_field] = trajectory.provenance.sample
    verdict = trajectory.verdict
    if verdict is not None and fields.reward_field:
        row[fields.reward_field] = verdict.score
    if verdict is not None and verdict.correct is not None and fields.label_field:
        row[fields.label_field] = verdict.correct
    if trajectory.tools:
        row["tools"] = trajectory.tools
    first_assistant = next((i for i, m in enumerate(trajectory.messages) if m.role == "assistant"),
                           len(trajectory.messages))
    if prompt_len and trajectory.prompt_len != first_assistant:
        row["prompt_len"] = trajectory.prompt_len
    return row
