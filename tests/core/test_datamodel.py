import json

import pytest

from misstep import (
    Candidate,
    DataError,
    Example,
    JsonlAppender,
    Message,
    RankedExample,
    Task,
    Trajectory,
    Verdict,
    read_jsonl,
    write_jsonl,
)
from misstep.datamodel import SCHEMA_VERSION, WeightSpan


def _records():
    messages = [
        Message(role="user", content="Question: 2+2"),
        Message(role="assistant", content="Thought: add\nAction: finish[4]", spans=[WeightSpan(start=0, end=5, weight=1.5)]),
    ]
    return [
        Task(id="t1", question="2+2", answer=4, dataset="toy", split="train", metadata={"level": 1}),
        Trajectory(id="t1#0", task_id="t1", messages=messages, prompt_len=1,
                   verdict=Verdict(correct=True, score=1.0, prediction="4", metrics={"em": 1.0})),
        Example(id="e1", messages=messages),
        RankedExample(id="r1", prompt=messages[:1],
                      candidates=[Candidate(messages=messages[1:], reward=2.0), Candidate(messages=messages[1:], reward=0.0)]),
    ]


@pytest.mark.parametrize("index", range(4))
def test_every_record_round_trips_through_jsonl(tmp_path, index):
    record = _records()[index]
    path = tmp_path / "r.jsonl"
    assert write_jsonl(path, [record, record]) == 2
    back = list(read_jsonl(path, type(record)))
    assert back == [record, record]
    assert json.loads(path.read_text().splitlines()[0])["schema_version"] == SCHEMA_VERSION


def test_message_training_defaults():
    assert Message(role="assistant", content="x").trained
    assert not Message(role="user", content="x").trained
    assert not Message(role="tool", content="x").trained
    assert Message(role="user", content="x", train=True).trained
    assert not Message(role="assistant", content="x", train=False).trained


def test_weights_are_finite_and_no_lower_than_minus_one(tmp_path):
    """Negative weights (unlikelihood) go down to -1; positive ones are likelihood scales (TriPosT: 1.5)."""
    for weight in (-1.0, -0.25, 0.0, 1.5):
        assert Message(role="assistant", content="x", weight=weight).weight == weight
        assert WeightSpan(start=0, weight=weight).weight == weight
    for weight in (-1.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="weight"):
            Message(role="assistant", content="x", weight=weight)
        with pytest.raises(ValueError, match="weight"):
            WeightSpan(start=0, weight=weight)
    path = tmp_path / "examples.jsonl"
    path.write_text(json.dumps({"id": "e", "messages": [{"role": "assistant", "content": "x", "weight": -2}]}) + "\n")
    with pytest.raises(DataError, match="weight.*greater than or equal to -1") as info:
        list(read_jsonl(path, Example))
    assert info.value.line == 1


def test_label_derives_from_verdict():
    traj = _records()[1]
    assert traj.label == "positive"
    assert traj.model_copy(update={"verdict": Verdict(correct=False)}).label == "negative"
    assert traj.model_copy(update={"verdict": None}).label == "unknown"


def test_bad_line_reports_file_and_line(tmp_path):
    path = tmp_path / "tasks.jsonl"
    good = _records()[0].model_dump_json()
    path.write_text(f"{good}\n\n{good}\n{{\"id\": \"x\"}}\n{good}\n")
    reader = read_jsonl(path, Task)
    assert next(reader).id == "t1"
    assert next(reader).id == "t1"
    with pytest.raises(DataError) as info:
        next(reader)
    assert info.value.line == 4 and str(path) in str(info.value)
    assert "question" in str(info.value)


def test_invalid_json_and_newer_schema_are_refused(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"id": "a", "question": "q"\n')
    with pytest.raises(DataError, match=r"t.jsonl:1: not valid JSON"):
        list(read_jsonl(path, Task))
    path.write_text(json.dumps({"id": "a", "question": "q", "schema_version": SCHEMA_VERSION + 1}) + "\n")
    with pytest.raises(DataError, match="newer misstep"):
        list(read_jsonl(path, Task))


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        list(read_jsonl(tmp_path / "nope.jsonl", Task))


def test_appender_flushes_each_record_and_keeps_a_cut_last_line(tmp_path):
    path = tmp_path / "store.jsonl"
    task = _records()[0]
    with JsonlAppender(path) as out:
        out.write(task)
        assert path.read_text().count("\n") == 1  # visible before close
    with path.open("a") as handle:  # a crash in the middle of a write
        handle.write(task.model_dump_json()[:20])
    with JsonlAppender(path) as out:
        assert out.recovered is not None
        out.write(task)
    assert [t.id for t in read_jsonl(path, Task)] == ["t1", "t1"]
    assert (tmp_path / "store.jsonl.partial").read_text().startswith(task.model_dump_json()[:20])
