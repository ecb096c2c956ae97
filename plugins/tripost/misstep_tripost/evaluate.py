"""Self-improving inference and the ``tripost-evaluate`` stage.

The model answers ``Q: <question>`` greedily and is then prompted turn by turn, as the reference does
(``SelfImprove_GPT_QA`` with ``manual_prompt``): the assistant turn is continued from the latest attempt
alone, followed by ``Feedback:`` when the model has not judged it yet, or by its feedback and
``Updated Answer: ...`` when it found an error. Between turns the stop rules apply: stop at the attempt
the model's own feedback calls correct, when an attempt or a feedback repeats an earlier one (no
progress), when an attempt does not parse or the model writes nothing new, or when a new attempt would
exceed ``max_attempts`` (10). A reply may hold several attempts and feedbacks; each is read in order.
The answer is that of the last attempt read. The report gives, per difficulty (seen, unseen) and
overall, the accuracy of the final and of the first answers, how many self-corrections helped (wrong to
right) and hurt (right to wrong), and the attempts per question.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import misstep
from pydantic import BaseModel, ConfigDict, Field

from misstep_tripost.families import Family, family_of
from misstep_tripost.text import (
    CORRECT_END,
    FEEDBACK,
    Step,
    answer_header,
    question_prompt,
    render_interaction,
    render_steps,
    split_turns,
)


def _norm(text: str) -> str:
    return " ".join(text.split())


@dataclass
class Reading:
    """Self-improving inference on one task: what has been read so far, and what to prompt next."""

    task: misstep.Task
    family: Family
    max_attempts: int
    attempts: list[list[Step]] = field(default_factory=list)
    feedbacks: list[str] = field(default_factory=list)  # the model's own feedback on each attempt judged
    replies: list[str] = field(default_factory=list)
    stop: str = ""  # correct | repeat | limit | unparsable | end

    def prefill(self) -> str:
        """The start of the next assistant turn: the latest attempt alone, then ``Feedback:`` (not yet judged)
        or its feedback and the ``Updated Answer`` header ('' before the first attempt)."""
        if not self.attempts:
            return ""
        info = self.family.info
        text = f"{answer_header(info)}\n{render_steps(self.attempts[-1])}\n{FEEDBACK}"
        if len(self.feedbacks) == len(self.attempts):
            text += f" {self.feedbacks[-1]}\n{answer_header(info, updated=True)}"
        return text

    def conversation(self) -> list[misstep.Message]:
        prompt = [misstep.Message(role="user", content=question_prompt(self.task.question))]
        prefill = self.prefill()
        return [*prompt, misstep.Message(role="assistant", content=prefill)] if prefill else prompt

    def read(self, reply: str) -> None:
        """Read the attempts and feedbacks the reply adds to the prefill; apply the stop rules."""
        self.replies.append(reply)
        known = 0 if not self.attempts else 1 + (len(self.feedbacks) == len(self.attempts))
        events: list[tuple[str, Any]] = []
        for turn in split_turns(self.prefill() + reply):
            events.append(("attempt", turn))
            if turn.feedback:  # an empty "Feedback:" is nothing new
                events.append(("feedback", turn.feedback))
        new = events[known:]
        if not new:
            self.stop = "end"
        for kind, value in new:
            self.stop = self._attempt(value) if kind == "attempt" else self._feedback(value)
            if self.stop:
                return

    def _attempt(self, turn: Any) -> str:
        steps = turn.steps
        if steps is None:
            return "unparsable"
        if any(_norm(render_steps(steps)) == _norm(render_steps(seen)) for seen in self.attempts):
            return "repeat"
        if len(self.attempts) == self.max_attempts:
            return "limit"
        self.attempts.append(steps)
        return ""

    def _feedback(self, text: str) -> str:
        if CORRECT_END in text.lower():  # the reference's test: "... final response is also correct."
            self.feedbacks.append(text)
            return "correct"
        if _norm(text) in map(_norm, self.feedbacks):
            return "repeat"
        self.feedbacks.append(text)
        return ""

    def prediction(self) -> Prediction:
        family, task = self.family, self.task
        first, final = (self.attempts[0], self.attempts[-1]) if self.attempts else (None, None)
        return Prediction(
            task_id=task.id, difficulty=str(task.metadata.get("difficulty", "unknown")),
            interaction=render_interaction(family.info, self.attempts, list(self.feedbacks)), replies=self.replies,
            first=family.answer(first) if first else None, final=family.answer(final) if final else None,
            first_correct=family.correct(first, task), final_correct=family.correct(final, task),
            attempts=len(self.attempts), rounds=len(self.replies), stop=self.stop)


class Prediction(BaseModel):
    """One evaluated task (a line of ``predictions.jsonl``)."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    difficulty: str
    interaction: str = Field(description="the attempts and the model's feedback, as read")
    replies: list[str] = Field(description="the model's reply to each prompt")
    first: Any = None
    final: Any = None
    first_correct: bool
    final_correct: bool
    attempts: int
    rounds: int
    stop: str


def summarize(predictions: list[Prediction]) -> dict[str, Any]:
    """The metrics of some predictions."""
    n = len(predictions)
    return {
        "count": n,
        "accuracy": sum(p.final_correct for p in predictions) / n if n else 0.0,
        "first_accuracy": sum(p.first_correct for p in predictions) / n if n else 0.0,
        "helped": sum(p.final_correct and not p.first_correct for p in predictions),
        "hurt": sum(p.first_correct and not p.final_correct for p in predictions),
        "attempts": sum(p.attempts for p in predictions) / n if n else 0.0,
        "stopped_correct": sum(p.stop == "correct" for p in predictions),
    }


def infer(backend: misstep.Backend, tasks: list[misstep.Task], *, max_attempts: int, self_improve: bool,
          max_new_tokens: int) -> list[Prediction]:
    """Self-improving inference on ``tasks``: one batched ``generate`` call per round for the tasks still going."""
    readings = [Reading(task, family_of(task), max_attempts if self_improve else 1) for task in tasks]
    stop = () if self_improve else (f"\n{FEEDBACK}",)
    sampling = misstep.Sampling(temperature=0.0, max_new_tokens=max_new_tokens, stop=stop)
    going = readings
    while going:
        replies = backend.generate([r.conversation() for r in going], [sampling] * len(going))
        for reading, reply in zip(going, replies):
            reading.read(reply)
            if not self_improve:
                reading.stop = reading.stop or "end"
        going = [r for r in going if not r.stop]
    return [r.prediction() for r in readings]


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
        max_attempts: int = Field(default=10, gt=0, description="attempts per question, the first included")
        max_new_tokens: int = Field(default=1024, gt=0, description="per reply")
        batch_size: int = Field(default=64, gt=0, description="questions inferred together (and saved together)")

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
        metrics = misstep.grouped_metrics(predictions, lambda p: p.difficulty, summarize, always=True)
        metrics_path, table_path, table = misstep.save_metrics(
            ctx.dir, metrics, info={"model": opts.model, "self_improve": opts.self_improve}, label="difficulty",
            title=f"Model `{opts.model or 'the recipe model'}`, self-improvement {'on' if opts.self_improve else 'off'}.")
        ctx.log("\n" + table)
        overall = metrics["all"]
        return {"metrics": metrics_path, "table": table_path, "predictions": path, "accuracy": overall["accuracy"],
                "first_accuracy": overall["first_accuracy"], "helped": overall["helped"], "hurt": overall["hurt"],
                "attempts": overall["attempts"],
                **{f"accuracy_{name}": m["accuracy"] for name, m in metrics.items() if name != "all"}}

    def _predict(self, ctx: misstep.StageContext, tasks: list[misstep.Task], appender: misstep.JsonlAppender) -> None:
        opts = self.options
        backend = ctx.backend(opts.backend, ctx.model_of(opts.model))
        try:
            batches = range(0, len(tasks), opts.batch_size)
            for start in ctx.progress(batches, desc="batches", total=len(batches)):
                for prediction in infer(backend, tasks[start: start + opts.batch_size], max_attempts=opts.max_attempts,
                                        self_improve=opts.self_improve, max_new_tokens=opts.max_new_tokens):
                    appender.write(prediction)
        finally:
            backend.close()
