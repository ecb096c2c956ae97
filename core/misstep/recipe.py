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

import typing
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from misstep.components import Component, Options
from misstep.errors import Problem, RecipeError
from misstep.specs import ModelSpec

if TYPE_CHECKING:
    from typing_extensions import Self

    from misstep.plugins import Plugins

Loc = tuple[str | int, ...]


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
        problems: list[Problem] = []
        _resolve_ref(self, plugins, (), problems)
        if problems:
            raise RecipeError(problems)
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
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or self.use


class StageInput:
    """Marks an options field (``Annotated[str, StageInput()]``) that names an earlier stage."""


# --- the recipe ------------------------------------------------------------------------------------


class Recipe(BaseModel):
    """A whole recipe: the model and the ordered stages."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
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


# --- YAML with line numbers ------------------------------------------------------------------------


def _load_yaml(text: str, file: str | None) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML and map every key and value path to its 1-based line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(error, "problem", None) or str(error)
        raise RecipeError([Problem("", f"not valid YAML: {reason}", line)], file=file) from None
    lines: dict[Loc, int] = {}

    def walk(node: yaml.Node | None, loc: Loc) -> None:
        if node is None:
            return
        lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = key_node.value
                lines[loc + (key,)] = key_node.start_mark.line + 1
                walk(value_node, loc + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, loc + (index,))

    walk(node, ())
    data = yaml.safe_load(text) if node is not None else None
    return data, lines


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


# --- overrides -------------------------------------------------------------------------------------


def apply_override(data: dict[str, Any], assignment: str) -> Loc:
    """Apply ``a.b.c=value`` (value parsed as YAML) to ``data``; return the location it set.

    A list element is addressed by index or, for stages, by name: ``stages.train.epochs=3``.
    """
    if "=" not in assignment:
        raise RecipeError([Problem("", f"--set {assignment!r}: expected KEY.PATH=VALUE")])
    key, raw = assignment.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise RecipeError([Problem("", f"--set {assignment!r}: the key is empty")])
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
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


def _pydantic_problems(error: ValidationError, model: type[BaseModel], prefix: Loc) -> Iterator[tuple[Loc, str]]:
    for item in error.errors():
        rel: Loc = tuple(item["loc"])
        if item["type"] == "extra_forbidden":
            holder = _model_at(model, rel[:-1])
            valid = ", ".join(sorted(holder.model_fields)) if holder else ""
            message = f"unknown key {rel[-1]!r}" + (f"; valid keys: {valid}" if valid else "")
        elif item["type"] == "missing":
            message = "required key is missing"
        else:
            message = item["msg"]
            if "input" in item and not isinstance(item["input"], (dict, list)):
                message += f" (got {item['input']!r})"
        yield prefix + rel, message


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


def _resolve_ref(ref: Ref, plugins: Plugins, loc: Loc, problems: list[Problem]) -> None:
    kind = ref.kind
    entries = plugins.registry[kind]
    if ref.use not in entries:
        choices = ", ".join(sorted(entries)) or "(none installed)"
        problems.append(Problem(format_loc(loc + ("use",)), f"unknown {kind} {ref.use!r}; choose one of: {choices}"))
        return
    cls = entries[ref.use].cls
    extra = {k: v for k, v in (ref.model_extra or {}).items()}
    try:
        options = cls.Options.model_validate(extra)
    except ValidationError as error:
        for where, message in _pydantic_problems(error, cls.Options, loc):
            problems.append(Problem(format_loc(where), message))
        return
    ref._cls = cls
    ref._options = options
    _resolve_tree(options, plugins, loc, problems)


def _resolve_tree(value: Any, plugins: Plugins, loc: Loc, problems: list[Problem]) -> None:
    if isinstance(value, Ref):
        _resolve_ref(value, plugins, loc, problems)
    elif isinstance(value, BaseModel):
        for field_name in type(value).model_fields:
            _resolve_tree(getattr(value, field_name), plugins, loc + (field_name,), problems)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _resolve_tree(item, plugins, loc + (index,), problems)
    elif isinstance(value, dict):
        for key, item in value.items():
            _resolve_tree(item, plugins, loc + (str(key),), problems)


def _check_stage_inputs(recipe: Recipe, problems: list[Problem]) -> None:
    seen: list[str] = []
    for index, stage in enumerate(recipe.stages):
        loc: Loc = ("stages", index)
        if stage.label in seen:
            problems.append(Problem(format_loc(loc), f"two stages are named {stage.label!r}; give each a distinct `name:`"))
        if stage._options is not None:
            for field_name, info in type(stage._options).model_fields.items():
                if not any(isinstance(m, StageInput) for m in info.metadata):
                    continue
                value = getattr(stage._options, field_name)
                for name in value if isinstance(value, list) else [value]:
                    if isinstance(name, str) and name not in seen:  # other values (a model spec) are not stage names
                        choices = ", ".join(seen) or "(no earlier stage)"
                        problems.append(
                            Problem(format_loc(loc + (field_name,)), f"{name!r} is not an earlier stage; choose one of: {choices}")
                        )
        seen.append(stage.label)


def validate_recipe(data: Any, *, plugins: Plugins, file: str | None = None,
                    lines: dict[Loc, int] | None = None, overridden: set[Loc] | None = None) -> Recipe:
    """Validate recipe data (already parsed) against the components of ``plugins`` into a resolved
    :class:`Recipe`, or raise RecipeError listing every problem."""
    lines = lines or {}
    overridden = overridden or set()
    problems: list[Problem] = []
    raw: list[tuple[Loc, str]] = []
    recipe: Recipe | None = None
    if not isinstance(data, dict):
        raw.append(((), "a recipe must be a mapping with `name:` and `stages:`"))
    else:
        try:
            recipe = Recipe.model_validate(data)
        except ValidationError as error:
            raw.extend(_pydantic_problems(error, Recipe, ()))
    if recipe is not None:
        for index, stage in enumerate(recipe.stages):
            _resolve_ref(stage, plugins, ("stages", index), problems)
        _check_stage_inputs(recipe, problems)
    elif isinstance(data, dict) and isinstance(data.get("stages"), list):
        # the recipe is broken elsewhere: still check each stage, so every problem shows at once
        for index, raw_stage in enumerate(data["stages"]):
            try:
                stage = StageRef.model_validate(raw_stage)
            except ValidationError:
                continue  # already reported by the recipe-level validation
            _resolve_ref(stage, plugins, ("stages", index), problems)
    for loc, message in raw:
        problems.append(Problem(format_loc(loc), message))
    located = []
    for problem in problems:
        loc = _parse_loc(problem.path)
        if any(loc[: len(o)] == o for o in overridden):
            located.append(Problem(problem.path, problem.message + " (set with --set)"))
        else:
            located.append(Problem(problem.path, problem.message, _line_for(loc, lines)))
    if located:
        located.sort(key=lambda p: (p.line or 0, p.path))
        raise RecipeError(located, file=file)
    assert recipe is not None
    recipe._plugins = plugins
    return recipe


def _parse_loc(path: str) -> Loc:
    loc: list[str | int] = []
    for chunk in path.replace("[", ".[").split("."):
        if not chunk:
            continue
        loc.append(int(chunk[1:-1]) if chunk.startswith("[") else chunk)
    return tuple(loc)


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *, plugins: Plugins) -> Recipe:
    """Read, override and validate a recipe file; raise RecipeError listing every problem."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError([Problem("", "recipe file not found")], file=str(path))
    data, lines = _load_yaml(path.read_text(encoding="utf-8"), str(path))
    if data is None:
        data = {}
    overridden: set[Loc] = set()
    if isinstance(data, dict):
        for assignment in overrides:
            try:
                overridden.add(apply_override(data, assignment))
            except RecipeError as error:
                raise RecipeError(error.problems, file=str(path)) from None
    return validate_recipe(data, plugins=plugins, file=str(path), lines=lines, overridden=overridden)


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
