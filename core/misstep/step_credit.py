"""Step credit: a trajectory's steps, where branches start, the first wrong step from step values, and the
training data it gives (a failed trajectory's correct prefix, step-level preference pairs).

A step is an assistant turn after the prompt, unless the verdict's :class:`~misstep.datamodel.StepCredit`
has ``spans`` (a step verifier that judges parts of a message). Branch point k is right after step k and
the observations that answer it (point 0: right after the prompt); steps are counted from 1.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from misstep.datamodel import Message, NextStep, PreferenceExample, StepSpan, Trajectory, WeightSpan


def step_messages(trajectory: Trajectory) -> list[int]:
    """The indices of the trajectory's steps: its assistant messages after the prompt."""
    return [index for index, message in enumerate(trajectory.messages)
            if index >= trajectory.prompt_len and message.role == "assistant"]


def branch_prefix(trajectory: Trajectory, point: int) -> list[Message]:
    """What a branch from point ``point`` continues: every message before step ``point + 1``."""
    return trajectory.messages[: step_messages(trajectory)[point]]


def first_wrong_step(values: Sequence[float], start: float | None = None, *, drop: float = 0.5,
                     threshold: float | None = None) -> int | None:
    """The first step whose value falls below the threshold, or None when none does.

    The threshold is ``threshold`` when given, else ``drop`` times the value before the step (``start``
    before step 1; 1 when ``start`` is unknown). When no step falls below it but some step has value 0
    (no branch after it succeeded, as after every step once the value before was already 0), the first
    such step is the wrong one.
    """
    previous = 1.0 if start is None else start
    for step, value in enumerate(values, start=1):
        if value < (threshold if threshold is not None else drop * previous):
            return step
        previous = value
    return next((step for step, value in enumerate(values, start=1) if value == 0), None)


def step_location(trajectory: Trajectory, step: int) -> StepSpan:
    """Where step ``step`` (from 1) lies: its span from the verdict, or its whole assistant message."""
    credit = trajectory.verdict.steps if trajectory.verdict else None
    if credit is not None and credit.spans:
        return credit.spans[step - 1]
    return StepSpan(message=step_messages(trajectory)[step - 1])


def correct_prefix(trajectory: Trajectory, *, wrong_weight: float = 0.0) -> list[Message] | None:
    """The agent's turns of a failed trajectory (``messages[prompt_len:]``) trained up to its first wrong step.

    Steps before the first wrong step keep their training (weight 1 for plain turns), the wrong step gets
    ``wrong_weight`` (negative: an unlikelihood term; 0: not trained) and everything after it is left out
    (it would carry no loss). A wrong step inside a message is weighted by character spans: the text before
    it keeps weight 1, the text after it 0. None when the verdict names no first wrong step, or when nothing
    would be trained (the first step is wrong and ``wrong_weight`` is 0).
    """
    verdict = trajectory.verdict
    if verdict is None or verdict.first_wrong_step is None:
        return None
    where = step_location(trajectory, verdict.first_wrong_step)
    wrong = trajectory.messages[where.message]
    whole = where.start == 0 and (where.end is None or where.end >= len(wrong.content))
    if whole:
        marked = wrong.model_copy(update={"weight": wrong_weight, "spans": []})
    else:
        spans = [WeightSpan(start=0, end=where.start, weight=1.0)] if where.start else []
        spans.append(WeightSpan(start=where.start, end=where.end, weight=wrong_weight))
        marked = wrong.model_copy(update={"weight": 0.0, "spans": spans})
    turns = [*trajectory.messages[trajectory.prompt_len: where.message], marked]
    if not any(m.trained and (m.weight != 0 or any(s.weight != 0 for s in m.spans)) for m in turns):
        return None
    return turns


def _same_step(first: Message, second: Message) -> bool:
    """Whether two next steps say the same: content and tool calls (their ids aside)."""
    return first.content == second.content and \
        [(c.name, c.arguments) for c in first.tool_calls] == [(c.name, c.arguments) for c in second.tool_calls]


def step_pairs(trajectory: Trajectory, *, every_point: bool = False, per_point: int | None = None,
               seed: int = 0) -> list[PreferenceExample]:
    """Step-level preference pairs from a trajectory's branches: prompt = the messages before a branch point's
    next step, chosen = a next step whose branch succeeded, rejected = one whose branch failed.

    By default only the point before the first wrong step of a failed trajectory is used, and the rejected
    step is the trajectory's own wrong step (the steps before it were right, so the pair isolates it).
    ``every_point``: every branch point, pairing the next steps of succeeded and failed branches (the
    trajectory's wrong step counts as a failed one at its point). Pairs whose steps say the same are left
    out; ``per_point`` keeps at most that many pairs per point, drawn with ``seed``. Steps inside messages
    (step spans) give no pairs.
    """
    verdict = trajectory.verdict
    credit = verdict.steps if verdict else None
    if verdict is None or credit is None or credit.spans:
        return []
    steps = step_messages(trajectory)
    wrong = verdict.first_wrong_step if verdict.correct is False else None
    points = range(len(credit.next)) if every_point else ([wrong - 1] if wrong is not None else [])
    pairs: list[PreferenceExample] = []
    for point in points:
        if point >= len(credit.next):
            continue
        tried = credit.next[point]
        failed = [step.message for step in tried if not step.correct] if every_point else []
        if wrong is not None and point == wrong - 1:
            failed.insert(0, trajectory.messages[steps[point]])
        good = [step.message for step in tried if step.correct]
        found = [(chosen, rejected) for chosen in _distinct(good) for rejected in _distinct(failed)
                 if not _same_step(chosen, rejected)]
        if per_point is not None and len(found) > per_point:
            drawn = sorted(random.Random(f"{seed}|{trajectory.id}|{point}").sample(range(len(found)), per_point))
            found = [found[index] for index in drawn]
        prompt = trajectory.messages[: steps[point]]
        for number, (chosen, rejected) in enumerate(found):
            pairs.append(PreferenceExample(
                id=f"{trajectory.id}@{point}#{number}", prompt=prompt, chosen=[chosen], rejected=[rejected],
                tools=trajectory.tools,
                metadata={"task_id": trajectory.task_id, "trajectory_id": trajectory.id, "point": point,
                          "value_before": credit.start if point == 0 else credit.values[point - 1]},
            ))
    return pairs


def _distinct(messages: list[Message]) -> list[Message]:
    """``messages`` without repeats of the same step (the first of each kept)."""
    kept: list[Message] = []
    for message in messages:
        if not any(_same_step(message, other) for other in kept):
            kept.append(message)
    return kept


def next_steps(branches: Sequence[Trajectory], after: int) -> list[NextStep]:
    """The first step of each branch that continued a trajectory after ``after`` steps, with the branch's outcome."""
    found = []
    for branch in branches:
        steps = step_messages(branch)
        if len(steps) > after:
            found.append(NextStep(message=branch.messages[steps[after]], correct=branch.verdict is not None
                                  and branch.verdict.correct is True))
    return found
