"""Evaluation metrics over trajectories, as NAT reports them, overall and per dataset (shown with
:func:`misstep.summary.markdown_table`).

- accuracy: share of trajectories whose verdict is correct (no verdict or ``correct=None`` counts as wrong);
- verdict metrics (EM, F1, ...): the mean of each ``Verdict.metrics`` key over the trajectories that have it;
- action-error rate: action errors / assistant turns (the prompt's acknowledgement turn is not counted);
- average turns: assistant turns per trajectory.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from misstep.datamodel import Task, Trajectory
from misstep.summary import grouped_metrics


def assistant_turns(trajectory: Trajectory) -> int:
    """The agent's turns: assistant messages after the prompt."""
    return sum(1 for message in trajectory.messages[trajectory.prompt_len :] if message.role == "assistant")


def summarize(trajectories: Iterable[Trajectory]) -> dict[str, float | int]:
    """The metrics of one group of trajectories (see the module docstring)."""
    count = correct = turns = errors = 0
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for trajectory in trajectories:
        count += 1
        verdict = trajectory.verdict
        correct += bool(verdict is not None and verdict.correct)
        for key, value in (verdict.metrics if verdict else {}).items():
            sums[key] += value
            counts[key] += 1
        turns += assistant_turns(trajectory)
        errors += int(trajectory.metadata.get("action_errors", 0))
    summary: dict[str, float | int] = {
        "count": count,
        "accuracy": correct / count if count else 0.0,
        "action_error_rate": errors / turns if turns else 0.0,
        "avg_turns": turns / count if count else 0.0,
    }
    summary.update({key: sums[key] / counts[key] for key in sorted(sums)})
    return summary


def report(trajectories: Iterable[Trajectory], tasks: Mapping[str, Task]) -> dict[str, dict[str, Any]]:
    """``{"all": summary, "<dataset>": summary, ...}``; a trajectory's dataset is its task's."""

    def dataset(trajectory: Trajectory) -> str:
        task = tasks.get(trajectory.task_id)
        return task.dataset if task and task.dataset else "(none)"

    return grouped_metrics(trajectories, dataset, summarize)
