"""Self-improving inference and the ``tripost-evaluate`` stage.

The model answers ``Q: <question>`` greedily; a TriPosT model goes on by itself: its feedback on its
attempt, an updated answer, feedback again... The interaction is read with the stop rules: stop at the
attempt the model's own feedback calls correct, when an attempt or a feedback repeats an earlier one (no
progress), when a turn does not parse or the model stops, or after ``max_attempts`` attempts. The
answer is that of the last attempt read. The report gives, per difficulty (seen, unseen) and overall,
the accuracy of the final and of the first answers, and how many self-corrections helped (wrong to
right) and hurt (right to wrong).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Annotated, Any

import misstep
from pydantic import BaseModel, ConfigDict, Field

from misstep_tripost.families import Family, family_of
from misstep_tripost.text import FEEDBACK, parse_feedback, question_prompt, split_turns


@dataclass(frozen=True)
class Reading:
    """What self-improving inference makes of one reply."""

    first: Any
    final: Any
    first_correct: bool
    final_correct: bool
    attempts: int
    stop: str  # correct | repeat | limit | end | unparsable


def read_reply(reply: str, task: misstep.Task, family: Family, max_attempts: int) -> Reading:
    """Apply the stop rules to a reply (see the module docstring)."""
    bodies: list[str] = []
    feedbacks: list[str] = []
    answers: list[Any] = []
    correct: list[bool] = []
    stop = "end"
    for turn in split_turns(reply):
        steps = turn.steps
        if steps is None:
            stop = "unparsable"
            break
        body = " ".join(turn.body.split())
        if body in bodies:
            stop = "repeat"
            break
        if len(bodies) == max_attempts:
            stop = "limit"
            break
        bodies.append(body)
        answers.append(family.answer(steps))
        correct.append(family.correct(steps, task))
        own = parse_feedback(turn.feedback) if turn.feedback is not None else None
        if own is not None and own.correct:
            stop = "correct"
            break
        if turn.feedback is None:
            break
        text = " ".join(turn.feedback.split())
        if text in feedbacks:
            stop = "repeat"
            break
        feedbacks.append(text)
    if not answers:
        return Reading(None, None, False, False, 0, stop)
    return Reading(answers[0], answers[-1], correct[0], correct[-1], len(answers), stop)


class Prediction(BaseModel):
    """One evaluated task (a line of ``predictions.jsonl``)."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    difficulty: str
    reply: str
    first: Any = None
    final: Any = None
    first_correct: bool
    final_correct: bool
    attempts: int
    stop: str


def summarize(predictions: list[Prediction]) -> dict[str, dict[str, float]]:
    """Metrics per difficulty and overall (``all``)."""
    groups: dict[str, list[Prediction]] = defaultdict(list)
    for prediction in predictions:
        groups[prediction.difficulty].append(prediction)
        groups["all"].append(prediction)
    result = {}
    for name in sorted(groups, key=lambda g: (g == "all", g)):
        items = groups[name]
        n = len(items)
        result[name] = {
            "tasks": n,
            "accuracy": sum(p.final_correct for p in items) / n,
            "first_accuracy": sum(p.first_correct for p in items) / n,
            "helped": sum(p.final_correct and not p.first_correct for p in items),
            "hurt": sum(p.first_correct and not p.final_correct for p in items),
            "attempts": sum(p.attempts for p in items) / n,
            "stopped_correct": sum(p.stop == "correct" for p in items),
        }
    return result


def table(metrics: dict[str, dict[str, float]]) -> str:
    rows = ["| difficulty | tasks | accuracy | first attempt | helped | hurt | attempts |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, m in metrics.items():
        rows.append(f"| {name} | {m['tasks']:.0f} | {100 * m['accuracy']:.2f} | {100 * m['first_accuracy']:.2f} | "
                    f"{m['helped']:.0f} | {m['hurt']:.0f} | {m['attempts']:.2f} |")
    return "\n".join(rows) + "\n"


class EvaluateStage(misstep.Stage["EvaluateStage.Options"]):
    """Self-improving inference on test tasks: accuracy on seen and unseen, corrections that helped and hurt."""

    name = "tripost-evaluate"

    class Options(misstep.Options):
        tasks: misstep.TaskRefs
        limit: int | None = Field(default=None, gt=0)
        model: Annotated[str | None, misstep.StageInput()] = Field(
            default=None, description="an earlier stage whose `model` output to evaluate (default: the recipe's model)")
        backend: misstep.BackendRef | None = Field(default=None, description="default: `hf` with the model")
        self_improve: bool = Field(default=True, description="false: only the first attempt (rationale baseline)")
        max_attempts: int = Field(default=10, gt=0)
        max_new_tokens: int = Field(default=1024, gt=0)
        batch_size: int = Field(default=64, gt=0)

    def run(self, ctx: misstep.StageContext) -> dict[str, Any]:
        opts = self.options
        tasks = [task for ref in opts.tasks for task in ref.build().load()][: opts.limit]
        path = ctx.dir / "predictions.jsonl"
        appender = misstep.JsonlAppender(path)
        try:
            done = {p.task_id for p in misstep.read_jsonl(path, Prediction)}
            todo = [task for task in tasks if task.id not in done]
            if todo:
                self._predict(ctx, todo, appender)
        finally:
            appender.close()
        wanted = {task.id for task in tasks}
        predictions = [p for p in misstep.read_jsonl(path, Prediction) if p.task_id in wanted]
        metrics = summarize(predictions)
        metrics_path = ctx.dir / "metrics.json"
        metrics_path.write_text(json.dumps({"model": opts.model, "self_improve": opts.self_improve, "metrics": metrics}, indent=2))
        table_path = ctx.dir / "metrics.md"
        table_path.write_text(table(metrics))
        ctx.log("\n" + table(metrics))
        overall = metrics["all"]
        return {"metrics": metrics_path, "table": table_path, "predictions": path, "accuracy": overall["accuracy"],
                "first_accuracy": overall["first_accuracy"], "helped": overall["helped"], "hurt": overall["hurt"],
                **{f"accuracy_{name}": m["accuracy"] for name, m in metrics.items() if name != "all"}}

    def _predict(self, ctx: misstep.StageContext, tasks: list[misstep.Task], appender: misstep.JsonlAppender) -> None:
        opts = self.options
        backend = ctx.backend(opts.backend, ctx.model_of(opts.model))
        stop = () if opts.self_improve else (f"\n{FEEDBACK}",)
        sampling = misstep.Sampling(temperature=0.0, max_new_tokens=opts.max_new_tokens, stop=stop)
        try:
            batches = range(0, len(tasks), opts.batch_size)
            for start in ctx.progress(batches, desc="batches", total=len(batches)):
                chunk = tasks[start: start + opts.batch_size]
                conversations = [[misstep.Message(role="user", content=question_prompt(t.question))] for t in chunk]
                replies = backend.generate(conversations, [sampling] * len(chunk))
                for task, reply in zip(chunk, replies):
                    reading = read_reply(reply, task, family_of(task), opts.max_attempts if opts.self_improve else 1)
                    appender.write(Prediction(task_id=task.id, difficulty=str(task.metadata.get("difficulty", "unknown")),
                                              reply=reply, **reading.__dict__))
        finally:
            backend.close()
