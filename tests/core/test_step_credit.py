"""Step credit's pure parts: the first wrong step from step values, step pairs at every branch point, and
step credit in the verdict (validated, left out of the JSON when absent)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

import misstep
from misstep import Message, NextStep, StepCredit, Verdict, first_wrong_step, step_pairs


@pytest.mark.parametrize(("values", "start", "options", "wrong"), [
    ([1.0, 0.0, 0.0], 1.0, {}, 2),
    ([0.75, 0.5, 0.2, 0.0], 1.0, {}, 3),  # 0.2 < half of 0.5
    ([0.75, 0.5, 0.2, 0.0], 1.0, {"drop": 0.4}, 4),
    ([0.75, 0.5, 0.25, 0.0], 1.0, {"threshold": 0.6}, 2),
    ([0.0, 0.0, 0.0], 0.0, {}, 1),  # hopeless from the start: the first step after which no branch succeeds
    ([0.25, 0.0], 0.0, {}, 2),
    ([1.0, 1.0, 1.0], 1.0, {}, None),
    ([1.0, 0.0], None, {}, 2),  # a step verifier's values: no start value
])
def test_first_wrong_step(values, start, options, wrong):
    assert first_wrong_step(values, start, **options) == wrong


def test_step_pairs_at_every_point_pair_succeeded_with_failed_branches():
    prompt = [Message(role="user", content="Question: 1+2+3")]
    steps = ["add[1, 2]", "Observation: 3", "add[3, 4]", "Observation: 7", "finish[7]"]
    messages = [*prompt, *(Message(role="user" if s.startswith("Obs") else "assistant", content=s) for s in steps)]

    def tried(*pairs):
        return [NextStep(message=Message(role="assistant", content=text), correct=ok) for text, ok in pairs]

    credit = StepCredit(values=[0.5, 0.0, 0.0], start=0.5, branches=2, next=[
        tried(("add[1, 2]", True), ("add[2, 2]", False)),
        tried(("add[3, 3]", True), ("add[3, 3]", True)),
        tried(("finish[7]", False), ("finish[7]", False)),
    ])
    trajectory = misstep.Trajectory(id="t", task_id="q", messages=messages, prompt_len=1,
                                    verdict=Verdict(correct=False, first_wrong_step=2, steps=credit))
    first = step_pairs(trajectory)
    assert [(p.chosen[0].content, p.rejected[0].content) for p in first] == [("add[3, 3]", "add[3, 4]")]
    every = step_pairs(trajectory, every_point=True)
    assert [(p.metadata["point"], p.chosen[0].content, p.rejected[0].content) for p in every] == [
        (0, "add[1, 2]", "add[2, 2]"), (1, "add[3, 3]", "add[3, 4]")]
    assert every[0].prompt == prompt and every[1].prompt == messages[:3]
    assert every[0].metadata["value_before"] == 0.5 and every[1].metadata["value_before"] == 0.5
    assert len(step_pairs(trajectory, every_point=True, per_point=1)) == 2
    assert step_pairs(trajectory.model_copy(update={"verdict": Verdict(correct=False)})) == []


def test_step_credit_in_the_verdict_round_trips_and_is_absent_when_empty():
    plain = Verdict(correct=False)
    assert "steps" not in json.loads(plain.model_dump_json())
    credit = StepCredit(values=[1.0, 0.0], start=1.0, branches=2,
                        next=[[NextStep(message=Message(role="assistant", content="x"), correct=True)]])
    verdict = Verdict(correct=False, first_wrong_step=2, steps=credit)
    assert Verdict.model_validate_json(verdict.model_dump_json()) == verdict


@pytest.mark.parametrize(("fields", "message"), [
    ({"first_wrong_step": 3, "steps": {"values": [1.0, 0.0]}}, "past the 2 steps"),
    ({"steps": {"values": [1.0, 0.0], "spans": [{"message": 1}]}}, "1 step spans for 2 step values"),
    ({"steps": {"values": [1.5]}}, "less than or equal to 1"),
    ({"first_wrong_step": 0}, "greater than or equal to 1"),
])
def test_bad_step_credit_is_refused(fields, message):
    with pytest.raises(ValidationError, match=message):
        Verdict.model_validate({"correct": False, **fields})
