"""Evaluation metrics over trajectories, as NAT reports them, overall and per dataset.

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

ALL = "all"


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
    groups: dict[str, list[Trajectory]] = defaultdict(list)
    everything: list[Trajectory] = []
    for trajectory in trajectories:
        task = tasks.get(trajectory.task_id)
        groups[task.dataset if task and task.dataset else "(none)"].append(trajectory)
        everything.append(trajectory)
    result = {ALL: summarize(everything)}
    if len(groups) > 1:
        result.update({name: summarize(groups[name]) for name in sorted(groups)})
    return result


PERCENT = {"accuracy", "action_error_rate", "em", "f1", "exact_match"}


def markdown_table(result: Mapping[str, Mapping[str, Any]]) -> str:
    """The report as a Markdown table: one row per dataset (``all`` last), one column per metric."""
    columns = ["count", "accuracy"]
    for summary in result.values():
        columns += [key for key in summary if key not in columns and key not in {"action_error_rate", "avg_turns"}]
    columns += ["action_error_rate", "avg_turns"]
    rows = [name for name in result if name != ALL] + [ALL]
    lines = [
        "| dataset | " + " | ".join(c.replace("_", " ") for c in columns) + " |",
        "| --- | " + " | ".join("---:" for _ in columns) + " |",
    ]
    for name in rows:
        cells = [_cell(column, result[name].get(column)) for column in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column == "count":
        return str(value)
    if column in PERCENT:
        return f"{100 * value:.2f}%"
    return f"{value:.2f}"
