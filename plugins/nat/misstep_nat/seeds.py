"""Repeating a comparison over seeds: every method chain's training and evaluation once per seed.

A recipe's reformat -> train -> evaluate chains keep their reformat stage (the same examples for every
seed); their train stages are copied once per seed (``<stage>-s<seed>``, trained with ``seed: <seed>``,
which sets the LoRA initialisation and the data order) and so are the evaluations of those models. A copy
sits right after the stage it copies, so the run order stays valid; the seed a train stage already uses
is served by the stage itself. Compare stages list the copies beside their evaluation under the same
label, so their table and plot show the mean and spread over the seeds.
"""

from __future__ import annotations

import copy
import statistics
from dataclasses import dataclass
from typing import Any

import misstep

Stage = dict[str, Any]


def label(stage: Stage) -> str:
    """A dumped stage's name (its ``use`` when it has none)."""
    return str(stage.get("name") or stage["use"])


@dataclass
class Chain:
    """A method's stages: its reformat stage, the train stages on it, the evaluations of those."""

    method: str
    reformat: Stage
    trains: list[Stage]
    evaluations: list[Stage]


def chains(stages: list[Stage]) -> list[Chain]:
    """Every reformat -> train -> evaluate chain of a recipe's (dumped) stages."""
    found = []
    for stage in stages:
        reformatter = stage.get("reformatter")
        if stage["use"] != "reformat" or not isinstance(reformatter, dict):
            continue
        trains = [s for s in stages if s["use"] == "train" and s.get("examples") == label(stage)]
        names = {label(t) for t in trains}
        evaluations = [s for s in stages if s["use"] == "evaluate" and s.get("model") in names]
        if evaluations:
            found.append(Chain(str(reformatter["use"]), stage, trains, evaluations))
    return found


def repeat(data: dict[str, Any], seeds: list[int]) -> tuple[dict[str, Any], dict[str, list[tuple[int, str]]]]:
    """The recipe with every chain run once per seed (see the module docstring), and for each evaluation of
    the input the (seed, evaluation stage) pairs that now stand for it."""
    data = copy.deepcopy(data)
    stages: list[Stage] = data["stages"]
    found = chains(stages)
    if not found:
        raise misstep.MisstepError("--seeds: the recipe has no reformat -> train -> evaluate chain to repeat")
    recipe_seed = int(data.get("seed") or 0)
    after: dict[str, list[Stage]] = {}  # stage -> its copies, inserted right after it
    runs: dict[str, list[tuple[int, str]]] = {}
    for chain in found:
        trains = {label(t) for t in chain.trains}
        own = {label(t): recipe_seed if t.get("seed") is None else int(t["seed"]) for t in chain.trains}
        for seed in seeds:
            def named(name: str) -> str:
                return name if own.get(name) == seed else f"{name}-s{seed}"

            for train in chain.trains:
                if own[label(train)] == seed:
                    continue
                clone = {**copy.deepcopy(train), "name": named(label(train)), "seed": seed}
                if clone.get("init") in trains:  # continues another training of the chain: that one's copy
                    clone["init"] = named(str(clone["init"]))
                after.setdefault(label(train), []).append(clone)
            for evaluation in chain.evaluations:
                model = str(evaluation["model"])
                if named(model) != model:
                    clone = {**copy.deepcopy(evaluation), "name": f"{label(evaluation)}-s{seed}", "model": named(model)}
                    after.setdefault(label(evaluation), []).append(clone)
                    runs.setdefault(label(evaluation), []).append((seed, clone["name"]))
                else:
                    runs.setdefault(label(evaluation), []).append((seed, label(evaluation)))
    data["stages"] = [item for stage in stages for item in (stage, *after.get(label(stage), []))]
    for stage in data["stages"]:
        if stage["use"] == "compare":
            _compare_runs(stage, runs)
    return data, runs


def _compare_runs(stage: Stage, runs: dict[str, list[tuple[int, str]]]) -> None:
    """A compare stage's evaluations with each one's seed runs beside it, all under the evaluation's label."""
    labels: dict[str, str] = dict(stage.get("labels") or {})
    evaluations: list[str] = []
    for evaluation in stage["evaluations"]:
        name = labels.get(evaluation, evaluation.removeprefix("eval-"))
        for _, run in runs.get(evaluation, [(0, evaluation)]):
            evaluations.append(run)
            if run != evaluation:
                labels[run] = name
    stage["evaluations"], stage["labels"] = list(dict.fromkeys(evaluations)), labels


@dataclass(frozen=True)
class Spread:
    """The mean, sample standard deviation, extremes and count of a few measurements."""

    mean: float
    sd: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        if not values:
            raise ValueError("no values")
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(statistics.fmean(values), sd, min(values), max(values), len(values))

    def percent(self) -> str:
        """``61.50%`` for one value, ``61.50% ± 3.20`` (sample standard deviation, in points) for several."""
        text = f"{100 * self.mean:.2f}%"
        return text if self.n == 1 else f"{text} ± {100 * self.sd:.2f}"
