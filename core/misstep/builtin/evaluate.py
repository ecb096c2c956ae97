"""The ``evaluate`` stage and the ``misstep eval`` command: run the agent on test tasks and score it.

Metrics (accuracy, EM/F1 where the verifier gives them, action-error rate, average turns), overall
and per dataset, go to ``metrics.json`` and a Markdown table ``metrics.md``. A model trained by
misstep carries ``misstep.json`` naming the reformatter its data was made with; that reformatter's
``inference_prompt`` (NAT's positive hint, for instance) is applied to every prompt, and the report
says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import click
from pydantic import Field

from misstep.agent import report
from misstep.agent.loop import PromptTransform
from misstep.agent.store import trajectory_key
from misstep.builtin.collect import AgentOptions, rollouts_for, run_agent, unique_tasks
from misstep.builtin.stages import load_tasks
from misstep.components import Stage
from misstep.context import StageContext
from misstep.datamodel import Trajectory
from misstep.errors import ComponentError, RecipeError
from misstep.hookspecs import Register, hookimpl
from misstep.jsonl import read_jsonl, read_text, write_jsonl
from misstep.models import MODEL_INFO, model_info
from misstep.plugins import Plugins, get_plugins
from misstep.prompts import PRESETS
from misstep.recipe import ReformatterRef, StageInput, validate_recipe
from misstep.runner import run_recipe
from misstep.specs import ModelSpec
from misstep.summary import save_metrics


def stored_reformatter(model: ModelSpec, plugins: Plugins) -> tuple[PromptTransform, str] | None:
    """The inference prompt of the reformatter recorded in the model folder's ``misstep.json``, if any."""
    spec = (model_info(model.path) or {}).get("reformatter")
    if not spec:
        return None
    info = Path(model.path) / MODEL_INFO
    try:
        ref = ReformatterRef.model_validate(spec).resolve(plugins)
    except (RecipeError, ValueError) as error:
        raise ComponentError(
            f"the model at {model.path} was trained on data made by the reformatter {spec!r} ({info}), which "
            f"cannot be built here: {error}. Install the plugin that provides it, or evaluate with "
            "`inference_prompt: false` to use plain prompts"
        ) from None
    return ref.build().inference_prompt, ref.use


class EvaluateStage(Stage["EvaluateStage.Options"]):
    """Run the agent on test tasks (greedy by default) and report accuracy, action errors and turns."""

    name = "evaluate"

    class Options(AgentOptions):
        model: Annotated[str | ModelSpec | None, StageInput()] = Field(
            default=None,
            description="an earlier stage whose `model` output to evaluate, or a model {path: ...}; "
            "default: the recipe's model")
        temperature: float = Field(default=0.0, ge=0, description="0 is greedy decoding")
        inference_prompt: bool = Field(
            default=True, description="apply the inference prompt of the reformatter stored with the model")

    def run(self, ctx: StageContext) -> dict[str, Any]:
        opts = self.options
        model = ctx.model_of(opts.model)
        stored = stored_reformatter(model, ctx.plugins) if opts.inference_prompt else None
        transform, reformatter = stored if stored else (None, None)
        if reformatter:
            ctx.log(f"applying the inference prompt of reformatter {reformatter!r} stored with {model.path}")
        tasks = unique_tasks(load_tasks(opts.tasks, limit=opts.limit, shuffle=opts.shuffle, seed=ctx.seed))
        tasks_path = ctx.dir / "tasks.jsonl"
        write_jsonl(tasks_path, tasks)
        rollouts = rollouts_for(tasks, [opts.temperature], 1, ctx.seed)
        store = run_agent(ctx, opts, rollouts, model, prompt_transform=transform)
        wanted = {rollout.key for rollout in rollouts}
        trajectories = [t for t in read_jsonl(store.path, Trajectory) if trajectory_key(t) in wanted]
        result = report(trajectories, {task.id: task for task in tasks})
        hint = f", inference prompt of reformatter `{reformatter}`" if reformatter else ""
        metrics_path, table_path, table = save_metrics(
            ctx.dir, result, info={"model": model.path, "inference_prompt": reformatter, "temperature": opts.temperature},
            title=f"Model `{model.path}`{hint}, temperature {opts.temperature:g}.")
        ctx.log("\n" + table)
        return {"metrics": metrics_path, "table": table_path, "trajectories": store.path, "tasks": tasks_path,
                "inference_prompt": reformatter, **result["all"]}


def task_spec(text: str, plugins: Plugins) -> dict[str, Any]:
    """``LOADER:PATH`` (a registered task loader) or a plain ``PATH`` (the generic ``jsonl`` loader)."""
    loader, sep, path = text.partition(":")
    if sep and loader in plugins.names("task"):
        return {"use": loader, "path": path}
    return {"use": "jsonl", "path": text}


@hookimpl
def register_commands(cli: click.Group) -> None:
    @cli.command("eval")
    @click.option("--model", "model", required=True, help="Model folder, .gguf file or alias; with --base-url, "
                  "the model name the endpoint serves.")
    @click.option("--tasks", "tasks", multiple=True, required=True, metavar="[LOADER:]PATH",
                  help="Test tasks: a JSONL file, or LOADER:PATH for a task loader (e.g. gsm8k:test.jsonl). "
                  "Repeatable.")
    @click.option("--limit", type=click.IntRange(min=1), help="Evaluate only the first N tasks.")
    @click.option("--verifier", default="numeric", show_default=True, help="Verifier that judges answers.")
    @click.option("--tool", "tools", multiple=True, help="A tool the agent may call (e.g. calculate). Repeatable.")
    @click.option("--preset", type=click.Choice(list(PRESETS)),
                  help="Instruction wording (default: NAT's math; tools with --action-format native).")
    @click.option("--action-format", type=click.Choice(["react", "native"]), default="react", show_default=True,
                  help="ReAct text actions, or native tool calls (the tools' schemas go to the model).")
    @click.option("--tool-parser", default="hermes", show_default=True,
                  help="With --action-format native: how calls written as text are read (hermes, json).")
    @click.option("--max-turns", type=click.IntRange(min=1), default=7, show_default=True)
    @click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
    @click.option("--temperature", type=click.FloatRange(min=0), default=0.0, show_default=True)
    @click.option("--base-url", help="Use an OpenAI-compatible endpoint instead of loading the model in-process.")
    @click.option("--no-inference-prompt", is_flag=True,
                  help="Do not apply the inference prompt of the reformatter stored with the model.")
    @click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/eval"),
                  show_default=True, help="Output folder (a re-run resumes in it).")
    @click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
    def eval_command(model: str, tasks: tuple[str, ...], limit: int | None, verifier: str, tools: tuple[str, ...],
                     preset: str | None, action_format: str, tool_parser: str, max_turns: int, batch_size: int,
                     temperature: float, base_url: str | None, no_inference_prompt: bool, out: Path,
                     quiet: bool) -> None:
        """Evaluate a model on test tasks with the ReAct agent; print and save the metrics."""
        plugins = get_plugins()
        stage: dict[str, Any] = {
            "use": "evaluate",
            "tasks": [task_spec(text, plugins) for text in tasks],
            "limit": limit,
            "verifier": verifier,
            "tools": list(tools),
            **({"prompt": {"preset": preset}} if preset else {}),
            "action_format": action_format,
            "tool_parser": tool_parser,
            "max_turns": max_turns,
            "batch_size": batch_size,
            "temperature": temperature,
            "inference_prompt": not no_inference_prompt,
        }
        if base_url:
            stage["backend"] = {"use": "openai", "base_url": base_url, "model": model}
        recipe = validate_recipe({"name": "eval", "model": {"path": model}, "stages": [stage]}, plugins=plugins,
                                 file="misstep eval")
        run = run_recipe(recipe, run_dir=out, quiet=quiet)
        click.echo(read_text(run.output("evaluate", "table")))
        click.echo(f"Metrics: {run.output('evaluate', 'metrics')}")


@hookimpl
def register_stages(register: Register) -> None:
    register(EvaluateStage)
