"""recipes/nat-strategyqa.yaml on a tiny model with a small draw of NAT's released StrategyQA trajectories
(skipped when the shared data is absent): it trains, and the NAT model is evaluated with the positive hint."""

import json
from pathlib import Path

import misstep
import pytest
from misstep.testing import build_tiny_model
from misstep_nat.hints import QA_NEGATIVE, QA_POSITIVE, QA_TARGET_AWARE
from shared_data import SHARED_DATA

ROOT = Path(__file__).resolve().parents[2]
DATA = SHARED_DATA / "strategyqa"

pytestmark = pytest.mark.skipif(not (DATA / "strategyqa_gpt-3.5_positive.json").is_file(),
                                reason="the shared NAT StrategyQA trajectories are absent")


def passages(path: Path, rows: int) -> Path:
    """A small search corpus: the facts of the first training questions."""
    with (DATA / "train.jsonl").open() as source, path.open("w") as out:
        for _, line in zip(range(rows), source):
            for fact in json.loads(line)["facts"]:
                out.write(json.dumps({"text": fact}) + "\n")
    return path


def test_nat_strategyqa_recipe_on_a_tiny_model(tmp_path):
    model = build_tiny_model(tmp_path / "tiny")
    corpus = passages(tmp_path / "passages.jsonl", 200)
    files = f"[{DATA / 'strategyqa_gpt-3.5_positive.json'}, {DATA / 'strategyqa_gpt-3.5_negative.json'}]"
    overrides = [
        f"model.path={model}",
        f"stages.reformat-vanilla.source.paths={files}",  # the three reformat stages share the source
        f"stages.reformat-vanilla.source.tasks.path={DATA / 'train.jsonl'}",
        f"stages.eval-untrained.tasks.0.path={DATA / 'test_random_500.jsonl'}",  # shared by the evaluations
        "stages.eval-untrained.tasks.0.limit=4",
        f"stages.eval-untrained.tools.0.corpus={corpus}",
        "stages.reformat-vanilla.reformatter.pos_num=12",
        "stages.reformat-nut.reformatter.pos_num=12", "stages.reformat-nut.reformatter.neg_num=6",
        "stages.reformat-nat.reformatter.pos_num=12", "stages.reformat-nat.reformatter.neg_num=6",
    ]
    for method in ("vanilla", "nut", "nat"):
        overrides += [f"stages.train-{method}.max_steps=2", f"stages.train-{method}.batch_size=4",
                      f"stages.train-{method}.gradient_accumulation=1", f"stages.train-{method}.max_length=1024"]
    for stage in ("eval-untrained", "eval-vanilla", "eval-nut", "eval-nat"):
        overrides += [f"stages.{stage}.max_turns=2", f"stages.{stage}.max_new_tokens=24"]
    recipe = misstep.load_recipe(ROOT / "recipes" / "nat-strategyqa.yaml", overrides, plugins=misstep.get_plugins())
    run = misstep.run_recipe(recipe, run_dir=tmp_path / "run", quiet=True)

    summary = json.loads((run.dir / "reformat-nat" / "summary.json").read_text())
    assert summary["kept"] == {"positive": 12, "negative": 6}
    assert run.outputs["reformat-vanilla"]["count"] == 12 and run.outputs["train-nat"]["steps"] == 2
    examples = [json.loads(line) for line in (run.dir / "reformat-nat" / "examples.jsonl").open()]
    assert examples[0]["messages"][0]["content"].endswith("Remember you should answer Yes or No.")
    hints = {"positive": QA_POSITIVE, "negative": QA_NEGATIVE}
    for example in examples:
        assert example["messages"][2]["content"].endswith("?. " + hints[example["metadata"]["label"]])

    metrics = json.loads((run.dir / "eval-nat" / "metrics.json").read_text())
    assert metrics["inference_prompt"] == "nat" and metrics["metrics"]["all"]["count"] == 4
    for line in (run.dir / "eval-nat" / "trajectories.jsonl").open():
        messages = json.loads(line)["messages"]
        assert QA_TARGET_AWARE in messages[0]["content"] and messages[2]["content"].endswith(". " + QA_POSITIVE)
    for line in (run.dir / "eval-untrained" / "trajectories.jsonl").open():
        assert json.loads(line)["messages"][2]["content"].endswith("?")
    rows = json.loads((run.dir / "compare" / "comparison.json").read_text())["rows"]
    assert [row["method"] for row in rows] == ["untrained", "vanilla", "nut", "nat"]
