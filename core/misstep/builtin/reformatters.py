"""Reformatters for preference losses: ``trajectory-pairs`` (DPO-style pairs) and ``trajectory-labels`` (KTO).

``trajectory-pairs`` pairs a successful and a failed trajectory of the same task with
:func:`misstep.preference_pairs`, the function ``misstep convert --to trl-dpo`` uses, so both give the same
pairs. ``trajectory-labels`` keeps each labelled trajectory as one example, desirable or undesirable.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pydantic import Field

from misstep import components
from misstep.components import Reformatter
from misstep.datamodel import Example, PreferenceExample, Task, Trajectory
from misstep.hookspecs import Register, hookimpl
from misstep.pairs import preference_pairs, reward

DESIRABLE = "desirable"
UNDESIRABLE = "undesirable"


class TrajectoryPairs(Reformatter["TrajectoryPairs.Options"]):
    """(successful, failed) pairs of trajectories of the same task, as PreferenceExample records (DPO, SimPO)."""

    name = "trajectory-pairs"

    class Options(components.Options):
        per_task: int | None = Field(default=None, gt=0, description="at most this many pairs per task, drawn "
                                     "with `seed` (default: every success with every failure)")
        margin: float = Field(default=0.0, ge=0, description="keep a pair only when the success's reward "
                              "(verdict score) exceeds the failure's by at least this much")
        shared_prefix: bool = Field(default=True, description="the prompt is the pair's longest common message "
                                    "prefix, so pairs that diverge mid-trajectory train only where they differ; "
                                    "false: each trajectory's own prompt (pairs whose prompts differ are left out)")
        seed: int = Field(default=0, description="seed of the per-task draw")

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._report: dict[str, Any] = {}

    def reformat(self, trajectories: Iterable[Trajectory], tasks: Mapping[str, Task]) -> Iterator[PreferenceExample]:
        seen: Counter[str] = Counter()
        by_task: dict[str, Counter[str]] = {}

        def counted(items: Iterable[Trajectory]) -> Iterator[Trajectory]:
            for trajectory in items:
                seen[trajectory.label] += 1
                by_task.setdefault(trajectory.task_id, Counter())[trajectory.label] += 1
                yield trajectory

        opts = self.options
        pairs = no_prompt = 0
        paired: set[str] = set()
        for pair in preference_pairs(counted(trajectories), per_task=opts.per_task, margin=opts.margin,
                                     shared_prefix=opts.shared_prefix, seed=opts.seed):
            if not pair.prompt:  # nothing shared: no context to prefer one continuation in
                no_prompt += 1
                continue
            pairs += 1
            paired.add(pair.metadata["task_id"])
            yield pair
        both = sum(1 for counts in by_task.values() if counts["positive"] and counts["negative"])
        self._report = {"trajectories": dict(seen), "tasks": len(by_task), "tasks with a success and a failure": both,
                        "tasks paired": len(paired), "pairs": pairs,
                        "dropped": {"no shared prompt (the trajectories differ from the first message)": no_prompt}}

    def report(self) -> dict[str, Any]:
        return self._report


class TrajectoryLabels(Reformatter[components.Options]):
    """Each labelled trajectory as an Example labelled desirable (a success) or undesirable (a failure), for KTO.

    The example is the whole trajectory: its prompt messages (``prompt_len``) untrained, its own turns with
    their masks (assistant turns trained; tool, user and system turns not). Unpaired losses take the
    messages before the first trained one as the prompt.
    """

    name = "trajectory-labels"

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._report: dict[str, Any] = {}

    def reformat(self, trajectories: Iterable[Trajectory], tasks: Mapping[str, Task]) -> Iterator[Example]:
        kept: Counter[str] = Counter()
        dropped: Counter[str] = Counter()
        for trajectory in trajectories:
            if trajectory.label == "unknown":
                dropped["unlabelled (no verdict)"] += 1
                continue
            if not any(m.trained for m in trajectory.messages[trajectory.prompt_len:]):
                dropped["no trained turn"] += 1
                continue
            label = DESIRABLE if trajectory.label == "positive" else UNDESIRABLE
            kept[label] += 1
            prompt = [m.model_copy(update={"train": False}) for m in trajectory.messages[: trajectory.prompt_len]]
            yield Example(id=trajectory.id, messages=[*prompt, *trajectory.messages[trajectory.prompt_len:]],
                          label=label, reward=reward(trajectory), tools=trajectory.tools,
                          metadata={"task_id": trajectory.task_id, "source": trajectory.provenance.source,
                                    "temperature": trajectory.provenance.temperature})
        self._report = {"kept": dict(kept), "dropped": dict(dropped)}

    def report(self) -> dict[str, Any]:
        return self._report


@hookimpl
def register_reformatters(register: Register) -> None:
    register(TrajectoryPairs)
    register(TrajectoryLabels)
