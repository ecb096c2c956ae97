"""Core pipeline stages that need no model: ``tasks`` (materialise tasks) and ``reformat``."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, model_validator

from misstep import components
from misstep.components import Reformatter, Stage
from misstep.context import StageContext
from misstep.datamodel import Task, Trajectory
from misstep.hookspecs import Register, hookimpl
from misstep.jsonl import read_jsonl, write_jsonl
from misstep.recipe import ReformatterRef, SourceRef, StageInput, TaskRef, TaskRefs, dump_recipe


def load_tasks(refs: list[TaskRef], *, limit: int | None = None, shuffle: bool = False, seed: int = 0) -> list[Task]:
    """Tasks from several loaders, ids made unique per dataset, optionally shuffled and cut to ``limit``."""
    tasks: list[Task] = []
    for ref in refs:
        tasks.extend(ref.build().load())
    if shuffle:
        random.Random(seed).shuffle(tasks)
    return tasks[:limit] if limit is not None else tasks


class TasksStage(Stage["TasksStage.Options"]):
    """Load tasks from one or more loaders into ``tasks.jsonl`` (shuffled, limited)."""

    name = "tasks"

    class Options(components.Options):
        tasks: TaskRefs
        limit: int | None = Field(default=None, gt=0)
        shuffle: bool = False

    def run(self, ctx: StageContext) -> dict[str, Any]:
        tasks = load_tasks(self.options.tasks, limit=self.options.limit, shuffle=self.options.shuffle, seed=ctx.seed)
        path = ctx.dir / "tasks.jsonl"
        write_jsonl(path, tasks)
        ctx.log(f"{len(tasks)} tasks -> {path}")
        return {"tasks": path, "count": len(tasks)}


class TrajectoryInput(components.Options):
    """Options of a stage that reads trajectories: an earlier stage's, or a source's, and their tasks."""

    trajectories: Annotated[str | None, StageInput()] = Field(
        default=None, description="earlier stage whose `trajectories` output to read")
    source: SourceRef | None = Field(default=None, description="or: a trajectory source")
    tasks: Annotated[str | None, StageInput()] = Field(
        default=None, description="earlier stage whose `tasks` output holds the questions "
        "(default: the `trajectories` stage's own tasks, when it has them)")

    @model_validator(mode="after")
    def _one_input(self) -> TrajectoryInput:
        if (self.trajectories is None) == (self.source is None):
            raise ValueError("give exactly one of `trajectories:` (an earlier stage) or `source:`")
        return self

    def read_trajectories(self, ctx: StageContext) -> Iterator[Trajectory]:
        """The trajectories of the stage or the source."""
        if self.source is not None:
            yield from self.source.build().trajectories(ctx)
        elif self.trajectories is not None:  # the options hold exactly one of the two
            yield from read_jsonl(ctx.output(self.trajectories, "trajectories"), Trajectory)

    def tasks_stage(self, ctx: StageContext) -> str | None:
        """The stage whose tasks to read: ``tasks``, or the ``trajectories`` stage when it wrote tasks."""
        if self.tasks is not None:
            return self.tasks
        return self.trajectories if self.trajectories is not None and ctx.has_output(self.trajectories, "tasks") \
            else None

    def read_tasks(self, ctx: StageContext) -> dict[str, Task]:
        """The tasks by id (none when no stage holds them)."""
        stage = self.tasks_stage(ctx)
        return {t.id: t for t in ctx.read_tasks(stage)} if stage is not None else {}


class ReformatStage(Stage["ReformatStage.Options"]):
    """Turn trajectories (from an earlier stage or a source) into training examples with a reformatter."""

    name = "reformat"

    class Options(TrajectoryInput):
        reformatter: ReformatterRef

    def run(self, ctx: StageContext) -> dict[str, Any]:
        tasks = self.options.read_tasks(ctx)
        reformatter: Reformatter[Any] = self.options.reformatter.build()
        path: Path = ctx.dir / "examples.jsonl"
        count = write_jsonl(path, reformatter.reformat(self.options.read_trajectories(ctx), tasks))
        ctx.log(f"{count} examples -> {path}")
        # the reformatter travels with the data so training can store it beside the model
        outputs: dict[str, Any] = {"examples": path, "count": count, "reformatter": dump_recipe(self.options.reformatter)}
        summary = reformatter.report()
        if summary is not None:
            outputs["summary"] = ctx.dir / "summary.json"
            outputs["summary"].write_text(json.dumps(summary, indent=2))
            ctx.log(f"kept and dropped: {json.dumps(summary)}")
        return outputs


@hookimpl
def register_stages(register: Register) -> None:
    register(TasksStage)
    register(ReformatStage)
