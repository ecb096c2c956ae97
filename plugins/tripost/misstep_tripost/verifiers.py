"""Verifiers that find the first wrong step of an attempt and write TriPosT feedback.

``tripost-scripted`` checks multistep arithmetic and word sorting with their scripts. ``tripost-llm``
asks an LLM through any misstep backend, with few-shot examples, and parses its reply into the same
feedback; a reply that does not parse, names a step the attempt does not have, or quotes a part that is
not in that step gives None (rejected: the editing loop counts it), never an exception.

Both batch their work in ``critique(tasks, attempts)`` (one feedback, or None, per parsed attempt);
``verify`` judges the last attempt of a text and puts the feedback in the verdict; ``judge_steps`` gives the
values of its lines for the ``step-values`` stage (``method: verifier``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import misstep
from pydantic import Field

from misstep_tripost.checking import verify as verify_steps
from misstep_tripost.families import family_of
from misstep_tripost.prompts import VERIFIER_EXAMPLES, VERIFIER_INSTRUCTION
from misstep_tripost.tasks import TaskName
from misstep_tripost.text import (
    ANSWER,
    FINAL,
    Feedback,
    Step,
    answer_header,
    correct_feedback,
    question_prompt,
    render_steps,
    split_turns,
)

_REPLY = re.compile(r"Earliest error step:\s*\(?(?P<step>[^)\n]*?)\)?\s*\n\s*Error segment:\s*(?P<segment>[^\n]*)\s*\n"
                    r"\s*Error reason:\s*(?P<reason>[^\n]*)")


class FeedbackVerifier(misstep.Verifier[Any]):
    """A verifier whose judgement is TriPosT feedback on the steps of an attempt."""

    def critique(self, tasks: Sequence[misstep.Task], attempts: Sequence[list[Step]]) -> list[Feedback | None]:
        raise NotImplementedError

    def verify(self, task: misstep.Task, prediction: str | None, messages: Sequence[misstep.Message] = ()) -> misstep.Verdict:
        turns = split_turns(prediction or "")
        steps = turns[-1].steps if turns else None
        if steps is None:
            return misstep.Verdict(correct=False, metrics={"unparsable": 1.0})
        family = family_of(task, getattr(self.options, "task", None))
        given = family.answer(steps)
        feedback = self.critique([task], [steps])[0]
        position = next((i + 1 for i, s in enumerate(steps) if feedback and s.id == feedback.error_step), None)
        return misstep.Verdict(
            correct=family.correct(steps, task) if task.answer is not None else (feedback.correct if feedback else None),
            score=1.0 if feedback is not None and feedback.correct else 0.0,
            prediction=None if given is None else (" ".join(given) if isinstance(given, list) else str(given)),
            feedback=feedback.text() if feedback else None,
            first_wrong_step=position,
            metrics={} if feedback else {"rejected": 1.0},
        )


    def judge_steps(self, task: misstep.Task, trajectory: misstep.Trajectory) -> misstep.StepCredit | None:
        """The lines of the last attempt in the trajectory's last assistant message as its steps (located by
        character spans): value 1 up to the first wrong one by :meth:`critique`, 0 from it on. None when the
        attempt does not parse or the critique is rejected."""
        turns = misstep.step_messages(trajectory)
        if not turns:
            return None
        text = trajectory.messages[turns[-1]].content
        attempts = split_turns(text)
        steps = attempts[-1].steps if attempts else None
        feedback = self.critique([task], [steps])[0] if steps else None
        if steps is None or feedback is None:
            return None
        spans: list[misstep.StepSpan] = []
        lines = "\n" + text  # a step starts a line: it follows a newline here, at its own offset in text
        cursor = max(lines.rfind(ANSWER), 0)  # the last attempt's header ("Answer:" or "Updated Answer:")
        for step in steps:
            start = lines.find(f"\n({step.id})", cursor)
            if start < 0:
                return None
            end = text.find("\n", start)
            spans.append(misstep.StepSpan(message=turns[-1], start=start, end=end if end >= 0 else None))
            cursor = start + 1
        ids = [step.id for step in steps]
        wrong = len(steps) if feedback.correct else ids.index(str(feedback.error_step))
        return misstep.StepCredit(values=[1.0] * wrong + [0.0] * (len(steps) - wrong), spans=spans)


class ScriptedVerifier(FeedbackVerifier):
    """Scripted step-by-step checks of multistep arithmetic and word sorting rationales."""

    name = "tripost-scripted"

    class Options(misstep.Options):
        task: TaskName | None = Field(default=None, description="default: each task's own (its dataset)")

    def critique(self, tasks: Sequence[misstep.Task], attempts: Sequence[list[Step]]) -> list[Feedback | None]:
        results: list[Feedback | None] = []
        for task, steps in zip(tasks, attempts):
            family = family_of(task, self.options.task)
            if family.machine is None:
                raise misstep.ComponentError(f"tripost-scripted cannot check {family.name} tasks (no script); use "
                                             "the tripost-llm verifier")
            results.append(verify_steps(family.machine(task.question), steps))
        return results


_STARTERS = {"a", "an", "all", "both", "each", "every", "it", "its", "multiplication", "one", "since", "step", "that",
             "the", "there", "these", "this", "those", "we", "you"}


def _clean_reason(reason: str) -> str:
    """The reason as a clause after "This is because" (a sentence's capital goes, a name's stays)."""
    reason = reason.strip().removeprefix("This is because").strip().rstrip(".")
    first = reason.split(" ", 1)[0]
    return reason[0].lower() + reason[1:] if first.lower() in _STARTERS else reason


def _norm(text: str) -> str:
    return " ".join(text.split())


def parse_reply(reply: str, steps: list[Step], *, allow_correct: bool) -> Feedback | None:
    """The feedback an LLM verifier's reply states about ``steps``, or None when it is unusable."""
    match = _REPLY.search(reply)
    if not match:
        return None
    step = match.group("step").strip()
    if step.lower() in ("none", ""):
        return correct_feedback(steps) if allow_correct else None
    ids = [s.id for s in steps]
    if step not in ids:
        return None
    segment = match.group("segment").strip()
    if len(segment) >= 2 and segment[0] == segment[-1] == '"':
        segment = segment[1:-1]
    reason = _clean_reason(match.group("reason"))
    target = steps[ids.index(step)]
    if not segment or _norm(segment) not in _norm(target.line()) or not reason:
        return None
    numbered = [s.id for s in steps[: ids.index(step)] if s.id != FINAL]
    return Feedback(error_step=step, last_correct=numbered[-1] if numbered else None, segment=segment, reason=reason)


class LLMVerifier(FeedbackVerifier):
    """An LLM (any misstep backend) finds the first wrong step, prompted with few-shot examples.

    With ``check_answer`` (the reference behaviour) an attempt whose final answer is right gets the
    "all correct" feedback without asking the LLM, and the LLM is asked only about wrong answers.
    """

    name = "tripost-llm"

    class Options(misstep.Options):
        backend: misstep.BackendRef
        task: TaskName | None = Field(default=None, description="whose few-shot examples; default: the task's own")
        instruction: str = VERIFIER_INSTRUCTION
        examples: str | None = Field(default=None, description="few-shot examples; default: the task's built-in ones")
        check_answer: bool = True
        temperature: float = Field(default=0.0, ge=0)
        max_new_tokens: int = Field(default=256, gt=0)

    def __init__(self, options: LLMVerifier.Options | None = None) -> None:
        super().__init__(options)
        self._backend: misstep.Backend | None = None

    def _prompt(self, task: misstep.Task, steps: list[Step]) -> list[misstep.Message]:
        family = family_of(task, self.options.task)
        examples = self.options.examples if self.options.examples is not None else VERIFIER_EXAMPLES[family.name]
        case = f"{question_prompt(task.question)}\n{answer_header(family.info)}\n{render_steps(steps)}"
        return [misstep.Message(role="user", content=f"{self.options.instruction}\n\n{examples}\n\n{case}")]

    def critique(self, tasks: Sequence[misstep.Task], attempts: Sequence[list[Step]]) -> list[Feedback | None]:
        opts = self.options
        results: list[Feedback | None] = [None] * len(tasks)
        asked: list[int] = []
        for index, (task, steps) in enumerate(zip(tasks, attempts)):
            known = opts.check_answer and task.answer is not None
            if known and family_of(task, opts.task).correct(steps, task):
                results[index] = correct_feedback(steps)
            else:
                asked.append(index)
        if not asked:
            return results
        if self._backend is None:
            self._backend = opts.backend.build()
        sampling = misstep.Sampling(temperature=opts.temperature, max_new_tokens=opts.max_new_tokens, stop=("\n\nQ:",))
        replies = self._backend.generate([self._prompt(tasks[i], attempts[i]) for i in asked], [sampling] * len(asked))
        for index, reply in zip(asked, replies):
            allow_correct = not (opts.check_answer and tasks[index].answer is not None)
            results[index] = parse_reply(reply, attempts[index], allow_correct=allow_correct)
        return results

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None
