"""The TriPosT text format: numbered steps, feedback sentences, and interactions of attempts and feedback.

One interaction (the assistant's side; the question is the user turn ``Q: <question>``)::

    Answer: Let's think step by step. <task info>
    (1) ...
    (Final response) So the answer is X.
    Feedback: Step (1) to step (3) are correct. In step (4) the part "<segment>" is incorrect. This is because <reason>.
    Updated Answer: Let's think step by step. <task info>
    (1) ...
    Feedback: Step (1) to step (5) are correct. The final response is also correct.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

FINAL = "Final response"
ANSWER = "Answer:"
UPDATED = "Updated Answer:"
FEEDBACK = "Feedback:"
STEP_LINE = re.compile(r"^\((\d+(?:\.\d+)*|Final response)\)\s?(.*)$")
CORRECT_END = "final response is also correct."
_STEPS_OK = re.compile(r"^(?:Step \(([\d.]+)\) is correct\.|Step \(([\d.]+)\) to step \(([\d.]+)\) are correct\.)\s*")
_ERROR = re.compile(r'^In step \(([\d.]+|Final response)\) the part "(.*)" is incorrect\.(?:\s+This is because (.*?)\.?)?$',
                    re.S)


@dataclass(frozen=True)
class Step:
    """One line of a rationale: its id (``"3"``, ``"6.2.1"`` or ``"Final response"``) and its text."""

    id: str
    text: str

    def line(self) -> str:
        return f"({self.id}) {self.text}"


@dataclass(frozen=True)
class Feedback:
    """What a verifier says about one attempt: all correct, or the first wrong step, the part and why.

    ``last_correct`` is the id of the step just before the error (or of the last step when all is
    correct); None when the error is in the very first step.
    """

    error_step: str | None
    last_correct: str | None
    segment: str = ""
    reason: str = ""

    @property
    def correct(self) -> bool:
        return self.error_step is None

    def text(self) -> str:
        """The feedback sentence(s), without the ``Feedback:`` label."""
        parts = []
        if self.last_correct == "1":
            parts.append("Step (1) is correct.")
        elif self.last_correct is not None:
            parts.append(f"Step (1) to step ({self.last_correct}) are correct.")
        if self.error_step is None:
            parts.append(f"The {CORRECT_END}")
        else:
            parts.append(f'In step ({self.error_step}) the part "{self.segment}" is incorrect.')
            if self.reason:
                parts.append(f"This is because {self.reason.rstrip('.')}.")
        return " ".join(parts)

    def same_error(self, other: Feedback) -> bool:
        """Both say all correct, or both blame the same step and the same part."""
        return self.error_step == other.error_step and (self.correct or _norm(self.segment) == _norm(other.segment))


def _norm(text: str) -> str:
    return " ".join(text.split())


def correct_feedback(steps: list[Step]) -> Feedback:
    """The "all correct" feedback for a rationale (the last numbered step before the final response)."""
    numbered = [s.id for s in steps if s.id != FINAL]
    return Feedback(error_step=None, last_correct=numbered[-1] if numbered else None)


def parse_feedback(text: str) -> Feedback | None:
    """The feedback a sentence states, or None when it does not follow the format."""
    text = _norm(text.removeprefix(FEEDBACK))
    last = None
    match = _STEPS_OK.match(text)
    if match:
        last = match.group(1) or match.group(3)
        if match.group(2) not in (None, "1"):
            return None
        text = text[match.end():]
    if text == f"The {CORRECT_END}":
        return Feedback(error_step=None, last_correct=last) if last else None
    error = _ERROR.match(text)
    if not error:
        return None
    return Feedback(error_step=error.group(1), last_correct=last, segment=error.group(2), reason=error.group(3) or "")


def parse_steps(body: str) -> list[Step] | None:
    """The steps of an attempt's body (lines after the ``Answer:`` line), or None if a line is not a step.

    An attempt must end with its ``(Final response)`` line; empty lines are ignored.
    """
    steps = []
    for line in body.splitlines():
        line = line.strip()
        if not line:
            continue
        match = STEP_LINE.match(line)
        if not match:
            return None
        steps.append(Step(match.group(1), match.group(2).strip()))
    if not steps or steps[-1].id != FINAL or any(s.id == FINAL for s in steps[:-1]):
        return None
    return steps


def distinct_ids(steps: list[Step]) -> bool:
    """Whether every step has its own id (feedback names steps by id)."""
    return len({step.id for step in steps}) == len(steps)


def render_steps(steps: list[Step]) -> str:
    return "\n".join(step.line() for step in steps)


@dataclass(frozen=True)
class Turn:
    """One attempt of an interaction: its body (the step lines) and the feedback that follows it, if any."""

    body: str
    feedback: str | None = None

    @property
    def steps(self) -> list[Step] | None:
        return parse_steps(self.body)


def split_turns(text: str) -> list[Turn]:
    """The attempts of an interaction, each with the feedback written after it (None where there is none).

    ``Answer:`` and ``Updated Answer:`` lines start attempts (their header text is dropped); lines
    before the first header belong to the first attempt.
    """
    turns: list[Turn] = []
    lines: list[str] = []
    started = False

    def close(feedback: str | None) -> None:
        nonlocal lines, started
        if started or lines:
            turns.append(Turn("\n".join(lines).strip(), feedback))
        lines, started = [], False

    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith(UPDATED) or line.startswith(ANSWER):
            if started or lines:
                close(None)
            started = True
        elif line.startswith(FEEDBACK):
            close(line.removeprefix(FEEDBACK).strip())
        elif line:
            lines.append(line)
    close(None)
    return turns


def answer_header(info: str, *, updated: bool = False) -> str:
    """``Answer: Let's think step by step. <info>`` (``Updated Answer:`` for an improvement)."""
    label = UPDATED if updated else ANSWER
    return f"{label} Let's think step by step." + (f" {info}" if info else "")


def render_interaction(info: str, attempts: list[list[Step]], feedbacks: Sequence[Feedback | str | None]) -> str:
    """The assistant text of attempts each followed by its feedback (a missing last feedback is left out)."""
    lines = []
    for index, steps in enumerate(attempts):
        lines.append(answer_header(info, updated=index > 0))
        lines.append(render_steps(steps))
        feedback = feedbacks[index] if index < len(feedbacks) else None
        if feedback is not None:
            lines.append(f"{FEEDBACK} {feedback.text() if isinstance(feedback, Feedback) else feedback}")
    return "\n".join(lines)


def question_prompt(question: str) -> str:
    return f"Q: {question}"
