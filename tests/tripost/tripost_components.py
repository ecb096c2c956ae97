"""Backends for the TriPosT tests: real misstep Backend subclasses that answer from a script.

``tripost-canned`` returns canned replies in order (an LLM verifier's or improver's good and malformed
output); ``tripost-student`` answers ``Q: <question>`` with the scripted gold rationale, made wrong in
its final response when ``mistake`` is set, and can crash on a given call (an interrupted collection);
``tripost-self-improver`` is a trained TriPosT model as the turn-by-turn inference prompts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import misstep
from pydantic import Field

from misstep_tripost.checking import complete
from misstep_tripost.families import FAMILIES
from misstep_tripost.text import FINAL, Step, answer_header, render_steps, split_turns
from misstep_tripost.verifiers import ScriptedVerifier


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


def off_by(question: str, off: int) -> list[Step]:
    """The gold rationale of a multistep arithmetic question, its final answer ``off`` from the right one."""
    family = FAMILIES["multistep_arithmetic"]
    steps = complete(family.machine(question))
    return steps if off == 0 else steps[:-1] + [Step(FINAL, f"So the answer is {family.answer(steps) + off}.")]


class SelfImproverBackend(misstep.Backend["SelfImproverBackend.Options"]):
    """A multistep arithmetic model that improves its answer by one each update (or moves away from it).

    Asked the question, it attempts with its answer ``first_off`` from the right one; asked to continue
    an attempt after ``Feedback:``, it writes the scripted verifier's feedback on it; after its feedback
    and ``Updated Answer:``, the next attempt. ``one_turn_at_a_time`` makes it stop after each of these;
    otherwise it goes on after an attempt with its feedback and one update, then stops, as a model
    trained on per-turn items. ``converges: false`` moves the answer one further away each update.
    Every prefill it was asked to continue is kept in ``prefills``.
    """

    name = "tripost-self-improver"
    prefills: ClassVar[list[str]] = []

    class Options(misstep.Options):
        first_off: int = 3
        converges: bool = True
        one_turn_at_a_time: bool = False

    def generate(self, conversations: Sequence[Sequence[misstep.Message]], sampling: Sequence[misstep.Sampling]) -> list[str]:
        return [self._reply(conversation) for conversation in conversations]

    def _reply(self, conversation: Sequence[misstep.Message]) -> str:
        family = FAMILIES["multistep_arithmetic"]
        question = conversation[0].content.removeprefix("Q: ")
        task = misstep.Task(id="x", question=question, answer=family.answer(off_by(question, 0)),
                            dataset="multistep_arithmetic")
        prefill = conversation[-1].content if conversation[-1].role == "assistant" else ""
        SelfImproverBackend.prefills.append(prefill)
        if not prefill:  # a first attempt
            attempt = off_by(question, self.options.first_off)
            reply = f"{answer_header(family.info)}\n{render_steps(attempt)}"
            return reply if self.options.one_turn_at_a_time else reply + "\nFeedback:" + self._going_on(task, attempt)
        latest = split_turns(prefill)[0].steps
        assert latest is not None, prefill
        if prefill.endswith("Feedback:"):
            return self._going_on(task, latest)
        return "\n" + render_steps(self._update(task, latest))  # after "Updated Answer: ..."

    def _going_on(self, task: misstep.Task, attempt: list[Step]) -> str:
        """After "Feedback:": the feedback on ``attempt``, then (unless one turn at a time) the update."""
        feedback = ScriptedVerifier().critique([task], [attempt])[0]
        text = f" {feedback.text()}"
        if feedback.correct or self.options.one_turn_at_a_time:
            return text
        header = answer_header(FAMILIES["multistep_arithmetic"].info, updated=True)
        return f"{text}\n{header}\n{render_steps(self._update(task, attempt))}"

    def _update(self, task: misstep.Task, attempt: list[Step]) -> list[Step]:
        off = FAMILIES["multistep_arithmetic"].answer(attempt) - task.answer
        return off_by(task.question, off - 1 if self.options.converges else off + 1)


class TriPosTTestPlugin:
    @misstep.hookimpl
    def register_backends(self, register):  # type: ignore[no-untyped-def]
        register(CannedBackend)
        register(StudentBackend)
        register(SelfImproverBackend)
