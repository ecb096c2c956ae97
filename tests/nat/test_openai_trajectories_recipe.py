"""recipes/nat-openai-trajectories.yaml: OpenAI-format tool-calling logs with rewards, NAT, LoRA training."""

from __future__ import annotations

import json
from pathlib import Path

import misstep
from misstep.models import load_tokenizer
from misstep.training.encode import IGNORE

ROOT = Path(__file__).resolve().parents[2]


def test_the_recipe_runs_end_to_end_on_the_tiny_tools_model(tmp_path, monkeypatch):
    monkeypatch.setenv("MISSTEP_CACHE", str(tmp_path / "cache"))
    data = ROOT / "examples" / "data" / "openai-trajectories.jsonl"
    recipe = misstep.load_recipe(ROOT / "recipes" / "nat-openai-trajectories.yaml",
                                 [f"stages.reformat.source.path={data}", "stages.train.max_steps=3"])
    run = misstep.run_recipe(recipe, run_dir=tmp_path / "run", quiet=True)

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
