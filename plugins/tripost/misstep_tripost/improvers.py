"""Improvers: given an attempt, the feedback on its first wrong step and the steps before it, write the
updated attempt.

``scripted`` continues with the correct rationale from the error step (multistep arithmetic, word
sorting). ``llm`` asks an LLM through any misstep backend with few-shot examples (the reference improver
is Codex); a reply that does not parse into steps ending with the final response gives None (the
editing loop rejects and counts it), never an exception. In a recipe: ``improver: {use: scripted}`` or ``improver: {use: llm, backend: ...}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import misstep
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from misstep_tripost.checking import complete
from misstep_tripost.families import family_of
from misstep_tripost.prompts import IMPROVER_EXAMPLES, IMPROVER_INSTRUCTION
from misstep_tripost.tasks import TaskName
from misstep_tripost.text import (
    ANSWER,
    FEEDBACK,
    UPDATED,
    Feedback,
    Step,
    answer_header,
    distinct_ids,
    parse_steps,
    question_prompt,
    render_steps,
)


@dataclass(frozen=True)
class Request:
    """Improve ``attempt`` (whose first error ``feedback`` names), keeping the correct steps ``kept``."""

    task: misstep.Task
    attempt: list[Step]
    feedback: Feedback
    kept: list[Step]


def acceptable(new: list[Step] | None, request: Request) -> bool:
    """An update counts if it parses, keeps the steps before the error and changes the erroneous step so
    that the quoted wrong part is gone from it (the reference's test, case-insensitive)."""
    if new is None or new[: len(request.kept)] != request.kept:
        return False
    before = {s.id: s.text for s in request.attempt}
    after = {s.id: s.text for s in new}
    step = request.feedback.error_step
    if step not in after:
        return True
    text = " ".join(after[step].split())
    segment = " ".join(request.feedback.segment.split()).lower()
    return text != " ".join(before.get(step, "").split()) and not (segment and segment in text.lower())


class ScriptedImprover(BaseModel):
    """Continue with the correct rationale from the error step (scripted tasks)."""

    model_config = ConfigDict(extra="forbid")

    use: Literal["scripted"] = "scripted"
    task: TaskName | None = Field(default=None, description="default: each task's own")

    def improve(self, requests: Sequence[Request]) -> list[list[Step] | None]:
        results: list[list[Step] | None] = []
        for request in requests:
            family = family_of(request.task, self.task)
            if family.machine is None:
                raise misstep.ComponentError(f"the scripted improver cannot improve {family.name} tasks; use "
                                             "`improver: {use: llm, backend: ...}`")
            try:
                results.append(complete(family.machine(request.task.question), request.kept))
            except ValueError:  # the kept steps are not all correct: nothing to continue from
                results.append(None)
        return results

    def close(self) -> None:
        """Nothing to release."""


def parse_update(reply: str, kept: list[Step]) -> list[Step] | None:
    """The updated attempt: ``kept`` and the steps the reply continues with (None if they do not parse)."""
    lines: list[str] = []
    for line in reply.splitlines():
        text = line.strip()
        if not text:
            if lines:
                break
            continue
        if text.startswith((FEEDBACK, "Q:")):
            break
        if text.startswith((UPDATED, ANSWER)):
            continue
        lines.append(text)
    steps = parse_steps("\n".join(lines))
    if steps is None:
        return None
    if kept and steps[: len(kept)] == kept:  # the reply repeated the kept steps
        steps = steps[len(kept):]
    new = parse_steps(render_steps(kept + steps))
    return new if new is not None and distinct_ids(new) else None


class LLMImprover(BaseModel):
    """An LLM writes the updated answer from the step before the error, prompted with few-shot examples."""

    model_config = ConfigDict(extra="forbid")

    use: Literal["llm"]
    backend: misstep.BackendRef
    task: TaskName | None = Field(default=None, description="whose few-shot examples; default: the task's own")
    instruction: str = IMPROVER_INSTRUCTION
    examples: str | None = Field(default=None, description="few-shot examples; default: the task's built-in ones")
    temperature: float = Field(default=0.7, ge=0)
    max_new_tokens: int = Field(default=1024, gt=0)
    _backend: misstep.Backend | None = PrivateAttr(default=None)

    def _prompt(self, request: Request) -> list[misstep.Message]:
        family = family_of(request.task, self.task)
        examples = self.examples if self.examples is not None else IMPROVER_EXAMPLES[family.name]
        case = "\n".join(part for part in [
            question_prompt(request.task.question), answer_header(family.info), render_steps(request.attempt),
            f"{FEEDBACK} {request.feedback.text()}", answer_header(family.info, updated=True),
            render_steps(request.kept)] if part)
        return [misstep.Message(role="user", content=f"{self.instruction}\n\n{examples}\n\n{case}")]

    def improve(self, requests: Sequence[Request]) -> list[list[Step] | None]:
        if not requests:
            return []
        if self._backend is None:
            self._backend = self.backend.build()
        sampling = misstep.Sampling(temperature=self.temperature, max_new_tokens=self.max_new_tokens,
                                    stop=("\n\nQ:", f"\n{FEEDBACK}"))
        replies = self._backend.generate([self._prompt(r) for r in requests], [sampling] * len(requests))
        return [parse_update(reply, r.kept) for reply, r in zip(replies, requests)]

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


Improver = Annotated[ScriptedImprover | LLMImprover, Field(discriminator="use")]
