"""A LoRA model trained by the train stage evaluates as base + adapter, with its stored reformatter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import misstep
from misstep.datamodel import Trajectory
from misstep.jsonl import read_jsonl
from misstep.recipe import validate_recipe
from misstep.runner import run_recipe

from train_helpers import train_stage, write_examples

hints = pytest.importorskip("misstep_nat.hints")
pytest.importorskip("misstep_tools")


def test_evaluate_a_lora_trained_model(tiny_model: Path, tmp_path: Path) -> None:
    examples = write_examples(tmp_path / "examples.jsonl", count=4)
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"id": "t1", "question": "What is 3 + 4?", "answer": 7}\n')
    recipe = validate_recipe({
        "name": "train-eval",
        "model": {"path": str(tiny_model), "lora": {"r": 4}},
        "stages": [
            {"use": "examples", "path": str(examples), "reformatter": {"use": "nat"}},
            train_stage(max_steps=1),
            {"use": "evaluate", "model": "train", "tasks": [{"use": "jsonl", "path": str(tasks)}],
             "tools": ["calculate"], "verifier": "numeric", "max_turns": 1, "max_new_tokens": 4},
        ],
    }, plugins=misstep.get_plugins())
    run = run_recipe(recipe, run_dir=tmp_path / "run", quiet=True)
    model = run.dir / "train" / "model"
    assert json.loads((model / "misstep.json").read_text())["reformatter"]["use"] == "nat"
    metrics = json.loads((run.dir / "evaluate" / "metrics.json").read_text())
    assert metrics["model"] == str(model) and metrics["inference_prompt"] == "nat"
    (trajectory,) = read_jsonl(run.dir / "evaluate" / "trajectories.jsonl", Trajectory)
    prompt = " ".join(m.content for m in trajectory.messages[: trajectory.prompt_len])
    assert hints.MATH_POSITIVE in prompt  # the stored reformatter's inference prompt: NAT's positive hint
