"""An offline teacher: TRICE calls composed from GSM8K's calculator annotations.

GSM8K's worked solutions mark each computation, ``48/2 = <<48/2=24>>24 ... 48+24 = <<48+24=72>>72``.
The ``gsm8k-calls`` backend answers a conversation about a question of its file with one call whose
formula is the last computation with every number that an earlier step produced replaced by that
step's formula, in brackets: ``calculator(48+(48/2))``. It finds the question in the last user turn
(the stage-I teacher prompt or the student prompt), so it serves as ``teacher`` of ``trice-stage1`` and
as a ``generate`` pool source, with no model and no network. Questions it does not know, or whose
solution has no annotation, get an empty reply (no call).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import misstep
from pydantic import Field

_ANNOTATION = re.compile(r"<<([^=<>]*)=([^<>]*)>>")
_OPERAND = re.compile(r"(?<![\w.])\d*\.?\d+")
_QUERY = re.compile(r"Question: (.*?)\nGolden answers:", re.S)


def _value(text: str) -> float | None:
    try:
        return float(text.replace(",", "").strip().rstrip("."))
    except ValueError:
        return None


def compose(solution: str, max_chars: int = 300) -> str | None:
    """One formula for a GSM8K solution (see the module docstring), or None without annotations."""
    steps = [(expr.replace(",", "").replace(" ", ""), _value(result)) for expr, result in _ANNOTATION.findall(solution)]
    steps = [(expr, result) for expr, result in steps if expr]
    if not steps:
        return None

    def expand(index: int) -> str:
        earlier = steps[:index]

        def substitute(match: re.Match[str]) -> str:
            number = float(match.group(0))
            for position in range(len(earlier) - 1, -1, -1):
                if earlier[position][1] == number:
                    return f"({expand(position)})"
            return match.group(0)

        return _OPERAND.sub(substitute, steps[index][0])

    formula = expand(len(steps) - 1)
    return formula if len(formula) <= max_chars else None


class Gsm8kCalls(misstep.Backend["Gsm8kCalls.Options"]):
    """An offline teacher: calls composed from the calculator annotations of GSM8K solutions."""

    name = "gsm8k-calls"

    class Options(misstep.Options):
        path: Annotated[Path, misstep.InputPath()] = Field(description="GSM8K-style JSON Lines: a question and a worked solution with <<a*b=c>> marks")
        question: str = Field(default="question", description="field holding the question")
        solution: str = Field(default="answer", description="field holding the annotated solution")
        tool: str = Field(default="calculator", description="name the call uses")
        max_chars: int = Field(default=300, gt=0, description="longer formulas are not written")

    def __init__(self, options: Gsm8kCalls.Options | None = None) -> None:
        super().__init__(options)
        self._calls: dict[str, str | None] | None = None

    def _load(self) -> dict[str, str | None]:
        if self._calls is None:
            opts = self.options
            if not opts.path.is_file():
                raise misstep.DataError("file not found; set `path:` to GSM8K-style JSON Lines", path=opts.path)
            calls: dict[str, str | None] = {}
            for number, row in misstep.iter_json_rows(opts.path):
                try:
                    calls[row[opts.question].strip()] = compose(str(row[opts.solution]), opts.max_chars)
                except (KeyError, TypeError, AttributeError) as error:
                    raise misstep.DataError(
                        f"expected an object with {opts.question!r} and {opts.solution!r} ({type(error).__name__}"
                        f": {error}); set `question:` and `solution:` to the file's fields",
                        path=opts.path, line=number) from None
            self._calls = calls
        return self._calls

    def _reply(self, text: str) -> str:
        calls = self._load()
        queries = _QUERY.findall(text)
        candidates = [queries[-1].strip()] if queries else []
        candidates.append(text.strip().splitlines()[-1].strip() if text.strip() else "")
        for candidate in candidates:
            if candidate in calls:
                formula = calls[candidate]
                return f"{self.options.tool}({formula})" if formula else ""
        return ""

    def generate(self, conversations: Sequence[Sequence[misstep.Message]],
                 sampling: Sequence[misstep.Sampling]) -> list[str]:
        if len(conversations) != len(sampling):
            raise misstep.ComponentError(f"{len(conversations)} conversations but {len(sampling)} sampling settings")
        return [self._reply(next((m.content for m in reversed(c) if m.role == "user"), "")) for c in conversations]
