"""Step credit's components: the ``step-values`` stage (the value of each step of a trajectory, and its
first wrong step) and the ``step-pairs`` reformatter (step-level preference pairs from its branches).

For each chosen trajectory (failed ones by default) and each of its steps k, ``branches`` continuations
start right after step k (point 0: right after the prompt) and run with the agent of ``collect``; the
verifier judges them and the step's value is the share that succeeded (the last step's value is the
trajectory's own outcome). Branches from equal messages are shared: every trajectory of a task shares
point 0. Branches are appended to ``branches.jsonl`` as they finish, and a re-run produces only the
missing ones. With ``method: verifier``, a step verifier (:meth:`~misstep.components.Verifier.judge_steps`)
judges the steps instead. The values, the first step tried by each branch and, for failed trajectories,
the first wrong step (:func:`misstep.step_credit.first_wrong_step`) go into each verdict; every input
trajectory is written to ``trajectories.jsonl``, the others unchanged.

``step-pairs`` turns valued trajectories into :class:`~misstep.datamodel.PreferenceExample` records for the
preference losses (:func:`misstep.step_credit.step_pairs`). The ``correct-prefix`` reformatter, which shares
NAT's sampling options, is in misstep-nat.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from misstep.agent import Branch, Rollout, TrajectoryStore, rollout_seed
from misstep.builtin.collect import AgentSettings, run_agent
from misstep.builtin.stages import TrajectoryInput
from misstep.components import Options, Reformatter, Stage, Verifier
from misstep.context import StageContext
from misstep.datamodel import PreferenceExample, StepCredit, Task, Trajectory
from misstep.errors import ComponentError, DataError
from misstep.hookspecs import Register, hookimpl
from misstep.jsonl import read_jsonl, write_jsonl
from misstep.recipe import StageInput
from misstep.specs import ModelSpec
from misstep.step_credit import branch_prefix, first_wrong_step, next_steps, step_messages, step_pairs

Label = Literal["positive", "negative"]


def branch_point(trajectory: Trajectory, steps: int) -> Branch:
    """The start of the branches after the first ``steps`` steps, named by its task, step and messages."""
    prefix = branch_prefix(trajectory, steps)
    digest = hashlib.sha1(json.dumps([[m.model_dump(mode="json") for m in prefix], trajectory.tools],
                                     sort_keys=True).encode()).hexdigest()[:12]
    return Branch(f"{trajectory.task_id}@{steps}-{digest}", tuple(prefix), trajectory.prompt_len, steps)


def outcome(trajectory: Trajectory) -> float:
    """1.0 for a trajectory judged correct, else 0.0."""
    return float(trajectory.verdict is not None and trajectory.verdict.correct is True)


class StepValuesStage(Stage["StepValuesStage.Options"]):
    """Value each step of trajectories by branch rollouts (or a step verifier) and find the first wrong one."""

    name = "step-values"

    class Options(AgentSettings, TrajectoryInput):
        model: Annotated[str | ModelSpec | None, StageInput()] = Field(
            default=None, description="the policy that branches: an earlier stage's `model` or {path: ...} "
            "(default: the recipe's model; a backend with its own model ignores it)")
        method: Literal["rollouts", "verifier"] = Field(
            default="rollouts", description="rollouts: branch continuations; verifier: the verifier judges each "
            "step (a step verifier such as tripost-scripted)")
        branches: int = Field(default=4, gt=0, description="continuations from each branch point")
        temperature: float = Field(default=0.7, ge=0, description="sampling temperature of the branches")
        labels: list[Label] = Field(default=["negative"], min_length=1,
                                    description="which trajectories get values (by their verdict)")
        limit: int | None = Field(default=None, gt=0, description="value at most this many (the first in the file)")
        drop: float = Field(default=0.5, gt=0, le=1, description="a step is wrong when its value falls below "
                            "this share of the value before it")
        threshold: float | None = Field(default=None, gt=0, le=1, description="or: below this value")

    def run(self, ctx: StageContext) -> dict[str, Any]:
        opts = self.options
        trajectories = list(opts.read_trajectories(ctx))
        tasks_stage = opts.tasks_stage(ctx)
        tasks = opts.read_tasks(ctx)
        chosen = [t for t in trajectories if t.label in opts.labels and step_messages(t)][: opts.limit]
        missing = sorted({t.task_id for t in chosen} - set(tasks))
        if missing:
            where = f"the tasks of stage {tasks_stage!r}" if tasks_stage else "the tasks (no stage holds them)"
            raise DataError(f"step-values: no task {missing[0]!r} among {where}: the verifier needs each "
                            "trajectory's task; set `tasks:` to the stage that wrote them (e.g. a `tasks` stage)")
        ctx.log(f"valuing the steps of {len(chosen)} of {len(trajectories)} trajectories ({opts.method})")
        if opts.method == "verifier":
            credits = self._judged(chosen, tasks)
            branches_path = None
        else:
            store = self._branch(ctx, chosen, tasks)
            branches_path = store.path
            credits = self._valued(chosen, store.path)
        found: Counter[int] = Counter()
        valued = 0

        def annotated() -> Iterator[Trajectory]:
            nonlocal valued
            for trajectory in trajectories:
                credit = credits.get(trajectory.id)
                if credit is None or trajectory.verdict is None:
                    yield trajectory
                    continue
                valued += 1
                wrong = None
                if trajectory.verdict.correct is False:
                    wrong = first_wrong_step(credit.values, credit.start, drop=opts.drop, threshold=opts.threshold)
                    found[wrong or 0] += 1
                verdict = trajectory.verdict.model_copy(update={"steps": credit, "first_wrong_step": wrong})
                yield trajectory.model_copy(update={"verdict": verdict})

        path = ctx.dir / "trajectories.jsonl"
        count = write_jsonl(path, annotated())
        ctx.log(f"{valued} trajectories valued; first wrong step of the failed ones: "
                f"{dict(sorted(found.items())) or 'none'} (0: none found)")
        outputs: dict[str, Any] = {"trajectories": path, "count": count, "valued": valued,
                                   "first_wrong_steps": {str(k): v for k, v in sorted(found.items())}}
        if tasks_stage:
            outputs["tasks"] = ctx.output(tasks_stage, "tasks")
        if branches_path is not None:
            outputs["branches"] = branches_path
        return outputs

    def _judged(self, chosen: list[Trajectory], tasks: dict[str, Task]) -> dict[str, StepCredit]:
        """Step values from the verifier's own judgement of each step."""
        verifier: Verifier[Any] = self.options.verifier.build()
        credits = {t.id: credit for t in chosen if (credit := verifier.judge_steps(tasks[t.task_id], t)) is not None}
        if chosen and not credits:
            raise ComponentError(f"verifier {self.options.verifier.use!r} judged the steps of none of the "
                                 f"{len(chosen)} trajectories: it is not a step verifier (or not for these tasks); "
                                 "use `method: rollouts`, or a step verifier such as tripost-scripted")
        return credits

    def _branch(self, ctx: StageContext, chosen: list[Trajectory], tasks: dict[str, Task]) -> TrajectoryStore:
        """Run every branch not yet in ``branches.jsonl``: ``branches`` from each distinct branch point."""
        opts = self.options
        points: dict[str, tuple[Task, Branch]] = {}
        for trajectory in chosen:
            for steps in range(len(step_messages(trajectory))):
                branch = branch_point(trajectory, steps)
                points.setdefault(branch.point, (tasks[trajectory.task_id], branch))
        rollouts = [Rollout(task, opts.temperature, sample, rollout_seed(ctx.seed, branch.point, opts.temperature,
                                                                         sample), branch=branch)
                    for task, branch in points.values() for sample in range(opts.branches)]
        ctx.log(f"{len(points)} branch points x {opts.branches} branches")
        return run_agent(ctx, opts, rollouts, ctx.model_of(opts.model), store_name="branches.jsonl")

    def _valued(self, chosen: list[Trajectory], branches_path: Path) -> dict[str, StepCredit]:
        """Each trajectory's step values and next steps from the stored branches."""
        opts = self.options
        by_point: dict[str, list[Trajectory]] = defaultdict(list)
        for branch in read_jsonl(branches_path, Trajectory):
            if branch.provenance.sample < opts.branches and \
                    round(branch.provenance.temperature or 0.0, 6) == round(opts.temperature, 6):
                by_point[str(branch.metadata.get("branch_point"))].append(branch)
        credits = {}
        for trajectory in chosen:
            count = len(step_messages(trajectory))
            groups = [by_point[branch_point(trajectory, steps).point] for steps in range(count)]
            rates = [sum(map(outcome, group)) / len(group) if group else 0.0 for group in groups]
            credits[trajectory.id] = StepCredit(
                values=[*rates[1:], outcome(trajectory)], start=rates[0], branches=opts.branches,
                next=[next_steps(group, steps) for steps, group in enumerate(groups)])
        return credits


class StepPairs(Reformatter["StepPairs.Options"]):
    """Step-level preference pairs: at a branch point, a next step whose branch succeeded over one that failed."""

    name = "step-pairs"

    class Options(Options):
        points: Literal["first-wrong", "every"] = Field(
            default="first-wrong", description="first-wrong: the point before a failed trajectory's first wrong "
            "step, its wrong step rejected; every: every branch point, succeeded vs failed branches' next steps")
        per_point: int | None = Field(default=None, gt=0, description="pairs per branch point (default: all)")
        num: int | None = Field(default=None, ge=0, description="pairs kept in all, drawn with `seed` (default: all)")
        seed: int = 0

    def __init__(self, options: StepPairs.Options | None = None) -> None:
        super().__init__(options)
        self._report: dict[str, Any] = {}

    def reformat(self, trajectories: Iterable[Trajectory], tasks: Mapping[str, Task]) -> Iterator[PreferenceExample]:
        opts = self.options
        seen = valued = 0
        pairs: list[PreferenceExample] = []
        for trajectory in trajectories:
            seen += 1
            valued += bool(trajectory.verdict and trajectory.verdict.steps)
            pairs.extend(step_pairs(trajectory, every_point=opts.points == "every", per_point=opts.per_point,
                                    seed=opts.seed))
        drawn = len(pairs) if opts.num is None else min(opts.num, len(pairs))
        if drawn < len(pairs):
            keep = set(random.Random(opts.seed).sample(range(len(pairs)), drawn))
            pairs = [pair for index, pair in enumerate(pairs) if index in keep]
        self._report = {"trajectories": seen, "valued": valued, "pairs": len(pairs),
                        "requested": opts.num, "points": opts.points}
        yield from pairs

    def report(self) -> dict[str, Any]:
        """How many trajectories were read and valued, and how many pairs were kept."""
        return self._report


@hookimpl
def register_stages(register: Register) -> None:
    register(StepValuesStage)


@hookimpl
def register_reformatters(register: Register) -> None:
    register(StepPairs)
