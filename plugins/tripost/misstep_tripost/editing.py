"""The interactive editing loop: verify a student's interaction and let an improver repair it.

For each student reply (one or more attempts, each maybe followed by the student's own feedback):

Attempts that do not parse into steps with distinct ids, or are longer than ``max_attempt_words``, are
not usable.

1. Walk the attempts while the student's feedback agrees with the verifier's (same error step and part).
   An attempt the verifier finds all correct ends the walk: the interaction is *kept* (the missing
   "all correct" feedback is added), or *edited* when the student had wrongly blamed it.
2. At the first disagreement (or where the student stopped, or wrote an update that does not parse)
   the verifier's feedback replaces the student's, and the improver continues from the steps before the
   error step, at most ``max_updates`` times. An update is legitimate only if it parses, keeps the
   earlier steps and changes the erroneous step (the quoted part gone from it); the next feedback comes
   from the verifier. As in the reference, an update that is not legitimate (or that the verifier
   cannot judge) ends the editing and the interaction is dropped; ``retry_rejected=True`` asks the
   improver again instead, within ``max_updates``.
3. An interaction that reaches "all correct" is *edited*; one where an update made no progress (its
   error is in an earlier step, or in the same step and the same part; a different part of the same
   step counts as progress, as in the reference) is *cut* back to the attempt and feedback where
   editing started; one that never gets there, whose first attempt does not parse or is too long, or
   that the verifier cannot judge, is *dropped*.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import misstep

from misstep_tripost.improvers import Request, acceptable
from misstep_tripost.text import (
    FINAL,
    Feedback,
    Step,
    Turn,
    distinct_ids,
    parse_feedback,
    split_turns,
)

Critic = Callable[[Sequence[misstep.Task], Sequence[list[Step]]], list[Feedback | None]]
ImproveFn = Callable[[Sequence[Request]], list[list[Step] | None]]


@dataclass
class Edit:
    """What the loop made of one reply: the attempts and the feedback each got, and how it went."""

    task: misstep.Task
    reply: str
    attempts: list[list[Step]] = field(default_factory=list)
    feedbacks: list[Feedback] = field(default_factory=list)
    outcome: str = ""  # kept | edited | cut | dropped
    reason: str = ""  # why it was dropped
    updates: int = 0  # improver calls
    rejected_feedback: int = 0  # verifier replies that could not be used
    rejected_updates: int = 0  # improver replies that were not acceptable
    edit_at: int | None = None  # the attempt whose feedback the verifier replaced
    worse: bool = False
    turns: list[Turn] = field(default_factory=list)

    def drop(self, reason: str) -> None:
        self.outcome, self.reason = "dropped", reason


def _step_key(step: str | None) -> tuple[float, ...]:
    if step is None or step == FINAL:
        return (float("inf"),)
    return tuple(float(part) for part in step.split("."))


def _words(steps: list[Step]) -> int:
    return sum(len(step.text.split()) for step in steps)


def no_progress(new: Feedback, previous: Feedback) -> bool:
    """The reference's test of a worse update: the error moved to an earlier step, or stayed on the same
    step and the same part."""
    return not new.correct and (_step_key(new.error_step) < _step_key(previous.error_step) or new.same_error(previous))


def edit_replies(tasks: Sequence[misstep.Task], replies: Sequence[str], critic: Critic, improve: ImproveFn, *,
                 max_updates: int = 5, max_attempt_words: int = 512, retry_rejected: bool = False) -> list[Edit]:
    """Run the editing loop on each (task, reply); verifier and improver calls are batched across replies."""
    edits = [Edit(task, reply, turns=split_turns(reply)) for task, reply in zip(tasks, replies)]

    def usable(steps: list[Step] | None) -> bool:
        return steps is not None and distinct_ids(steps) and _words(steps) <= max_attempt_words

    walking = []
    for edit in edits:
        first = edit.turns[0].steps if edit.turns else None
        if first is None or not distinct_ids(first):
            edit.drop("unparsable")
        elif not usable(first):
            edit.drop("too long")
        else:
            walking.append(edit)
    improving: list[Edit] = []
    while walking:
        attempts = [e.turns[len(e.attempts)].steps or [] for e in walking]
        feedbacks = critic([e.task for e in walking], attempts)
        still = []
        for edit, steps, feedback in zip(walking, attempts, feedbacks):
            index = len(edit.attempts)
            if feedback is None:
                edit.rejected_feedback += 1
                edit.drop("verifier")
                continue
            edit.attempts.append(steps)
            edit.feedbacks.append(feedback)
            own_text = edit.turns[index].feedback
            own = parse_feedback(own_text) if own_text is not None else None
            if feedback.correct:
                replaced = own_text is not None and (own is None or not own.correct)
                edit.outcome = "edited" if replaced else "kept"
                edit.edit_at = index if replaced else None
                continue
            following = edit.turns[index + 1].steps if index + 1 < len(edit.turns) else None
            if own is not None and own.same_error(feedback) and usable(following):
                still.append(edit)
            else:
                edit.edit_at = index
                improving.append(edit)
        walking = still
    for _ in range(max_updates):
        if not improving:
            break
        requests = []
        for edit in improving:
            attempt, feedback = edit.attempts[-1], edit.feedbacks[-1]
            position = next(i for i, s in enumerate(attempt) if s.id == feedback.error_step)
            requests.append(Request(edit.task, attempt, feedback, attempt[:position]))
        updates = improve(requests)
        accepted = []
        for edit, request, new in zip(improving, requests, updates):
            edit.updates += 1
            if new is not None and acceptable(new, request) and usable(new):
                accepted.append((edit, new))
            else:
                edit.rejected_updates += 1
                if not retry_rejected:
                    edit.drop("rejected update")
        feedbacks = critic([edit.task for edit, _ in accepted], [new for _, new in accepted]) if accepted else []
        for (edit, new), feedback in zip(accepted, feedbacks):
            if feedback is None:
                edit.rejected_feedback += 1
                if not retry_rejected:
                    edit.drop("verifier")
                continue
            if no_progress(feedback, edit.feedbacks[-1]):
                edit.worse = True
            edit.attempts.append(new)
            edit.feedbacks.append(feedback)
        improving = [edit for edit in improving if not edit.outcome and not edit.feedbacks[-1].correct]
    for edit in edits:
        if edit.outcome:
            continue
        if not edit.feedbacks or not edit.feedbacks[-1].correct:
            edit.drop("not fixed")
        elif edit.worse and edit.edit_at is not None:
            edit.outcome = "cut"
            edit.attempts = edit.attempts[: edit.edit_at + 1]
            edit.feedbacks = edit.feedbacks[: edit.edit_at + 1]
        else:
            edit.outcome = "edited"
    return edits
