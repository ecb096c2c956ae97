"""NAT's reformatters on imported tool-calling trajectories, and recipes/nat-openai-trajectories.yaml:
OpenAI-format logs with rewards, NAT, LoRA training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import misstep
from misstep.formats import read_trajectories
from misstep.models import load_tokenizer
from misstep.training.token_loss import IGNORE_INDEX as IGNORE

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples" / "data" / "openai-trajectories.jsonl"


@pytest.mark.parametrize("reformatter, options, positives, negatives", [
    ("vanilla", {}, 4, 0),
    ("nut", {}, 4, 7),
    ("nat", {"position": "prefix"}, 4, 7),
    ("nat-k", {"metric": "reward", "classes": [{"hint": "[Wrong]"}, {"hint": "[Right]", "min": 1.0}]}, 4, 7),
])
def test_every_nat_reformatter_keeps_the_calls_and_the_tools(reformatter, options, positives, negatives):
    trajectories = list(read_trajectories(DATA, "openai"))
    plugins = misstep.Plugins()
    examples = list(plugins.create("reformatter", reformatter, options).reformat(trajectories, {}))
    labels = [example.metadata["label"] for example in examples]
    assert (labels.count("positive"), labels.count("negative")) == (positives, negatives)
    by_id = {t.id: t for t in trajectories}
    for example in examples:
        trajectory = by_id[example.id]
        assert example.messages[2:] == trajectory.messages[2:]  # calls, results and answers untouched
        assert example.tools == trajectory.tools and example.messages[2].tool_calls
        question = trajectory.messages[1].content  # the first user turn carries the hint (if any)
        assert example.messages[1].role == "user" and question in example.messages[1].content
        assert example.messages[0] == trajectory.messages[0]  # the system prompt stays as it is
    if reformatter in ("nat", "nat-k"):
        first = examples[0]
        hint = "Generate a sequence" if reformatter == "nat" else "[Right]" if first.metadata["label"] == "positive" \
            else "[Wrong]"
        assert first.messages[1].content.startswith(hint)


def test_the_recipe_runs_end_to_end_on_the_tiny_tools_model(tmp_path, monkeypatch):
    monkeypatch.setenv("MISSTEP_CACHE", str(tmp_path / "cache"))
    plugins = misstep.Plugins()
    recipe = misstep.load_recipe(ROOT / "recipes" / "nat-openai-trajectories.yaml",
                                 [f"stages.reformat.source.path={DATA}", "stages.train.max_steps=3"], plugins=plugins)
    run = misstep.run_recipe(recipe, run_dir=tmp_path / "run", plugins=plugins, quiet=True)

    examples = list(misstep.read_jsonl(run.dir / "reformat" / "examples.jsonl", misstep.Example))
    labels = [example.metadata["label"] for example in examples]
    assert labels.count("positive") == 4 and labels.count("negative") == 7  # one success per task, every failure
    first = examples[0]
    assert first.messages[1].content.endswith(" Solve the problem correctly.") and first.messages[0].role == "system"
    assert first.messages[2].tool_calls[0].arguments == {"expression": "3 * 12 - 5"}
    assert first.tools and first.tools[0]["function"]["name"] == "calculate"

    train = run.outputs["train"]
    assert train["steps"] == 3 and train["examples"] == len(examples)
    assert (run.dir / "train" / "model" / "adapter_config.json").is_file()
    # only the assistant turns (the call and the answer, each with its end token) were trained
    tokenizer = load_tokenizer(misstep.ModelSpec(path="tiny-tools"))
    row = json.loads((run.dir / "train" / "dataset.jsonl").read_text().splitlines()[0])
    trained = tokenizer.decode([t for t, label in zip(row["input_ids"], row["labels"]) if label != IGNORE])
    assert trained == ('<tool_call>\n{"name": "calculate", "arguments": {"expression": "3 * 12 - 5"}}\n</tool_call>'
                       "<|im_end|>31<|im_end|>")
