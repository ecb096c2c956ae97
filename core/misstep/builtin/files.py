"""File-based components: the generic JSONL task loader and the trajectory-file source."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import Field

from misstep.components import Options, TaskLoader, TrajectorySource
from misstep.datamodel import Task, Trajectory
from misstep.errors import DataError
from misstep.hookspecs import hookimpl
from misstep.jsonl import read_jsonl


class JsonlTasks(TaskLoader["JsonlTasks.Options"]):
    """Tasks from any JSON Lines file, with a mapping from its field names to the task's."""

    name = "jsonl"

    class Options(Options):
        path: Path
        question: str = Field(default="question", description="field holding the question")
        answer: str | None = Field(default="answer", description="field holding the gold answer")
        id: str | None = Field(default="id", description="field holding the id (default: line number)")
        dataset: str = ""
        split: str = ""
        limit: int | None = Field(default=None, gt=0)

    def load(self) -> Iterator[Task]:
        opts = self.options
        dataset = opts.dataset or opts.path.stem
        count = 0
        for number, row in iter_json_rows(opts.path):
            if opts.limit is not None and count >= opts.limit:
                return
            if opts.question not in row:
                raise DataError(f"no field {opts.question!r} (fields: {', '.join(row)}); set `question:` to the "
                                "field that holds the question", path=opts.path, line=number)
            task_id = row.get(opts.id) if opts.id else None
            yield Task(
                id=str(task_id if task_id is not None else f"{dataset}-{number}"),
                question=str(row[opts.question]),
                answer=row.get(opts.answer) if opts.answer else None,
                dataset=dataset,
                split=opts.split,
                metadata={k: v for k, v in row.items() if k not in {opts.question, opts.answer, opts.id}},
            )
            count += 1


def iter_json_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for a JSONL file, or (index + 1, object) for a file holding one JSON list."""
    if not path.exists():
        raise DataError("file not found", path=path)
    with path.open(encoding="utf-8") as handle:
        first = handle.read(1)
        while first and first.isspace():
            first = handle.read(1)
        handle.seek(0)
        if first == "[":
            try:
                items = json.load(handle)
            except json.JSONDecodeError as error:
                raise DataError(f"not valid JSON: {error.msg}", path=path, line=error.lineno) from None
            for index, item in enumerate(items, start=1):
                if not isinstance(item, dict):
                    raise DataError(f"item {index} is not an object", path=path)
                yield index, item
            return
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"not valid JSON: {error.msg}", path=path, line=number) from None
            if not isinstance(row, dict):
                raise DataError("expected a JSON object", path=path, line=number)
            yield number, row


class TrajectoryFile(TrajectorySource["TrajectoryFile.Options"]):
    """Trajectories from misstep's own JSON Lines store."""

    name = "trajectories"

    class Options(Options):
        path: Path

    def trajectories(self, ctx: Any) -> Iterator[Trajectory]:
        yield from read_jsonl(self.options.path, Trajectory)


@hookimpl
def register_tasks(register):  # type: ignore[no-untyped-def]
    register(JsonlTasks)


@hookimpl
def register_sources(register):  # type: ignore[no-untyped-def]
    register(TrajectoryFile)
