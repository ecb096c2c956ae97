"""File-based components: the generic JSONL task loader and the trajectory-file source."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from misstep import components
from misstep.components import InputPath, TaskLoader, TrajectorySource
from misstep.datamodel import Task, Trajectory
from misstep.errors import DataError
from misstep.formats import FieldMap, FormatName, read_trajectories
from misstep.hookspecs import Register, hookimpl
from misstep.jsonl import AllowEmpty, iter_json_rows, validate_record


class JsonlTasks(TaskLoader["JsonlTasks.Options"]):
    """Tasks from any JSON Lines file, with a mapping from its field names to the task's."""

    name = "jsonl"

    class Options(components.Options):
        path: Annotated[Path, InputPath()]
        question: str = Field(default="question", description="field holding the question")
        answer: str | None = Field(default="answer", description="field holding the gold answer")
        id: str | None = Field(default="id", description="field holding the id (default: line number)")
        dataset: str = ""
        split: str = ""
        limit: int | None = Field(default=None, gt=0)
        allow_empty: AllowEmpty = False

    def load(self) -> Iterator[Task]:
        opts = self.options
        dataset = opts.dataset or opts.path.stem
        count = 0
        for number, row in iter_json_rows(opts.path, allow_empty=opts.allow_empty):
            if opts.limit is not None and count >= opts.limit:
                return
            if opts.question not in row:
                raise DataError(f"no field {opts.question!r} (fields: {', '.join(row)}); set `question:` to the "
                                "field that holds the question", path=opts.path, line=number)
            task_id = row.get(opts.id) if opts.id else None
            yield validate_record(Task, {
                "id": str(task_id if task_id is not None else f"{dataset}-{number}"),
                "question": str(row[opts.question]),
                "answer": row.get(opts.answer) if opts.answer else None,
                "dataset": dataset,
                "split": opts.split,
                "metadata": {k: v for k, v in row.items() if k not in {opts.question, opts.answer, opts.id}},
            }, path=opts.path, line=number)
            count += 1


class TrajectoryFile(TrajectorySource["TrajectoryFile.Options"]):
    """Trajectories from a file in misstep's format or another one (openai, sharegpt, trl-*: docs/formats.md)."""

    name = "trajectories"

    class Options(FieldMap):
        path: Annotated[Path, InputPath()] = Field(description="JSONL, JSON list, Parquet or CSV file")
        format: FormatName = Field(default="misstep", description="the file's format")
        allow_empty: AllowEmpty = False

    def trajectories(self, ctx: Any) -> Iterator[Trajectory]:
        opts = self.options
        yield from read_trajectories(opts.path, opts.format, opts, allow_empty=opts.allow_empty)


@hookimpl
def register_tasks(register: Register) -> None:
    register(JsonlTasks)


@hookimpl
def register_sources(register: Register) -> None:
    register(TrajectoryFile)
