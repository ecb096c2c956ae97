"""The stage runner: executes a recipe's stages in order into a run folder, resuming finished work.

Run folder layout::

    runs/<name>/recipe.yaml          the resolved recipe (every option explicit)
    runs/<name>/<stage>/             one folder per stage: its outputs
    runs/<name>/<stage>/stage.json   status, fingerprint, outputs, timing

``status`` is "running" while the stage runs, then "finished", "failed" (with the ``error``) or
"interrupted" (Ctrl-C); a process killed outright leaves "running". A stage whose ``stage.json`` says
"finished" with the same fingerprint (its options, the model, the seed and the fingerprints of the
stages before it) is skipped on a re-run. Any other stage runs again in its folder, where it can pick
up what it already wrote. A stage whose
configuration changed has its old folder moved aside (``<stage>.stale-N``), never deleted.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from misstep.context import Run, StageContext
from misstep.recipe import Recipe, StageRef, default_run_dir, dump_recipe, recipe_to_yaml

if TYPE_CHECKING:
    from misstep.plugins import Plugins

STATE_FILE = "stage.json"


def _fingerprint(stage: StageRef, recipe: Recipe, previous: str) -> str:
    payload = json.dumps(
        {"stage": dump_recipe(stage), "model": dump_recipe(recipe.model), "seed": recipe.seed, "previous": previous},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def serialise(value: Any, run_dir: Path) -> Any:
    """Outputs as ``stage.json`` stores them: paths relative to the run folder, as ``{"path": ...}``."""
    if isinstance(value, Path):
        path = value.resolve()
        try:
            return {"path": str(path.relative_to(run_dir.resolve()))}
        except ValueError:
            return {"path": str(path)}
    if isinstance(value, dict):
        return {str(k): serialise(v, run_dir) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [serialise(v, run_dir) for v in value]
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


def run_recipe(recipe: Recipe, *, run_dir: str | Path | None = None, plugins: Plugins | None = None,
               force: bool = False, quiet: bool = False) -> Run:
    """Execute ``recipe``'s stages in order; skip those that already finished with the same config.

    ``plugins`` defaults to the registry the recipe was resolved with.
    """
    plugins = plugins or recipe.plugins
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
        state = {"status": "running", "fingerprint": fingerprint, "use": spec.use, "started": started}
        _write_state(stage_dir, state)
        ctx = StageContext(run=run, name=name, dir=stage_dir, spec=spec)
        _say(run, f"stage {name!r} ({spec.use}) running")
        try:
            plugins.before_stage(ctx)
            outputs = serialise(spec.build().run(ctx) or {}, root)
        except BaseException as error:  # record how the stage ended, then let the error go on
            interrupted = isinstance(error, KeyboardInterrupt)
            _write_state(stage_dir, {**state, "status": "interrupted" if interrupted else "failed",
                                     "seconds": round(time.time() - started, 3),
                                     "error": None if interrupted else f"{type(error).__name__}: {error}"[:2000]})
            raise
        seconds = round(time.time() - started, 3)
        _write_state(stage_dir, {**state, "status": "finished", "seconds": seconds, "outputs": outputs})
        run.outputs[name] = outputs
        plugins.after_stage(ctx, outputs)
        _say(run, f"stage {name!r} finished in {seconds:.1f}s")
    return run


def _say(run: Run, message: str) -> None:
    if not run.quiet:
        tqdm.write(f"misstep: {message}", file=sys.stderr)
