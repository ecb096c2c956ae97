"""Reading YAML text with bounds: the one place misstep parses YAML (recipes and ``--set`` values).

A few hundred bytes of YAML can expand through aliases to gigabytes, nest deeper than Python recurses,
refer to itself or ask for Python objects. :func:`load_yaml` composes the node graph first (libyaml's
parser when PyYAML has it), refuses all of that with the line where it happens, and only then builds
the data. It also refuses keys that are not plain scalars, tags beyond the plain JSON-like types, and
a key given twice in one mapping (naming both lines).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.events import AliasEvent, CollectionStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from misstep.errors import Problem, RecipeError

Loc = tuple[str | int, ...]
"""A path into the data: mapping keys and list indexes."""

MAX_DEPTH = 64
"""Nesting levels a document may have, counted through its aliases."""
MAX_VALUES = 100_000
"""Values (mappings, lists, scalars, keys) a document may hold once its aliases are expanded."""
MAX_CHARACTERS = 4_000_000
"""Characters of scalar text a document may hold once its aliases are expanded."""

_TAG = "tag:yaml.org,2002:"
MERGE = _TAG + "merge"
ALLOWED_TAGS = frozenset(_TAG + name for name in ("null", "bool", "int", "float", "str", "timestamp", "seq", "map"))


class YamlSyntaxError(RecipeError):
    """The text is not valid YAML (as opposed to valid YAML that misstep refuses to read)."""


@dataclass
class YamlDocument:
    """Parsed YAML and the 1-based line of every key and value path in it."""

    data: Any
    lines: dict[Loc, int]


class _Refused(Exception):
    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.line: int | None = mark.line + 1 if mark is not None else None


class _Bounded(Composer, SafeConstructor, Resolver):
    """Composes nodes from a parser's events, refusing recursive aliases and deep nesting as it goes."""

    peek_event: Callable[[], Any]  # from the parser it is combined with
    dispose: Callable[[], None]

    def __init__(self) -> None:
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.open_anchors: list[str | None] = []  # one entry per collection being composed

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()
        if isinstance(event, AliasEvent) and event.anchor in self.open_anchors:
            raise _Refused(f"the alias *{event.anchor} is inside the value it names (a recursive alias); "
                           "an alias may only name a value that ends before it", event.start_mark)
        if not isinstance(event, CollectionStartEvent):
            return super().compose_node(parent, index)
        if len(self.open_anchors) >= MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        self.open_anchors.append(event.anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self.open_anchors.pop()

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except ValueError as error:  # e.g. an integer of more digits than Python converts, a date out of range
            raise ConstructorError(None, None, f"{error}", node.start_mark) from None


class _PythonLoader(_Bounded, Reader, Scanner, Parser):
    """PyYAML's own scanner and parser (pure Python)."""

    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        _Bounded.__init__(self)


_LOADER: Callable[[str], _Bounded] = _PythonLoader
try:
    from yaml._yaml import CParser

    class _FastLoader(_Bounded, CParser):
        """libyaml's scanner and parser (several times faster)."""

        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            _Bounded.__init__(self)

    _LOADER = _FastLoader
except ImportError:  # PyYAML built without libyaml
    pass


@dataclass
class _Size:
    values: int
    characters: int
    height: int


def _measure(root: Node) -> list[tuple[str, int]]:
    """Check the node graph's expanded size and depth (raising _Refused) and collect what is refused in it:
    unknown tags, keys that are not scalars, duplicate keys (message, line)."""
    sizes: dict[int, _Size] = {}
    problems: list[tuple[str, int]] = []

    def visit(node: Node, depth: int) -> _Size:
        known = sizes.get(id(node))
        if known is None and depth <= MAX_DEPTH:
            known = sizes[id(node)] = measure(node, depth)
        if known is None or depth + known.height > MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels once its aliases are expanded", node.start_mark)
        return known

    def measure(node: Node, depth: int) -> _Size:
        line = node.start_mark.line + 1
        if node.tag not in ALLOWED_TAGS and node.tag != MERGE:
            tag = "!!" + node.tag[len(_TAG):] if node.tag.startswith(_TAG) else node.tag
            problems.append((f"the tag {tag} is not allowed: a recipe holds only mappings, lists, strings, "
                             "numbers, booleans and null; remove the tag", line))
        if isinstance(node, ScalarNode):
            return _Size(1, len(node.value), 0)
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            seen: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                children += [key, value]
                key_line = key.start_mark.line + 1
                if not isinstance(key, ScalarNode):
                    problems.append(("a key must be a plain string or number, not a mapping or list", key_line))
                elif key.tag != MERGE:
                    if (key.tag, key.value) in seen:
                        problems.append((f"the key {key.value!r} appears twice in one mapping (lines "
                                         f"{seen[key.tag, key.value]} and {key_line}); keep one", key_line))
                    seen.setdefault((key.tag, key.value), key_line)
        total = _Size(1, 0, 0)
        for child in children:
            size = visit(child, depth + 1)
            total.values += size.values
            total.characters += size.characters
            total.height = max(total.height, size.height + 1)
        if total.values > MAX_VALUES or total.characters > MAX_CHARACTERS:
            raise _Refused(f"its aliases expand to more than {MAX_VALUES:,} values or {MAX_CHARACTERS:,} characters "
                           "(an alias bomb?); write the values out or use fewer aliases", node.start_mark)
        return total

    visit(root, 0)
    return problems


def _line_map(root: Node) -> dict[Loc, int]:
    lines: dict[Loc, int] = {}

    def walk(node: Node, loc: Loc) -> None:
        lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, MappingNode):
            for key, value in _pairs(node):
                lines[loc + (key.value,)] = key.start_mark.line + 1
                walk(value, loc + (key.value,))
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, loc + (index,))

    walk(root, ())
    return lines


def _pairs(node: MappingNode) -> list[tuple[ScalarNode, Node]]:
    """A mapping's key and value nodes, merge keys (``<<: *base``) replaced by the pairs they bring in;
    the mapping's own keys come last, so they win, as in the data."""
    merged: list[tuple[ScalarNode, Node]] = []
    own: list[tuple[ScalarNode, Node]] = []
    for key, value in node.value:
        if key.tag != MERGE:
            own.append((key, value))
            continue
        for source in value.value if isinstance(value, SequenceNode) else [value]:
            if isinstance(source, MappingNode):
                merged += _pairs(source)
    return merged + own


def load_yaml(text: str, *, file: str | None = None) -> YamlDocument:
    """Parse one YAML document within the bounds above; raise RecipeError with the line of each problem
    (:class:`YamlSyntaxError` for text that is not YAML at all)."""
    loader = _LOADER(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return YamlDocument(None, {})
        problems = _measure(root)
        if problems:
            raise RecipeError([Problem("", message, line) for message, line in sorted(problems, key=lambda p: p[1])],
                              file=file)
        lines = _line_map(root)
        data = loader.construct_document(root)
    except _Refused as error:
        raise RecipeError([Problem("", str(error), error.line)], file=file) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        reason = ", ".join(part for part in (getattr(error, "context", None), getattr(error, "problem", None))
                           if part) or str(error)
        raise YamlSyntaxError([Problem("", f"not valid YAML: {reason}", mark.line + 1 if mark else None)],
                              file=file) from None
    finally:
        loader.dispose()
    return YamlDocument(data, lines)
