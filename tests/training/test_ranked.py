"""A ranked loss through the train stage: TRICE's rrhf on RankedExample records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from misstep.datamodel import Candidate, Message, RankedExample
from misstep.errors import MisstepError
from misstep.jsonl import write_jsonl
from misstep.runner import run_recipe

from train_helpers import MESSAGES, recipe, train_stage

pytest.importorskip("misstep_trice")


def ranked_examples(path: Path, count: int = 4) -> Path:
    def candidate(answer: str, reward: float) -> Candidate:
        return Candidate(messages=[Message(role="assistant", content=f"Action: Finish[{answer}]")], reward=reward)

    write_jsonl(path, [RankedExample(id=str(i), prompt=MESSAGES[:2],
                                     candidates=[candidate("36", 20), candidate("35", 5), candidate("3", 0)])
                       for i in range(count)])
    return path


def test_rrhf_trains_on_ranked_examples(tiny_model: Path, tmp_path: Path) -> None:
    examples = ranked_examples(tmp_path / "ranked.jsonl")
    run = run_recipe(recipe(tiny_model, examples, train_stage(loss={"use": "rrhf"}, batch_size=2)),
                     run_dir=tmp_path / "run", quiet=True)
    out = run.outputs["train"]
    assert out["examples"] == 4 and out["steps"] == 3 and out["truncated"] == 0
    rows = [json.loads(line) for line in (run.dir / "train" / "dataset.jsonl").read_text().splitlines()]
    assert out["trained_tokens"] == sum(sum(map(sum, row["candidate_trained"])) for row in rows)
    logs = [json.loads(line) for line in (run.dir / "train" / "log.jsonl").read_text().splitlines()]
    steps = [line for line in logs if "loss" in line]
    assert len(steps) == 3 and all({"rank_loss", "sft_loss", "pair_accuracy"} <= set(line) for line in steps)
    info = json.loads((run.dir / "train" / "model" / "misstep.json").read_text())
    assert info["loss"]["use"] == "rrhf"


def test_ranked_losses_refuse_packing_and_too_long_prompts(tiny_model: Path, tmp_path: Path) -> None:
    examples = ranked_examples(tmp_path / "ranked.jsonl", count=2)
    with pytest.raises(MisstepError, match="`packing: true` does not apply to the ranked loss 'rrhf'"):
        run_recipe(recipe(tiny_model, examples, train_stage(loss={"use": "rrhf"}, packing=True)),
                   run_dir=tmp_path / "run", quiet=True)
    with pytest.raises(MisstepError, match=r"none of the 2 examples .*\(2 were longer\)"):
        run_recipe(recipe(tiny_model, examples, train_stage(loss={"use": "rrhf"}, max_length=20)),
                   run_dir=tmp_path / "run2", quiet=True)
