"""Training examples from edited interactions (the ``tripost`` reformatter) and from gold rationales (the
``tripost-rationales`` stage, the rationale fine-tuning baseline).

The reformatter follows the reference (``train_self_improve_rl_noeval.py``): it drops what the editing
loop dropped and repeated interactions (whole ones: the per-turn items are not compared), splits each
improvement into per-turn items (attempt i, its feedback, attempt i+1) with only the latest attempt as
context (the last attempt and its "all correct" feedback become a non-improvement item), samples
non-improvement items so that improvement : non-improvement is ``improve_data_ratio`` (-1 keeps all),
and adds as many gold rationales (with the "all correct" feedback) as non-improvement items, leaving out
those equal to a whole kept interaction. Items that come from an improvement or end with an error
feedback are weighted ``self_improve_section_weight`` from the first ``Feedback:`` on (the end-of-turn
token included); gold and first-try-correct items have weight 1 throughout. The core ``sft`` loss
computes ``sum(weight * CE) / trained tokens``: TriPosT's weighted SFT.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import misstep
from pydantic import Field, field_validator

from misstep_tripost.families import FAMILIES, family_of
from misstep_tripost.text import (
    FEEDBACK,
    correct_feedback,
    parse_feedback,
    question_prompt,
    render_interaction,
    split_turns,
)


def weighted(text: str, weight: float) -> misstep.Message:
    """An assistant message whose text from the first ``Feedback:`` line on, and the end-of-turn token after
    it, has loss weight ``weight`` (the text before it weight 1)."""
    start = text.find(f"\n{FEEDBACK}")
    if start <= 0 or weight == 1.0:
        return misstep.Message(role="assistant", content=text)
    return misstep.Message(role="assistant", content=text, weight=weight,
                           spans=[misstep.WeightSpan(start=0, end=start, weight=1.0)])


def gold_text(task: misstep.Task, *, feedback: bool) -> str | None:
    """The task's gold rationale as an answer, optionally followed by the "all correct" feedback."""
    family = family_of(task)
    steps = family.gold(task)
    if steps is None:
        return None
    return render_interaction(family.info, [steps], [correct_feedback(steps)] if feedback else [])


@dataclass(frozen=True)
class Item:
    """One training item: its example id, the question turn, the assistant text, whether it is weighted."""

    id: str
    question: str
    text: str
    weighted: bool


class TriPosTReformatter(misstep.Reformatter["TriPosTReformatter.Options"]):
    """Edited interactions to weighted per-turn examples, rebalanced, with gold rationales added."""

    name = "tripost"

    class Options(misstep.Options):
        improve_data_ratio: float = Field(default=1.5, description="improvement : non-improvement items; -1 keeps all")
        self_improve_section_weight: float = Field(
            default=1.5, ge=0, description="loss weight from the first Feedback: on, in items from an improvement "
            "or with an error feedback (gold and first-try-correct items: 1)")
        per_turn: bool = Field(default=True, description="split improvements into (attempt, feedback, update) items")
        gold: bool = Field(default=True, description="add gold rationales (needs the reformat stage's `tasks:`)")
        seed: int = 0

        @field_validator("improve_data_ratio")
        @classmethod
        def _ratio(cls, value: float) -> float:
            if value <= 0 and value != -1:
                raise ValueError("improve_data_ratio must be positive, or -1 to keep every item")
            return value

    def __init__(self, options: TriPosTReformatter.Options | None = None) -> None:
        super().__init__(options)
        self._report: dict[str, Any] = {}

    def report(self) -> dict[str, Any]:
        return self._report

    def _items(self, trajectory: misstep.Trajectory) -> list[tuple[str, str, bool]]:
        """(kind, assistant text, weighted) items of one interaction."""
        text = trajectory.messages[-1].content
        turns = split_turns(text)
        if len(turns) < 2:  # kept or cut: weighted only when its feedback finds an error
            own = parse_feedback(turns[0].feedback) if turns and turns[0].feedback is not None else None
            return [("non_improvement", text, own is None or not own.correct)]
        if not self.options.per_turn:
            return [("improvement", text, True)]
        family = FAMILIES.get(trajectory.metadata.get("task", ""))
        info = family.info if family else ""
        items = []
        for current, following in zip(turns, turns[1:]):
            steps, update = current.steps, following.steps
            if steps is None or update is None:
                return []
            items.append(("improvement", render_interaction(info, [steps, update], [current.feedback]), True))
        last = turns[-1]
        if last.steps is not None and last.feedback is not None:  # weighted too: it comes from an improvement
            items.append(("non_improvement", render_interaction(info, [last.steps], [last.feedback]), True))
        return items

    def reformat(self, trajectories: Iterable[misstep.Trajectory], tasks: Mapping[str, misstep.Task]) -> Iterable[misstep.Example]:
        opts = self.options
        if opts.gold and not tasks:
            raise misstep.ComponentError("the tripost reformatter adds gold rationales and needs the tasks: set the "
                                         "reformat stage's `tasks:` to the stage that made them (or `gold: false`)")
        rng = random.Random(opts.seed)
        outcomes: Counter[str] = Counter()
        rejected: Counter[str] = Counter()
        interactions: set[tuple[str, str]] = set()
        pools: dict[str, list[Item]] = {"improvement": [], "non_improvement": []}
        order: list[str] = []
        duplicates = 0
        for trajectory in trajectories:
            if any(message.tool_calls for message in trajectory.messages):
                raise misstep.ComponentError(
                    f"trajectory {trajectory.id!r} has native tool calls; the tripost reformatter works on TriPosT's "
                    "text interactions (attempt, Feedback:, update) and cannot use it")
            outcomes[trajectory.metadata.get("outcome", "unknown")] += 1
            for key in ("rejected_feedback", "rejected_updates", "updates"):
                rejected[key] += int(trajectory.metadata.get(key, 0))
            if trajectory.task_id not in order:
                order.append(trajectory.task_id)
            if trajectory.metadata.get("outcome") == "dropped":
                continue
            question, whole = trajectory.messages[0].content, trajectory.messages[-1].content
            if (question, whole) in interactions:
                duplicates += 1
                continue
            interactions.add((question, whole))
            for number, (kind, text, weigh) in enumerate(self._items(trajectory)):
                pools[kind].append(Item(f"{trajectory.id}/{number}", question, text, weigh))
        improvement, available = pools["improvement"], pools["non_improvement"]
        wanted = len(available) if opts.improve_data_ratio == -1 else math.ceil(len(improvement) / opts.improve_data_ratio)
        non_improvement = rng.sample(available, min(wanted, len(available)))
        golds = []
        for task_id in order if opts.gold else []:
            task = tasks.get(task_id)
            rationale = gold_text(task, feedback=True) if task is not None else None
            if task is not None and rationale is not None:
                if (question_prompt(task.question), rationale) not in interactions:
                    golds.append(Item(f"gold/{task_id}", question_prompt(task.question), rationale, False))
        gold = rng.sample(golds, min(len(non_improvement), len(golds)))
        weight = opts.self_improve_section_weight
        examples = [
            misstep.Example(id=item.id, messages=[misstep.Message(role="user", content=item.question),
                                                  weighted(item.text, weight if item.weighted else 1.0)],
                            label=kind, metadata={"kind": kind})
            for kind, items in (("improvement", improvement), ("non_improvement", non_improvement), ("gold", gold))
            for item in items
        ]
        rng.shuffle(examples)
        self._report = {
            "trajectories": dict(outcomes), **dict(rejected), "duplicates": duplicates,
            "improvement": len(improvement), "non_improvement_available": len(available),
            "non_improvement": len(non_improvement), "gold_available": len(golds), "gold": len(gold),
            "examples": len(examples),
        }
        return examples


class RationalesStage(misstep.Stage["RationalesStage.Options"]):
    """Gold rationales of tasks as training examples: the rationale fine-tuning baseline's data."""

    name = "tripost-rationales"

    class Options(misstep.Options):
        tasks: Annotated[str, misstep.StageInput()] = Field(description="an earlier stage whose `tasks` output to use")
        feedback: bool = Field(default=False, description="end each rationale with the \"all correct\" feedback")

    def run(self, ctx: misstep.StageContext) -> dict[str, Any]:
        examples = []
        missing = 0
        for task in ctx.read_tasks(self.options.tasks):
            text = gold_text(task, feedback=self.options.feedback)
            if text is None:
                missing += 1
                continue
            examples.append(misstep.Example(id=task.id, messages=[
                misstep.Message(role="user", content=question_prompt(task.question)),
                misstep.Message(role="assistant", content=text)]))
        if not examples:
            raise misstep.DataError(f"none of the tasks of stage {self.options.tasks!r} has a gold rationale")
        path = ctx.dir / "examples.jsonl"
        count = misstep.write_jsonl(path, examples)
        ctx.log(f"{count} gold rationales -> {path}" + (f" ({missing} tasks without one skipped)" if missing else ""))
        (ctx.dir / "summary.json").write_text(json.dumps({"examples": count, "without_rationale": missing}, indent=2))
        return {"examples": path, "count": count, "without_rationale": missing}
