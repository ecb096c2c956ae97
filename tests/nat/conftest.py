"""Fixtures for the NAT plugin's tests: a fresh plugin manager and trajectory builders."""

from __future__ import annotations

import misstep
import pytest


def build_trajectory(task_id: str, correct: bool | None, *, answer: str = "5", sample: int = 0,
               f1: float | None = None, question: str = "What is 2 plus 3?") -> misstep.Trajectory:
    """A one-step ReAct trajectory with NAT's math prompt, labelled by ``correct``."""
    prompt = misstep.PromptTemplate().render(question)
    turns = [
        misstep.Message(role="assistant", content="Thought: I add the numbers.\nAction: calculate[2 + 3]"),
        misstep.Message(role="user", content="Observation: 5"),
        misstep.Message(role="assistant", content=f"Thought: Done.\nAction: finish[{answer}]"),
    ]
    verdict = None
    if correct is not None or f1 is not None:
        verdict = misstep.Verdict(correct=correct, prediction=answer, metrics={} if f1 is None else {"f1": f1})
    return misstep.Trajectory(
        id=f"{task_id}#{sample}", task_id=task_id, messages=[*prompt, *turns], prompt_len=len(prompt),
        verdict=verdict, provenance=misstep.Provenance(source="test", temperature=0.2 * (sample + 1)),
    )


@pytest.fixture
def make_trajectory():
    """The builder above: ``make_trajectory(task_id, correct, answer=..., sample=..., f1=...)``."""
    return build_trajectory
