"""Preference losses through the train stage: PreferenceExample pairs with dpo (LoRA: the reference is the base
model), labelled Examples with kto (each with a mismatched continuation), TRL's metric names in the log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM

from misstep.datamodel import Example, Message, PreferenceExample
from misstep.errors import MisstepError
from misstep.jsonl import write_jsonl
from misstep.runner import run_recipe
from misstep.training.reference import REFERENCE_FILE, score

from train_helpers import MESSAGES, recipe, train_stage

METRICS = {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
           "logps/rejected"}


def pairs(path: Path, count: int = 4) -> Path:
    write_jsonl(path, [PreferenceExample(
        id=str(n), prompt=MESSAGES[:2], chosen=MESSAGES[2:],
        rejected=[Message(role="assistant", content="Action: Calculator[3 + 12" + "0" * n + "]"),
                  Message(role="tool", content="Observation: 15"),
                  Message(role="assistant", content="Action: Finish[15]")],
        metadata={"chosen_reward": 1.0, "rejected_reward": 0.0}) for n in range(count)])
    return path


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_dpo_with_lora_trains_against_the_base_model(tiny_model: Path, tmp_path: Path) -> None:
    examples = pairs(tmp_path / "pairs.jsonl")
    stage = train_stage(loss={"use": "dpo", "beta": 0.5}, batch_size=2, learning_rate=5e-3)
    run = run_recipe(recipe(tiny_model, examples, stage, lora={"r": 4, "alpha": 8}), run_dir=tmp_path / "run",
                     quiet=True)
    out, folder = run.outputs["train"], run.dir / "train"
    assert out["examples"] == 4 and out["steps"] == 3
    rows = lines(folder / "dataset.jsonl")
    assert all(len(row["candidate_ids"]) == 2 for row in rows)
    stored = lines(folder / REFERENCE_FILE)
    assert sorted(line["row"] for line in stored) == [0, 1, 2, 3]
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    expected = score(base, rows, "cpu")  # the reference is the model before the adapter: the base
    assert [line["logps"] for line in sorted(stored, key=lambda line: line["row"])] == \
        [pytest.approx(values, rel=1e-5) for values in expected]
    logs = [line for line in lines(folder / "log.jsonl") if "loss" in line]
    assert len(logs) == 3 and all(METRICS <= line.keys() for line in logs)
    assert logs[-1]["rewards/margins"] > logs[0]["rewards/margins"]  # the policy moves toward the chosen side
    assert json.loads((folder / "model" / "misstep.json").read_text())["loss"]["use"] == "dpo"


def test_kto_trains_on_labelled_examples_with_mismatched_continuations(tiny_model: Path, tmp_path: Path) -> None:
    bad = [*MESSAGES[:2], Message(role="assistant", content="Action: Finish[15]")]
    examples = [Example(id=str(n), messages=MESSAGES if n % 2 == 0 else bad,
                        label="desirable" if n % 2 == 0 else "undesirable") for n in range(4)]
    write_jsonl(tmp_path / "labelled.jsonl", examples)
    stage = train_stage(loss={"use": "kto", "undesirable_weight": 1.2}, batch_size=4)
    run = run_recipe(recipe(tiny_model, tmp_path / "labelled.jsonl", stage), run_dir=tmp_path / "run", quiet=True)
    folder = run.dir / "train"
    rows = lines(folder / "dataset.jsonl")
    assert [row["desirable"] for row in rows] == [True, False, True, False]
    # each example's second continuation is the previous example's (the first one's is the last one's)
    assert [row["candidate_ids"][1] for row in rows] == [rows[n - 1]["candidate_ids"][0] for n in range(4)]
    assert run.outputs["train"]["trained_tokens"] == sum(sum(row["candidate_trained"][0]) for row in rows)
    logs = [line for line in lines(folder / "log.jsonl") if "loss" in line]
    assert all({"kl", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen"} <= line.keys()
               for line in logs)


def test_preference_data_is_checked(tiny_model: Path, tmp_path: Path) -> None:
    examples = pairs(tmp_path / "pairs.jsonl", count=2)
    with pytest.raises(MisstepError, match="`packing: true` does not apply to the preference loss 'dpo'"):
        run_recipe(recipe(tiny_model, examples, train_stage(loss={"use": "dpo"}, packing=True)),
                   run_dir=tmp_path / "run", quiet=True)
    write_jsonl(tmp_path / "plain.jsonl", [Example(id="a", messages=MESSAGES, label="positive"),
                                           Example(id="b", messages=MESSAGES)])
    with pytest.raises(MisstepError, match="example 'b' has the label None; an unpaired preference loss needs"):
        run_recipe(recipe(tiny_model, tmp_path / "plain.jsonl", train_stage(loss={"use": "kto"})),
                   run_dir=tmp_path / "run2", quiet=True)
