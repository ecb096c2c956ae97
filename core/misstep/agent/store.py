"""A resumable trajectory store: JSON Lines appended and flushed one trajectory at a time.

It remembers which rollouts (task id, temperature, sample) it already holds, so that a stage
re-run after an interruption produces only the missing ones: one record per rollout, none lost.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from misstep.agent.loop import Rollout, rollout_key
from misstep.datamodel import Trajectory
from misstep.jsonl import JsonlAppender, read_jsonl


def trajectory_key(trajectory: Trajectory) -> tuple[str, float, int]:
    """The key of the rollout that produced a trajectory (a branch's: its branch point instead of the task)."""
    start = trajectory.metadata.get("branch_point", trajectory.task_id)
    return rollout_key(str(start), trajectory.provenance.temperature, trajectory.provenance.sample)


class TrajectoryStore:
    """Trajectories in ``path``; ``add`` appends (flushed), ``holds`` says whether a rollout is stored."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._appender = JsonlAppender(self.path)  # first: moves a cut last line aside
        self.recovered = self._appender.recovered
        self.labels: Counter[str] = Counter()
        self._keys: set[tuple[str, float, int]] = set()
        if self.path.stat().st_size:
            for trajectory in read_jsonl(self.path, Trajectory):
                self._remember(trajectory)

    def _remember(self, trajectory: Trajectory) -> None:
        self._keys.add(trajectory_key(trajectory))
        self.labels[trajectory.label] += 1

    def __len__(self) -> int:
        return len(self._keys)

    def holds(self, rollout: Rollout) -> bool:
        return rollout.key in self._keys

    def add(self, trajectory: Trajectory) -> None:
        self._appender.write(trajectory)
        self._remember(trajectory)

    def close(self) -> None:
        self._appender.close()

    def __enter__(self) -> TrajectoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
