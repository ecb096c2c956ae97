"""recipes/eto.yaml end to end on the quickstart's generated tasks, scripted teacher and a tiny student (SFT on
successes, (success, failure) pairs, DPO from the SFT model, every stage evaluated); recipes/kto-nat.yaml
validates."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import misstep
from misstep.datamodel import PreferenceExample, Trajectory
from misstep.jsonl import read_jsonl

pytest.importorskip("misstep_nat")

ROOT = Path(__file__).resolve().parents[2]

SMALL = ["stages.collect.tasks.0.count=40", "stages.eval-untrained.tasks.0.count=10",
         "stages.student.hidden_size=32", "stages.student.vocab_size=500", "stages.student.layers=1",
         "stages.reformat-sft.reformatter.pos_num=20", "stages.train-sft.max_steps=5", "stages.train-dpo.max_steps=3"]


def test_eto_runs_end_to_end_on_a_tiny_student(tmp_path: Path) -> None:
    recipe = misstep.load_recipe(ROOT / "recipes" / "eto.yaml", SMALL, plugins=misstep.get_plugins())
    run = misstep.run_recipe(recipe, run_dir=tmp_path / "eto", quiet=True)
    trajectories = {t.id: t for t in read_jsonl(run.dir / "collect" / "trajectories.jsonl", Trajectory)}
    pairs = list(read_jsonl(run.dir / "pairs" / "examples.jsonl", PreferenceExample))
    assert pairs and run.outputs["train-dpo"]["examples"] == len(pairs)
    for pair in pairs:  # a success and a failure of one problem, at most 2 per problem
        chosen, rejected = trajectories[pair.metadata["chosen_id"]], trajectories[pair.metadata["rejected_id"]]
        assert (chosen.label, rejected.label) == ("positive", "negative") and chosen.task_id == rejected.task_id
    per_task = [p.metadata["task_id"] for p in pairs]
    assert max(per_task.count(task) for task in per_task) <= 2
    info = json.loads((run.dir / "train-dpo" / "model" / "misstep.json").read_text())
    assert info["loss"]["use"] == "dpo" and Path(info["base"]).name == "model"  # the student, continued
    logs = [json.loads(line) for line in (run.dir / "train-dpo" / "log.jsonl").read_text().splitlines()]
    assert "rewards/margins" in logs[0] and (run.dir / "train-dpo" / "reference.jsonl").is_file()
    rows = list(csv.DictReader((run.dir / "compare" / "comparison.csv").open()))
    assert [row["method"] for row in rows] == ["untrained", "vanilla-sft", "sft+dpo"]
    assert {row["count"] for row in rows} == {"10"}


@pytest.mark.parametrize("name", ["eto.yaml", "kto-nat.yaml"])
def test_preference_recipes_validate(name: str) -> None:
    # kto-nat's data (NAT's trajectories) is downloaded separately: its paths are not checked here
    recipe = misstep.load_recipe(ROOT / "recipes" / name, plugins=misstep.get_plugins(), check_files=False)
    stages = {stage.label: stage.build().options for stage in recipe.stages}
    trained = stages["train-dpo" if name == "eto.yaml" else "train-kto"]
    assert trained.loss.use == ("dpo" if name == "eto.yaml" else "kto") and trained.init is not None
