"""Recipes: YAML files validated into pydantic models, with every problem located by path and line.

A recipe names components with ``use: <name>`` and puts the component's options beside it::

    name: demo
    model: {path: tiny}
    stages:
      - use: collect
        tasks: {use: arithmetic, count: 50}
        backend: {use: scripted-teacher}

Options are validated against the component's own ``Options`` model, so a typo in a key, a wrong type
or an unknown component name is reported with its YAML path and line and the valid choices.
"""

from __future__ import annotations

import functools
import os
import re
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from misstep.components import Component, InputPath, Options
from misstep.errors import Problem, RecipeError
from misstep.jsonl import read_text
from misstep.specs import ModelSpec
from misstep.yamltext import Loc, YamlSyntaxError, load_yaml

if TYPE_CHECKING:
    from typing_extensions import Self

    from misstep.plugins import Plugins

MAX_RECIPE_BYTES = 256 * 1024
"""A recipe file larger than this is refused before it is parsed."""
RUN_FILES = ("recipe.yaml",)
"""Files the runner writes at the top of a run folder: no stage may be named like them."""
Found = list[tuple[Loc, str]]  # problems while validating: where (a path into the recipe data) and what


def folder_name(value: str) -> str:
    """``value`` if it can name one folder inside another (a recipe's or a stage's run folder), else ValueError."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}", value):
        raise ValueError(f"{value!r} cannot name a folder: use one name of letters, digits, '_', '-' and '.' "
                         "(not first), at most 100 characters, with no '/'")
    return value


FolderName = Annotated[str, AfterValidator(folder_name)]


# --- component references ------------------------------------------------------------------------


class Ref(BaseModel):
    """``use: <name>`` plus that component's options. A bare string is shorthand for ``{use: name}``."""

    model_config = ConfigDict(extra="allow")
    kind: ClassVar[str] = ""

    use: str
    _cls: type[Component[Any]] | None = PrivateAttr(default=None)
    _options: Options | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"use": data} if isinstance(data, str) else data

    @property
    def options(self) -> Options:
        """The validated options (available once the recipe was resolved)."""
        if self._options is None:
            raise RuntimeError(f"{self.kind} {self.use!r} was not resolved; load recipes with load_recipe()")
        return self._options

    def build(self) -> Any:
        """A new instance of the named component with the validated options."""
        if self._cls is None:
            raise RuntimeError(f"{self.kind} {self.use!r} was not resolved; load recipes with load_recipe()")
        return self._cls(self.options)

    def resolve(self, plugins: Plugins) -> Self:
        """Look up and validate this reference in ``plugins`` outside a recipe (raises RecipeError)."""
        found: Found = []
        _resolve_ref(self, plugins, (), found)
        if found:
            raise RecipeError([Problem(format_loc(loc), message) for loc, message in found])
        return self


class TaskRef(Ref):
    """A task loader or generator."""

    kind: ClassVar[str] = "task"


class SourceRef(Ref):
    """A trajectory source."""

    kind: ClassVar[str] = "source"


class ToolRef(Ref):
    """A tool."""

    kind: ClassVar[str] = "tool"


class VerifierRef(Ref):
    """A verifier."""

    kind: ClassVar[str] = "verifier"


class ReformatterRef(Ref):
    """A reformatter."""

    kind: ClassVar[str] = "reformatter"


class LossRef(Ref):
    """A loss."""

    kind: ClassVar[str] = "loss"


class BackendRef(Ref):
    """A generation backend."""

    kind: ClassVar[str] = "backend"


class ParserRef(Ref):
    """A tool-call parser."""

    kind: ClassVar[str] = "parser"


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, dict | str) else value


TaskRefs = Annotated[list[TaskRef], BeforeValidator(_listed), Field(min_length=1)]
"""One or more task loaders: a single ``{use: ...}`` (or a bare name) counts as a list of one."""


class StageRef(Ref):
    """A recipe stage: ``use`` names the stage component, ``name`` (default: ``use``) its run folder."""

    kind: ClassVar[str] = "stage"
    name: FolderName | None = None

    @property
    def label(self) -> str:
        return self.name or self.use


class StageInput:
    """Marks an options field (``Annotated[str, StageInput()]``) that names an earlier stage."""


# --- the recipe ------------------------------------------------------------------------------------


class Recipe(BaseModel):
    """A whole recipe: the model and the ordered stages."""

    model_config = ConfigDict(extra="forbid")

    name: FolderName
    description: str = ""
    run_dir: str | None = Field(default=None, description="default: runs/<name>")
    seed: int = 0
    model: ModelSpec = Field(default_factory=ModelSpec)
    stages: list[StageRef] = Field(min_length=1)
    _plugins: Plugins | None = PrivateAttr(default=None)

    @property
    def plugins(self) -> Plugins:
        """The registry the recipe was resolved with (its stages run with the same components)."""
        if self._plugins is None:
            raise RuntimeError(f"recipe {self.name!r} was not resolved; load recipes with load_recipe()")
        return self._plugins


# --- locations ------------------------------------------------------------------------------------


def _line_for(loc: Loc, lines: dict[Loc, int]) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _data_loc(loc: Loc, data: Any, *, keep_last: bool) -> Loc:
    """A pydantic error location as a path into the validated ``data``: the names pydantic gives union
    members (``str``, ``list[str]``, a discriminator value) and the index it gives a mapping that stands
    for a list of one are dropped; ``keep_last`` keeps a last key the data lacks (a missing key)."""
    out: list[str | int] = []
    node = data
    for index, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and -len(node) <= part < len(node):
            node = node[part]
        elif not (keep_last and index == len(loc) - 1):
            continue
        out.append(part)
    return tuple(out)


# --- overrides -------------------------------------------------------------------------------------


def apply_override(data: dict[str, Any], assignment: str) -> Loc:
    """Apply ``a.b.c=value`` (value parsed as YAML; text that is not YAML stays text) to ``data``; return
    the location it set.

    A list element is addressed by index or, for stages, by name: ``stages.train.epochs=3``.
    """
    if "=" not in assignment:
        raise RecipeError([Problem("", f"--set {assignment!r}: expected KEY.PATH=VALUE")])
    key, raw = assignment.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise RecipeError([Problem("", f"--set {assignment!r}: the key is empty")])
    try:
        value = load_yaml(raw).data if raw.strip() else ""
    except YamlSyntaxError:
        value = raw
    except RecipeError as error:
        raise RecipeError([Problem(key, f"{p.message} (set with --set)") for p in error.problems]) from None
    node: Any = data
    loc: list[str | int] = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if isinstance(node, list):
            position = _list_position(node, part)
            if position is None:
                names = [str(_item_name(item, i)) for i, item in enumerate(node)]
                raise RecipeError(
                    [Problem(format_loc(tuple(loc)), f"--set {key}: no element {part!r}; choose one of: {', '.join(names)}")]
                )
            loc.append(position)
            if last:
                node[position] = value
            else:
                node = _descend(node, position)
        elif isinstance(node, dict):
            loc.append(part)
            if last:
                node[part] = value
            else:
                node = _descend(node, part)
        else:
            raise RecipeError([Problem(format_loc(tuple(loc)), f"--set {key}: {format_loc(tuple(loc))} is not a mapping")])
    return tuple(loc)


def _descend(container: Any, key: Any) -> Any:
    """The child at ``key``, made a mapping when it is missing or a ``use:`` shorthand string."""
    child = container.get(key) if isinstance(container, dict) else container[key]
    if not isinstance(child, (dict, list)):
        child = {"use": child} if isinstance(child, str) else {}
        container[key] = child
    return child


def _item_name(item: Any, index: int) -> str | int:
    if isinstance(item, dict):
        return item.get("name") or item.get("use") or index
    return index


def _list_position(items: list[Any], part: str) -> int | None:
    if part.lstrip("-").isdigit():
        position = int(part)
        return position if -len(items) <= position < len(items) else None
    matches = [i for i, item in enumerate(items) if _item_name(item, i) == part]
    return matches[0] if len(matches) == 1 else None


# --- validation ------------------------------------------------------------------------------------


def _pydantic_problems(error: ValidationError, model: type[BaseModel], prefix: Loc, data: Any) -> Found:
    """One problem per location in ``data``; the alternatives of a union that all failed are joined with "or"."""
    messages: dict[Loc, list[str]] = {}
    inputs: dict[Loc, str] = {}
    for item in error.errors():
        rel = _data_loc(tuple(item["loc"]), data, keep_last=item["type"] in ("missing", "extra_forbidden"))
        if item["type"] == "extra_forbidden":
            holder = _model_at(model, rel[:-1])
            valid = ", ".join(sorted(holder.model_fields)) if holder else ""
            message = f"unknown key {rel[-1]!r}" + (f"; valid keys: {valid}" if valid else "")
        elif item["type"] == "missing":
            message = "required key is missing"
        elif item["type"] == "value_error":  # a validator's own message, which names the value
            message = item["msg"].removeprefix("Value error, ")
        else:
            message = item["msg"]
            if "input" in item and not isinstance(item["input"], (dict, list)):
                inputs[rel] = f" (got {_short(item['input'])})"
        if message not in messages.setdefault(rel, []):
            messages[rel].append(message)
    return [(prefix + rel, " or ".join(texts) + inputs.get(rel, "")) for rel, texts in messages.items()]


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...'"


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        current = _inner_model(current.model_fields[part].annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _resolve_ref(ref: Ref, plugins: Plugins, loc: Loc, found: Found) -> None:
    kind = ref.kind
    entries = plugins.registry[kind]
    if ref.use not in entries:
        choices = ", ".join(sorted(entries)) or "(none installed)"
        found.append((loc + ("use",), f"unknown {kind} {ref.use!r}; choose one of: {choices}"))
        return
    cls = entries[ref.use].cls
    extra = {k: v for k, v in (ref.model_extra or {}).items()}
    try:
        options = cls.Options.model_validate(extra)
    except ValidationError as error:
        found.extend(_pydantic_problems(error, cls.Options, loc, extra))
        return
    ref._cls = cls
    ref._options = options
    _resolve_tree(options, plugins, loc, found)


def _resolve_tree(value: Any, plugins: Plugins, loc: Loc, found: Found) -> None:
    if isinstance(value, Ref):
        _resolve_ref(value, plugins, loc, found)
    elif isinstance(value, BaseModel):
        for field_name in type(value).model_fields:
            _resolve_tree(getattr(value, field_name), plugins, loc + (field_name,), found)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _resolve_tree(item, plugins, loc + (index,), found)
    elif isinstance(value, dict):
        for key, item in value.items():
            _resolve_tree(item, plugins, loc + (str(key),), found)


@functools.cache
def _field_markers(model: type[BaseModel]) -> dict[str, tuple[object, ...]]:
    """Each field's markers: its own metadata and that of the ``Annotated`` types inside its annotation."""

    def inside(annotation: Any) -> Iterator[object]:
        if typing.get_origin(annotation) is Annotated:
            yield from annotation.__metadata__
        for arg in typing.get_args(annotation):
            yield from inside(arg)

    return {name: (*info.metadata, *inside(info.annotation)) for name, info in model.model_fields.items()}


def _marked(value: Any, loc: Loc) -> Iterator[tuple[object, Any, Loc]]:
    """(marker, value, location) for every marked field of a resolved recipe part, nested options included."""
    if isinstance(value, Ref):
        value = value._options  # its options sit beside `use:`, at the same location
    if isinstance(value, BaseModel):
        for name, markers in _field_markers(type(value)).items():
            item = getattr(value, name)
            for marker in markers:
                yield marker, item, loc + (name,)
            yield from _marked(item, loc + (name,))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _marked(item, loc + (index,))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _marked(item, loc + (str(key),))


def _check_stages(stages: Sequence[tuple[int, StageRef]], found: Found, *, stage_inputs: bool) -> None:
    """Stage names (folder names, distinct, none like a run file) and, with ``stage_inputs``, that each
    StageInput field names an earlier stage."""
    seen: list[str] = []
    for index, stage in stages:
        loc: Loc = ("stages", index)
        if stage.name is None:
            try:
                folder_name(stage.use)
            except ValueError as error:
                found.append((loc + ("use",), f"{error}; give the stage a `name:`"))
        if stage.label in seen:
            found.append((loc, f"two stages are named {stage.label!r}; give each a distinct `name:`"))
        if stage.label in RUN_FILES:
            found.append((loc, f"a stage may not be named {stage.label!r} (a file of the run folder); give it a `name:`"))
        for marker, value, where in _marked(stage, loc) if stage_inputs else ():
            if not isinstance(marker, StageInput):
                continue
            for name in value if isinstance(value, list) else [value]:
                if isinstance(name, str) and name not in seen:  # other values (a model spec) are not stage names
                    choices = ", ".join(seen) or "(no earlier stage)"
                    found.append((where, f"{name!r} is not an earlier stage; choose one of: {choices}"))
        seen.append(stage.label)


def _check_paths(part: Any, loc: Loc, run_folder: Path | None, found: Found) -> None:
    """Every InputPath field of ``part`` names an existing file or folder (or one of its ``names``); paths
    inside the run folder are left to the stages that write them."""
    for marker, value, where in _marked(part, loc):
        if not isinstance(marker, InputPath):
            continue
        for index, item in enumerate(value) if isinstance(value, list) else [(None, value)]:
            if not isinstance(item, (str, Path)) or str(item) in marker.names:
                continue
            problem = _path_problem(Path(item).expanduser(), run_folder)
            if problem:
                if marker.names:
                    problem = f"neither one of {', '.join(marker.names)} nor an existing file or folder" + problem
                else:
                    problem = "no such file or folder" + problem
                found.append((where if index is None else where + (index,), f"{str(item)!r}: {problem}"))


def _path_problem(path: Path, run_folder: Path | None) -> str | None:
    """None if ``path`` exists or lies in the run folder, else the end of a message saying where it was looked for."""
    try:
        if path.exists():
            return None
    except (OSError, ValueError) as error:  # a name too long, a NUL byte
        return f" ({error}); check the path"
    absolute = Path(os.path.abspath(path))
    if run_folder is not None and absolute.is_relative_to(os.path.abspath(run_folder)):
        return None
    where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
    return f"{where}; check the path"


def validate_recipe(data: Any, *, plugins: Plugins, file: str | None = None, lines: dict[Loc, int] | None = None,
                    overridden: set[Loc] | None = None, check_files: bool = True) -> Recipe:
    """Validate recipe data (already parsed) against the components of ``plugins`` into a resolved
    :class:`Recipe`, or raise RecipeError listing every problem.

    ``check_files``: also report every input file or folder the recipe names that does not exist.
    """
    lines = lines or {}
    overridden = overridden or set()
    found: Found = []
    recipe: Recipe | None = None
    if not isinstance(data, dict):
        found.append(((), "a recipe must be a mapping with `name:` and `stages:`"))
    else:
        try:
            recipe = Recipe.model_validate(data)
        except ValidationError as error:
            found.extend(_pydantic_problems(error, Recipe, (), data))
    stages: list[tuple[int, StageRef]] = []
    if recipe is not None:
        stages = list(enumerate(recipe.stages))
    elif isinstance(data, dict) and isinstance(data.get("stages"), list):
        # the recipe is broken elsewhere: still check each stage, so every problem shows at once
        for index, raw_stage in enumerate(data["stages"]):
            try:
                stages.append((index, StageRef.model_validate(raw_stage)))
            except ValidationError:
                continue  # already reported by the recipe-level validation
    for index, stage in stages:
        _resolve_ref(stage, plugins, ("stages", index), found)
    _check_stages(stages, found, stage_inputs=recipe is not None)
    if check_files:
        run_folder = default_run_dir(recipe) if recipe is not None else None
        if recipe is not None:
            _check_paths(recipe.model, ("model",), run_folder, found)
        for index, stage in stages:
            _check_paths(stage, ("stages", index), run_folder, found)
    if found:
        problems: dict[tuple[int | None, str] | Loc, Problem] = {}
        for loc, message in found:
            problem = _locate(_data_loc(loc, data, keep_last=True), message, lines, overridden)
            # a value shared through a YAML alias is reported once, at its line
            problems.setdefault((problem.line, message) if problem.line is not None else loc, problem)
        raise RecipeError(sorted(problems.values(), key=lambda p: (p.line or 0, p.path)), file=file)
    assert recipe is not None
    recipe._plugins = plugins
    return recipe


def _locate(loc: Loc, message: str, lines: dict[Loc, int], overridden: set[Loc]) -> Problem:
    """A problem with its recipe line, or marked as coming from --set: at or under a value set with --set,
    or at a key the file does not have that a --set value lies under."""
    from_set = any(loc[: len(o)] == o for o in overridden) or (
        loc not in lines and any(o[: len(loc)] == loc for o in overridden))
    if from_set:
        return Problem(format_loc(loc), message + " (set with --set)")
    return Problem(format_loc(loc), message, _line_for(loc, lines))


def default_run_dir(recipe: Recipe) -> Path:
    """Where a recipe runs unless told otherwise: its ``run_dir``, else ``runs/<name>``."""
    return Path(recipe.run_dir or Path("runs") / recipe.name)


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, plugins: Plugins,
                check_files: bool = True) -> Recipe:
    """Read, override and validate a recipe file; raise RecipeError listing every problem (a MisstepError
    for a file that is not UTF-8 text). ``check_files``: see :func:`validate_recipe`."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError([Problem("", "recipe file not found")], file=str(path))
    size = path.stat().st_size
    if size > MAX_RECIPE_BYTES:
        raise RecipeError([Problem("", f"{size:,} bytes is too large for a recipe (at most {MAX_RECIPE_BYTES:,})")],
                          file=str(path))
    document = load_yaml(read_text(path), file=str(path))
    data = {} if document.data is None else document.data
    overridden: set[Loc] = set()
    if isinstance(data, dict):
        for assignment in overrides:
            try:
                overridden.add(apply_override(data, assignment))
            except RecipeError as error:
                raise RecipeError(error.problems, file=str(path)) from None
    return validate_recipe(data, plugins=plugins, file=str(path), lines=document.lines, overridden=overridden,
                           check_files=check_files)


def recipe_to_yaml(recipe: Recipe) -> str:
    """The recipe as YAML with every option explicit (defaults included), for the run folder."""
    return yaml.safe_dump(dump_recipe(recipe), sort_keys=False, allow_unicode=True)


def dump_recipe(value: Any) -> Any:
    """Plain data for a resolved recipe or options tree, with component options expanded."""
    if isinstance(value, Ref):
        head: dict[str, Any] = {"use": value.use}
        if isinstance(value, StageRef) and value.name:
            head["name"] = value.name
        options = value._options if value._options is not None else BaseModel()
        head.update(dump_recipe(options))
        return head
    if isinstance(value, BaseModel):
        return {name: dump_recipe(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, (list, tuple)):
        return [dump_recipe(item) for item in value]
    if isinstance(value, dict):
        return {str(k): dump_recipe(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value
