"""Rewards for a pool of candidate responses from what happened when they were executed.

``paper`` (default) is the TRICE paper's order: the gold (stage-I target) first; then correct answers
with the same tool-use decision as gold; then correct answers with the other decision; then wrong
answers, for math the closer to the gold number the higher, answers without a number last.

``reference`` is the reference code's 20/15/10/5/0 scheme, extended from its fixed five candidates
to any pool: gold and correct-same-decision 20, correct-other-decision 15, then the wrong ones from
the next free score down (math: one step per candidate by distance, answers without a number last;
QA: all on one score), floored at 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import misstep

from misstep_trice.execution import Execution

REFERENCE_SCORES = (20.0, 15.0, 10.0, 5.0, 0.0)


@dataclass(frozen=True)
class Judged:
    """A candidate after execution and verification; ``gold`` marks the stage-I target."""

    source: str
    execution: Execution
    verdict: misstep.Verdict
    gold: bool = False

    @property
    def correct(self) -> bool:
        return bool(self.verdict.correct)

    @property
    def distance(self) -> float | None:
        return self.verdict.metrics.get("distance")


def _gold_decision(pool: Sequence[Judged]) -> bool | None:
    return next((c.execution.used_tool for c in pool if c.gold), None)


def _same_decision(candidate: Judged, gold_decision: bool | None) -> bool:
    return gold_decision is None or candidate.execution.used_tool == gold_decision


def paper_rewards(pool: Sequence[Judged]) -> list[float]:
    """Tiers 4 (gold) > 3 (correct, same decision) > 2 (correct, other) > (0, 1] (wrong, by distance) > 0."""
    decision = _gold_decision(pool)
    rewards = []
    for candidate in pool:
        if candidate.gold:
            rewards.append(4.0)
        elif candidate.correct:
            rewards.append(3.0 if _same_decision(candidate, decision) else 2.0)
        elif candidate.distance is not None:
            rewards.append(1.0 / (1.0 + candidate.distance))
        else:
            rewards.append(0.0)
    return rewards


def reference_rewards(pool: Sequence[Judged]) -> list[float]:
    """The reference's 20/15/10/5/0 scores (see the module docstring)."""
    decision = _gold_decision(pool)
    rewards = [0.0] * len(pool)
    wrong = []
    for index, candidate in enumerate(pool):
        if candidate.gold or candidate.correct and _same_decision(candidate, decision):
            rewards[index] = REFERENCE_SCORES[0]
        elif candidate.correct:
            rewards[index] = REFERENCE_SCORES[1]
        else:
            wrong.append(index)
    start = 2 if REFERENCE_SCORES[1] in rewards else 1
    by_distance = any(pool[i].distance is not None for i in wrong)
    if by_distance:
        wrong.sort(key=lambda i: (pool[i].distance is None, pool[i].distance or 0.0))
    for step, index in enumerate(wrong):
        rewards[index] = REFERENCE_SCORES[min(start + (step if by_distance else 0), len(REFERENCE_SCORES) - 1)]
    return rewards


SCHEMES: dict[str, Callable[[Sequence[Judged]], list[float]]] = {
    "paper": paper_rewards,
    "reference": reference_rewards,
}
