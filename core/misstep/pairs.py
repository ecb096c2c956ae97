"""Preference pairs from labelled trajectories: a successful and a failed trajectory of the same task.

``misstep convert --to trl-dpo`` writes these pairs in TRL's format; preference reformatters build on the
same function, so both give the same pairs.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator

from misstep.datamodel import Message, PreferenceExample, Trajectory


def reward(trajectory: Trajectory) -> float:
    """The trajectory's reward: its verdict's score (0.0 without a verdict)."""
    return trajectory.verdict.score if trajectory.verdict else 0.0


def shared_prompt_length(first: list[Message], second: list[Message]) -> int:
    """How many leading messages two conversations share, cut back so that both go on with an assistant turn."""
    length = 0
    for a, b in zip(first, second):
        if a != b:
            break
        length += 1
    while length > 0 and not (length < len(first) and length < len(second)
                              and first[length].role == second[length].role == "assistant"):
        length -= 1
    return length


def _pair(chosen: Trajectory, rejected: Trajectory, shared_prefix: bool) -> PreferenceExample | None:
    if shared_prefix:
        cut_chosen = cut_rejected = shared_prompt_length(chosen.messages, rejected.messages)
    else:
        cut_chosen, cut_rejected = chosen.prompt_len, rejected.prompt_len
        if chosen.messages[:cut_chosen] != rejected.messages[:cut_rejected]:
            return None
    sides = chosen.messages[cut_chosen:], rejected.messages[cut_rejected:]
    if not all(any(m.role == "assistant" for m in side) for side in sides):
        return None
    return PreferenceExample(
        id=f"{chosen.id}|{rejected.id}",
        prompt=chosen.messages[:cut_chosen],
        chosen=sides[0],
        rejected=sides[1],
        tools=chosen.tools or rejected.tools,
        metadata={"task_id": chosen.task_id, "chosen_id": chosen.id, "rejected_id": rejected.id,
                  "chosen_reward": reward(chosen), "rejected_reward": reward(rejected)},
    )


def preference_pairs(trajectories: Iterable[Trajectory], *, per_task: int | None = None, margin: float = 0.0,
                     shared_prefix: bool = True, seed: int = 0) -> Iterator[PreferenceExample]:
    """For each task (in the order tasks first appear), pairs of a successful (chosen) and a failed (rejected)
    trajectory of it.

    :param per_task: at most this many pairs per task, drawn at random with ``seed`` (each task draws on
        its own, so adding tasks does not change another task's pairs); None keeps every pair.
    :param margin: keep a pair only when the chosen reward (verdict score) exceeds the rejected one by at
        least this much.
    :param shared_prefix: the prompt is the pair's longest common message prefix (cut back so that both
        sides start with an assistant turn), so a pair that diverges mid-trajectory holds only where it
        differs; False: the prompt is each trajectory's own prompt (``prompt_len``), and pairs whose
        prompts differ are left out.
    Trajectories without a verdict are ignored; pairs whose either side has no assistant turn are left out.
    """
    by_task: dict[str, tuple[list[Trajectory], list[Trajectory]]] = {}
    for trajectory in trajectories:
        if trajectory.label in ("positive", "negative"):
            successes, failures = by_task.setdefault(trajectory.task_id, ([], []))
            (successes if trajectory.label == "positive" else failures).append(trajectory)
    for task_id, (successes, failures) in by_task.items():
        pairs = [example for good, bad in itertools.product(successes, failures)
                 if reward(good) - reward(bad) >= margin and (example := _pair(good, bad, shared_prefix)) is not None]
        if per_task is not None and len(pairs) > per_task:
            drawn = sorted(random.Random(f"{seed}|{task_id}").sample(range(len(pairs)), per_task))
            pairs = [pairs[index] for index in drawn]
        yield from pairs
