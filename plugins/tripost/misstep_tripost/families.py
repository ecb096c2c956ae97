"""The TriPosT tasks: what each one writes after "Let's think step by step.", how its final response
states the answer, and (for the scripted ones) the machine that writes and checks rationales."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import misstep

from misstep_tripost import arithmetic, sorting
from misstep_tripost.checking import Machine, complete
from misstep_tripost.text import Step, parse_steps


def _choice(steps: list[Step]) -> str | None:
    match = re.search(r"the answer is \(([A-Z])\)", steps[-1].text) if steps else None
    return match.group(1) if match else None


@dataclass(frozen=True)
class Family:
    """One TriPosT task (``multistep_arithmetic``, ``word_sorting``, ``date_understanding``)."""

    name: str
    info: str
    answer: Callable[[list[Step]], Any]
    machine: Callable[[str], Machine] | None = None

    @property
    def scripted(self) -> bool:
        return self.machine is not None

    def gold(self, task: misstep.Task) -> list[Step] | None:
        """The task's gold rationale: stored with the task, or written by the script."""
        stored = task.metadata.get("rationale")
        if isinstance(stored, str):
            return parse_steps(stored)
        return complete(self.machine(task.question)) if self.machine else None

    def correct(self, steps: list[Step] | None, task: misstep.Task) -> bool:
        """Whether the final response of ``steps`` gives the task's gold answer."""
        if not steps:
            return False
        given = self.answer(steps)
        if given is None:
            return False
        gold = task.answer
        if self.name == "multistep_arithmetic":
            return str(given) == str(gold).strip()
        if self.name == "word_sorting":
            return list(given) == (gold if isinstance(gold, list) else str(gold).split())
        return str(given) == str(gold).strip().strip("()")


FAMILIES: dict[str, Family] = {
    "multistep_arithmetic": Family("multistep_arithmetic", arithmetic.INFO, arithmetic.answer, arithmetic.ArithmeticMachine),
    "word_sorting": Family("word_sorting", "", sorting.answer, sorting.SortingMachine),
    "date_understanding": Family("date_understanding", "", _choice),
}


def family_of(task: misstep.Task, name: str | None = None) -> Family:
    """The family ``name``, or the one the task belongs to (its ``tripost_task`` metadata or dataset)."""
    key = name or task.metadata.get("tripost_task") or task.dataset
    if key not in FAMILIES:
        raise misstep.ComponentError(
            f"task {task.id!r} is not a TriPosT task (dataset {task.dataset!r}); load it with a tripost task loader "
            f"or set the component's `task:` to one of: {', '.join(FAMILIES)}")
    return FAMILIES[key]
