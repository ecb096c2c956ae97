"""Arithmetic word problems for the quickstart: templated questions of one to three steps, solved with the
calculator, and the task generator ``arithmetic-word-problems``.

A template holds the question text with slots ({name}, {item}, numbers {a} {b} {c}) and one step per
calculation: the reason in words, and ``left op right`` over the numbers and earlier results (r1 is
the first step's result). The scripted teacher reads questions back with :func:`parse_question`.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import misstep
from pydantic import Field

NAMES = ("Anna", "Ben", "Carla", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas")
ITEMS = ("apples", "pencils", "marbles", "stickers", "cookies", "books", "shells", "coins")
OPS: dict[str, Callable[[Fraction, Fraction], Fraction]] = {
    "+": lambda x, y: x + y,
    "-": lambda x, y: x - y,
    "*": lambda x, y: x * y,
    "/": lambda x, y: x / y,
}

Numbers = Callable[[random.Random], dict[str, int]]


@dataclass(frozen=True)
class Step:
    """One calculation: why (``reason``, with slots) and ``left op right`` (slot names or r1, r2...)."""

    reason: str
    left: str
    op: str
    right: str


@dataclass(frozen=True)
class Template:
    key: str
    text: str
    steps: tuple[Step, ...]
    numbers: Numbers

    def pattern(self) -> re.Pattern[str]:
        """A regex that reads the slots back from a question made with this template."""
        seen: set[str] = set()

        def slot(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in seen:
                return f"(?P={name})"
            seen.add(name)
            return rf"(?P<{name}>\d+)" if len(name) == 1 else rf"(?P<{name}>[A-Za-z]+)"

        return re.compile(re.sub(r"\\\{(\w+)\\\}", slot, re.escape(self.text)))


def _add(rng: random.Random) -> dict[str, int]:
    return {"a": rng.randint(2, 60), "b": rng.randint(2, 40)}


def _sub(rng: random.Random) -> dict[str, int]:
    b = rng.randint(2, 30)
    return {"a": b + rng.randint(1, 40), "b": b}


def _mul(rng: random.Random) -> dict[str, int]:
    return {"a": rng.randint(2, 12), "b": rng.randint(2, 12)}


def _div(rng: random.Random) -> dict[str, int]:
    b = rng.randint(2, 9)
    return {"a": b * rng.randint(2, 12), "b": b}


def _mul_add(rng: random.Random) -> dict[str, int]:
    return {"a": rng.randint(2, 30), "b": rng.randint(2, 9), "c": rng.randint(2, 12)}


def _add_sub(rng: random.Random) -> dict[str, int]:
    a, b = rng.randint(2, 40), rng.randint(2, 30)
    return {"a": a, "b": b, "c": rng.randint(1, a + b - 1)}


def _mul_sub(rng: random.Random) -> dict[str, int]:
    a, b = rng.randint(5, 20), rng.randint(2, 8)
    return {"a": a, "b": b, "c": rng.randint(1, a * b - 1)}


def _div_mul(rng: random.Random) -> dict[str, int]:
    b = rng.randint(3, 9)
    return {"a": b * rng.randint(2, 10), "b": b, "c": rng.randint(2, b - 1)}


def _sub_div(rng: random.Random) -> dict[str, int]:
    c = rng.randint(2, 8)
    b = rng.randint(2, 20)
    return {"a": b + c * rng.randint(2, 10), "b": b, "c": c}


def _mul_add_sub(rng: random.Random) -> dict[str, int]:
    numbers = _mul_add(rng)
    return {**numbers, "d": rng.randint(1, numbers["a"] + numbers["b"] * numbers["c"] - 1)}


def _div_add_mul(rng: random.Random) -> dict[str, int]:
    b = rng.randint(2, 9)
    return {"a": b * rng.randint(2, 12), "b": b, "c": rng.randint(1, 10), "d": rng.randint(2, b)}


def _mul_add_sub_money(rng: random.Random) -> dict[str, int]:
    a, b, c = rng.randint(5, 20), rng.randint(2, 8), rng.randint(2, 30)
    return {"a": a, "b": b, "c": c, "d": rng.randint(1, a * b + c - 1)}


TEMPLATES: tuple[Template, ...] = (
    Template("add", "{name} has {a} {item}. {name} gets {b} more {item}. How many {item} does {name} have now?",
             (Step("{name} has {a} {item} and gets {b} more", "a", "+", "b"),), _add),
    Template("sub", "{name} has {a} {item}. {name} gives away {b} {item}. How many {item} does {name} have left?",
             (Step("{name} has {a} {item} and gives away {b}", "a", "-", "b"),), _sub),
    Template("mul", "{name} buys {a} boxes of {item}. Each box has {b} {item}. How many {item} does {name} buy?",
             (Step("{name} buys {a} boxes with {b} {item} in each box", "a", "*", "b"),), _mul),
    Template("div", "{name} shares {a} {item} equally among {b} friends. How many {item} does each friend get?",
             (Step("{a} {item} are shared equally among {b} friends", "a", "/", "b"),), _div),
    Template("mul-add", "{name} has {a} {item}. {name} buys {b} boxes with {c} {item} in each box. "
             "How many {item} does {name} have now?",
             (Step("{name} buys {b} boxes with {c} {item} in each box", "b", "*", "c"),
              Step("{name} already had {a} {item}", "a", "+", "r1")), _mul_add),
    Template("add-sub", "{name} has {a} {item}. {name} finds {b} more {item} and then gives away {c} {item}. "
             "How many {item} does {name} have left?",
             (Step("{name} has {a} {item} and finds {b} more", "a", "+", "b"),
              Step("{name} gives away {c} {item}", "r1", "-", "c")), _add_sub),
    Template("mul-sub", "{name} earns {a} dollars per hour and works for {b} hours. {name} spends {c} dollars on "
             "{item}. How many dollars does {name} have left?",
             (Step("{name} earns {a} dollars per hour for {b} hours", "a", "*", "b"),
              Step("{name} spends {c} dollars on {item}", "r1", "-", "c")), _mul_sub),
    Template("div-mul", "{name} puts {a} {item} into {b} equal bags. {name} gives {c} bags to a friend. "
             "How many {item} does the friend get?",
             (Step("{a} {item} go into {b} equal bags", "a", "/", "b"),
              Step("the friend gets {c} bags", "r1", "*", "c")), _div_mul),
    Template("sub-div", "{name} has {a} {item} and loses {b} of them. {name} shares the rest equally among {c} "
             "friends. How many {item} does each friend get?",
             (Step("{name} has {a} {item} and loses {b}", "a", "-", "b"),
              Step("the rest is shared equally among {c} friends", "r1", "/", "c")), _sub_div),
    Template("mul-add-sub", "{name} has {a} {item}. {name} buys {b} boxes with {c} {item} in each box and then "
             "gives away {d} {item}. How many {item} does {name} have left?",
             (Step("{name} buys {b} boxes with {c} {item} in each box", "b", "*", "c"),
              Step("{name} already had {a} {item}", "a", "+", "r1"),
              Step("{name} gives away {d} {item}", "r2", "-", "d")), _mul_add_sub),
    Template("div-add-mul", "{name} shares {a} {item} equally among {b} friends. Each friend then gets {c} more "
             "{item}. How many {item} do {d} of the friends have together?",
             (Step("{a} {item} are shared equally among {b} friends", "a", "/", "b"),
              Step("each friend then gets {c} more", "r1", "+", "c"),
              Step("we count {d} of the friends", "r2", "*", "d")), _div_add_mul),
    Template("earn-bonus-spend", "{name} earns {a} dollars per hour for {b} hours and gets a bonus of {c} dollars. "
             "{name} spends {d} dollars on {item}. How many dollars does {name} have left?",
             (Step("{name} earns {a} dollars per hour for {b} hours", "a", "*", "b"),
              Step("{name} gets a bonus of {c} dollars", "r1", "+", "c"),
              Step("{name} spends {d} dollars on {item}", "r2", "-", "d")), _mul_add_sub_money),
)
BY_KEY = {template.key: template for template in TEMPLATES}


@dataclass(frozen=True)
class Problem:
    """A question read back into its template and slot values."""

    template: Template
    slots: dict[str, str]

    @property
    def numbers(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.slots.items() if len(k) == 1}

    def solve(self) -> int:
        values: dict[str, Fraction] = {k: Fraction(v) for k, v in self.numbers.items()}
        for index, step in enumerate(self.template.steps, start=1):
            values[f"r{index}"] = OPS[step.op](values[step.left], values[step.right])
        result = values[f"r{len(self.template.steps)}"]
        assert result.denominator == 1 and result >= 0, (self.template.key, self.slots)
        return int(result)


_PATTERNS = [(template, template.pattern()) for template in TEMPLATES]


def parse_question(text: str) -> Problem | None:
    """The problem a question holds (hints or other text around it are ignored), or None."""
    for template, pattern in _PATTERNS:
        match = pattern.search(text)
        if match:
            return Problem(template, match.groupdict())
    return None


def make_question(template: Template, rng: random.Random) -> str:
    slots: dict[str, object] = {"name": rng.choice(NAMES), "item": rng.choice(ITEMS), **template.numbers(rng)}
    return template.text.format(**slots)


def in_split(question: str, split: str, test_share: float) -> bool:
    """Train and test questions never overlap: a question's hash puts it in exactly one split."""
    bucket = zlib.crc32(question.encode()) % 1000 / 1000
    return (bucket < test_share) == (split == "test")


class ArithmeticWordProblems(misstep.TaskLoader["ArithmeticWordProblems.Options"]):
    """Seeded arithmetic word problems of one to three steps with integer answers (for the calculator)."""

    name = "arithmetic-word-problems"

    class Options(misstep.Options):
        count: int = Field(default=100, gt=0, description="how many tasks")
        seed: int = 0
        split: Literal["train", "test"] = Field(
            default="train", description="train and test questions never overlap, whatever the seeds")
        test_share: float = Field(default=0.2, gt=0, lt=1, description="share of all questions that are test questions")
        steps: list[Literal[1, 2, 3]] = Field(default=[1, 2], min_length=1,
                                              description="which problem sizes (calculations per problem)")
        dataset: str = "arithmetic"

    def load(self) -> Iterator[misstep.Task]:
        opts = self.options
        rng = random.Random(f"{opts.seed}-{opts.split}")
        templates = [t for t in TEMPLATES if len(t.steps) in opts.steps]
        seen: set[str] = set()
        while len(seen) < opts.count:
            template = rng.choice(templates)
            question = make_question(template, rng)
            if question in seen or not in_split(question, opts.split, opts.test_share):
                continue
            seen.add(question)
            problem = parse_question(question)
            assert problem is not None and problem.template is template
            yield misstep.Task(
                id=f"{opts.dataset}-{opts.split}-{len(seen) - 1}",
                question=question,
                answer=problem.solve(),
                dataset=opts.dataset,
                split=opts.split,
                metadata={"template": template.key, "steps": len(template.steps)},
            )
