"""Which trajectories become training data: deduplication, per-question caps, seeded sampling.

NAT keeps one positive and up to three negatives per question, then takes ``pos_num`` positives and
``neg_num`` negatives. ``reference`` sampling is NAT's code: the first ``pos_num`` positives in input
order and ``random.Random(seed).sample(negatives, neg_num)`` (seed 42 there). ``random`` sampling
shuffles each group with its own seeded stream and takes the first ``num``, so a smaller ``neg_num``
always selects a subset of a larger one. In both, the positives do not change when ``neg_num`` does.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import misstep

GROUPS = ("positive", "negative")
SamplingMode = Literal["reference", "random"]


@dataclass
class Candidate:
    """A trajectory with the group it is sampled in (positive or negative) and its hint class.

    ``trainable`` is False for a trajectory without an agent turn: it takes part in the draw (as in NAT's
    code, so the draw is the reference's) and is dropped after it.
    """

    trajectory: misstep.Trajectory
    group: str
    cls: str
    trainable: bool = True


@dataclass
class Part:
    """One example a kept trajectory gives: the hint class it is trained under, the agent's turns, and a
    name for examples besides the trajectory's own (its id gets ``#<name>``)."""

    cls: str
    turns: list[misstep.Message]
    name: str = ""


@dataclass
class Report:
    """What a reformatter kept and dropped, and why (saved by the reformat stage as summary.json); ``added``
    counts the extra examples some kept trajectories gave (by part name)."""

    seen: int = 0
    kept: Counter[str] = field(default_factory=Counter)
    classes: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    requested: dict[str, int | None] = field(default_factory=dict)
    added: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        summary = {
            "trajectories": self.seen,
            "kept": {group: self.kept[group] for group in GROUPS},
            "classes": dict(self.classes),
            "dropped": dict(sorted(self.dropped.items())),
            "requested": self.requested,
        }
        return summary | ({"added": dict(self.added)} if self.added else {})


def _content_key(trajectory: misstep.Trajectory) -> str:
    """The agent's turns as text: roles, contents and tool calls (without their ids, which every run numbers)."""
    turns = [(m.role, m.content, [(c.name, c.arguments) for c in m.tool_calls])
             for m in trajectory.messages[trajectory.prompt_len:]]
    return json.dumps([trajectory.task_id, turns])


def select(candidates: Iterable[Candidate], report: Report, *, pos_num: int | None, neg_num: int | None,
           max_per_task: dict[str, int | None], dedup: bool, sampling: SamplingMode, seed: int) -> list[Candidate]:
    """The candidates to keep, in input order; every dropped one is counted in ``report.dropped``."""
    seen_keys: set[str] = set()
    per_task: Counter[tuple[str, str]] = Counter()
    groups: dict[str, list[int]] = {g: [] for g in GROUPS}
    pool: list[Candidate] = []
    for candidate in candidates:
        if dedup:
            key = _content_key(candidate.trajectory)
            if key in seen_keys:
                report.dropped["duplicate"] += 1
                continue
            seen_keys.add(key)
        cap = max_per_task.get(candidate.group)
        slot = (candidate.trajectory.task_id, candidate.group)
        if cap is not None and per_task[slot] >= cap:
            report.dropped[f"over {candidate.group} cap per question"] += 1
            continue
        per_task[slot] += 1
        groups[candidate.group].append(len(pool))
        pool.append(candidate)
    chosen: set[int] = set()
    for group, num in (("positive", pos_num), ("negative", neg_num)):
        report.requested[group] = num
        indices = groups[group]
        if num is not None and num < len(indices):
            report.dropped[f"{group} beyond {'pos' if group == 'positive' else 'neg'}_num"] += len(indices) - num
            indices = _draw(indices, num, group, sampling, seed)
        chosen.update(indices)
    kept = []
    for index in sorted(chosen):
        if not pool[index].trainable:
            report.dropped["no agent turn"] += 1
            continue
        kept.append(pool[index])
    for candidate in kept:
        report.kept[candidate.group] += 1
        report.classes[candidate.cls] += 1
    return kept


def _draw(indices: list[int], num: int, group: str, sampling: SamplingMode, seed: int) -> list[int]:
    """``num`` of ``indices`` (see the module docstring)."""
    if sampling == "reference":
        return indices[:num] if group == "positive" else random.Random(seed).sample(indices, num)
    shuffled = list(indices)
    random.Random(f"{seed}-{group}").shuffle(shuffled)
    return shuffled[:num]
