"""Scripted rationales as state machines: each task's machine checks a rationale step by step and can
write the correct next step from wherever it stands.

The same machine writes gold rationales (always take the expected step), verifies attempts (the first
step it rejects is the error step) and improves them (accept the correct steps before the error, then
write the rest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from misstep_tripost.text import FINAL, Feedback, Step


@dataclass(frozen=True)
class Problem:
    """Why a step is wrong: the incorrect part of it and the reason (a clause after "This is because")."""

    segment: str
    reason: str


class Machine(Protocol):
    """Walks through one task's rationale. ``check`` advances on a correct step; ``expect`` names the next."""

    def check(self, step: Step) -> Problem | None: ...

    def expect(self) -> Step | None: ...


def verify(machine: Machine, steps: list[Step]) -> Feedback:
    """The feedback for ``steps``: the first step ``machine`` rejects, or all correct."""
    last: str | None = None
    for step in steps:
        problem = machine.check(step)
        if problem is not None:
            return Feedback(error_step=step.id, last_correct=last, segment=problem.segment, reason=problem.reason)
        if step.id != FINAL:
            last = step.id
    return Feedback(error_step=None, last_correct=last)


def complete(machine: Machine, prefix: Sequence[Step] = ()) -> list[Step]:
    """``prefix`` (steps the machine accepts) followed by the correct remaining steps."""
    steps = list(prefix)
    for given in steps:
        if machine.check(given) is not None:
            raise ValueError(f"step ({given.id}) of the prefix is not correct")
    while (step := machine.expect()) is not None:
        problem = machine.check(step)
        if problem is not None:  # the machine must accept what it writes
            raise AssertionError(f"scripted step ({step.id}) rejected: {problem.reason}")
        steps.append(step)
    return steps


def wrong_id(step: Step, expected: str) -> Problem | None:
    """A problem when a step carries another number than the one it should have."""
    if step.id == expected:
        return None
    return Problem(f"({step.id})", f"this step should be numbered ({expected})")
