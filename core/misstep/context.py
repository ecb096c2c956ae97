"""What a stage sees while it runs (:class:`StageContext`) and the run it belongs to (:class:`Run`).

Stages, sources and commands read earlier stages' outputs through :meth:`Run.output` /
:meth:`StageContext.output`: paths come back as absolute :class:`~pathlib.Path` objects, whatever the
run folder's ``stage.json`` files store.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from tqdm.auto import tqdm

from misstep.components import Backend
from misstep.datamodel import Task, Trajectory
from misstep.errors import MisstepError
from misstep.jsonl import read_jsonl
from misstep.specs import ModelSpec

if TYPE_CHECKING:
    from misstep.plugins import Plugins
    from misstep.recipe import BackendRef, Recipe, StageRef

T = TypeVar("T")
_REQUIRED: Any = object()  # marks a missing default: a missing output is an error


@dataclass
class Run:
    """A recipe being executed in its run folder.

    ``outputs`` holds each finished stage's outputs as saved in its ``stage.json`` (paths relative to
    the run folder as ``{"path": ...}``); read them with :meth:`output`.
    """

    recipe: Recipe
    dir: Path
    plugins: Plugins
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    quiet: bool = False

    def has_output(self, stage: str, key: str) -> bool:
        """Whether ``stage`` finished and returned an output named ``key``."""
        return key in self.outputs.get(stage, {})

    def output(self, stage: str, key: str, default: Any = _REQUIRED) -> Any:
        """The output ``key`` of the finished stage ``stage``; paths come back absolute.

        Without ``default``, a stage that has not run or has no such output is a MisstepError.
        """
        return _output(self, stage, key, default, reader=None)


@dataclass
class StageContext:
    """What a stage (and the sources, reformatters and backends it builds) sees while it runs.

    ``name`` is the stage's name in the recipe, ``dir`` its output folder, ``spec`` its recipe entry
    and ``run`` the whole run.
    """

    run: Run
    name: str
    dir: Path
    spec: StageRef

    @property
    def recipe(self) -> Recipe:
        return self.run.recipe

    @property
    def model(self) -> ModelSpec:
        """The recipe's model."""
        return self.run.recipe.model

    @property
    def seed(self) -> int:
        return self.run.recipe.seed

    @property
    def plugins(self) -> Plugins:
        """The registry the recipe runs with: build components through it, never another one."""
        return self.run.plugins

    def has_output(self, stage: str, key: str) -> bool:
        """Whether the earlier stage ``stage`` returned an output named ``key``."""
        return self.run.has_output(stage, key)

    def output(self, stage: str, key: str, default: Any = _REQUIRED) -> Any:
        """An output of an earlier stage; paths come back as absolute :class:`Path` objects.

        Without ``default``, a stage that has not run or has no such output is a MisstepError.
        """
        return _output(self.run, stage, key, default, reader=self.name)

    def read_tasks(self, stage: str) -> list[Task]:
        """The tasks an earlier stage wrote (its ``tasks`` output, a JSONL file of tasks)."""
        return list(read_jsonl(self.output(stage, "tasks"), Task))

    def model_of(self, model: str | ModelSpec | None) -> ModelSpec:
        """The recipe's model (None), a model spec as given, or the ``model`` output of an earlier stage."""
        if model is None:
            return self.model
        if isinstance(model, ModelSpec):
            return model
        return ModelSpec(path=str(self.output(model, "model")), dtype=self.model.dtype)

    def backend(self, ref: BackendRef | None, model: ModelSpec | None = None) -> Backend[Any]:
        """The backend ``ref`` names (default: ``hf``); one whose ``model:`` option is left empty (such as
        ``hf``) runs ``model`` (default: the recipe's model)."""
        model = model or self.model
        if ref is None:
            return cast(Backend[Any], self.plugins.create("backend", "hf", {"model": model.model_dump()}))
        options = ref.options
        if "model" in type(options).model_fields and getattr(options, "model") is None:
            options = options.model_copy(update={"model": model})
        return cast(Backend[Any], self.plugins.component("backend", ref.use)(options))

    def progress(self, items: Iterable[T], *, desc: str, total: int | None = None) -> Iterator[T]:
        """A progress bar over ``items`` (silent when the run is quiet)."""
        return iter(tqdm(items, desc=f"{self.name}: {desc}", total=total, disable=self.run.quiet, leave=False))

    def log(self, message: str) -> None:
        """A line on stderr, prefixed with the stage's name (silent when the run is quiet)."""
        if not self.run.quiet:
            tqdm.write(f"[{self.name}] {message}", file=sys.stderr)

    def trajectory_produced(self, trajectory: Trajectory) -> None:
        """Announce a new trajectory to plugins (``trajectory_produced`` hook)."""
        self.plugins.trajectory_produced(trajectory, self)


def _output(run: Run, stage: str, key: str, default: Any, reader: str | None) -> Any:
    if not run.has_output(stage, key):
        if default is not _REQUIRED:
            return default
        who = f"stage {reader!r}" if reader else "this command"
        if stage not in run.outputs:
            raise MisstepError(f"{who} needs the outputs of {stage!r}, which has not run")
        raise MisstepError(f"stage {stage!r} has no output {key!r} (it has: {', '.join(sorted(run.outputs[stage]))}); "
                           f"{who} cannot use it")
    value = run.outputs[stage][key]
    if isinstance(value, dict) and set(value) == {"path"}:
        return run.dir / value["path"]
    return value
