"""Which trajectories become training data: deduplication, per-question caps, seeded sampling.

NAT keeps one positive and up to three negatives per question, then draws ``pos_num`` positives and
``neg_num`` negatives at random with a fixed seed. Each group is shuffled with its own seeded stream
and the first ``num`` are taken, so the positives do not change when ``neg_num`` does, and a smaller
``neg_num`` selects a subset of a larger one (what a sweep over negatives needs).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import misstep

GROUPS = ("positive", "negative")


@dataclass
class Candidate:
    """A trajectory with the group it is sampled in (positive or negative) and its hint class."""

    trajectory: misstep.Trajectory
    group: str
    cls: str


@dataclass
class Report:
    """What a reformatter kept and dropped, and why (saved by the reformat stage as summary.json)."""

    seen: int = 0
    kept: Counter[str] = field(default_factory=Counter)
    classes: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    requested: dict[str, int | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "trajectories": self.seen,
            "kept": {group: self.kept[group] for group in GROUPS},
            "classes": dict(self.classes),
            "dropped": dict(sorted(self.dropped.items())),
            "requested": self.requested,
        }


def _content_key(trajectory: misstep.Trajectory) -> str:
    turns = [(m.role, m.content) for m in trajectory.messages[trajectory.prompt_len:]]
    return json.dumps([trajectory.task_id, turns])


def select(candidates: Iterable[Candidate], report: Report, *, pos_num: int | None, neg_num: int | None,
           max_per_task: dict[str, int | None], dedup: bool, seed: int) -> list[Candidate]:
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
            random.Random(f"{seed}-{group}").shuffle(indices)
            report.dropped[f"{group} beyond {'pos' if group == 'positive' else 'neg'}_num"] += len(indices) - num
            indices = indices[:num]
        chosen.update(indices)
    kept = [pool[i] for i in sorted(chosen)]
    for candidate in kept:
        report.kept[candidate.group] += 1
        report.classes[candidate.cls] += 1
    return kept
