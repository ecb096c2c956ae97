"""The reformatters: Vanilla (positives only), NUT (positives and negatives, no hint), NAT (a hint by
label), NAT-k (a hint by class of a verdict metric) and correct-prefix (NUT's data, each negative cut at
its first wrong step: see docs/step-credit.md).

Each keeps the agent's turns of a trajectory (``messages[prompt_len:]``) and rebuilds the prompt:
the trajectory's own prompt by default, or ``prompt:`` rendered with the task's question. NAT puts
its hint on the question turn; ``inference_prompt`` puts the positive (top-class) hint there, and the
train stage stores the reformatter beside the model so that evaluation applies it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import misstep
from pydantic import Field, field_validator

from misstep_nat.hints import (
    HintClass,
    HintSet,
    Position,
    check_classes,
    classify,
    hint_prompt,
    resolve_classes,
    resolve_hints,
)
from misstep_nat.selection import Candidate, Part, Report, SamplingMode, select


class VanillaOptions(misstep.Options):
    pos_num: int | None = Field(default=None, ge=0, description="positives to keep (default: all)")
    sampling: SamplingMode = Field(
        default="reference", description="reference: the first pos_num positives in input order and neg_num "
        "negatives drawn with random.Random(seed).sample, as NAT's code; random: both drawn at random, each "
        "group with its own seeded stream (a smaller neg_num gives a subset of a larger one)")
    seed: int = Field(default=42, description="seed of the random draw (NAT's code: 42)")
    max_pos_per_task: int | None = Field(default=1, ge=1, description="positives kept per question (NAT: 1)")
    dedup: bool = Field(default=True, description="drop trajectories whose turns repeat another's on the same task")
    prompt: misstep.PromptTemplate | None = Field(
        default=None, description="rebuild the prompt with this template and the task's question "
        "(default: keep the trajectory's own prompt)")


class NutOptions(VanillaOptions):
    neg_num: int | None = Field(default=None, ge=0, description="negatives to draw at random (default: all)")
    max_neg_per_task: int | None = Field(default=3, ge=1, description="negatives kept per question (NAT: 3)")


class Vanilla(misstep.Reformatter[VanillaOptions]):
    """Vanilla: positive trajectories only, no hint."""

    name = "vanilla"
    Options = VanillaOptions

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._report = Report()

    # --- what subclasses change -------------------------------------------------------------

    def classify(self, trajectory: misstep.Trajectory) -> tuple[str, str] | str:
        """(group, class) of a trajectory, or the reason it is dropped."""
        label = trajectory.label
        if label == "unknown":
            return "unlabelled (no verdict)"
        if label == "negative":
            return "negative (vanilla keeps positives only)"
        return label, label

    def hinted(self, prompt: list[misstep.Message], cls: str) -> list[misstep.Message]:
        """The prompt as the model sees it for a trajectory of class ``cls``."""
        return prompt

    def parts(self, candidate: Candidate) -> list[Part]:
        """The examples a kept trajectory gives: its agent's turns under its own class."""
        trajectory = candidate.trajectory
        return [Part(candidate.cls, trajectory.messages[trajectory.prompt_len:])]

    # --- the pipeline -------------------------------------------------------------------------

    def reformat(self, trajectories: Iterable[misstep.Trajectory],
                 tasks: Mapping[str, misstep.Task]) -> Iterator[misstep.Example]:
        self._report = report = Report()
        opts = self.options
        kept = select(
            self._candidates(trajectories, tasks, report),
            report,
            pos_num=opts.pos_num,
            neg_num=getattr(opts, "neg_num", None),
            max_per_task={"positive": opts.max_pos_per_task, "negative": getattr(opts, "max_neg_per_task", None)},
            dedup=opts.dedup,
            sampling=opts.sampling,
            seed=opts.seed,
        )
        for candidate in kept:
            trajectory = candidate.trajectory
            prompt = self._prompt(trajectory, tasks)
            assert prompt is not None  # candidates without a prompt were dropped
            for part in self.parts(candidate):
                if part.name:
                    report.added[part.name] += 1
                yield misstep.Example(
                    id=trajectory.id + (f"#{part.name}" if part.name else ""),
                    messages=[*self.hinted(prompt, part.cls), *part.turns],
                    label=candidate.group,
                    tools=trajectory.tools,
                    metadata={
                        "task_id": trajectory.task_id,
                        "label": candidate.group,
                        "class": part.cls,
                        "source": trajectory.provenance.source,
                        "temperature": trajectory.provenance.temperature,
                        **({"part": part.name} if part.name else {}),
                    },
                )

    def _candidates(self, trajectories: Iterable[misstep.Trajectory], tasks: Mapping[str, misstep.Task],
                    report: Report) -> Iterator[Candidate]:
        for trajectory in trajectories:
            report.seen += 1
            verdict = self.classify(trajectory)
            if isinstance(verdict, str):
                report.dropped[verdict] += 1
            elif self._prompt(trajectory, tasks) is None:
                report.dropped["no question (task missing and no stored prompt)"] += 1
            else:
                acts = any(m.role == "assistant" for m in trajectory.messages[trajectory.prompt_len:])
                yield Candidate(trajectory, *verdict, trainable=acts)

    def _prompt(self, trajectory: misstep.Trajectory, tasks: Mapping[str, misstep.Task]) -> list[misstep.Message] | None:
        if self.options.prompt is None and trajectory.prompt_len:
            return list(trajectory.messages[: trajectory.prompt_len])
        task = tasks.get(trajectory.task_id)
        if task is None:
            return None
        return (self.options.prompt or misstep.PromptTemplate()).render(task.question)

    def report(self) -> dict[str, Any]:
        """What the last ``reformat`` kept and dropped, by reason."""
        return self._report.as_dict()


class Nut(Vanilla):
    """NUT (negative-unaware training): positives and negatives, no hint."""

    name = "nut"
    Options = NutOptions
    options: NutOptions

    def classify(self, trajectory: misstep.Trajectory) -> tuple[str, str] | str:
        label = trajectory.label
        if label == "unknown":
            return "unlabelled (no verdict)"
        return label, label


class CorrectPrefixOptions(NutOptions):
    wrong_weight: float = Field(
        default=0.0, ge=-1, le=0, description="weight of a negative's first wrong step: 0 leaves it untrained, a "
        "negative weight trains it as an unlikelihood term (`loss: {use: sft, unlikelihood: true}`)")


class CorrectPrefix(Nut):
    """Correct prefix: NUT's positives and negatives, each negative trained only up to its first wrong step
    (found by the ``step-values`` stage), the wrong step weighted by ``wrong_weight``, the rest left out."""

    name = "correct-prefix"
    Options = CorrectPrefixOptions
    options: CorrectPrefixOptions

    def classify(self, trajectory: misstep.Trajectory) -> tuple[str, str] | str:
        found = super().classify(trajectory)
        if found != ("negative", "negative"):
            return found
        if trajectory.verdict is None or trajectory.verdict.first_wrong_step is None:
            return "negative without a first wrong step (value its steps with the step-values stage)"
        if misstep.correct_prefix(trajectory, wrong_weight=self.options.wrong_weight) is None:
            return "negative wrong at its first step: nothing to train (wrong_weight 0)"
        return found

    def parts(self, candidate: Candidate) -> list[Part]:
        if candidate.group != "negative":
            return super().parts(candidate)
        turns = misstep.correct_prefix(candidate.trajectory, wrong_weight=self.options.wrong_weight)
        assert turns is not None  # classify dropped the others
        return [Part(candidate.cls, turns)]


class NatOptions(NutOptions):
    hints: HintSet = Field(
        default_factory=lambda: resolve_hints("math"), description="a preset (math, qa, correct-incorrect, "
        "good-bad, a-b, 1-2, random-sentences) or {positive, negative, position, separator, closing, "
        "instruction_note}")
    position: Position | None = Field(default=None, description="prefix or suffix (default: the hint set's)")
    correct_prefix: bool = Field(
        default=False, description="also train each negative's steps before its first wrong step (found by the "
        "step-values stage) under the positive hint, as an extra example")

    @field_validator("hints", mode="before")
    @classmethod
    def _preset(cls, value: Any) -> Any:
        return resolve_hints(value) if isinstance(value, str) else value


class Nat(Nut):
    """NAT (negative-aware training): positives and negatives, each with a hint saying which it is."""

    name = "nat"
    Options = NatOptions
    options: NatOptions

    @property
    def hints(self) -> HintSet:
        return self.options.hints.placed(self.options.position)

    def hinted(self, prompt: list[misstep.Message], cls: str) -> list[misstep.Message]:
        return self.hints.apply(prompt, cls)

    def parts(self, candidate: Candidate) -> list[Part]:
        parts = super().parts(candidate)
        if self.options.correct_prefix and candidate.group == "negative":
            prefix = misstep.correct_prefix(candidate.trajectory)
            if prefix is not None:
                parts.append(Part("positive", prefix, "correct-prefix"))
        return parts

    def inference_prompt(self, prompt: list[misstep.Message]) -> list[misstep.Message]:
        return self.hints.apply(prompt, "positive")


class NatKOptions(NutOptions):
    metric: str = Field(default="f1", description="the verdict metric that picks the class")
    classes: list[HintClass] = Field(
        default_factory=lambda: resolve_classes("3-class"),
        description="a preset (3-class, 4-class) or a list of {hint, min, inclusive}, lowest class first")
    position: Position = "prefix"
    separator: str = " "
    closing: str = Field(default=".", description='after the question with a prefix hint ("[Correct] Question: q.")')

    @field_validator("classes", mode="before")
    @classmethod
    def _preset(cls, value: Any) -> Any:
        return resolve_classes(value) if isinstance(value, str) else value

    @field_validator("classes")
    @classmethod
    def _valid(cls, value: list[HintClass]) -> list[HintClass]:
        return check_classes(value)


class NatK(Nut):
    """NAT-k: a hint per class of a verdict metric (F1 by default); the top class counts as positive."""

    name = "nat-k"
    Options = NatKOptions
    options: NatKOptions

    def classify(self, trajectory: misstep.Trajectory) -> tuple[str, str] | str:
        metric = self.options.metric
        if trajectory.verdict is None or metric not in trajectory.verdict.metrics:
            return f"no {metric} in the verdict"
        classes = self.options.classes
        index = classify(trajectory.verdict.metrics[metric], classes)
        return ("positive" if index == len(classes) - 1 else "negative"), classes[index].hint

    def hinted(self, prompt: list[misstep.Message], cls: str) -> list[misstep.Message]:
        opts = self.options
        return hint_prompt(prompt, cls, opts.position, opts.separator, opts.closing if opts.position == "prefix" else "")

    def inference_prompt(self, prompt: list[misstep.Message]) -> list[misstep.Message]:
        return self.hinted(prompt, self.options.classes[-1].hint)


REFORMATTERS = (Vanilla, Nut, Nat, NatK, CorrectPrefix)
