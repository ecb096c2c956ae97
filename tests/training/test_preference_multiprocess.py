"""DPO in two CPU processes (torchrun, gloo) under DeepSpeed ZeRO-3: the processes share the reference pass
(each scores half of the batches, the partitioned weights gathered for it) and store what one process
computes. (Plain DDP takes the same path without the gathering; it passed too, and is left out of CI for time.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from misstep.runner import run_recipe
from misstep.training.reference import REFERENCE_FILE, score

from test_preference_train import pairs
from train_helpers import load_model, recipe, train_stage

pytestmark = pytest.mark.slow


def test_two_zero3_processes_share_the_reference_pass(tiny_model: Path, tmp_path: Path) -> None:
    examples = pairs(tmp_path / "pairs.jsonl", count=6)
    stage = train_stage(loss={"use": "dpo"}, batch_size=1, processes=2, deepspeed="zero3")
    run = run_recipe(recipe(tiny_model, examples, stage), run_dir=tmp_path / "run", quiet=True)
    folder = run.dir / "train"
    assert run.outputs["train"]["steps"] == 3
    rows = [json.loads(line) for line in (folder / "dataset.jsonl").read_text().splitlines()]
    lines = [json.loads(line) for line in (folder / REFERENCE_FILE).read_text().splitlines()]
    stored = {line["row"]: line["logps"] for line in lines}
    assert sorted(line["row"] for line in lines) == list(range(6))  # each row once, by the first process
    expected = score(load_model(tiny_model), rows, "cpu")
    assert [stored[row] for row in range(6)] == [pytest.approx(values, rel=1e-5) for values in expected]
