"""The stage runner: executes a recipe's stages in order into a run folder, resuming finished work.

Run folder layout::

    runs/<name>/recipe.yaml          the resolved recipe (every option explicit)
    runs/<name>/<stage>/             one folder per stage: its outputs
    runs/<name>/<stage>/stage.json   status, fingerprint, outputs, timing

A stage whose ``stage.json`` says "finished" with the same fingerprint (its options, the model, the
seed and the fingerprints of the stages before it) is skipped on a re-run. A stage that was
interrupted runs again in its folder, where it can pick up what it already wrote. A stage whose
configuration changed has its old folder moved aside (``<stage>.stale-N``), never deleted.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tqdm.auto import tqdm

from misstep.components import Backend
from misstep.errors import MisstepError
from misstep.plugins import Plugins, get_plugins
from misstep.recipe import (
    BackendRef,
    ModelSpec,
    Recipe,
    StageRef,
    dump_recipe,
    recipe_to_yaml,
)

T = TypeVar("T")
STATE_FILE = "stage.json"


@dataclass
class Run:
    """A recipe being executed in its run folder."""

    recipe: Recipe
    dir: Path
    plugins: Plugins
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    quiet: bool = False


@dataclass
class StageContext:
    """What a stage sees while it runs: its folder, the recipe, earlier stages' outputs."""

    run: Run
    name: str
    dir: Path
    spec: StageRef

    @property
    def recipe(self) -> Recipe:
        return self.run.recipe

    @property
    def model(self) -> ModelSpec:
        return self.run.recipe.model

    @property
    def seed(self) -> int:
        return self.run.recipe.seed

    @property
    def plugins(self) -> Plugins:
        return self.run.plugins

    def output(self, stage: str, key: str) -> Any:
        """An output of an earlier stage; paths come back as absolute :class:`Path` objects."""
        if stage not in self.run.outputs:
            raise MisstepError(f"stage {self.name!r} needs the outputs of {stage!r}, which has not run")
        outputs = self.run.outputs[stage]
        if key not in outputs:
            raise MisstepError(
                f"stage {stage!r} has no output {key!r} (it has: {', '.join(sorted(outputs))}); "
                f"stage {self.name!r} cannot use it"
            )
        value = outputs[key]
        if isinstance(value, dict) and set(value) == {"path"}:
            return self.run.dir / value["path"]
        return value

    def model_of(self, model: str | ModelSpec | None) -> ModelSpec:
        """The recipe's model (None), a model spec as given, or the ``model`` output of an earlier stage."""
        if model is None:
            return self.model
        if isinstance(model, ModelSpec):
            return model
        return ModelSpec(path=str(self.output(model, "model")), dtype=self.model.dtype)

    def backend(self, ref: BackendRef | None, model: ModelSpec | None = None) -> Backend:
        """The backend ``ref`` names (default: ``hf``); one whose ``model:`` option is left empty (such as
        ``hf``) runs ``model`` (default: the recipe's model)."""
        model = model or self.model
        if ref is None:
            return self.plugins.create("backend", "hf", {"model": model.model_dump()})  # type: ignore[return-value]
        options = ref.options
        if "model" in type(options).model_fields and getattr(options, "model") is None:
            options = options.model_copy(update={"model": model})
        return self.plugins.component("backend", ref.use)(options)  # type: ignore[return-value]

    def progress(self, items: Iterable[T], *, desc: str, total: int | None = None) -> Iterator[T]:
        """A progress bar over ``items`` (silent when the run is quiet)."""
        return iter(tqdm(items, desc=f"{self.name}: {desc}", total=total, disable=self.run.quiet, leave=False))

    def log(self, message: str) -> None:
        if not self.run.quiet:
            tqdm.write(f"[{self.name}] {message}", file=sys.stderr)

    def trajectory_produced(self, trajectory: Any) -> None:
        """Announce a new trajectory to plugins (``trajectory_produced`` hook)."""
        self.plugins.trajectory_produced(trajectory, self)


def _fingerprint(stage: StageRef, recipe: Recipe, previous: str) -> str:
    payload = json.dumps(
        {"stage": dump_recipe(stage), "model": dump_recipe(recipe.model), "seed": recipe.seed, "previous": previous},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _serialise(value: Any, run_dir: Path) -> Any:
    if isinstance(value, Path):
        path = value.resolve()
        try:
            return {"path": str(path.relative_to(run_dir.resolve()))}
        except ValueError:
            return {"path": str(path)}
    if isinstance(value, dict):
        return {str(k): _serialise(v, run_dir) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_serialise(v, run_dir) for v in value]
    return value


def _read_state(stage_dir: Path) -> dict[str, Any] | None:
    path = stage_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def _write_state(stage_dir: Path, state: dict[str, Any]) -> None:
    tmp = stage_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2, default=str))
    tmp.replace(stage_dir / STATE_FILE)


def _move_aside(stage_dir: Path) -> Path:
    n = 1
    while (target := stage_dir.with_name(f"{stage_dir.name}.stale-{n}")).exists():
        n += 1
    stage_dir.rename(target)
    return target


def default_run_dir(recipe: Recipe) -> Path:
    return Path(recipe.run_dir or Path("runs") / recipe.name)


def run_recipe(recipe: Recipe, *, run_dir: str | Path | None = None, plugins: Plugins | None = None,
               force: bool = False, quiet: bool = False) -> Run:
    """Execute ``recipe``'s stages in order; skip those that already finished with the same config."""
    plugins = plugins or get_plugins()
    root = Path(run_dir) if run_dir is not None else default_run_dir(recipe)
    root.mkdir(parents=True, exist_ok=True)
    (root / "recipe.yaml").write_text(recipe_to_yaml(recipe))
    run = Run(recipe=recipe, dir=root, plugins=plugins, quiet=quiet)
    random.seed(recipe.seed)
    previous = ""
    for spec in recipe.stages:
        name = spec.label
        stage_dir = root / name
        fingerprint = _fingerprint(spec, recipe, previous)
        previous = fingerprint
        state = _read_state(stage_dir)
        if state and state.get("fingerprint") != fingerprint or force and stage_dir.exists():
            moved = _move_aside(stage_dir)
            _say(run, f"stage {name!r}: configuration changed or --force; old outputs moved to {moved}")
            state = None
        if state and state.get("status") == "finished":
            run.outputs[name] = state.get("outputs", {})
            _say(run, f"stage {name!r} already finished; skipped")
            continue
        stage_dir.mkdir(parents=True, exist_ok=True)
        started = time.time()
        _write_state(stage_dir, {"status": "running", "fingerprint": fingerprint, "use": spec.use, "started": started})
        ctx = StageContext(run=run, name=name, dir=stage_dir, spec=spec)
        _say(run, f"stage {name!r} ({spec.use}) running")
        plugins.before_stage(ctx)
        outputs = _serialise(spec.build().run(ctx) or {}, root)
        seconds = round(time.time() - started, 3)
        _write_state(
            stage_dir,
            {"status": "finished", "fingerprint": fingerprint, "use": spec.use, "started": started,
             "seconds": seconds, "outputs": outputs},
        )
        run.outputs[name] = outputs
        plugins.after_stage(ctx, outputs)
        _say(run, f"stage {name!r} finished in {seconds:.1f}s")
    return run


def _say(run: Run, message: str) -> None:
    if not run.quiet:
        tqdm.write(f"misstep: {message}", file=sys.stderr)
