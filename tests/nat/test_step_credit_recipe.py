"""``recipes/step-credit.yaml``: it validates, ``misstep sweep --seeds`` repeats each method from the one SFT
start, and it runs end to end on a tiny student (one seed, a few steps); and step values on the scripted
teacher's trajectories find the step where the teacher went wrong."""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import pytest
import yaml

import misstep
from misstep_nat.seeds import repeat
from misstep_nat.teacher import first_injected_error

ROOT = Path(__file__).resolve().parents[2]
METHODS = ["vanilla", "nat", "correct-prefix", "step-pairs"]


def recipe_data() -> dict:
    return yaml.safe_load((ROOT / "recipes" / "step-credit.yaml").read_text())


def stages_of(data: dict) -> dict[str, dict]:
    return {stage.get("name") or stage["use"]: stage for stage in data["stages"]}


def test_the_recipe_validates_and_every_method_starts_from_the_one_sft_start():
    recipe = misstep.validate_recipe(recipe_data(), plugins=misstep.get_plugins(), file="step-credit.yaml")
    options = {stage.label: stage.build().options for stage in recipe.stages}
    trains = [options[f"train-{method}"] for method in METHODS]
    assert {t.init for t in trains} == {"train-start"}
    assert len({(t.max_steps, t.batch_size, t.gradient_accumulation) for t in trains}) == 1  # same examples trained
    assert options["train-correct-prefix"].loss.use == "sft" and options["train-correct-prefix"].loss.options.unlikelihood
    assert options["reformat-correct-prefix"].reformatter.options.wrong_weight == -1
    assert options["train-step-pairs"].loss.use == "dpo" and options["train-step-pairs"].loss.options.sft_weight == 1
    seeded, runs = repeat(misstep.dump_recipe(recipe), [0, 1, 2])
    copies = stages_of(seeded)
    assert "train-start-s1" not in copies  # the SFT start is trained once
    for method in METHODS:
        assert [name for _, name in runs[f"eval-{method}"]] == [f"eval-{method}", f"eval-{method}-s1",
                                                               f"eval-{method}-s2"]
        assert copies[f"train-{method}-s2"]["init"] == "train-start" and copies[f"train-{method}-s2"]["seed"] == 2


def tiny(data: dict) -> dict:
    """The recipe with less of everything: 24 problems, 2 branches, a 1-layer student, 3 training steps."""
    data = copy.deepcopy(data)
    stages = stages_of(data)
    stages["collect"]["tasks"][0]["count"] = 24
    stages["step-values"]["branches"] = 2
    stages["student"].update(hidden_size=32, layers=1, heads=2, vocab_size=600)
    for name, stage in stages.items():
        if stage["use"] == "train":
            stage.update(max_steps=3, batch_size=4)
        if stage["use"] == "reformat" and "pos_num" in stage["reformatter"]:
            stage["reformatter"].update(pos_num=8, **({"neg_num": 8} if "neg_num" in stage["reformatter"] else {}))
        if stage["use"] == "evaluate":
            stage["tasks"] = [{**stage["tasks"][0], "count": 6}]
    return data


@pytest.mark.slow
def test_the_recipe_runs_end_to_end_on_a_tiny_student(tmp_path):
    plugins = misstep.get_plugins()
    run = misstep.run_recipe(misstep.validate_recipe(tiny(recipe_data()), plugins=plugins, file="step-credit.yaml"),
                             run_dir=tmp_path / "run", plugins=plugins, quiet=True)
    assert run.output("step-values", "valued") > 0 and sum(run.output("step-values", "first_wrong_steps").values())
    examples = list(misstep.read_jsonl(run.output("reformat-correct-prefix", "examples"), misstep.Example))
    weights = {m.weight for e in examples if e.label == "negative" for m in e.messages if m.trained}
    assert -1.0 in weights and 1.0 in weights  # correct prefixes trained, wrong steps pushed down
    assert run.output("train-correct-prefix", "steps") == 3
    pairs = list(misstep.read_jsonl(run.output("reformat-step-pairs", "examples"), misstep.PreferenceExample))
    assert pairs and all(len(p.chosen) == len(p.rejected) == 1 for p in pairs)
    table = misstep.read_text(run.output("compare", "table"))
    for method in METHODS:
        assert f"| {method} |" in table
    assert run.output("train-step-pairs", "steps") == 3


def test_step_values_find_the_step_where_the_teacher_went_wrong(tmp_path):
    """On three-step problems, with 4 teacher branches per point at temperature 0.2, the first wrong step is
    the teacher's first mistake for most failures (benchmarks/step_values.py measures it at scale)."""
    agent = {"backend": {"use": "scripted-teacher"}, "tools": ["calculate"], "verifier": "numeric"}
    data = {"name": "teacher-steps", "stages": [
        {"use": "collect", "tasks": [{"use": "arithmetic-word-problems", "count": 40, "steps": [3]}],
         "temperatures": [0.7], **agent},
        {"use": "step-values", "trajectories": "collect", "branches": 4, "temperature": 0.2, **agent}]}
    plugins = misstep.get_plugins()
    run = misstep.run_recipe(misstep.validate_recipe(data, plugins=plugins), run_dir=tmp_path / "run",
                             plugins=plugins, quiet=True)
    failed = [t for t in misstep.read_jsonl(run.output("step-values", "trajectories"), misstep.Trajectory)
              if t.verdict.steps is not None]
    found = Counter(t.verdict.first_wrong_step == first_injected_error(t) for t in failed)
    assert len(failed) >= 15 and found[True] >= 0.8 * len(failed)
    assert {first_injected_error(t) for t in failed} > {1}  # mistakes at later steps too
