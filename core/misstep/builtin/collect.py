"""The ``collect`` stage: run the agent on tasks at several temperatures, verify, store trajectories.

Trajectories are appended to ``trajectories.jsonl`` one by one (flushed); a re-run after an
interruption skips every (task, temperature, sample) already stored, so each is stored exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from misstep.agent import STOP, Agent, Rollout, TrajectoryStore, rollout_seed
from misstep.agent.loop import PromptTransform, rollout_key
from misstep.builtin.stages import TasksStage, load_tasks
from misstep.components import Options, Stage
from misstep.datamodel import Task
from misstep.errors import DataError
from misstep.hookspecs import Register, hookimpl
from misstep.jsonl import write_jsonl
from misstep.prompts import PromptTemplate
from misstep.recipe import BackendRef, ParserRef, ToolRef, VerifierRef
from misstep.specs import ModelSpec
from misstep.context import StageContext


class AgentSettings(Options):
    """How an agent runs: backend, tools, verifier, prompt and limits."""

    backend: BackendRef | None = Field(default=None, description="default: `hf` with the recipe's model")
    tools: list[ToolRef] = Field(default_factory=list, description="tools the agent may call, e.g. [calculate]")
    verifier: VerifierRef
    prompt: PromptTemplate = Field(default_factory=PromptTemplate)
    max_turns: int = Field(default=7, gt=0, description="assistant turns before the episode is cut")
    max_new_tokens: int = Field(default=256, gt=0, description="tokens per assistant turn")
    top_p: float = Field(default=1.0, gt=0, le=1)
    stop: list[str] = Field(default_factory=lambda: [STOP])
    batch_size: int = Field(default=64, gt=0, description="trajectories generating together")
    action_format: Literal["react", "native"] = Field(
        default="react", description="react: `Action: tool[argument]` text, `finish[answer]` ends; native: the "
        "tools' JSON schemas go to the model, which calls them natively and ends with a reply without a call")
    tool_parser: ParserRef = Field(default_factory=lambda: ParserRef(use="hermes"),
                                   description="native: how calls written as text are read (hermes, json)")

    @model_validator(mode="after")
    def _native_prompt(self) -> AgentSettings:
        """Native tool calling asks in its own words unless the recipe sets `prompt:` (the ReAct presets
        describe `tool[argument]` actions)."""
        if self.action_format == "native" and "prompt" not in self.model_fields_set:
            self.prompt = PromptTemplate(preset="tools", acknowledgement=None)
        return self


class AgentOptions(AgentSettings, TasksStage.Options):
    """What every agent-running stage on tasks needs: the tasks, and how the agent runs."""


def unique_tasks(tasks: list[Task]) -> list[Task]:
    """``tasks``, after checking that no two share an id (trajectories are stored by task id)."""
    seen: dict[str, Task] = {}
    for task in tasks:
        if task.id in seen:
            raise DataError(
                f"two tasks share the id {task.id!r} (datasets {seen[task.id].dataset!r} and {task.dataset!r}); "
                "give the loaders distinct `dataset:` names or id fields"
            )
        seen[task.id] = task
    return tasks


def run_agent(ctx: StageContext, options: AgentSettings, rollouts: list[Rollout], model: ModelSpec, *,
              prompt_transform: PromptTransform | None = None, store_name: str = "trajectories.jsonl") -> TrajectoryStore:
    """Produce the rollouts not yet in ``ctx.dir / store_name``, storing each as it finishes."""
    store = TrajectoryStore(ctx.dir / store_name)
    try:
        if store.recovered:
            ctx.log(f"a cut last line was moved to {store.recovered}; that trajectory is produced again")
        todo = [rollout for rollout in rollouts if not store.holds(rollout)]
        if len(todo) < len(rollouts):
            ctx.log(f"resuming: {len(rollouts) - len(todo)} of {len(rollouts)} trajectories already stored")
        if todo:
            backend = ctx.backend(options.backend, model)
            ctx.log(f"backend {backend.name}: {backend.settings()}")
            try:
                agent = Agent(
                    backend,
                    [ref.build() for ref in options.tools],
                    options.verifier.build(),
                    prompt=options.prompt,
                    max_turns=options.max_turns,
                    max_new_tokens=options.max_new_tokens,
                    top_p=options.top_p,
                    stop=options.stop,
                    batch_size=options.batch_size,
                    prompt_transform=prompt_transform,
                    source=ctx.spec.use,
                    action_format=options.action_format,
                    parser=options.tool_parser.build(),
                )
                for trajectory in ctx.progress(agent.run(todo), desc="trajectories", total=len(todo)):
                    store.add(trajectory)
                    ctx.trajectory_produced(trajectory)
            finally:
                backend.close()
    finally:
        store.close()
    return store


def distinct_temperatures(values: list[float]) -> list[float]:
    """``values``, after checking that no two name the same rollouts: equal as the store keys them
    (:func:`~misstep.agent.loop.rollout_key`) or in trajectory ids (``t{temperature:g}``)."""
    seen: dict[object, float] = {}
    for value in values:
        for key in (rollout_key("", value, 0), f"{value:g}"):
            if key in seen:
                raise ValueError(f"temperatures {seen[key]!r} and {value!r} name the same rollouts (the store keeps "
                                 "6 decimals, trajectory ids 6 digits): each trajectory would be collected twice; "
                                 "list each temperature once (`samples:` gives more trajectories per temperature)")
            seen[key] = value
    return values


def rollouts_for(tasks: Iterable[Task], temperatures: Iterable[float], samples: int, seed: int) -> list[Rollout]:
    """Every (temperature, sample, task) rollout, temperature-major so batches share sampling settings."""
    return [
        Rollout(task, temperature, sample, rollout_seed(seed, task.id, temperature, sample))
        for temperature in temperatures
        for sample in range(samples)
        for task in tasks
    ]


class CollectStage(Stage["CollectStage.Options"]):
    """Run the agent on tasks at several temperatures, verify each trajectory and store it."""

    name = "collect"

    class Options(AgentOptions):
        temperatures: list[Annotated[float, Field(ge=0)]] = Field(default_factory=lambda: [0.2, 0.5, 0.7], min_length=1)
        samples: int = Field(default=1, gt=0, description="trajectories per task and temperature")

        @field_validator("temperatures")
        @classmethod
        def _distinct(cls, values: list[float]) -> list[float]:
            return distinct_temperatures(values)

    def run(self, ctx: StageContext) -> dict[str, Any]:
        opts = self.options
        tasks = unique_tasks(load_tasks(opts.tasks, limit=opts.limit, shuffle=opts.shuffle, seed=ctx.seed))
        tasks_path: Path = ctx.dir / "tasks.jsonl"
        write_jsonl(tasks_path, tasks)
        rollouts = rollouts_for(tasks, opts.temperatures, opts.samples, ctx.seed)
        store = run_agent(ctx, opts, rollouts, ctx.model)
        ctx.log(f"{len(store)} trajectories: {store.labels['positive']} positive, {store.labels['negative']} negative")
        return {
            "trajectories": store.path,
            "tasks": tasks_path,
            "count": len(store),
            "positives": store.labels["positive"],
            "negatives": store.labels["negative"],
        }


@hookimpl
def register_stages(register: Register) -> None:
    register(CollectStage)
