"""The ``tripost-edit`` trajectory source: the student attempts the tasks, the editing loop repairs them.

Use it as the source of the core ``reformat`` stage with the ``tripost`` reformatter. Edited
trajectories are appended to ``edits.jsonl`` in the stage folder as each batch finishes; a re-run after
an interruption keeps them and edits only the rest. Every reply is stored, dropped ones included (with
the student's text), so nothing is lost; ``metadata.outcome`` says kept, edited, cut or dropped.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence

import misstep
from pydantic import Field

from misstep_tripost.editing import Critic, Edit, edit_replies
from misstep_tripost.families import family_of
from misstep_tripost.improvers import Improver, ScriptedImprover
from misstep_tripost.text import (
    Feedback,
    Step,
    parse_feedback,
    question_prompt,
    render_interaction,
    render_steps,
)
from misstep_tripost.verifiers import FeedbackVerifier


def critic_for(verifier: misstep.Verifier) -> Critic:
    """A batch critic: the verifier's own ``critique``, or its verdicts' feedback text parsed."""
    if isinstance(verifier, FeedbackVerifier):
        return verifier.critique

    def critique(tasks: Sequence[misstep.Task], attempts: Sequence[list[Step]]) -> list[Feedback | None]:
        verdicts = [verifier.verify(task, render_steps(steps)) for task, steps in zip(tasks, attempts)]
        return [parse_feedback(v.feedback) if v.feedback else None for v in verdicts]

    return critique


def edit_trajectory(edit: Edit, sample: int, model: str, temperature: float) -> misstep.Trajectory:
    """The stored record of one edit: the repaired interaction (or, when dropped, the student's reply)."""
    family = family_of(edit.task)
    text = render_interaction(family.info, edit.attempts, edit.feedbacks) if edit.outcome != "dropped" else edit.reply
    last = edit.feedbacks[-1] if edit.feedbacks and edit.outcome != "dropped" else None
    return misstep.Trajectory(
        id=f"{edit.task.id}#{sample}",
        task_id=edit.task.id,
        messages=[misstep.Message(role="user", content=question_prompt(edit.task.question)),
                  misstep.Message(role="assistant", content=text)],
        prompt_len=1,
        verdict=misstep.Verdict(correct=last.correct if last else False, feedback=last.text() if last else None),
        provenance=misstep.Provenance(source="tripost-edit", model=model, temperature=temperature, sample=sample),
        metadata={"task": family.name, "outcome": edit.outcome, "reason": edit.reason, "attempts": len(edit.attempts),
                  "updates": edit.updates, "rejected_feedback": edit.rejected_feedback,
                  "rejected_updates": edit.rejected_updates, "student": edit.reply},
    )


class EditSource(misstep.TrajectorySource["EditSource.Options"]):
    """TriPosT's interactive editing: student attempts, verifier feedback, improver updates (resumable)."""

    name = "tripost-edit"

    class Options(misstep.Options):
        tasks: str = Field(description="an earlier stage whose `tasks` output holds the training tasks")
        start: int = Field(default=0, ge=0, description="first task of the window collected this round")
        count: int | None = Field(default=None, gt=0, description="tasks in the window (default: all from start)")
        student: str | None = Field(default=None, description="an earlier stage whose `model` output is the "
                                    "student (default: the recipe's model)")
        backend: misstep.BackendRef | None = Field(default=None, description="default: `hf` with the student model")
        verifier: misstep.VerifierRef
        improver: Improver = Field(default_factory=ScriptedImprover)
        samples: int = Field(default=1, gt=0, description="student replies per task")
        temperature: float = Field(default=1.0, ge=0, description="student sampling temperature (reference: 1.0)")
        top_p: float = Field(default=1.0, gt=0, le=1)
        max_new_tokens: int = Field(default=1024, gt=0)
        max_updates: int = Field(default=5, gt=0)
        max_attempt_words: int = Field(default=512, gt=0, description="longer attempts are dropped")
        retry_rejected: bool = Field(
            default=False, description="ask the improver again after an update that is not legitimate (or the "
            "verifier cannot judge), within max_updates; false: drop the interaction, as the reference does")
        batch_size: int = Field(default=64, gt=0, description="replies generated and edited together")

    def trajectories(self, ctx: misstep.StageContext) -> Iterator[misstep.Trajectory]:
        opts = self.options
        tasks = ctx.read_tasks(opts.tasks)[opts.start: None if opts.count is None else opts.start + opts.count]
        path = ctx.dir / "edits.jsonl"
        appender = misstep.JsonlAppender(path)
        try:
            done = {(t.task_id, t.provenance.sample) for t in misstep.read_jsonl(path, misstep.Trajectory)}
            todo = [(task, sample) for sample in range(opts.samples) for task in tasks if (task.id, sample) not in done]
            if done:
                ctx.log(f"resuming: {len(done)} replies already edited, {len(todo)} to go")
            if todo:
                self._edit(ctx, todo, appender)
        finally:
            appender.close()
        yield from misstep.read_jsonl(path, misstep.Trajectory)

    def _edit(self, ctx: misstep.StageContext, todo: list[tuple[misstep.Task, int]], appender: misstep.JsonlAppender) -> None:
        opts = self.options
        backend = ctx.backend(opts.backend, ctx.model_of(opts.student))
        verifier = opts.verifier.build()
        critic = critic_for(verifier)
        try:
            batches = range(0, len(todo), opts.batch_size)
            for start in ctx.progress(batches, desc="student batches", total=len(batches)):
                chunk = todo[start: start + opts.batch_size]
                conversations = [[misstep.Message(role="user", content=question_prompt(task.question))] for task, _ in chunk]
                sampling = [misstep.Sampling(temperature=opts.temperature, top_p=opts.top_p, max_new_tokens=opts.max_new_tokens,
                                             seed=zlib.crc32(f"{ctx.seed}-{task.id}-{sample}".encode()))
                            for task, sample in chunk]
                replies = backend.generate(conversations, sampling)
                edits = edit_replies([task for task, _ in chunk], replies, critic, opts.improver.improve,
                                     max_updates=opts.max_updates, max_attempt_words=opts.max_attempt_words,
                                     retry_rejected=opts.retry_rejected)
                for edit, (_, sample) in zip(edits, chunk):
                    trajectory = edit_trajectory(edit, sample, backend.model_name, opts.temperature)
                    appender.write(trajectory)
                    ctx.trajectory_produced(trajectory)
        finally:
            backend.close()
            opts.improver.close()
            close = getattr(verifier, "close", None)
            if callable(close):
                close()
