"""The dataset task loaders: formats, ids, normalised gold answers, errors; counts on the shared data."""

from __future__ import annotations

import json
from pathlib import Path

import misstep
import pytest
from shared_data import SHARED_DATA

def load(name: str, path: Path, **options: object) -> list[misstep.Task]:
    return list(misstep.get_plugins().create("task", name, {"path": str(path), **options}).load())


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_gsm8k_final_number_and_solution(tmp_path: Path) -> None:
    solution = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nAltogether 48+24 = <<48+24=72>>72.\n#### 1,072"
    tasks = load("gsm8k", write_jsonl(tmp_path / "train.jsonl", [{"question": " How many? ", "answer": solution}]))
    assert tasks == [misstep.Task(id="gsm8k-train-1", question="How many?", answer="1072", dataset="gsm8k",
                                  split="train", metadata={"solution": solution})]


@pytest.mark.parametrize(("name", "answer", "gold"), [
    ("svamp", "#### 51", "51"), ("multiarith", "#### 39", "39"), ("asdiv", "9", "9"), ("asdiv", "2.5", "2.5"),
])
def test_math_loaders(tmp_path: Path, name: str, answer: str, gold: str) -> None:
    rows = [{"id": 0, "question": "q0", "answer": answer}, {"id": 1, "question": "q1", "answer": answer}]
    tasks = load(name, write_jsonl(tmp_path / "test.jsonl", rows), limit=1)
    assert [(t.id, t.answer, t.dataset, t.split) for t in tasks] == [(f"{name}-0", gold, name, "test")]


def test_hotpotqa_json_list(tmp_path: Path) -> None:
    path = tmp_path / "dev.json"
    path.write_text(json.dumps([{"question": "Who?", "answer": "Richard Strauss", "type": "bridge", "id": 6917}]))
    [task] = load("hotpotqa", path, dataset="hotpot", split="dev")
    assert (task.id, task.answer, task.dataset, task.split, task.metadata) == (
        "hotpot-6917", "Richard Strauss", "hotpot", "dev", {"type": "bridge"})


def test_strategyqa_bools(tmp_path: Path) -> None:
    rows = [{"id": "abc", "question": "Is it?", "answer": True, "facts": ["f"]},
            {"id": 7, "question": "Is it not?", "answer": "No"}]
    tasks = load("strategyqa", write_jsonl(tmp_path / "train.jsonl", rows))
    assert [(t.id, t.answer, t.metadata) for t in tasks] == [("strategyqa-abc", True, {"facts": ["f"]}),
                                                             ("strategyqa-7", False, {})]


GOOD_ROW = {"gsm8k": {"question": "q", "answer": "#### 1"}, "svamp": {"id": 0, "question": "q", "answer": "#### 1"},
            "strategyqa": {"id": 0, "question": "q", "answer": True}, "hotpotqa": {"id": 0, "question": "q", "answer": "x"}}


@pytest.mark.parametrize(("name", "row", "message"), [
    ("gsm8k", {"question": "q", "answer": "no final line"}, r"gsm8k answer 'no final line': expected a number"),
    ("svamp", {"id": 1, "answer": "#### 1"}, r"no field 'question' \(fields: id, answer\); is this a svamp file"),
    ("strategyqa", {"id": 1, "question": "q", "answer": "maybe"}, r"strategyqa answer 'maybe': expected true/false"),
    ("hotpotqa", {"id": 1, "question": "q", "answer": ""}, r"hotpotqa answer '': expected a non-empty answer"),
])
def test_bad_rows_name_file_and_line(tmp_path: Path, name: str, row: dict, message: str) -> None:
    path = write_jsonl(tmp_path / "data.jsonl", [GOOD_ROW[name], row])
    with pytest.raises(misstep.DataError, match=rf"data.jsonl:2: {message}"):
        load(name, path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(misstep.DataError, match="file not found"):
        load("svamp", tmp_path / "nope.jsonl")


SHARED_FILES = [
    ("gsm8k", "gsm8k/train.jsonl", 7473), ("gsm8k", "gsm8k/test.jsonl", 1319), ("svamp", "svamp/test.jsonl", 1000),
    ("asdiv", "asdiv/test.jsonl", 2023), ("multiarith", "multiarith/test.jsonl", 596),
    ("hotpotqa", "hotpotqa/dev_random_500.json", 500), ("hotpotqa", "hotpotqa/train_random_8000.json", 8000),
    ("strategyqa", "strategyqa/train.jsonl", 1290), ("strategyqa", "strategyqa/test_random_500.jsonl", 500),
]


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="the shared reference data is absent")
@pytest.mark.parametrize(("name", "file", "count"), SHARED_FILES)
def test_shared_data_loads_with_the_right_counts(name: str, file: str, count: int) -> None:
    tasks = load(name, SHARED_DATA / file)
    assert len(tasks) == count
    assert len({t.id for t in tasks}) == count
    numeric = misstep.get_plugins().create("verifier", "numeric")
    for task in tasks:
        assert task.question and task.dataset == name
        if name in {"gsm8k", "svamp", "asdiv", "multiarith"}:
            assert numeric.verify(task, str(task.answer)).correct is True  # every gold is a number
        elif name == "strategyqa":
            assert isinstance(task.answer, bool)
