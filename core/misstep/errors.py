"""Errors that misstep reports to users: each says what was wrong, where, and what to do."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class MisstepError(Exception):
    """Base of errors shown to users as a message, without a traceback."""


class DataError(MisstepError):
    """A data file holds something misstep cannot read; names the file and line."""

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        where = self.path or ""
        if where and line is not None:
            where += f":{line}"
        super().__init__(f"{where}: {message}" if where else message)


@dataclass(frozen=True)
class Problem:
    """One problem found in a recipe, at a dotted path and (when known) a line of its file."""

    path: str
    message: str
    line: int | None = None


class RecipeError(MisstepError):
    """A recipe failed validation; holds every problem found, not just the first."""

    def __init__(self, problems: list[Problem], *, file: str | None = None) -> None:
        self.problems = problems
        self.file = file
        super().__init__(self.render())

    def render(self) -> str:
        lines = []
        for problem in self.problems:
            where = self.file or "recipe"
            if problem.line is not None:
                where += f":{problem.line}"
            key = f" {problem.path}:" if problem.path else ""
            lines.append(f"{where}:{key} {problem.message}")
        return "\n".join(lines)


class PluginError(MisstepError):
    """Plugins registered something inconsistent (two components with one name, a bad component)."""


class ComponentError(MisstepError):
    """A component was used wrongly at run time (bad tool argument, missing model file, ...)."""
