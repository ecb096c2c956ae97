"""A minimal misstep plugin: one task generator and one verifier, registered through two hooks."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from pydantic import Field

import misstep


class TimesTable(misstep.TaskLoader):
    """Multiplication questions such as "What is 7 times 8?", seeded."""

    name = "times-table"

    class Options(misstep.Options):
        count: int = Field(default=10, gt=0, description="how many tasks")
        max_factor: int = Field(default=12, ge=2, description="largest factor")
        seed: int = 0

    def load(self) -> Iterator[misstep.Task]:
        rng = random.Random(self.options.seed)
        for index in range(self.options.count):
            a, b = rng.randint(2, self.options.max_factor), rng.randint(2, self.options.max_factor)
            yield misstep.Task(id=f"times-{index}", question=f"What is {a} times {b}?", answer=a * b,
                               dataset="times-table")


class SameParity(misstep.Verifier):
    """Correct when the prediction has the gold answer's parity (a deliberately lenient toy verifier)."""

    name = "same-parity"

    def verify(self, task: misstep.Task, prediction: str | None,
               messages: Sequence[misstep.Message] = ()) -> misstep.Verdict:
        try:
            correct = int(str(prediction).strip()) % 2 == int(task.answer) % 2
        except ValueError:
            correct = False
        return misstep.Verdict(correct=correct, score=float(correct), prediction=prediction)


@misstep.hookimpl
def register_tasks(register: misstep.Register) -> None:
    register(TimesTable)


@misstep.hookimpl
def register_verifiers(register: misstep.Register) -> None:
    register(SameParity)
