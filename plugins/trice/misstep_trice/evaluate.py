"""TRICE evaluation: one response per question, its tool call executed; accuracy and tool-use rate.

Math takes the tool result or the last number and compares it rounded to 2 decimals (``trice-math``);
QA counts a hit when any gold alias appears in the prediction (``trice-qa``). With ``read_observations``
(retrieval QA, as the reference does) the model answers again with the tool's result before the
question, and that answer is judged. Results go to ``results.jsonl``; ``metrics.json`` and the Markdown
table ``metrics.md`` (the summary every evaluate stage writes) give count, accuracy and tool-use rate,
overall and per dataset. ``trice-report`` puts several evaluations side by side
(before training, after stage I, after stage II).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import misstep
from pydantic import BaseModel, ConfigDict, Field

from misstep_trice.execution import Execution, build_tools, execute
from misstep_trice.generation import generate
from misstep_trice.prompts import StudentPrompt


class Result(BaseModel):
    """One evaluated question."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    dataset: str
    response: str
    tool: str | None
    observation: str | None
    prediction: str
    correct: bool


class TriceEvaluate(misstep.Stage["TriceEvaluate.Options"]):
    """Evaluate TRICE-style single responses: accuracy per dataset and tool-use rate."""

    name = "trice-evaluate"

    class Options(misstep.Options):
        tasks: misstep.TaskRefs = Field(description="test task loaders")
        limit: int | None = Field(default=None, gt=0, description="first N tasks of each loader")
        model: Annotated[str | misstep.ModelSpec | None, misstep.StageInput()] = Field(
            default=None, description="an earlier stage whose `model` output to evaluate, or a model {path: ...}; "
            "default: the recipe's model")
        backend: misstep.BackendRef | None = Field(default=None, description="default: `hf` running `model`")
        tools: list[misstep.ToolRef] = Field(default_factory=lambda: [misstep.ToolRef(use="calculator")],
                                             description="tools the model may call, by the name it calls them")
        verifier: misstep.VerifierRef = Field(default_factory=lambda: misstep.VerifierRef(use="trice-math"),
                                              description="trice-math, trice-qa or any verifier")
        prompt: StudentPrompt = Field(default_factory=StudentPrompt, description="the prompt the model was "
                                      "trained with")
        read_observations: bool = Field(default=False, description="answer again given the tool's result (QA)")
        reader_prompt: str = Field(default="{observation}\n{question}",
                                   description="the question turn when reading an observation")
        max_new_tokens: int = Field(default=128, gt=0)
        num_beams: int = Field(default=1, gt=0, description="1: greedy decoding; > 1: beam search (hf backend)")
        batch_size: int = Field(default=64, gt=0)

    def run(self, ctx: misstep.StageContext) -> dict[str, Any]:
        opts = self.options
        tasks = [task for ref in opts.tasks for task in _limited(ref.build().load(), opts.limit)]
        if not tasks:
            raise misstep.MisstepError(f"stage {ctx.name!r}: the task loaders gave no tasks; check their paths")
        backend = ctx.backend(opts.backend, ctx.model_of(opts.model))
        tools = build_tools(opts.tools)
        verifier = opts.verifier.build()
        greedy = misstep.Sampling(temperature=0.0, max_new_tokens=opts.max_new_tokens, seed=ctx.seed,
                                  num_beams=opts.num_beams)
        try:
            conversations = [opts.prompt.render(task.question) for task in tasks]
            responses = _flat(generate(ctx, backend, conversations, [greedy] * len(tasks),
                                       batch_size=opts.batch_size, desc="answers"))
            executions = [execute(text, tools) for text in responses]
            predictions = [e.answer for e in executions]
            if opts.read_observations:
                predictions = self._read(ctx, backend, tasks, executions, greedy)
        finally:
            backend.close()
        results = [
            Result(task_id=task.id, dataset=task.dataset, response=e.response, tool=e.call.tool if e.call else None,
                   observation=e.observation, prediction=prediction,
                   correct=bool(verifier.verify(task, prediction).correct))
            for task, e, prediction in zip(tasks, executions, predictions)
        ]
        misstep.write_jsonl(ctx.dir / "results.jsonl", results)
        metrics = misstep.grouped_metrics(results, lambda r: r.dataset or "unnamed", summarise, always=True)
        metrics_path, table_path, table = misstep.save_metrics(ctx.dir, metrics, info={"model": backend.model_name})
        ctx.log("\n" + table)
        return {"metrics": metrics_path, "table": table_path, "results": ctx.dir / "results.jsonl", **metrics["all"],
                "datasets": {name: row for name, row in metrics.items() if name != "all"}}

    def _read(self, ctx: misstep.StageContext, backend: misstep.Backend, tasks: list[misstep.Task],
              executions: list[Execution], sampling: misstep.Sampling) -> list[str]:
        """Answers given the observation: the model reads its tool's result (calls only)."""
        opts = self.options
        called = [i for i, e in enumerate(executions) if e.observation is not None]
        conversations = [opts.prompt.render(opts.reader_prompt.format(observation=executions[i].observation,
                                                                      question=tasks[i].question)) for i in called]
        read = _flat(generate(ctx, backend, conversations, [sampling] * len(called),
                              batch_size=opts.batch_size, desc="read observations"))
        predictions = [e.answer for e in executions]
        for i, text in zip(called, read):
            predictions[i] = text
        return predictions


def _limited(tasks: Any, limit: int | None) -> list[misstep.Task]:
    out: list[misstep.Task] = []
    for task in tasks:
        if limit is not None and len(out) >= limit:
            break
        out.append(task)
    return out


def _flat(batches: Any) -> list[str]:
    return [text for batch in batches for text in batch]


def summarise(results: list[Result]) -> dict[str, Any]:
    """Count, accuracy and tool-use rate of some results."""
    count = len(results)
    return {
        "count": count,
        "accuracy": sum(r.correct for r in results) / count if count else 0.0,
        "tool_use_rate": sum(r.tool is not None for r in results) / count if count else 0.0,
    }


class TriceReport(misstep.Stage["TriceReport.Options"]):
    """One table of several trice-evaluate stages: accuracy and tool-use rate per dataset, stage by stage."""

    name = "trice-report"

    class Options(misstep.Options):
        evaluations: Annotated[list[str], misstep.StageInput()] = Field(
            min_length=1, description="earlier trice-evaluate stages, in the order to show them")

    def run(self, ctx: misstep.StageContext) -> dict[str, Any]:
        rows = {name: misstep.read_json(ctx.output(name, "metrics"))["metrics"]
                for name in self.options.evaluations}
        lines = ["| evaluation | dataset | accuracy | tool-use rate | count |", "| --- | --- | --- | --- | --- |"]
        for name, metrics in rows.items():
            for dataset in [d for d in metrics if d != "all"] + ["all"]:
                row = metrics[dataset]
                lines.append(f"| {name} | {dataset} | {row['accuracy']:.2%} | {row['tool_use_rate']:.2%} | "
                             f"{row['count']:.0f} |")
        table = "\n".join(lines) + "\n"
        (ctx.dir / "report.md").write_text(table)
        (ctx.dir / "report.json").write_text(json.dumps(rows, indent=2))
        ctx.log("\n" + table)
        return {"table": ctx.dir / "report.md", "report": ctx.dir / "report.json",
                "accuracy": {name: metrics["all"]["accuracy"] for name, metrics in rows.items()},
                "tool_use_rate": {name: metrics["all"]["tool_use_rate"] for name, metrics in rows.items()}}
