"""TRICE stage I data (behaviour cloning): keep the model's right answers, let a teacher write tool calls.

For each training question the current model answers without tools. A right answer is its own target.
For a wrong one, a teacher (any backend; typically ``openai``) sees few-shot examples and the gold
answer and writes ``tool(argument)``; with ``verify_calls`` (default) the call is executed and kept only
if its result is right (the reference kept every call), and with ``drop_leaked_answers`` (default) a call
whose argument merely restates the gold answer it was shown (``calculator(72)``) is dropped. Each question's outcome is appended to
``decisions.jsonl`` as soon as its batch is done, so a re-run continues where it stopped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import misstep
from pydantic import BaseModel, ConfigDict, Field

from misstep_trice.answers import states_answer
from misstep_trice.execution import build_tools, execute
from misstep_trice.generation import generate
from misstep_trice.prompts import StudentPrompt, TeacherPrompt

Outcome = Literal["student", "teacher", "no-call", "wrong-call", "leaked-answer"]


class Decision(BaseModel):
    """What stage I decided for one question."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    student: str
    teacher: str | None = None
    target: str | None = None
    outcome: Outcome


class Stage1(misstep.Stage["Stage1.Options"]):
    """TRICE stage I: instruction-tuning examples from the model's right answers and a teacher's tool calls."""

    name = "trice-stage1"

    class Options(misstep.Options):
        tasks: Annotated[str, misstep.StageInput()] = Field(description="earlier stage whose `tasks` are the questions")
        teacher: misstep.BackendRef = Field(description="writes tool calls for wrongly answered questions")
        student: misstep.BackendRef | None = Field(default=None, description="default: `hf` with the recipe's model")
        tools: list[misstep.ToolRef] = Field(default_factory=lambda: [misstep.ToolRef(use="calculator")],
                                             description="tools the teacher may call, by the name it calls them")
        verifier: misstep.VerifierRef = Field(default_factory=lambda: misstep.VerifierRef(use="trice-math"),
                                              description="judges the student's answers and the calls' results")
        prompt: StudentPrompt = Field(default_factory=StudentPrompt, description="the prompt the student answers "
                                      "(and the trained examples hold)")
        teacher_prompt: TeacherPrompt = Field(default_factory=TeacherPrompt,
                                              description="system turn, few-shot examples, question and gold answer")
        verify_calls: bool = Field(default=True, description="keep a teacher's call only if its result is right")
        drop_leaked_answers: bool = Field(
            default=True, description="drop a call whose argument is the gold answer itself (calculator(72), or a "
            "search for a gold alias): the model cannot know it at inference")
        max_new_tokens: int = Field(default=128, gt=0)
        batch_size: int = Field(default=64, gt=0, description="questions answered together")

    def run(self, ctx: misstep.StageContext) -> dict[str, Any]:
        opts = self.options
        tasks = ctx.read_tasks(opts.tasks)
        path = ctx.dir / "decisions.jsonl"
        with misstep.JsonlAppender(path) as appender:
            done = {d.task_id for d in misstep.read_jsonl(path, Decision)}
            todo = [task for task in tasks if task.id not in done]
            if done:
                ctx.log(f"resuming: {len(tasks) - len(todo)} of {len(tasks)} questions already decided")
            if todo:
                for decision in self._decide(ctx, todo):
                    appender.write(decision)
        decisions = {d.task_id: d for d in misstep.read_jsonl(path, Decision)}
        examples = [
            misstep.Example(
                id=task.id,
                messages=[*opts.prompt.render(task.question), misstep.Message(role="assistant", content=target)],
                metadata={"task_id": task.id, "dataset": task.dataset, "source": decisions[task.id].outcome},
            )
            for task in tasks
            if (target := decisions[task.id].target) is not None
        ]
        examples_path = ctx.dir / "examples.jsonl"
        count = misstep.write_jsonl(examples_path, examples)
        outcomes = Counter(decisions[task.id].outcome for task in tasks)
        ctx.log(f"{count} examples: " + ", ".join(f"{n} {name}" for name, n in sorted(outcomes.items())))
        return {
            "examples": examples_path,
            "count": count,
            "tasks": ctx.output(opts.tasks, "tasks"),
            "decisions": path,
            "student_accuracy": outcomes["student"] / len(tasks) if tasks else 0.0,
            "outcomes": dict(outcomes),
        }

    def _decide(self, ctx: misstep.StageContext, tasks: list[misstep.Task]) -> Iterator[Decision]:
        opts = self.options
        verifier = opts.verifier.build()
        tools = build_tools(opts.tools)
        student = ctx.backend(opts.student)
        teacher = ctx.backend(opts.teacher)
        greedy = misstep.Sampling(temperature=0.0, max_new_tokens=opts.max_new_tokens, seed=ctx.seed)
        try:
            conversations = [opts.prompt.render(task.question) for task in tasks]
            batches = generate(ctx, student, conversations, [greedy] * len(tasks),
                               batch_size=opts.batch_size, desc="student answers")
            for start, answers in zip(range(0, len(tasks), opts.batch_size), batches):
                batch = tasks[start : start + opts.batch_size]
                wrong = [i for i, (task, answer) in enumerate(zip(batch, answers))
                         if not verifier.verify(task, answer).correct]
                calls = teacher.generate([opts.teacher_prompt.render(batch[i]) for i in wrong], [greedy] * len(wrong))
                written = dict(zip(wrong, calls))
                for i, (task, answer) in enumerate(zip(batch, answers)):
                    if i not in written:
                        yield Decision(task_id=task.id, student=answer, target=answer, outcome="student")
                    else:
                        yield self._teacher_decision(task, answer, written[i], tools, verifier)
        finally:
            student.close()
            teacher.close()

    def _teacher_decision(self, task: misstep.Task, answer: str, written: str,
                          tools: dict[str, misstep.Tool], verifier: misstep.Verifier) -> Decision:
        execution = execute(written, tools)
        if execution.call is None:
            return Decision(task_id=task.id, student=answer, teacher=written, outcome="no-call")
        if self.options.verify_calls and not verifier.verify(task, execution.answer).correct:
            return Decision(task_id=task.id, student=answer, teacher=written, outcome="wrong-call")
        if self.options.drop_leaked_answers and states_answer(task, execution.call.argument):
            return Decision(task_id=task.id, student=answer, teacher=written, outcome="leaked-answer")
        target = f"{execution.call.tool}({execution.call.argument})"
        return Decision(task_id=task.id, student=answer, teacher=written, target=target, outcome="teacher")
