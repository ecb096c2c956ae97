"""Backends for the TriPosT tests: real misstep Backend subclasses that answer from a script.

``tripost-canned`` returns canned replies in order (an LLM verifier's or improver's good and malformed
output); ``tripost-student`` answers ``Q: <question>`` with the scripted gold rationale, made wrong in
its final response when ``mistake`` is set, and can crash on a given call (an interrupted collection).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import misstep
from pydantic import Field

from misstep_tripost.checking import complete
from misstep_tripost.families import FAMILIES
from misstep_tripost.text import FINAL, Step, answer_header, render_steps


class CannedBackend(misstep.Backend["CannedBackend.Options"]):
    """Replies with ``replies`` in order (cycling); remembers every prompt it was sent."""

    name = "tripost-canned"
    prompts: ClassVar[list[str]] = []

    class Options(misstep.Options):
        replies: list[str] = Field(min_length=1)

    def __init__(self, options: CannedBackend.Options | None = None) -> None:
        super().__init__(options)
        self._next = 0

    def generate(self, conversations: Sequence[Sequence[misstep.Message]], sampling: Sequence[misstep.Sampling]) -> list[str]:
        replies = []
        for conversation in conversations:
            CannedBackend.prompts.append(conversation[-1].content)
            replies.append(self.options.replies[self._next % len(self.options.replies)])
            self._next += 1
        return replies


class StudentBackend(misstep.Backend["StudentBackend.Options"]):
    """A multistep arithmetic student that writes the gold rationale, with a wrong final answer if asked.

    Set ``crash_at`` to make the n-th call (counted in ``calls``) raise, as a crash would.
    """

    name = "tripost-student"
    calls: ClassVar[int] = 0
    crash_at: ClassVar[int | None] = None

    class Options(misstep.Options):
        mistake: bool = True
        model: misstep.ModelSpec | None = None

    def generate(self, conversations: Sequence[Sequence[misstep.Message]], sampling: Sequence[misstep.Sampling]) -> list[str]:
        StudentBackend.calls += 1
        if StudentBackend.crash_at == StudentBackend.calls:
            raise RuntimeError("the student crashed")
        family = FAMILIES["multistep_arithmetic"]
        replies = []
        for conversation in conversations:
            question = conversation[-1].content.removeprefix("Q: ")
            steps = complete(family.machine(question))
            if self.options.mistake:
                steps = steps[:-1] + [Step(FINAL, f"So the answer is {family.answer(steps) + 1}.")]
            replies.append(f"{answer_header(family.info)}\n{render_steps(steps)}")
        return replies


class TriPosTTestPlugin:
    @misstep.hookimpl
    def register_backends(self, register):  # type: ignore[no-untyped-def]
        register(CannedBackend)
        register(StudentBackend)
