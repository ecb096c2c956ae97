"""TRL's conversational dataset formats: ``trl-sft``, ``trl-dpo`` and ``trl-kto``.

- ``trl-sft``: ``{"messages": [...], "tools": [...]}`` per trajectory, call arguments as JSON objects
  (what chat templates take); otherwise as :mod:`misstep.formats.openai`.
- ``trl-dpo``: ``{"prompt": [...], "chosen": [...], "rejected": [...]}`` per pair of a successful and a
  failed trajectory of one task (:func:`misstep.preference_pairs`; the prompt is their longest common
  message prefix). Reading gives both trajectories of each record back.
- ``trl-kto``: ``{"prompt": [...], "completion": [...], "label": true}`` per labelled trajectory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from misstep.datamodel import Message, Trajectory, Verdict
from misstep.formats.fields import FieldMap, RecordReader, json_value, record_fields
from misstep.formats.messages import MessageError, read_messages, write_messages
from misstep.formats.openai import read_chat, write_chat
from misstep.pairs import preference_pairs


def read_sft(rows: Iterable[tuple[int, dict[str, Any]]], fields: FieldMap, path: Path) -> Iterator[Trajectory]:
    return read_chat(rows, fields, path, "trl-sft")


def write_sft(trajectories: Iterable[Trajectory], fields: FieldMap) -> Iterator[dict[str, Any]]:
    return write_chat(trajectories, fields, arguments_as_text=False, null_content=False)


def _conversation(reader: RecordReader, row: dict[str, Any], line: int,
                  parts: tuple[str, ...]) -> tuple[list[Message], int]:
    """The messages of ``parts`` (fields of ``row``) read as one conversation, and the length of the first."""
    lists = []
    for part in parts:
        value = json_value(row.get(part, [] if part == "prompt" else None))
        if not isinstance(value, list):
            raise reader.error(line, f"field {part!r} must be a list of messages (fields: {', '.join(row)})")
        lists.append(value)
    try:
        messages = read_messages([item for value in lists for item in value])
    except MessageError as error:
        raise reader.error(line, f"{' + '.join(parts)}: {error}") from None
    return messages, len(lists[0])


def read_dpo(rows: Iterable[tuple[int, dict[str, Any]]], fields: FieldMap, path: Path) -> Iterator[Trajectory]:
    """Two trajectories per record: the prompt with the chosen side (a success) and with the rejected side."""
    task_field = fields.task_field or "task_id"  # both sides belong to one task
    fields = fields.model_copy(update={"task_field": task_field})
    reader = RecordReader(fields, path, "trl-dpo")
    for line, row in rows:
        pair_id = row.get(fields.id_field, f"{path.stem}-{line}")
        for side, correct in (("chosen", True), ("rejected", False)):
            messages, prompt_len = _conversation(reader, row, line, ("prompt", side))
            record = {key: value for key, value in row.items()
                      if key not in ("chosen", "rejected", "chosen_id", "rejected_id", "chosen_reward",
                                     "rejected_reward", fields.id_field)}
            record[fields.id_field] = row.get(f"{side}_id", f"{pair_id}/{side}")
            record.setdefault(task_field, pair_id)
            trajectory = reader.trajectory(record, line, messages, prompt_len=prompt_len, tools=row.get("tools"),
                                           used=("prompt",))
            score = row.get(f"{side}_reward")
            yield trajectory.model_copy(update={"verdict": Verdict(
                correct=correct, score=float(score) if isinstance(score, int | float) else float(correct))})


def write_dpo(trajectories: Iterable[Trajectory], fields: FieldMap, *, per_task: int | None = None,
              margin: float = 0.0, seed: int = 0) -> Iterator[dict[str, Any]]:
    for pair in preference_pairs(trajectories, per_task=per_task, margin=margin, seed=seed):
        row: dict[str, Any] = {fields.id_field: pair.id}
        if fields.task_field:
            row[fields.task_field] = pair.metadata["task_id"]
        row.update({key: pair.metadata[key]
                    for key in ("chosen_id", "rejected_id", "chosen_reward", "rejected_reward")})
        if pair.tools:
            row["tools"] = pair.tools
        for side in ("prompt", "chosen", "rejected"):
            row[side] = write_messages(getattr(pair, side), arguments_as_text=False, null_content=False)
        yield row


def read_kto(rows: Iterable[tuple[int, dict[str, Any]]], fields: FieldMap, path: Path) -> Iterator[Trajectory]:
    reader = RecordReader(fields.model_copy(update={"label_field": "label"}), path, "trl-kto")
    for line, row in rows:
        messages, prompt_len = _conversation(reader, row, line, ("prompt", "completion"))
        yield reader.trajectory(row, line, messages, prompt_len=prompt_len, tools=row.get("tools"),
                                used=("completion",))


def write_kto(trajectories: Iterable[Trajectory], fields: FieldMap) -> Iterator[dict[str, Any]]:
    """One record per labelled trajectory (unlabelled ones have no place in KTO data and are left out)."""
    for trajectory in trajectories:
        if trajectory.label == "unknown":
            continue
        row = record_fields(trajectory, fields.model_copy(update={"label_field": "label"}), prompt_len=False)
        row["prompt"] = write_messages(trajectory.messages[: trajectory.prompt_len], arguments_as_text=False,
                                       null_content=False)
        row["completion"] = write_messages(trajectory.messages[trajectory.prompt_len:], arguments_as_text=False,
                                           null_content=False)
        yield row
